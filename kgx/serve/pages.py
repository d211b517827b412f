"""Pages for people: the frame, the search and query pages, static files, and the renderer that
runs in a query worker.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from kgx.ontology import KGX, WD
from kgx.serve.entity_data import vocabulary
from kgx.serve.urls import entity_path, page_urls, short_name, title_of

STATIC_DIR = Path(__file__).resolve().parent / "static"


STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


# No inline script or style anywhere: scripts and styles come from this server only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


HTML_TYPE = "text/html; charset=utf-8"


# Example queries of the README, one click away on the query page (a test keeps them in the
# README).
EXAMPLES = (
    ("Books and their authors, from infoboxes",
     'SELECT ?book ?author WHERE { GRAPH ?g { ?book kgx:author ?author } '
     '?g kgx:extractor "infobox" } ORDER BY ?book'),
    ("Facts the model read, best supported first",
     'SELECT ?s ?p ?o ?confidence ?support WHERE { GRAPH ?g { ?s ?p ?o } ?g kgx:extractor '
     '"model" ; kgx:confidence ?confidence ; kgx:supportCount ?support } '
     'ORDER BY DESC(?support) DESC(?confidence) ?s LIMIT 5'),
    ("Candidates the graph does not assert, by property",
     'SELECT ?p (COUNT(*) AS ?facts) WHERE { GRAPH graph:candidates { ?c a kgx:CandidateFact ; '
     'rdf:predicate ?p } } GROUP BY ?p ORDER BY DESC(?facts) LIMIT 3'),
    ("Capitals (Wikidata's property, inferred)",
     "SELECT DISTINCT ?capital WHERE { res:Afghanistan wdt:P36 ?capital }"),
    ("Where a looked-up name was born",
     'SELECT ?place WHERE { BIND(kgx:lookup("Abraham Lincoln") AS ?e) '
     '?e kgx:birthPlace ?place }'),
)


Suggest = Callable[[str, int], list[str]]  # a name -> up to k candidate entity IRIs


@dataclass(slots=True)
class Page:
    """An HTTP answer: status, content type, body, extra headers."""

    status: int
    ctype: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def esc(value: Any) -> str:
    """Text made safe for HTML content and double- or single-quoted attributes."""
    return html.escape(str(value), quote=True)


def frame(title: str, body: str, *, query: str = "") -> str:
    """A whole HTML page: the header with the search box, then ``body`` (already escaped).
    Every page loads ``/static/kgx.js`` (the query page's table, entity pages' evidence)."""
    js = '<script src="/static/kgx.js" defer></script>'
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)} · kgx</title>"
            "<link rel=\"stylesheet\" href=\"/static/kgx.css\">" + js + "</head><body>"
            "<header><a class=\"brand\" href=\"/\">kgx</a>"
            "<form class=\"search\" action=\"/\" method=\"get\" role=\"search\">"
            f"<input type=\"search\" name=\"q\" value=\"{esc(query)}\" "
            "placeholder=\"Find an entity (misspellings welcome)\" aria-label=\"entity name\">"
            "<button type=\"submit\">Search</button></form>"
            "<a href=\"/query\">SPARQL</a></header>"
            f"<main>{body}</main></body></html>\n")


def html_page(status: int, title: str, body: str, **kw: Any) -> Page:
    return Page(status, HTML_TYPE, frame(title, body, **kw).encode("utf-8"), dict(HTML_HEADERS))


class Renderer:
    """Turns IRIs and literals of one graph into links and text."""

    def __init__(self, kg: Any) -> None:
        self.kg = kg
        self.vocab = vocabulary(kg)
        self.wiki, self.resource = page_urls(kg.report)
        self._links: dict[str, str] = {}
        self._names: dict[str, str] = {}

    def name(self, iri: str) -> str:
        """A person's name for an IRI: a page title, an ontology label, or a prefixed name."""
        name = self._names.get(iri)
        if name is None:
            if self.resource and iri.startswith(self.resource):
                name = title_of(iri, self.resource)
            else:
                name = self.vocab.labels.get(iri) or short_name(iri, self.kg.prefixes)
            self._names[iri] = name
        return name

    def link(self, iri: str, text: str | None = None) -> str:
        """An entity as a link to its page; any other IRI as its name with the IRI on hover."""
        if text is None:
            html_ = self._links.get(iri)
            if html_ is None:
                html_ = self._links[iri] = self._link(iri, self.name(iri))
            return html_
        return self._link(iri, text)

    def _link(self, iri: str, text: str) -> str:
        label = esc(text)
        path = entity_path(iri, self.resource)
        if path is not None:
            return f'<a href="{esc(path)}">{label}</a>'
        if iri.startswith(WD) and iri[len(WD):].isalnum():  # an item's own page on Wikidata
            return (f'<a class="iri" href="https://www.wikidata.org/wiki/{esc(iri[len(WD):])}" '
                    f'title="{esc(iri)}" rel="noopener noreferrer">{label}</a>')
        return f'<span class="iri" title="{esc(iri)}">{label}</span>'

    def term(self, term: Any) -> str:
        """A pyoxigraph term as HTML."""
        import pyoxigraph as ox

        if isinstance(term, ox.NamedNode):
            return self.link(term.value)
        if isinstance(term, ox.BlankNode):
            return f"<span class=\"bnode\">_:{esc(term.value)}</span>"
        tag = ""
        if term.language:
            tag = f"<span class=\"tag\">@{esc(term.language)}</span>"
        elif term.datatype is not None and not term.datatype.value.endswith("#string"):
            tag = f"<span class=\"tag\">{esc(short_name(term.datatype.value, self.kg.prefixes))}" \
                  "</span>"
        return f"<span class=\"literal\">{esc(term.value)}</span>{tag}"

    def wiki_url(self, title: str, revision: Any = None) -> str | None:
        """The source page on the wiki (at a revision when given), or None without a base."""
        if not self.wiki.startswith(("http://", "https://")):
            return None
        url = self.wiki + quote(title.replace(" ", "_"), safe="/:,()!*'@;=$")
        return f"{url}?{urlencode({'oldid': revision})}" if revision is not None else url


