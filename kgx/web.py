"""HTML pages over a kgx graph, served by ``kgx serve``: search, one page per entity, a SPARQL page.

Takes a :class:`~kgx.graph.KnowledgeGraph` (and, for search and the 404 page, candidates the
server's linker found); gives :class:`Page` objects (status, content type, body, headers). The
server renders pages in its query workers, so a page has the same timeout, memory cap and
concurrency limit as a query.

Safety: every string taken from the graph or the request is escaped where it is printed
(:func:`esc`), links to entities are built from percent-encoded paths, and the pages carry no
inline script or style: the query page's script is ``/static/kgx.js``, and :data:`CSP` forbids
anything inline.

URLs: the entity ``{ns}resource/Local`` is at ``/entity/Local``, percent-encoded as a URL path
(``/entity/AC/DC``, ``/entity/100%25_Pure``, ``/entity/Zürich`` as UTF-8); see :func:`entity_path`.
"""

from __future__ import annotations

import functools
import html
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from kgx.ontology import (
    DCT,
    FOAF,
    KGX,
    ONTOLOGY_GRAPH,
    OWL,
    RDF,
    RDFS,
    SKOS,
)
from kgx.site import iri_escape

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
# No inline script or style anywhere: scripts and styles come from this server only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
HTML_TYPE = "text/html; charset=utf-8"

MAX_FACTS = 2000  # facts read for one entity page (a hub's beyond this are counted, not shown)
MAX_MODEL_FACTS = 100
MAX_EVIDENCE = 10  # sentences shown per model fact
EVIDENCE_READ = 50  # sentences of one model fact read to choose the most confident shown
MAX_INCOMING = 200
MAX_LINKS = 20  # wikilinks listed; the query page lists them all
MAX_REDIRECTS = 100
MAX_NEIGHBOURS = 30
COUNT_CAP = 10_000  # "10,000+" past this

# Facts about the page rather than the entity: shown in their own places, not as facts.
_STRUCTURAL_IN = (KGX + "wikiLink", KGX + "redirectsTo", KGX + "mentionOf", KGX + "inPage",
                  KGX + "sourcePage", KGX + "category", KGX + "disambiguates", DCT + "subject")

