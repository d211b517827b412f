"""What an entity page shows, read from the store's indexes: facts, model facts with their
figures, evidence, candidates, incoming facts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    spans: list[tuple[str | None, str | None, str]]
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


# Label geometry of the neighbourhood picture (11 px text): a character's mean advance and a
# line's height, a line's characters at most, and the lines of a label at most.
CHAR_WIDTH, LINE_HEIGHT, LABEL_CHARS, LABEL_LINES = 6.4, 13.0, 24, 2
