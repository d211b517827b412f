"""What a query worker of ``kgx serve`` does: check a query, run it, write its answer.

Everything a request costs in proportion to its query runs here, in the worker, under the
worker's time and memory limits: the SPARQL check (:func:`check_query` cuts the query into
tokens), the query, and writing its results. The HTTP thread only reads the request.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from kgx.graph.results import serialize_ask, serialize_select, take_triples
from kgx.serve.options import Refused, ServeOptions

Answer = tuple[int, str, bytes, dict[str, str]]
SELECT_TYPES = {
    "application/sparql-results+json": "json", "application/json": "json",
    "application/sparql-results+xml": "xml", "application/xml": "xml",
    "text/csv": "csv", "text/tab-separated-values": "tsv",
}
GRAPH_TYPES = {"text/turtle": "turtle", "application/n-triples": "ntriples",
               "application/n-quads": "nquads", "application/ld+json": "jsonld",
               "text/plain": "ntriples"}
CONTENT_TYPE = {"json": "application/sparql-results+json", "xml": "application/sparql-results+xml",
                "csv": "text/csv; charset=utf-8", "tsv": "text/tab-separated-values; charset=utf-8",
                "turtle": "text/turtle; charset=utf-8", "ntriples": "application/n-triples",
                "nquads": "application/n-quads", "jsonld": "application/ld+json"}
TEXT = "text/plain; charset=utf-8"


def check_query(query: str, prefixes: dict[str, str], has_graph: Any, max_bytes: int) -> None:
    """Refuse what must not run: oversize, updates, SERVICE, graphs the store does not hold.

    Args:
        query: The query text.
        prefixes: The predeclared prefixes (to resolve ``FROM pfx:name``).
        has_graph: ``has_graph(iri) -> bool``, whether the store holds that named graph.
        max_bytes: Largest query accepted.

    Raises:
        Refused: With the HTTP status to answer.
    """
    from kgx.graph.sparql import inspect_query

    size = len(query.encode("utf-8"))
    if size > max_bytes:
        raise Refused(413, f"query is {size:,} bytes; the limit is {max_bytes:,}")
    shape = inspect_query(query, prefixes)
    if shape.names_service:
        raise Refused(403, "SERVICE is refused: this endpoint makes no outbound requests")
    if shape.form == "UPDATE":
        raise Refused(403, "this endpoint is read-only: SPARQL Update is not accepted")
    for iri in shape.from_graphs + shape.from_named:
        if not has_graph(iri):
            raise Refused(403, f"FROM <{iri}> names no graph of this store; remote graphs are "
                          "never fetched")


def negotiate(accept: str, graph_result: bool) -> str | None:
    """The result format for an Accept header, or None (406)."""
    table = GRAPH_TYPES if graph_result else SELECT_TYPES
    default = "turtle" if graph_result else "json"
    if not accept.strip():
        return default
    from kgx.serve.urls import accept_ranking

    for mt in accept_ranking(accept):
        if mt in table:
            return table[mt]
        if mt in ("*/*", "application/*", "text/*"):
            return default
    return None


def run_query(kg: Any, query: str, accept: str, opts: ServeOptions, extra: dict[str, Any]
              ) -> Answer:
    """Run and serialise one query: (status, content type, body, extra headers)."""
    import pyoxigraph as ox

    if "default_graph" in extra or "named_graphs" in extra:
        extra = {k: [ox.NamedNode(g) for g in v] for k, v in extra.items()}
    res = kg.query(query, **extra)
    if isinstance(res, ox.QueryTriples):
        fmt = negotiate(accept, True)
        if fmt is None:
            return 406, "text/plain", b"CONSTRUCT/DESCRIBE results are available as " \
                b"text/turtle, application/n-triples, application/n-quads, " \
                b"application/ld+json\n", {}
        triples, truncated = take_triples(res, opts.max_rows, opts.max_response_bytes)
        rdf = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES,
               "nquads": ox.RdfFormat.N_QUADS, "jsonld": ox.RdfFormat.JSON_LD}[fmt]
        kwargs = {"prefixes": kg.prefixes} if fmt in ("turtle", "jsonld") else {}
        body = ox.serialize(triples, format=rdf, **kwargs) or b""
        return 200, CONTENT_TYPE[fmt], body, _truncated(truncated)
    fmt = negotiate(accept, False)
    if fmt is None:
        return 406, "text/plain", b"SELECT/ASK results are available as " \
            b"application/sparql-results+json, application/sparql-results+xml, text/csv, " \
            b"text/tab-separated-values\n", {}
    if isinstance(res, ox.QueryBoolean):
        return 200, CONTENT_TYPE[fmt], serialize_ask(bool(res), fmt), {}
    names = [v.value for v in res.variables]
    rows = ([sol[n] for n in names] for sol in res)
    body, truncated = serialize_select(names, rows, fmt, opts.max_rows, opts.max_response_bytes)
    return 200, CONTENT_TYPE[fmt], body, _truncated(truncated)


def _truncated(flag: bool) -> dict[str, str]:
    return {"X-KGX-Truncated": "true"} if flag else {}


def _has_graph(kg: Any) -> Callable[[str], bool]:
    import pyoxigraph as ox

    def has_graph(iri: str) -> bool:
        try:
            return bool(kg.store.contains_named_graph(ox.NamedNode(iri)))
        except ValueError:
            return False

    return has_graph


def sparql_job(kg: Any, query: str, accept: str, params: dict[str, list[str]],
               opts: ServeOptions) -> Answer:
    """A ``/sparql`` request: checked (:func:`check_query`, the protocol's dataset
    parameters), then run."""
    has_graph = _has_graph(kg)
    check_query(query, kg.prefixes, has_graph, opts.max_query_bytes)
    extra: dict[str, Any] = {}
    for key, arg in (("default-graph-uri", "default_graph"), ("named-graph-uri", "named_graphs")):
        if key in params:
            for g in params[key]:
                if not has_graph(g):
                    raise Refused(403, f"{key} <{g}> names no graph of this store; remote "
                                  "graphs are never fetched")
            extra[arg] = list(params[key])
    return run_query(kg, query, accept, opts, extra)


def run_job(kg: Any, job: tuple[Any, ...], opts: ServeOptions,
            suggest: Callable[[str, int], list[str]] | None = None) -> Answer:
    """One job of a query worker: ``("sparql", query, accept, params)``, ``("page", name,
    params)`` (an HTML page of :mod:`kgx.serve.pages`; ``suggest(name, k)`` gives a 404 page its
    candidate IRIs) or ``("describe", iri, accept)`` (an entity's RDF, 404 when the graph does
    not know it)."""
    kind = job[0]
    if kind == "sparql":
        return sparql_job(kg, job[1], job[2], job[3], opts)
    if kind == "page":
        from kgx.serve.render import render

        page = render(kg, job[1], job[2], suggest)
        return page.status, page.ctype, page.body, page.headers
    if kind == "describe":
        iri = job[1]
        if not kg.query(f"ASK {{ {{ <{iri}> ?p ?o }} UNION {{ ?s ?p <{iri}> }} }}"):
            return 404, TEXT, f"no entity <{iri}>\n".encode(), {}
        status, ctype, body, headers = run_query(kg, f"DESCRIBE <{iri}>", job[2], opts, {})
        return status, ctype, body, {**headers, "Vary": "Accept"}
    raise ValueError(f"unknown job {kind!r}")


def worker_main(out: str, store: str, conn: Any, opts: ServeOptions) -> None:
    """A query worker: opens ``store`` read-only, says ``("ready",)``, and answers jobs until
    told to stop (see :mod:`kgx.serve.pool` for the messages). It dies with the server."""
    from kgx.runtime.processes import die_with_parent

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from kgx.engines.local import limit_address_space

    limit_address_space(opts.memory_mb)
    from kgx.graph.errors import QueryError, ServiceRefused
    from kgx.graph.knowledge_graph import KnowledgeGraph

    try:
        kg = KnowledgeGraph.open(out, store=store)
    except Exception as exc:  # told to the pool, which reports it
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return

    def lookup(name: str) -> str | None:
        conn.send(("lookup", name))
        return conn.recv()

    def suggest(name: str, k: int) -> list[str]:
        conn.send(("suggest", name, k))
        return conn.recv()

    kg.lookup_function = lookup
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("result", *run_job(kg, job, opts, suggest)))
        except Refused as exc:
            conn.send(("result", exc.status, TEXT, f"{exc}\n".encode(), exc.headers))
        except ServiceRefused as exc:
            conn.send(("result", 403, TEXT, f"{exc}\n".encode(), {}))
        except QueryError as exc:
            conn.send(("result", 400, TEXT, f"{exc}\n".encode(), {}))
        except MemoryError:
            conn.send(("result", 503, TEXT,
                       f"query stopped: over the {opts.memory_mb} MB memory limit\n".encode(),
                       {}))
        except Exception as exc:  # a worker answers every job
            conn.send(("result", 500, TEXT, f"{type(exc).__name__}: {exc}\n".encode(), {}))