# Example queries of the README, one click away on the query page (a test keeps them in the
# README).
EXAMPLES = (
    ("Books and their authors, from infoboxes",
     'SELECT ?book ?author WHERE { GRAPH ?g { ?book kgx:author ?author } '
     '?g kgx:extractor "infobox" } ORDER BY ?book'),
    ("Facts the model read, with a sentence",
     'SELECT ?s ?p ?o ?confidence ?support ?agrees ?sentence WHERE { GRAPH ?g { ?s ?p ?o } '
     '?g kgx:extractor "model" ; kgx:confidence ?confidence ; kgx:supportCount ?support ; '
     'kgx:agreesWithInfobox ?agrees ; kgx:evidence ?e . ?e kgx:sentence ?sentence } '
     'ORDER BY DESC(?support) ?s ?sentence LIMIT 3'),
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


# --------------------------------------------------------------------------- URLs


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


# --------------------------------------------------------------------------- vocabulary


@dataclass(slots=True)
class Vocabulary:
    """Labels and class tree of the ontology graph, read once per process."""

    labels: dict[str, str]
    parents: dict[str, list[str]]
    object_properties: list[Any]  # pyoxigraph NamedNodes, ready for index lookups

    @classmethod
    def read(cls, kg: Any) -> Vocabulary:
        import pyoxigraph as ox

        g = f"<{ONTOLOGY_GRAPH}>"
        labels: dict[str, str] = {}
        for sol in select(kg, f"SELECT ?x ?l WHERE {{ GRAPH {g} {{ ?x <{RDFS}label> ?l }} }}"):
            labels.setdefault(sol["x"].value, sol["l"].value)
        parents: dict[str, list[str]] = {}
        for sol in select(kg, f"SELECT ?c ?d WHERE {{ GRAPH {g} {{ ?c <{RDFS}subClassOf> ?d }} }} "
                              "ORDER BY ?c ?d"):
            parents.setdefault(sol["c"].value, []).append(sol["d"].value)
        props = [sol["p"].value for sol in select(
            kg, f"SELECT ?p WHERE {{ GRAPH {g} {{ ?p a <{OWL}ObjectProperty> }} }} ORDER BY ?p")]
        # Only the properties this graph uses: each is one index lookup per entity page.
        used = [ox.NamedNode(p) for p in props if p not in _STRUCTURAL_IN
                and bool(select(kg, f"ASK {{ ?s <{p}> ?o }}"))]
        return cls(labels, parents, used)

    def chain(self, cls: str) -> list[str]:
        """``cls`` and its superclasses up to the root, first parent first."""
        out = [cls]
        while self.parents.get(out[-1]):
            nxt = self.parents[out[-1]][0]
            if nxt in out:
                break
            out.append(nxt)
        return out

    def most_specific(self, types: Iterable[str]) -> list[str]:
        """The types that are not a superclass of another of ``types`` (ontology classes)."""
        known = [t for t in types if t in self.labels]
        above = {a for t in known for a in self.chain(t)[1:]}
        return sorted(t for t in known if t not in above)


_VOCAB: dict[int, Vocabulary] = {}


def select(kg: Any, query: str) -> Any:
    """Run a query this module wrote (full IRIs, escaped by construction) on the union graph,
    without the SERVICE and syntax checks that :meth:`KnowledgeGraph.query` gives user text."""
    return kg.store.query(query, use_default_graph_as_union=True)


def vocabulary(kg: Any) -> Vocabulary:
    """The ontology's labels and class tree for ``kg``, read on first use."""
    v = _VOCAB.get(id(kg))
    if v is None:
        v = _VOCAB[id(kg)] = Vocabulary.read(kg)
    return v


# --------------------------------------------------------------------------- page frame


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


# --------------------------------------------------------------------------- entity page


@dataclass(slots=True)
class Fact:
    """One statement on the page: predicate, object term, its graph and extractor."""

    predicate: str
    object: Any
    graph: str
    extractor: str | None


@dataclass(slots=True)
class EntityFacts:
    """What the store states about one entity, sorted into the page's sections."""

    label: str | None = None
    abstract: str | None = None
    source_url: str | None = None
    types: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    infobox: list[Fact] = field(default_factory=list)
    model: list[Fact] = field(default_factory=list)
    inferred: list[Fact] = field(default_factory=list)
    other: list[Fact] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    redirect: str | None = None  # the target, when the entity is a redirect
    quads: int = 0  # quads with the entity as subject, read
    truncated: bool = False


class Extractors:
    """The extractor of a fact's graph, read from its IRI where it follows kgx's provenance
    scheme (:mod:`kgx.rdf`: ``graph/page/{id}/{extractor}``, ``graph/fact/{hash}`` for the
    model, ``graph/inferred`` for reasoning), else from the graph's ``kgx:extractor``."""

    def __init__(self, kg: Any) -> None:
        self.kg = kg
        self.graphs = (kg.namespace or "") + "graph/"
        self.known: dict[str, str | None] = {}

    def __call__(self, graph: str) -> str | None:
        if graph.startswith(self.graphs):
            rest = graph[len(self.graphs):]
            if rest.startswith("page/") and rest.count("/") == 2:
                return rest.rsplit("/", 1)[1]
            if rest.startswith("fact/") and rest.count("/") == 1:
                return "model"
            if rest == "inferred":
                return None
        if graph not in self.known:
            found = [sol["ex"].value for sol in select(
                self.kg, f"SELECT ?ex WHERE {{ <{graph}> <{KGX}extractor> ?ex }} LIMIT 1")]
            self.known[graph] = found[0] if found else None
        return self.known[graph]


def read_entity(kg: Any, iri: str, extractor: Extractors) -> EntityFacts:
    """Every fact with ``iri`` as subject (at most :data:`MAX_FACTS`), sorted into sections.

    Read straight from the store's subject index (``quads_for_pattern``): a SPARQL SELECT of
    the same quads costs about twice as much in Python.
    """
    import pyoxigraph as ox

    facts = EntityFacts()
    rows = list(itertools.islice(kg.store.quads_for_pattern(ox.NamedNode(iri), None, None),
                                 MAX_FACTS + 1))
    facts.truncated = len(rows) > MAX_FACTS
    facts.quads = len(rows)
    seen_types: set[str] = set()
    link = KGX + "wikiLink"
    for quad in rows[:MAX_FACTS]:
        if not isinstance(quad.graph_name, ox.NamedNode):
            continue  # the default graph: kgx writes every fact into a named one
        p, o, g = quad.predicate.value, quad.object, quad.graph_name.value
        if p == link:
            facts.links.append(o.value)
            continue
        ex = extractor(g)
        if p == RDF + "type":
            if o.value not in seen_types:
                seen_types.add(o.value)
                facts.types.append(o.value)
            continue
        if p == RDFS + "label" and facts.label is None:
            facts.label = o.value
        elif p == KGX + "abstract" and facts.abstract is None:
            facts.abstract = o.value
        elif p in (KGX + "alias", SKOS + "altLabel"):
            if o.value not in facts.aliases:
                facts.aliases.append(o.value)
        elif p in (DCT + "subject", KGX + "category"):
            if o.value not in facts.categories:
                facts.categories.append(o.value)
        elif p == FOAF + "isPrimaryTopicOf":
            facts.source_url = o.value
        elif p == KGX + "redirectsTo":
            facts.redirect = min(facts.redirect or o.value, o.value)
        elif ex == "infobox":
            facts.infobox.append(Fact(p, o, g, ex))
        elif ex == "model":
            facts.model.append(Fact(p, o, g, ex))
        elif ex is None:
            facts.inferred.append(Fact(p, o, g, ex))
        elif p != RDFS + "label":
            facts.other.append(Fact(p, o, g, ex))
    return facts


def _count(kg: Any, pattern: str) -> int:
    """How many solutions ``pattern`` has, counted up to :data:`COUNT_CAP` + 1."""
    q = f"SELECT (COUNT(*) AS ?n) WHERE {{ SELECT * WHERE {{ {pattern} }} LIMIT {COUNT_CAP + 1} }}"
    return int(next(iter(select(kg, q)))["n"].value)


def _count_text(n: int) -> str:
    return f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


def marks(sentence: str, start: int, spans: Sequence[tuple[Any, Any, str]]
          ) -> list[tuple[int, int, str]]:
    """``(start, end, class)`` spans given as page offsets, made relative to the sentence;
    spans that fall outside it or overlap an earlier one are left out."""
    out: list[tuple[int, int, str]] = []
    for a, b, cls in sorted((int(a), int(b), c) for a, b, c in spans if a is not None
                            and b is not None):
        a, b = a - start, b - start
        if 0 <= a < b <= len(sentence) and (not out or a >= out[-1][1]):
            out.append((a, b, cls))
    return out


def highlight(sentence: str, start: int, spans: Sequence[tuple[Any, Any, str]]) -> str:
    """The sentence as HTML with each ``(start, end, class)`` span (page offsets) in a ``<mark>``
    (see :func:`marks`).

    >>> highlight("Rand was born in Saint Petersburg.", 100, [(100, 104, "s"), (117, 133, "o")])
    '<mark class="s">Rand</mark> was born in <mark class="o">Saint Petersburg</mark>.'
    """
    out, pos = [], 0
    for a, b, cls in marks(sentence, start, spans):
        out.append(esc(sentence[pos:a]))
        out.append(f'<mark class="{esc(cls)}">{esc(sentence[a:b])}</mark>')
        pos = b
    out.append(esc(sentence[pos:]))
    return "".join(out)


@dataclass(slots=True)
class Evidence:
    """One sentence that states a model fact."""

    sentence: str
    start: int | None
    spans: list[tuple[Any, Any, str]]
    page: str | None
    page_id: Any
    revision: Any
    confidence: Any


_EVIDENCE_PROPS = {KGX + n: n for n in (
    "sentence", "sentenceStart", "subjectStart", "subjectEnd", "objectStart", "objectEnd",
    "evidenceStart", "evidenceEnd", "sourcePage", "pageId", "revisionId", "confidence")}
def _evidence(props: dict[str, str]) -> Evidence:
    if "subjectStart" in props and "objectStart" in props:
        spans = [(props["subjectStart"], props.get("subjectEnd"), "subject"),
                 (props["objectStart"], props.get("objectEnd"), "object")]
    else:  # graphs from kgx 0.1 keep only the span of both mentions
        spans = [(props.get("evidenceStart"), props.get("evidenceEnd"), "span")]
    start = props.get("sentenceStart")
    return Evidence(props.get("sentence", ""), int(start) if start is not None else None, spans,
                    props.get("sourcePage"), props.get("pageId"), props.get("revisionId"),
                    props.get("confidence"))


def _properties(kg: Any, node: str, names: dict[str, str]) -> dict[str, str]:
    """The values of ``node``'s properties named in ``names`` (IRI -> short name), read from
    the store's subject index."""
    import pyoxigraph as ox

    out: dict[str, str] = {}
    for quad in kg.store.quads_for_pattern(ox.NamedNode(node), None, None):
        name = names.get(quad.predicate.value)
        if name is not None:
            out.setdefault(name, quad.object.value)
    return out


def read_evidence(kg: Any, graph: str) -> list[Evidence]:
    """The most confident sentences (at most :data:`MAX_EVIDENCE`) of the first
    :data:`EVIDENCE_READ` that state a model fact (its graph's ``kgx:evidence`` nodes)."""
    import pyoxigraph as ox

    nodes = [q.object.value for q in itertools.islice(kg.store.quads_for_pattern(
        ox.NamedNode(graph), ox.NamedNode(KGX + "evidence"), None), EVIDENCE_READ)]
    read = [(node, _properties(kg, node, _EVIDENCE_PROPS)) for node in sorted(set(nodes))]
    read.sort(key=lambda nv: -float(nv[1].get("confidence", 0.0)))
    return [_evidence(props) for _, props in read if "sentence" in props][:MAX_EVIDENCE]


_FACT_PROPS = {KGX + "confidence": "conf", KGX + "supportCount": "n",
               KGX + "agreesWithInfobox": "agree"}


def read_model_facts(kg: Any, facts: list[Fact]) -> list[tuple[Fact, dict[str, Any]]]:
    """Each model fact with its confidence, support count and infobox agreement, most
    confident first (at most :data:`MAX_MODEL_FACTS`). Their evidence is read by
    :func:`fact_page`, when a reader asks for it."""
    import pyoxigraph as ox

    meta: dict[str, dict[str, Any]] = {f.graph: {} for f in facts}
    props = [(ox.NamedNode(p), name) for p, name in _FACT_PROPS.items()]
    for g, values in meta.items():
        node = ox.NamedNode(g)
        for p, name in props:  # an index lookup each (a SPARQL VALUES join scanned the store)
            for quad in kg.store.quads_for_pattern(node, p, None):
                values.setdefault(name, quad.object.value)
    ranked = sorted(facts, key=lambda f: (-float(meta[f.graph].get("conf") or 0), f.graph))
    return [(f, meta[f.graph]) for f in ranked[:MAX_MODEL_FACTS]]


@dataclass(frozen=True, slots=True)
class CandidateFact:
    """A fact the reader read that the graph keeps below its bar (``graph/candidates``)."""

    node: str
    predicate: str
    object: str
    confidence: float
    why: str


def read_candidates(kg: Any, iri: str) -> list[CandidateFact]:
    """The candidate facts with ``iri`` as their subject, most confident first (at most
    :data:`MAX_MODEL_FACTS`)."""
    import pyoxigraph as ox

    graph = ox.NamedNode((kg.namespace or "") + "graph/candidates")
    rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    out = []
    for q in kg.store.quads_for_pattern(None, ox.NamedNode(rdf + "subject"), ox.NamedNode(iri),
                                        graph):
        props = _properties(kg, q.subject.value, {rdf + "predicate": "p", rdf + "object": "o",
                                                  KGX + "confidence": "conf",
                                                  KGX + "heldBack": "why"})
        if "p" in props and "o" in props:
            out.append(CandidateFact(q.subject.value, props["p"], props["o"],
                                     float(props.get("conf") or 0), props.get("why", "")))
    out.sort(key=lambda c: (-c.confidence, c.node))
    return out[:MAX_MODEL_FACTS]


def read_incoming(kg: Any, iri: str, vocab: Vocabulary, extractor: Extractors
                  ) -> list[tuple[str, str, str | None]]:
    """Facts naming ``iri`` as their object, as ``(subject, predicate, extractor)``: one index
    lookup per object property the graph uses, so a hub's millions of links and mentions are
    never scanned."""
    import pyoxigraph as ox

    obj = ox.NamedNode(iri)
    seen: dict[tuple[str, str], str | None] = {}
    for p in vocab.object_properties:
        left = MAX_INCOMING + 1 - len(seen)
        for quad in itertools.islice(kg.store.quads_for_pattern(None, p, obj), left):
            if isinstance(quad.graph_name, ox.NamedNode):
                seen.setdefault((quad.subject.value, p.value), extractor(quad.graph_name.value))
        if len(seen) > MAX_INCOMING:
            break
    return [(s, p, ex) for (s, p), ex in seen.items()]


@functools.lru_cache(maxsize=MAX_NEIGHBOURS + 1)
def _star_layout(n: int) -> tuple[tuple[float, float], ...]:
    """Positions of a centre and ``n`` neighbours by networkx's ``shell_layout``: the centre in
    the middle; past a dozen neighbours, every other one on an outer ring, so labels keep
    apart. The same for every entity with ``n`` neighbours, so computed once per ``n``."""
    import networkx as nx

    if n == 0:
        return ((0.0, 0.0),)
    g = nx.star_graph(n)  # node 0 is the centre
    ring = list(range(1, n + 1))
    shells = [[0], ring] if n <= 12 else [[0], ring[::2], ring[1::2]]
    pos = nx.shell_layout(g, nlist=shells)
    return tuple((float(pos[i][0]), float(pos[i][1])) for i in range(n + 1))


# Label geometry of the neighbourhood picture (11 px text): a character's mean advance and a
# line's height, a line's characters at most, and the lines of a label at most.
CHAR_WIDTH, LINE_HEIGHT, LABEL_CHARS, LABEL_LINES = 6.4, 13.0, 24, 2


def label_lines(label: str) -> list[str]:
    """A node's label in at most :data:`LABEL_LINES` lines of :data:`LABEL_CHARS` characters,
    cut at spaces; what does not fit ends in an ellipsis (the whole name is the tooltip)."""
    words, lines, cur = label.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > LABEL_CHARS:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    lines = [ln if len(ln) <= LABEL_CHARS else ln[: LABEL_CHARS - 1] + "…" for ln in lines]
    if len(lines) > LABEL_LINES:
        last = lines[LABEL_LINES - 1]
        lines = lines[: LABEL_LINES - 1] + [(last[: LABEL_CHARS - 1] + "…")
                                            if len(last) >= LABEL_CHARS else last + " …"]
    return lines


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
              ) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def neighbourhood_svg(center: str, edges: Sequence[tuple[str, str, str]], r: Renderer) -> str:
    """The entity and its one-hop neighbours (at most :data:`MAX_NEIGHBOURS`) as an SVG star,
    laid out by :func:`_star_layout`.

    The longest labels take the slots nearest the horizontal axis, where a label has room
    beside its node; a label runs to two lines before it is cut; one that would cover a label
    already placed moves outwards; the picture's box grows to hold every label, so none is
    clipped.

    Args:
        center: The entity's IRI.
        edges: ``(neighbour IRI, predicate name, "out" or "in")``.
    """
    by_node: dict[str, list[str]] = {}
    for node, pred, direction in edges:
        if node == center:
            continue
        if node not in by_node and len(by_node) >= MAX_NEIGHBOURS:
            continue
        name = pred if direction == "out" else f"{pred} (in)"
        names = by_node.setdefault(node, [])
        if name not in names:
            names.append(name)
    names = {n: r.name(n) for n in [center, *by_node]}
    layout = _star_layout(len(by_node))
    slots = sorted(range(1, len(layout)), key=lambda i: (abs(layout[i][1]), i))
    nodes = sorted(by_node, key=lambda n: (-len(names[n]), names[n], n))
    pos = {center: layout[0], **{n: layout[i] for n, i in zip(nodes, slots, strict=True)}}
    extent = max((max(abs(x), abs(y)) for x, y in layout), default=0.0) or 1.0
    width, height = 760, 520

    def xy(n: str) -> tuple[float, float]:
        x, y = pos[n]
        return (round(width / 2 + float(x) / extent * 250, 1),
                round(height / 2 + float(y) / extent * 210, 1))

    cx, cy = xy(center)
    box = [cx - 12, cy - 12, cx + 12, cy + 12]
    placed: list[tuple[float, float, float, float]] = []
    drawn: list[str] = []
    for n in [center, *nodes]:
        x, y = xy(n)
        lines = label_lines(names[n])
        # Labels point away from the middle, so that neighbours' labels do not cross edges.
        anchor = "middle" if abs(x - cx) < 40 else ("start" if x > cx else "end")
        w = max(len(ln) for ln in lines) * CHAR_WIDTH
        h = len(lines) * LINE_HEIGHT
        tx = x + (0 if anchor == "middle" else (10 if anchor == "start" else -10))
        up = y < cy if n != center else False
        ty = (y + 20 if not up else y - 12 - (len(lines) - 1) * LINE_HEIGHT) \
            if anchor == "middle" else y + 4 - (len(lines) - 1) * LINE_HEIGHT / 2
        left = tx - w / 2 if anchor == "middle" else (tx if anchor == "start" else tx - w)
        rect = (left, ty - LINE_HEIGHT + 3, left + w, ty - LINE_HEIGHT + 3 + h)
        step = (-1 if up else 1) * (LINE_HEIGHT + 2)
        for _ in range(12):  # outwards until it covers no label placed before
            if not any(_overlaps(rect, p) for p in placed):
                break
            ty += step
            rect = (rect[0], rect[1] + step, rect[2], rect[3] + step)
        placed.append(rect)
        box = [min(box[0], rect[0], x - 10), min(box[1], rect[1], y - 10),
               max(box[2], rect[2], x + 10), max(box[3], rect[3], y + 10)]
        spans = "".join(f'<tspan x="{round(tx, 1)}" dy="{0 if i == 0 else LINE_HEIGHT:g}">'
                        f"{esc(ln)}</tspan>" for i, ln in enumerate(lines))
        path = entity_path(n, r.resource)
        cls = ' class="center"' if n == center else ""
        node = (f'<circle cx="{x}" cy="{y}" r="{9 if n == center else 6}"{cls}></circle>'
                f'<text x="{round(tx, 1)}" y="{round(ty, 1)}" text-anchor="{anchor}">{spans}'
                f"</text><title>{esc(names[n])}</title>")
        drawn.append(f'<a href="{esc(path)}">{node}</a>' if path else f"<g>{node}</g>")
    lines_svg = []
    for n in nodes:
        x, y = xy(n)
        lines_svg.append(f'<line x1="{cx}" y1="{cy}" x2="{x}" y2="{y}"><title>'
                         f'{esc(", ".join(by_node[n]))}</title></line>')
    x0, y0 = min(0.0, box[0] - 8), min(0.0, box[1] - 8)
    x1, y1 = max(float(width), box[2] + 8), max(float(height), box[3] + 8)
    view = f"{round(x0, 1)} {round(y0, 1)} {round(x1 - x0, 1)} {round(y1 - y0, 1)}"
    return (f'<svg class="neighbourhood" xmlns="http://www.w3.org/2000/svg" viewBox="{view}" '
            f'role="img" aria-label="one-hop neighbourhood">' + "".join(lines_svg)
            + "".join(drawn) + "</svg>")