def not_found_page(kg: Any, iri: str, suggestions: Sequence[str]) -> Page:
    """404: the graph has no entity ``iri``; offers the linker's suggestions."""
    r = Renderer(kg)
    name = r.name(iri)
    items = "".join(f"<li>{r.link(s)}</li>" for s in suggestions if s != iri)
    inner = (f"<p>Did you mean:</p><ul class=\"suggestions\">{items}</ul>" if items else
             "<p>The entity index has no similar name either.</p>")
    return html_page(404, "Not found",
                     f"<h1>No entity “{esc(name)}”</h1><p>This graph states nothing about "
                     f"<code>{esc(iri)}</code>.</p>{inner}", query=name)


def search_page(kg: Any, q: str, candidates: Sequence[dict[str, Any]] | None,
                error: str | None = None) -> Page:
    """``/``: the search box, and the ranked candidates for ``q`` with a line of abstract each.

    Args:
        candidates: What ``/lookup`` answers for ``q`` (dicts with ``iri``, ``label``,
            ``types``, ``score``), or None when no search was made.
        error: Why no search could be made (no entity index), shown instead of results.
    """
    r = Renderer(kg)
    body = ['<h1>Search the graph</h1><p class="note">Names, redirects and misspellings (up to '
            'two edits) are looked up in the entity index, as <code>/lookup</code> does. '
            'Or write SPARQL on the <a href="/query">query page</a>.</p>']
    if error:
        body.append(f'<p class="error">{esc(error)}</p>')
    elif candidates is not None:
        abstracts: dict[str, str] = {}
        iris = [c["iri"] for c in candidates]
        if iris:
            values = " ".join(f"<{i}>" for i in iris)
            for sol in kg.query(f"SELECT ?e ?a WHERE {{ VALUES ?e {{ {values} }} "
                                f"?e <{KGX}abstract> ?a }}"):
                abstracts.setdefault(sol["e"].value, sol["a"].value)
        items = []
        # Candidates that share a label ("The Passion of Ayn Rand": the book, the film) are
        # told apart by their titles, qualifier and all.
        labels = Counter(c.get("label") or r.name(c["iri"]) for c in candidates)
        for c in candidates:
            types = ", ".join(r.name(t) if ":" in t else t for t in c.get("types", ()))
            label = c.get("label") or r.name(c["iri"])
            if labels[label] > 1:
                label = c.get("title") or r.name(c["iri"])
            line = abstracts.get(c["iri"], "")
            line = line if len(line) <= 200 else line[:199].rsplit(" ", 1)[0] + "…"
            items.append(f'<li><p>{r.link(c["iri"], label)} '
                         f'<span class="types">{esc(types)}</span> '
                         f'<span class="score">score {float(c.get("score", 0)):.2f}</span></p>'
                         f'<p class="abstract-line">{esc(line)}</p></li>')
        body.append(f'<ol class="results">{"".join(items)}</ol>' if items else
                    f"<p>No entity matches “{esc(q)}”.</p>")
    return html_page(200, f"Search: {q}" if q else "Search", "".join(body), query=q)


def query_page(kg: Any, query: str) -> Page:
    """``/query``: a SPARQL form that posts to ``/sparql`` (``/static/kgx.js`` draws the table)."""
    r = Renderer(kg)
    examples = "".join(
        f'<li><a href="/query?{esc(urlencode({"query": text}))}">{esc(name)}</a></li>'
        for name, text in EXAMPLES)
    prefixes = "".join(f"<li><code>{esc(k)}: &lt;{esc(v)}&gt;</code></li>"
                       for k, v in sorted(kg.prefixes.items()))
    text = query or EXAMPLES[0][1]
    body = (f'<h1>SPARQL</h1><form id="sparql" action="/query" method="get" '
            f'data-resource="{esc(r.resource)}" data-run="{"yes" if query else "no"}" '
            f'data-prefixes="{esc(json.dumps(kg.prefixes, sort_keys=True))}">'
            f'<textarea name="query" rows="8" spellcheck="false" aria-label="SPARQL query">'
            f"{esc(text)}</textarea><p><button type=\"submit\">Run</button> "
            '<span class="note">Posted to <code>/sparql</code>: read-only, with the '
            "endpoint's timeout and row cap.</span></p></form>"
            '<noscript><p class="error">The results table needs JavaScript; /sparql answers '
            "without it.</p></noscript>"
            '<div id="status" role="status"></div><div id="results"></div>'
            f'<section><h2>Examples</h2><ul class="examples">{examples}</ul></section>'
            f'<section><h2>Predeclared prefixes</h2><ul class="prefixes">{prefixes}</ul>'
            "</section>")
    return html_page(200, "SPARQL", body)


def static_file(name: str) -> Page:
    """A file of ``kgx/serve/static`` (CSS, the query page's script), or 404."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
        return Page(404, "text/plain; charset=utf-8", b"no such file\n")
    return Page(200, STATIC_TYPES[path.suffix], path.read_bytes(),
                {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})
