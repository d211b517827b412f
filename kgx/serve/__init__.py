"""``kgx serve``: the graph over HTTP (SPARQL 1.1 Protocol, entity lookup, pages).

======================= ================================================================
module                  does
======================= ================================================================
:mod:`.server`          routes, the ``Host`` check, make_server, serve
:mod:`.protocol`        strict HTTP framing, request deadlines, the connection cap
:mod:`.pool`            query worker processes: lanes, fair order, replacements
:mod:`.queries`         what a worker does: check, run and write a query's answer
:mod:`.version`         the pinned version of the store a server answers from
:mod:`.options`         the settings, checked
======================= ================================================================
"""

from __future__ import annotations

from kgx.serve.options import Refused, ServeOptions
from kgx.serve.queries import check_query, negotiate
from kgx.serve.server import host_allowed, make_server, serve

__all__ = ["Refused", "ServeOptions", "check_query", "host_allowed", "make_server",
           "negotiate", "serve"]