def _fact_rows(facts: Sequence[Fact], r: Renderer) -> str:
    """Facts grouped by predicate as table rows: the predicate once, then its values."""
    groups: dict[str, list[str]] = {}
    for f in sorted(facts, key=lambda f: (r.name(f.predicate).lower(), f.predicate)):
        groups.setdefault(f.predicate, []).append(r.term(f.object))
    return "".join(
        f'<tr><th scope="row">{r.link(p)}</th><td>{"<br>".join(vals)}</td></tr>'
        for p, vals in groups.items())


def _section(ident: str, title: str, inner: str, note: str = "") -> str:
    n = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{ident}"><h2>{esc(title)}</h2>{n}{inner}</section>'


def fact_path(graph: str, kg: Any) -> str | None:
    """The page path of a model fact's graph (``/fact/{digest}``), or None for other graphs."""
    for kind in ("fact", "candidate"):
        prefix = (kg.namespace or "") + f"graph/{kind}/"
        digest = graph[len(prefix):] if graph.startswith(prefix) else ""
        if _DIGEST.fullmatch(digest):
            return f"/fact/{digest}"
    return None


_DIGEST = re.compile(r"[0-9a-f]{1,64}")


def _model_section(kg: Any, facts: list[Fact], r: Renderer) -> str:
    """Each model fact as a summary line that opens onto its evidence: ``/static/kgx.js``
    fetches it from ``/fact/{digest}`` when opened (without script, the link goes there)."""
    items = []
    for f, meta in read_model_facts(kg, facts):
        conf = meta.get("conf")
        agree = meta.get("agree") == "true"
        n = meta.get("n")
        path = fact_path(f.graph, kg)
        where = (f'<p class="note"><a href="{esc(path)}">The sentence{"" if n == "1" else "s"} '
                 "that state it</a>, with the subject and the object marked.</p>"
                 if path else "")
        data = f' data-evidence="{esc(path)}?format=json"' if path else ""
        items.append(
            f'<li class="model-fact"><details{data}><summary>'
            f'<span class="fact">{r.link(f.predicate)} → {r.term(f.object)}</span> '
            f'<span class="confidence">confidence {float(conf or 0):.2f}</span> '
            f'<span class="support">{esc(n if n is not None else "?")} sentence'
            f'{"" if n == "1" else "s"}</span> '
            f'<span class="agrees {"yes" if agree else "no"}">'
            f'{"an infobox agrees" if agree else "no infobox states it"}</span>'
            f'</summary><div class="evidence-slot">{where}</div></details></li>')
    more = (f'<p class="note">Showing the {MAX_MODEL_FACTS} most confident of {len(facts):,}.</p>'
            if len(facts) > MAX_MODEL_FACTS else "")
    return f'<ul class="model-facts">{"".join(items)}</ul>{more}'


