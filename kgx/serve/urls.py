"""Entity URLs and content negotiation: titles to paths and back, HTML or RDF by the Accept
header.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import quote, unquote

from kgx.text.site import iri_escape

_PATH_SAFE = "/:,()!*'@;=$+"


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/:,()!*'@;=$+-]+")


def entity_path(iri: str, resource: str) -> str | None:
    """The page path of an entity IRI, or None for an IRI outside the resource namespace.

    >>> entity_path("https://kgx.dev/enwiki/resource/AC/DC", "https://kgx.dev/enwiki/resource/")
    '/entity/AC/DC'
    >>> entity_path("https://kgx.dev/enwiki/resource/100%25_Pure", "https://kgx.dev/enwiki/resource/")
    '/entity/100%25_Pure'
    """
    if not resource or not iri.startswith(resource) or len(iri) == len(resource):
        return None
    local = iri[len(resource):]
    if _PLAIN_PATH.fullmatch(local):  # most titles: nothing to decode or encode
        return "/entity/" + local
    return "/entity/" + quote(unquote(local), safe=_PATH_SAFE)


def iri_from_path(tail: str, resource: str) -> str:
    """The entity IRI of a page path's part after ``/entity/`` (percent-encoded or not).

    >>> iri_from_path("AC/DC", "https://x/resource/"), iri_from_path("100%25 Pure", "r/")
    ('https://x/resource/AC/DC', 'r/100%25_Pure')
    """
    return resource + iri_escape(unquote(tail, errors="replace").replace(" ", "_"))


def title_of(iri: str, resource: str) -> str:
    """The page title an entity IRI names (its local part, decoded, with spaces)."""
    if resource and iri.startswith(resource):
        return unquote(iri[len(resource):]).replace("_", " ")
    return iri


def short_name(iri: str, prefixes: dict[str, str]) -> str:
    """``prefix:local`` for an IRI under a predeclared prefix, else the IRI."""
    best = max((ns for ns in prefixes.values() if iri.startswith(ns)), key=len, default=None)
    if best is None:
        return iri
    name = next(k for k, ns in prefixes.items() if ns == best)
    return f"{name}:{iri[len(best):]}"


def page_urls(report: dict[str, Any]) -> tuple[str, str]:
    """The wiki's page URL prefix (``https://en.wikipedia.org/wiki/``) from the run's siteinfo,
    and the resource namespace of the graph."""
    site = report.get("site", {})
    base = site.get("base") or ""
    prefix = base.rsplit("/", 1)[0] + "/" if "/" in base else ""
    return prefix, (site.get("namespace") or "") + "resource/"


def wants_html(accept: str) -> bool:
    """Whether an Accept header prefers HTML over the data formats (a browser's does)."""
    best = accept_ranking(accept)
    return bool(best) and best[0] in ("text/html", "application/xhtml+xml")


def accept_ranking(accept: str) -> list[str]:
    """The media types of an Accept header, most wanted first (``q=0`` ones left out).

    >>> accept_ranking("text/html;q=0.5, application/json, image/png;q=0")
    ['application/json', 'text/html']
    """
    prefs = []
    for i, part in enumerate(accept.split(",")):
        bits = [b.strip() for b in part.split(";")]
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if bits[0] and q > 0 and math.isfinite(q):
            prefs.append((-q, i, bits[0].lower()))
    return [mt for _, _, mt in sorted(prefs)]


ENTITY_FORMATS = {"turtle": "text/turtle", "ntriples": "application/n-triples",
                  "jsonld": "application/ld+json", "nquads": "application/n-quads"}


def entity_format(accept: str, fmt: str | None) -> str | None:
    """What to answer on ``/entity/{Title}``: "html", or the media type of an RDF format.

    ``?format=turtle|ntriples|jsonld|nquads`` wins over the Accept header; ``*/*``, an empty
    header and ``text/*`` get HTML. None: nothing acceptable (406).
    """
    if fmt:
        return ENTITY_FORMATS.get(fmt)
    ranking = accept_ranking(accept) or ["text/html"]
    for mt in ranking:
        if mt in ("text/html", "application/xhtml+xml", "*/*", "text/*"):
            return "html"
        if mt in ENTITY_FORMATS.values() or mt == "text/plain":
            return "application/n-triples" if mt == "text/plain" else mt
    return None
