"""RDFS / OWL-RL entailments of the ontology, materialised into a graph of their own.

Takes the store after extraction; gives ``{ns}graph/inferred``: the quads the ontology entails
that the data does not state. The TBox (the ontology itself) is closed with owlrl's OWL-RL
engine; the ABox (a dump's facts, far more numerous) is then closed with SPARQL CONSTRUCTs run
inside Oxigraph, one per rule family:

* ``rdfs:subClassOf`` (and ``owl:equivalentClass``, Wikidata classes included): types;
* ``rdfs:subPropertyOf`` and ``owl:equivalentProperty``: so ``?s wdt:P19 ?o`` works directly;
* ``owl:inverseOf`` and ``owl:SymmetricProperty``;
* ``owl:TransitiveProperty`` (``kgx:locatedIn``).

Materialising (rather than rewriting each query) keeps queries as fast as plain lookups, and
the inferred graph is one ``GRAPH`` away for anyone who wants stated facts only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