def _evidence_json(ev: Evidence, r: Renderer) -> dict[str, Any]:
    page = title_of(ev.page, r.resource) if ev.page else None
    return {"sentence": ev.sentence,
            "marks": marks(ev.sentence, ev.start, ev.spans) if ev.start is not None else [],
            "page": page, "page_path": entity_path(ev.page, r.resource) if ev.page else None,
            "page_id": ev.page_id, "revision": ev.revision,
            "revision_url": r.wiki_url(page, ev.revision) if page and ev.revision else None,
            "confidence": float(ev.confidence) if ev.confidence is not None else None}


def fact_page(kg: Any, digest: str, as_json: bool = False) -> Page:
    """``/fact/{digest}``: one model fact with its most confident evidence sentences (at most
    :data:`MAX_EVIDENCE` of the first :data:`EVIDENCE_READ`), as HTML or as JSON (what the
    entity page's script draws)."""
    import pyoxigraph as ox

    r = Renderer(kg)
    graph = (kg.namespace or "") + "graph/fact/" + digest
    triples = [] if not _DIGEST.fullmatch(digest) else list(itertools.islice(
        kg.store.quads_for_pattern(None, None, None, ox.NamedNode(graph)), 2))
    candidate = None
    if not triples and _DIGEST.fullmatch(digest):  # a fact kept below the bar
        graph = (kg.namespace or "") + "graph/candidate/" + digest
        rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        props = _properties(kg, graph, {rdf + "subject": "s", rdf + "predicate": "p",
                                        rdf + "object": "o", KGX + "heldBack": "why"})
        if {"s", "p", "o"} <= set(props):
            triples = [ox.Triple(ox.NamedNode(props["s"]), ox.NamedNode(props["p"]),
                                 ox.NamedNode(props["o"]))]
            candidate = props.get("why", "")
    if len(triples) != 1:
        return html_page(404, "Not found", f"<h1>No model fact {esc(digest)}</h1>")
    t = triples[0]
    meta = _properties(kg, graph, _FACT_PROPS)
    evidence = read_evidence(kg, graph)
    if as_json:
        body = json.dumps({"subject": t.subject.value, "predicate": t.predicate.value,
                           "object": t.object.value, "confidence": meta.get("conf"),
                           "support": meta.get("n"), "agrees": meta.get("agree") == "true",
                           "candidate": candidate is not None, "held_back": candidate,
                           "evidence": [_evidence_json(ev, r) for ev in evidence]},
                          ensure_ascii=False)
        return Page(200, "application/json; charset=utf-8", body.encode("utf-8"),
                    {"X-Content-Type-Options": "nosniff"})
    items = []
    for ev in evidence:
        j = _evidence_json(ev, r)
        text = highlight(ev.sentence, ev.start, ev.spans) if ev.start is not None \
            else esc(ev.sentence)
        where = []
        if ev.page:
            where.append(r.link(ev.page))
            if j["revision_url"]:
                where.append(f'<a class="external" href="{esc(j["revision_url"])}" '
                             f'rel="noopener noreferrer">revision {esc(ev.revision)}</a>')
        elif ev.page_id is not None:
            where.append(f"page id {esc(ev.page_id)}")
        if ev.confidence is not None:
            where.append(f"sentence confidence {float(ev.confidence):.2f}")
        items.append(f'<li><p class="sentence">{text}</p>'
                     f'<p class="source">{" · ".join(where)}</p></li>')
    n = meta.get("n")
    shown = f"{len(evidence)} of {int(n):,}" if n is not None and int(n) > len(evidence) \
        else f"{len(evidence)}"
    title = f"{r.name(t.subject.value)} → {r.name(t.predicate.value)} → " + (
        r.name(t.object.value) if isinstance(t.object, ox.NamedNode) else t.object.value)
    agree = meta.get("agree") == "true"
    what = (f"A candidate the model read, not asserted ({esc(candidate)}): confidence "
            if candidate is not None else "A fact the model read: confidence ")
    body = (f"<h1>{r.link(t.subject.value)} → {r.link(t.predicate.value)} → "
            f"{r.term(t.object)}</h1><p class=\"note\">{what}"
            f"{float(meta.get('conf') or 0):.2f} over {esc(n or '?')} sentence(s); "
            f"{'an infobox states it too' if agree else 'no infobox states it'}.</p>"
            f"<h2>Evidence ({shown})</h2><p class=\"note\">The subject and the object as the "
            f"model found them in each sentence.</p><ol class=\"evidence\">{''.join(items)}</ol>")
    return html_page(200, title, body)


