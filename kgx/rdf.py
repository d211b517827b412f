"""N-Quads serialisation of facts, with provenance as named graphs.

Provenance scheme: every fact lives in a named graph, and the graph's IRI is the fact's
provenance record. Structural facts share one graph per (page, extractor):
``{ns}graph/page/{page_id}/{extractor}``; each model fact gets a graph of its own
(``{ns}graph/fact/{hash}``) so that it can carry its confidence and evidence span. The
provenance of every graph is stated in the graph ``{ns}graph/provenance``::

    <g> kgx:pageId 12 ; kgx:revisionId 1 ; kgx:extractor "infobox" ;
        kgx:extractorVersion "0.1.0" ; kgx:sourcePage <entity> .

This is plain RDF 1.1 (no RDF-star), so rdflib, Oxigraph, Jena and any quad store load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from kgx.ontology import KGX, XSD
from kgx.records import IRI, Entity, Fact, Literal, Provenance
from kgx.site import Site

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"})


def literal(value: str, datatype: str | None = None, lang: str | None = None) -> str:
    """An N-Triples literal."""
    s = '"' + value.translate(_ESCAPES) + '"'
    if lang:
        return f"{s}@{lang}"
    if datatype and datatype != XSD + "string":
        return f"{s}^^<{datatype}>"
    return s


def term(t: IRI | Entity | Literal, site: Site) -> str:
    """An N-Triples term; entities become IRIs under the site's resource namespace."""
    if isinstance(t, Entity):
        return f"<{site.entity_iri(t.title)}>"
    if isinstance(t, IRI):
        return f"<{t.value}>"
    return literal(t.value, t.datatype, t.lang)


def graph_iri(site: Site, prov: Provenance) -> str:
    """The named graph that holds facts of this provenance."""
    return f"{site.graph}page/{prov.page_id}/{prov.extractor}"


def provenance_quads(site: Site, graph: str, prov: Provenance, subject: str) -> Iterator[str]:
    """The statements about one provenance graph, in the provenance graph."""
    pg = f"<{site.graph}provenance>"
    g = f"<{graph}>"
    yield f"{g} <{KGX}pageId> {literal(str(prov.page_id), XSD + 'integer')} {pg} .\n"
    if prov.revision_id is not None:
        yield f"{g} <{KGX}revisionId> {literal(str(prov.revision_id), XSD + 'integer')} {pg} .\n"
    yield f"{g} <{KGX}extractor> {literal(prov.extractor)} {pg} .\n"
    yield f"{g} <{KGX}extractorVersion> {literal(prov.extractor_version)} {pg} .\n"
    yield f"{g} <{KGX}sourcePage> {subject} {pg} .\n"


def to_nquads(facts: Iterable[Fact], site: Site, source: Entity
              ) -> tuple[list[str], dict[str, int]]:
    """Serialise the facts read from one page, with their provenance graphs.

    Args:
        facts: Facts of one page.
        site: IRI rules.
        source: The entity the page describes (``kgx:sourcePage`` of each graph).

    Returns:
        The N-Quads lines and the number of facts per extractor.
    """
    lines: list[str] = []
    counts: dict[str, int] = {}
    seen_graphs: set[str] = set()
    src = term(source, site)
    for f in facts:
        prov = f.provenance
        g = graph_iri(site, prov)
        s = term(f.subject, site)
        if g not in seen_graphs:
            seen_graphs.add(g)
            lines.extend(provenance_quads(site, g, prov, src))
        lines.append(f"{s} <{f.predicate.value}> {term(f.object, site)} <{g}> .\n")
        counts[prov.extractor] = counts.get(prov.extractor, 0) + 1
    return lines, counts

