"""RDFS / OWL-RL entailments of the ontology, materialised into a graph of their own.

Takes the store after extraction; gives ``{ns}graph/inferred``: the quads the ontology entails
that the data does not state. The TBox (the ontology itself) is closed with owlrl's OWL-RL
engine; the ABox (a dump's facts, far more numerous) is then closed under these rule families:

* ``rdfs:subClassOf`` (and ``owl:equivalentClass``, Wikidata classes included): types;
* ``rdfs:subPropertyOf`` and ``owl:equivalentProperty``: so ``?s wdt:P19 ?o`` works directly;
* ``owl:inverseOf`` and ``owl:SymmetricProperty``;
* ``owl:TransitiveProperty`` (``kgx:locatedIn``).

Two ways give the same quads (tested): :func:`materialise`, SPARQL CONSTRUCTs run inside
Oxigraph to a fixpoint (one process, every rule over the whole store each round), and the
merge stage's way, :func:`infer_chunk` over chunks of ``graph.nq`` in worker processes, then
:func:`close_transitive`. The merge takes the second unless a rule involves ``rdf:type`` as a
property (:meth:`GroupRules.of`).

Materialising (rather than rewriting each query) keeps queries as fast as plain lookups, and
the inferred graph is one ``GRAPH`` away for anyone who wants stated facts only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from kgx.ontology import KGX, ONTOLOGY_DIR, OWL, RDF_TYPE, RDFS

_P = f"PREFIX rdfs: <{RDFS}> PREFIX owl: <{OWL}> PREFIX kgx: <{KGX}> "


def tbox_closure() -> Any:
    """The ontology closed under OWL-RL (an rdflib Graph)."""
    import owlrl
    import rdflib

    g = rdflib.Graph()
    g.parse(ONTOLOGY_DIR / "kgx.ttl", format="turtle")
    owlrl.DeductiveClosure(owlrl.OWLRL_Semantics, axiomatic_triples=False,
                           datatype_axioms=False).expand(g)
    return g


def _pairs(g: Any, pred: str) -> list[tuple[str, str]]:
    import rdflib

    return [(str(s), str(o)) for s, o in g.subject_objects(rdflib.URIRef(pred))
            if isinstance(s, rdflib.URIRef) and isinstance(o, rdflib.URIRef) and s != o]


def rules(tbox: Any) -> dict[str, Any]:
    """What the closed TBox says, as plain IRI pairs the ABox rules need."""
    import rdflib

    sub_class = [(c, d) for c, d in _pairs(tbox, RDFS + "subClassOf")]
    eq_class = _pairs(tbox, OWL + "equivalentClass")
    sub_prop = _pairs(tbox, RDFS + "subPropertyOf")
    eq_prop = _pairs(tbox, OWL + "equivalentProperty")
    inverse = _pairs(tbox, OWL + "inverseOf")
    sym = [str(s) for s in tbox.subjects(rdflib.RDF.type, rdflib.URIRef(OWL + "SymmetricProperty"))]
    trans = [str(s) for s in tbox.subjects(rdflib.RDF.type,
                                           rdflib.URIRef(OWL + "TransitiveProperty"))]
    supers = sub_class + eq_class + [(d, c) for c, d in eq_class]
    props = sub_prop + eq_prop + [(q, p) for p, q in eq_prop]
    return {"classes": sorted(set(supers)), "properties": sorted(set(props)),
            "inverse": sorted(set(inverse + [(q, p) for p, q in inverse])),
            "symmetric": sorted(set(sym)), "transitive": sorted(set(trans))}


def _values(pairs: list[tuple[str, str]], a: str, b: str) -> str:
    rows = " ".join(f"(<{x}> <{y}>)" for x, y in pairs)
    return f"VALUES (?{a} ?{b}) {{ {rows} }}"


BATCH = 50_000  # inferred triples added to the store at a time: memory stays flat


def materialise(store: Any, graph: str, tbox: Any | None = None, batch: int = BATCH
                ) -> Iterator[str]:
    """Add to ``store`` (in ``graph``) everything entailed and not stated; yield it as N-Quads.

    Rules run until nothing new comes (types and properties can feed each other: the inverse
    of a sub-property, say), at most 6 rounds. Each CONSTRUCT skips what is already known, and
    its results go into the store ``batch`` triples at a time; the store removes repeats. What
    is yielded at the end is read back from the store's inferred graph, so no step holds the
    inferred triples in memory (on a full dump, every category and alias infers a copy).
    """
    import pyoxigraph as ox

    r = rules(tbox if tbox is not None else tbox_closure())
    g = ox.NamedNode(graph)
    t = f"<{RDF_TYPE}>"
    queries = []
    if r["classes"]:
        queries.append(f"CONSTRUCT {{ ?s {t} ?d }} WHERE {{ {_values(r['classes'], 'c', 'd')} "
                       f"?s {t} ?c . FILTER NOT EXISTS {{ ?s {t} ?d }} }}")
    if r["properties"]:
        queries.append(f"CONSTRUCT {{ ?s ?q ?o }} WHERE {{ {_values(r['properties'], 'p', 'q')} "
                       "?s ?p ?o . FILTER NOT EXISTS { ?s ?q ?o } }")
    if r["inverse"]:
        queries.append(f"CONSTRUCT {{ ?o ?q ?s }} WHERE {{ {_values(r['inverse'], 'p', 'q')} "
                       "?s ?p ?o . FILTER(isIRI(?o)) FILTER NOT EXISTS { ?o ?q ?s } }")
    for p in r["symmetric"]:
        queries.append(f"CONSTRUCT {{ ?o <{p}> ?s }} WHERE {{ ?s <{p}> ?o . FILTER(isIRI(?o)) "
                       f"FILTER NOT EXISTS {{ ?o <{p}> ?s }} }}")
    for p in r["transitive"]:
        queries.append(f"CONSTRUCT {{ ?s <{p}> ?z }} WHERE {{ ?s <{p}> ?o . ?o <{p}>+ ?z . "
                       f"FILTER(?s != ?z) FILTER NOT EXISTS {{ ?s <{p}> ?z }} }}")
    count = f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{graph}> {{ ?s ?p ?o }} }}"
    known = int(next(iter(store.query(count)))["n"].value)
    for _ in range(6):
        for q in queries:
            pending: list[Any] = []
            for x in store.query(q, use_default_graph_as_union=True):
                pending.append(ox.Quad(x.subject, x.predicate, x.object, g))
                if len(pending) >= batch:
                    store.extend(pending)
                    pending = []
            store.extend(pending)
        now = int(next(iter(store.query(count)))["n"].value)
        if now == known:
            break
        known = now
    for quad in store.quads_for_pattern(None, None, None, g):
        yield f"{quad.subject} {quad.predicate} {quad.object} <{graph}> .\n"


# ---------------------------------------------------------------------------------------------
# The same entailments in chunks, in worker processes.
#
# Apart from transitivity, every rule above concludes from one triple: a type entails its
# superclasses, a property its super-properties, inverse and symmetric. So what the ABox
# entails is found group by group, where a group is a subject's types, or the triples between
# two nodes (both ways): a group's closure needs only its own triples, which one lookup in the
# store gives. Each chunk of graph.nq is read by a worker; of the groups its triples belong
# to, it closes those whose *least* triple (in N-Quads order) it holds, so each group is
# closed by one chunk, wherever its triples lie. Transitive properties, whose closure follows
# chains, are then closed in the store (:func:`close_transitive`), where they are few.
# ---------------------------------------------------------------------------------------------

def _closed(pairs: list[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """``a -> every b reachable from a`` through ``pairs`` (a itself excluded)."""
    step: dict[str, set[str]] = {}
    for a, b in pairs:
        step.setdefault(a, set()).add(b)
    out = {}
    for a in step:
        seen: set[str] = set()
        todo = [a]
        while todo:
            for b in step.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        seen.discard(a)
        out[a] = frozenset(seen)
    return out


@dataclass(frozen=True)
class GroupRules:
    """The rules of :func:`rules` that conclude from one triple, closed, per class or property
    (a plain picklable value: worker processes get it once)."""

    classes: dict[str, frozenset[str]]  # class -> every class it entails
    properties: dict[str, frozenset[str]]  # property -> every property it entails
    inverse: dict[str, frozenset[str]]
    symmetric: frozenset[str]
    transitive: tuple[str, ...]

    @classmethod
    def of(cls, r: dict[str, Any]) -> GroupRules | None:
        """The group rules of ``r``; None when a rule involves ``rdf:type`` as a property, since
        types and properties would then feed each other across groups."""
        inverse: dict[str, set[str]] = {}
        for p, q in r["inverse"]:
            inverse.setdefault(p, set()).add(q)
        names = {x for pair in r["properties"] + r["inverse"] for x in pair}
        if RDF_TYPE in names | set(r["symmetric"]) | set(r["transitive"]):
            return None
        return cls(classes=_closed(r["classes"]), properties=_closed(r["properties"]),
                   inverse={p: frozenset(q) for p, q in inverse.items()},
                   symmetric=frozenset(r["symmetric"]), transitive=tuple(r["transitive"]))

    def lines_that_apply(self, data: bytes) -> bytes:
        """The N-Quads lines of ``data`` whose predicate a rule may apply to: a cheap cut
        before parsing (a line that does not split as kgx writes them is kept)."""
        wanted = {f"<{p}>".encode() for p in (*self.properties, *self.inverse, *self.symmetric)}
        if self.classes:
            wanted.add(f"<{RDF_TYPE}>".encode())
        keep = []
        for line in data.splitlines(keepends=True):
            words = line.split(b" ", 2)
            if len(words) < 3 or words[1] in wanted or not words[1].startswith(b"<"):
                keep.append(line)
        return b"".join(keep)

    def in_pairs(self, p: str) -> bool:
        """Whether a triple with predicate ``p`` belongs to a pair group."""
        return p in self.properties or p in self.inverse or p in self.symmetric

    def close_pair(self, stated: set[tuple[str, int]], object_is_iri: tuple[bool, bool],
                   same: bool) -> set[tuple[str, int]]:
        """What the triples between two nodes a and b entail and do not state.

        Args:
            stated: ``(predicate, 0)`` for a triple a -> b, ``(predicate, 1)`` for b -> a.
            object_is_iri: Whether b, and a, is an IRI (inverse and symmetric rules need
                their object to be one, as the SPARQL rules do).
            same: a and b are one node (both directions are then one).
        """
        seen = set(stated)
        todo = list(stated)
        while todo:
            p, d = todo.pop()
            new = [(q, d) for q in self.properties.get(p, ())]
            if object_is_iri[d]:
                new += [(q, 1 - d) for q in self.inverse.get(p, ())]
                if p in self.symmetric:
                    new.append((p, 1 - d))
            for q, e in new:
                f = (q, 0 if same else e)
                if f not in seen:
                    seen.add(f)
                    todo.append(f)
        return seen - stated


def infer_chunk(store: Any, data: bytes, graph: str, rules: GroupRules) -> Iterator[str]:
    """The entailments of the groups whose least triple is in ``data`` (N-Quads: a chunk of
    graph.nq), as N-Quads lines in ``graph``; ``store`` holds every stated quad.

    Triples already in ``graph`` (an earlier, killed run's) count as not stated. A line the
    parser refuses is skipped: the store refused it too.
    """
    import pyoxigraph as ox

    rdf_type = ox.NamedNode(RDF_TYPE)
    g = ox.NamedNode(graph)
    # The chunk's triples that rules apply to, through a store of their own: it writes terms
    # as the on-disk store does ("01"^^xsd:integer is "1"), so they compare equal to its own.
    mine = ox.Store()
    mine.bulk_extend(q for q in _parse_lenient(rules.lines_that_apply(data))
                     if q.graph_name != g and _applies(q, rules))
    firsts: dict[Any, Any] = {}  # group -> its least triple, once looked up

    def least(quads: Iterator[Any]) -> tuple[str, list[Any]]:
        found = [q for q in quads if q.graph_name != g]
        return min((str(q) for q in found), default=""), found

    def line(s: Any, p: str, o: Any) -> str:
        return f"{s} <{p}> {o} {g} .\n"

    for q in mine:  # a group is closed when its least triple comes, whichever comes first
        s, p, o = q.subject, q.predicate.value, q.object
        here = str(q)
        if p == RDF_TYPE:
            if firsts.get(s, here) != here:
                continue
            firsts[s], found = least(store.quads_for_pattern(s, rdf_type, None))
            if firsts[s] != here:
                continue
            have = {x.object.value for x in found if isinstance(x.object, ox.NamedNode)}
            for d in sorted({d for c in have for d in rules.classes.get(c, ())} - have):
                yield line(s, RDF_TYPE, ox.NamedNode(d))
            continue
        pair = (s, o) if isinstance(o, ox.Literal) or str(s) <= str(o) else (o, s)
        if firsts.get(pair, here) != here:
            continue
        a, b = pair
        same = a == b
        quads = list(store.quads_for_pattern(a, None, b))
        if not same and not isinstance(b, ox.Literal):
            quads += store.quads_for_pattern(b, None, a)
        firsts[pair], found = least(x for x in quads if rules.in_pairs(x.predicate.value))
        if firsts[pair] != here:
            continue
        stated = {(x.predicate.value, 0 if x.subject == a else 1) for x in found}
        iri = (isinstance(b, ox.NamedNode), isinstance(a, ox.NamedNode))
        for p2, side in sorted(rules.close_pair(stated, iri, same)):
            yield line(a, p2, b) if side == 0 else line(b, p2, a)


def _applies(q: Any, rules: GroupRules) -> bool:
    p = q.predicate.value
    return rules.in_pairs(p) if p != RDF_TYPE else bool(rules.classes)


def _parse_lenient(data: bytes) -> Iterator[Any]:
    import pyoxigraph as ox

    try:
        yield from list(ox.parse(input=data, format=ox.RdfFormat.N_QUADS))
    except SyntaxError:
        for raw in data.splitlines(keepends=True):
            try:
                yield from ox.parse(input=raw, format=ox.RdfFormat.N_QUADS)
            except SyntaxError:
                continue


def close_transitive(store: Any, graph: str, rules: GroupRules, out: TextIO,
                     batch: int = BATCH) -> int:
    """Add to ``store`` (in ``graph``) the chains of the transitive properties, and what the
    pairs they join entail in turn, until nothing new comes; returns the triples added.

    Run once the group entailments are in the store: from then on, every quad counts. Each
    batch is written to ``out`` as N-Quads, and flushed, before the store takes it, so the
    file holds at least what the store took when the process dies.
    """
    import pyoxigraph as ox

    g = ox.NamedNode(graph)
    added = 0

    def take(pending: dict[str, Any]) -> int:
        new = [q for q in pending.values() if q not in store]
        out.writelines(f"{q} .\n" for q in new)
        out.flush()
        store.extend(new)
        pending.clear()
        return len(new)

    while True:
        new = 0
        for p in rules.transitive:
            q = (f"CONSTRUCT {{ ?s <{p}> ?z }} WHERE {{ ?s <{p}> ?o . ?o <{p}>+ ?z . "
                 f"FILTER(?s != ?z) FILTER NOT EXISTS {{ ?s <{p}> ?z }} }}")
            pending: dict[str, Any] = {}
            for x in store.query(q, use_default_graph_as_union=True):
                for quad in [ox.Quad(x.subject, x.predicate, x.object, g),
                             *_pair_entailments(store, x.subject, p, x.object, rules, g)]:
                    pending[str(quad)] = quad
                if len(pending) >= batch:
                    new += take(pending)
            new += take(pending)
        if not new:
            return added
        added += new


def _pair_entailments(store: Any, a: Any, p: str, b: Any, rules: GroupRules, g: Any
                      ) -> list[Any]:
    """What the triples between ``a`` and ``b`` entail once ``a p b`` (a transitive chain,
    not yet in the store) joins them, as quads in ``g``."""
    import pyoxigraph as ox

    quads = list(store.quads_for_pattern(a, None, b)) + \
        (list(store.quads_for_pattern(b, None, a)) if a != b else [])
    stated = {(x.predicate.value, 0 if x.subject == a else 1) for x in quads
              if rules.in_pairs(x.predicate.value)}
    stated.add((p, 0))
    iri = (isinstance(b, ox.NamedNode), isinstance(a, ox.NamedNode))
    have = {(x.predicate.value, 0 if x.subject == a else 1) for x in quads}
    return [ox.Quad(a, ox.NamedNode(q), b, g) if d == 0 else ox.Quad(b, ox.NamedNode(q), a, g)
            for q, d in sorted(rules.close_pair(stated, iri, a == b) - have - {(p, 0)})]
