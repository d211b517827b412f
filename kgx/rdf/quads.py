"""N-Quads: terms, literals and IRIs, and the quads of every kind of fact kgx writes (structure
facts, mentions, model facts, candidates, NER types), with their provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kgx.ontology import KGX, XSD
from kgx.records import IRI, Entity, Fact, LinkedMention, Literal, Provenance
from kgx.text.site import Site


def entity_iri(ns: str) -> Callable[[str], str]:
    """Title -> ``<...resource/Title>`` N-Quads term under namespace ``ns``."""
    from kgx.text.site import iri_escape

    resource = ns + "resource/"
    return lambda title: f"<{resource}{iri_escape(title.replace(' ', '_'))}>"


def write_mention(out: list[str], ns: str, doc: dict[str, Any], a: int, m: Any,
                  ent: LinkedMention, iri: Callable[[str], str]) -> int:
    """The quads of one linked mention (``m``, a predicted mention in the sentence at ``a``
    of ``doc``) into ``out``; returns how many."""
    pid = doc["page_id"]
    s, e = a + m.start, a + m.end
    node = f"<{ns}mention/{pid}/{s}-{e}>"
    g = f"<{ns}graph/page/{pid}/mentions>"
    lines = [
        f"{node} <{KGX}mentionOf> {iri(ent.title)} {g} .\n",
        f"{node} <{KGX}inPage> {iri(doc['title'])} {g} .\n",
        f"{node} <{KGX}anchor> {literal(m.text)} {g} .\n",
        f"{node} <{KGX}start> {literal(str(s), XSD + 'integer')} {g} .\n",
        f"{node} <{KGX}end> {literal(str(e), XSD + 'integer')} {g} .\n",
        f"{node} <{KGX}mentionType> {literal(m.label)} {g} .\n",
        f"{node} <{KGX}linkedBy> {literal(ent.how)} {g} .\n",
        f"{node} <{KGX}confidence> {literal(repr(round(ent.score * m.score, 4)), XSD + 'double')}"
        f" {g} .\n",
    ]
    out.extend(lines)
    return len(lines)


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


CANDIDATES = "candidates"  # {ns}graph/candidates: what the reader read below the bar


NER_TYPES = "ner-types"  # {ns}graph/ner-types: types of entities from their mentions


def _int(n: int) -> str:
    return literal(str(n), XSD + "integer")


def _double(x: float) -> str:
    return literal(repr(round(x, 4)), XSD + "double")


def evidence_lines(node: str, evidence: Iterable[Any], graph: str,
                   iri: Callable[[str], str]) -> list[str]:
    """``node kgx:evidence <node/evidence/i>``, and each sentence's place and scores."""
    lines: list[str] = []
    for i, ev in enumerate(evidence, 1):
        e = f"<{node[1:-1]}/evidence/{i}>"
        lines += [
            f"{node} <{KGX}evidence> {e} {graph} .\n",
            f"{e} <{KGX}pageId> {_int(ev.page_id)} {graph} .\n",
            f"{e} <{KGX}sentence> {literal(ev.sentence)} {graph} .\n",
            f"{e} <{KGX}sentenceStart> {_int(ev.sentence_start)} {graph} .\n",
            f"{e} <{KGX}sentenceEnd> {_int(ev.sentence_end)} {graph} .\n",
            f"{e} <{KGX}evidenceStart> {_int(ev.start)} {graph} .\n",
            f"{e} <{KGX}evidenceEnd> {_int(ev.end)} {graph} .\n",
            f"{e} <{KGX}sourcePage> {iri(ev.page)} {graph} .\n",
            f"{e} <{KGX}subjectStart> {_int(ev.subject_start)} {graph} .\n",
            f"{e} <{KGX}subjectEnd> {_int(ev.subject_end)} {graph} .\n",
            f"{e} <{KGX}objectStart> {_int(ev.object_start)} {graph} .\n",
            f"{e} <{KGX}objectEnd> {_int(ev.object_end)} {graph} .\n",
            f"{e} <{KGX}confidence> {_double(ev.score)} {graph} .\n"]
        if ev.revision_id is not None:
            lines.append(f"{e} <{KGX}revisionId> {_int(ev.revision_id)} {graph} .\n")
    return lines


def model_fact_lines(fact: Any, ns: str, predicate: str, model_name: str, agrees: bool,
                     iri: Callable[[str], str]) -> list[str]:
    """An asserted model fact: its triple in a graph of its own
    (``{ns}graph/fact/{digest}``), that graph's provenance (extractor ``model``, the
    calibrated confidence, support, agreement with the infobox) and each evidence sentence, in
    ``{ns}graph/provenance``."""
    g = f"<{ns}graph/fact/{fact.digest}>"
    pg = f"<{ns}graph/provenance>"
    return [f"{iri(fact.subject)} <{predicate}> {iri(fact.object)} {g} .\n",
            f"{g} <{KGX}extractor> {literal('model')} {pg} .\n",
            f"{g} <{KGX}extractorVersion> {literal(model_name)} {pg} .\n",
            f"{g} <{KGX}confidence> {_double(fact.confidence)} {pg} .\n",
            f"{g} <{KGX}supportCount> {_int(len(fact.evidence))} {pg} .\n",
            f"{g} <{KGX}agreesWithInfobox> "
            f"{literal('true' if agrees else 'false', XSD + 'boolean')} {pg} .\n",
            *evidence_lines(g, fact.evidence, pg, iri)]


def candidate_lines(fact: Any, ns: str, predicate: str, model_name: str,
                    iri: Callable[[str], str]) -> list[str]:
    """A model fact kept below the bar: not stated, but described, in ``{ns}graph/candidates``
    (``rdf:subject``, ``rdf:predicate``, ``rdf:object``, its confidence, why it was held back
    and its evidence), so that a query reaches it only on purpose."""
    cg = f"<{ns}graph/{CANDIDATES}>"
    node = f"<{ns}graph/candidate/{fact.digest}>"
    rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
    return [f"{node} <{rdf}type> <{KGX}CandidateFact> {cg} .\n",
            f"{node} <{rdf}subject> {iri(fact.subject)} {cg} .\n",
            f"{node} <{rdf}predicate> <{predicate}> {cg} .\n",
            f"{node} <{rdf}object> {iri(fact.object)} {cg} .\n",
            f"{node} <{KGX}extractorVersion> {literal(model_name)} {cg} .\n",
            f"{node} <{KGX}confidence> {_double(fact.confidence)} {cg} .\n",
            f"{node} <{KGX}supportCount> {_int(len(fact.evidence))} {cg} .\n",
            f"{node} <{KGX}heldBack> {literal(fact.why)} {cg} .\n",
            *evidence_lines(node, fact.evidence, cg, iri)]


def ner_type_lines(title: str, cls: str, ns: str, iri: Callable[[str], str]) -> list[str]:
    """An entity the graph had no type for, typed by the majority NER type of its mentions,
    in ``{ns}graph/ner-types`` (whose provenance says so)."""
    g = f"<{ns}graph/{NER_TYPES}>"
    return [f"{iri(title)} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{cls}> {g} .\n"]


def ner_types_provenance(ns: str, model_name: str) -> list[str]:
    g = f"<{ns}graph/{NER_TYPES}>"
    pg = f"<{ns}graph/provenance>"
    return [f"{g} <{KGX}extractor> {literal('ner-majority')} {pg} .\n",
            f"{g} <{KGX}extractorVersion> {literal(model_name)} {pg} .\n"]