def entity_page(kg: Any, iri: str, suggest: Suggest | None = None) -> Page:
    """The HTML page of one entity; a redirect's page sends the browser to its target (303);
    an IRI the graph does not know gets a 404 page with what ``suggest(name, k)`` offers."""
    import pyoxigraph as ox

    r = Renderer(kg)
    extractor = Extractors(kg)
    facts = read_entity(kg, iri, extractor)
    if facts.redirect and (path := entity_path(facts.redirect, r.resource)):
        return Page(303, HTML_TYPE, b"", {**HTML_HEADERS, "Location": path})
    if not facts.quads and not select(kg, f"ASK {{ ?s ?p <{iri}> }}"):
        name = title_of(iri, r.resource)
        return not_found_page(kg, iri, suggest(name, 5) if suggest is not None else [])
    vocab = r.vocab
    title = facts.label or r.name(iri)
    head = [f"<h1>{esc(title)}</h1>", f'<p class="iri"><code>{esc(iri)}</code>']
    if facts.source_url and facts.source_url.startswith(("http://", "https://")):
        head.append(f' · <a class="external" href="{esc(facts.source_url)}" '
                    'rel="noopener noreferrer">page on the wiki</a>')
    path = entity_path(iri, r.resource) or ""
    head.append(" · RDF: " + ", ".join(
        f'<a href="{esc(path)}?format={f}">{n}</a>'
        for f, n in (("turtle", "Turtle"), ("ntriples", "N-Triples"), ("jsonld", "JSON-LD"))))
    head.append("</p>")
    chains = [" → ".join(r.link(c) for c in vocab.chain(t)) for t in
              vocab.most_specific(facts.types)]
    in_chain = {c for t in vocab.most_specific(facts.types) for c in vocab.chain(t)}
    others = [r.link(t) for t in facts.types if t not in in_chain]
    if chains or others:
        head.append('<dl class="summary"><dt>Types</dt><dd class="types">'
                    + "".join(f'<div class="chain">{c}</div>' for c in chains)
                    + (f'<div class="also">also {", ".join(others)}</div>' if others else "")
                    + "</dd>")
    else:
        head.append('<dl class="summary">')
    if facts.aliases:
        head.append(f'<dt>Aliases</dt><dd class="aliases">{esc(", ".join(facts.aliases))}</dd>')
    head.append("</dl>")
    if facts.abstract:
        head.append('<div class="abstract">' + "".join(
            f"<p>{esc(p)}</p>" for p in facts.abstract.split("\n") if p.strip()) + "</div>")
    body = ["".join(head)]
    if facts.infobox:
        body.append(_section("infobox", "Infobox facts",
                             f'<table class="facts">{_fact_rows(facts.infobox, r)}</table>',
                             "Stated by the page's infobox, mapped onto the ontology where a "
                             "mapping exists (prop: is a raw infobox parameter)."))
    if facts.model:
        body.append(_section("model", "Facts the model read", _model_section(kg, facts.model, r),
                             "Read by the fine-tuned reader from the article text, each with "
                             "its confidence (its probability of being right, calibrated on "
                             "held-out infobox facts); open one to see the sentences that "
                             "state it."))
    candidates = read_candidates(kg, iri)
    if candidates:
        items = "".join(
            f'<li class="candidate"><a href="{esc(fact_path(c.node, kg) or "")}">'
            f'{r.link(c.predicate)} → {r.link(c.object)}</a> '
            f'<span class="confidence">confidence {c.confidence:.2f}</span> '
            f'<span class="why">{esc(c.why)}</span></li>' for c in candidates)
        body.append(_section(
            "candidates", "Candidates the graph does not assert",
            f'<details><summary>{len(candidates):,} fact{"s" if len(candidates) != 1 else ""}'
            f" the reader read below the bar</summary><ul class=\"candidates\">{items}</ul>"
            "</details>",
            "Kept out of the default graph (their property's facts are not right often "
            "enough on held-out infobox facts, or could not be measured); SPARQL reaches them "
            "in the graph <code>graph/candidates</code>."))
    incoming = read_incoming(kg, iri, vocab, extractor)
    if incoming:
        rows = "".join(f'<tr><td>{r.link(s)}</td><td>{r.link(p)}</td>'
                       f'<td class="extractor">{esc(ex or "inferred")}</td></tr>'
                       for s, p, ex in incoming[:MAX_INCOMING])
        more = " (the first " + str(MAX_INCOMING) + ")" if len(incoming) > MAX_INCOMING else ""
        body.append(_section("incoming", "Incoming facts",
                             f'<table class="facts"><thead><tr><th>subject</th><th>property</th>'
                             f"<th>from</th></tr></thead>{rows}</table>",
                             f"Facts that name {esc(title)} as their value{more}."))
    neighbours = [(f.object.value, r.name(f.predicate), "out") for f in facts.infobox
                  + facts.model if entity_path(f.object.value, r.resource)]
    neighbours += [(s, r.name(p), "in") for s, p, _ in incoming]
    if neighbours:
        body.append(_section("neighbourhood", "Neighbourhood",
                             f"<figure>{neighbourhood_svg(iri, neighbours, r)}</figure>",
                             f"{esc(title)} and the entities one fact away (at most "
                             f"{MAX_NEIGHBOURS}; hover an edge for its property)."))
    redirects = sorted(q.subject.value for q in itertools.islice(kg.store.quads_for_pattern(
        None, ox.NamedNode(KGX + "redirectsTo"), ox.NamedNode(iri)), MAX_REDIRECTS))
    if redirects:
        body.append(_section("redirects", "Redirects here",
                             '<ul class="inline">' + "".join(
                                 f"<li>{esc(r.name(x))}</li>" for x in redirects) + "</ul>"))
    if facts.inferred:
        body.append(_section("inferred", "Inferred facts",
                             f'<details><summary>{len(facts.inferred):,} facts entailed by the '
                             f"ontology (RDFS / OWL-RL)</summary><table class=\"facts\">"
                             f"{_fact_rows(facts.inferred, r)}</table></details>"))
    if facts.other:
        body.append(_section("other", "Other facts",
                             f'<table class="facts">{_fact_rows(facts.other, r)}</table>'))
    if facts.categories:
        body.append(_section("categories", "Categories", '<ul class="inline">' + "".join(
            f"<li>{r.link(c, r.name(c).split(':', 1)[-1])}</li>" for c in facts.categories)
            + "</ul>"))
    out_links = sorted(facts.links)[:MAX_LINKS]
    n_out = len(facts.links) if not facts.truncated else \
        _count(kg, f"<{iri}> <{KGX}wikiLink> ?o")
    n_in = _count(kg, f"?s <{KGX}wikiLink> <{iri}>")
    links = f"<p>Links to {_count_text(n_out)} pages; {_count_text(n_in)} pages link here.</p>"
    if out_links:
        every = urlencode({"query": f"SELECT ?page WHERE {{ <{iri}> kgx:wikiLink ?page }} "
                                    "ORDER BY ?page"})
        links += ('<ul class="inline">' + "".join(f"<li>{r.link(o)}</li>" for o in out_links)
                  + (f'<li><a href="/query?{esc(every)}">all {_count_text(n_out)}…</a></li>'
                     if n_out > MAX_LINKS else "") + "</ul>")
    body.append(_section("links", "Wikilinks", links))
    if facts.truncated:
        body.append(f'<p class="note">This entity has more than {MAX_FACTS:,} facts; the page '
                    "shows the first. SPARQL reaches them all.</p>")
    return html_page(200, title, "".join(body))


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


# --------------------------------------------------------------------------- search and query


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
    """A file of ``kgx/static`` (CSS, the query page's script), or 404."""
    path = (STATIC_DIR / name).resolve()
    if path.parent != STATIC_DIR or path.suffix not in STATIC_TYPES or not path.is_file():
        return Page(404, "text/plain; charset=utf-8", b"no such file\n")
    return Page(200, STATIC_TYPES[path.suffix], path.read_bytes(),
                {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})


def render(kg: Any, name: str, params: dict[str, Any], suggest: Suggest | None = None) -> Page:
    """The page ``name`` ("entity", "search", "query") with its parameters: the entry point the
    server's query workers call. ``suggest(name, k)``: candidate IRIs for a 404 page."""
    if name == "entity":
        return entity_page(kg, params["iri"], suggest)
    if name == "search":
        return search_page(kg, params.get("q", ""), params.get("candidates"),
                           params.get("error"))
    if name == "query":
        return query_page(kg, params.get("query", ""))
    if name == "fact":
        return fact_page(kg, params["digest"], params.get("json", False))
    raise ValueError(f"no page {name!r}")


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
