"""Deciding and writing the model facts of a run (the rules are in :mod:`kgx.read.assertion`):
held-out figures, each property's bar, asserted facts, candidates, NER types.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from kgx.ontology import relation_iri
from kgx.outdir import MODEL_FACTS_FILE, REPORT_FILE
from kgx.rdf.quads import entity_iri


def write_model_facts(out: Path, db: sqlite3.Connection, ns: str, model_name: str,
                      entities: Any, meta: dict[str, Any], min_precision: float,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """Decide and write the model facts (:mod:`kgx.read.assertion`): asserted ones in graphs of
    their own, candidates in ``graph/candidates``, NER types in ``graph/ner-types``.

    Two passes over the evidence rows, sorted on disk: the first scores the held-out
    subjects' facts (calibration and each property's bar), the second writes every fact.

    Returns:
        The counts and figures for the report (``assertion``: held-out precision, the
        reliability table, each property's bar, the refusals).
    """
    from kgx.ontology import load_mappings, load_ontology
    from kgx.rdf.quads import candidate_lines, model_fact_lines
    from kgx.read.assertion import (
        GOLD_DEV_LANGUAGE,
        ModelFact,
        NerTypes,
        TypeSystem,
        decide_bars,
        group_evidence,
        why_not_asserted,
    )

    onto = load_ontology()
    iri = entity_iri(ns)
    ner = NerTypes(db.execute("SELECT entity, label, SUM(n) FROM ner GROUP BY entity, label"))

    def graph_type(title: str) -> str | None:
        info = entities.get(title)
        return info.fine if info else None

    lang = json.loads((out / REPORT_FILE).read_text("utf-8"))["site"].get("lang", "en")
    mappings = load_mappings()
    types = TypeSystem(onto, graph_type, ner, mappings.is_list_page(lang),
                       mappings.title_class(lang))
    held = held_out_rule(out, meta, entities)

    def facts() -> Iterator[ModelFact]:
        rows = db.execute(f"SELECT {FACT_SELECT} FROM f ORDER BY h, p, t, page, s0")
        for h, p, t, ev in group_evidence(rows):
            yield types.check(ModelFact(h, p, t, tuple(ev)))

    # Pass 1: what the reader says of the held-out subjects, judged by their infoboxes.
    scored: list[Scored] = []
    if held is not None:
        for f in facts():
            if f.refused is None and held.covers(f.subject):
                scored.append(Scored(f.subject, f.prop, f.features(), f.types_known,
                                     held.label(f)))
    gold_outcomes = meta.get("gold_dev_relations") or {}

    def typed(prop: str) -> bool:
        return prop in onto.properties

    # Bars measured on the gold dev relations hold for a wiki in their language only: the
    # English reader on the Italian export asserted facts 58% right at a mean confidence of
    # 0.81 (docs/usage/other-wikis.md).
    no_gold_bars = None if lang.split("-")[0] == GOLD_DEV_LANGUAGE else (
        f"the gold dev relations, read in {GOLD_DEV_LANGUAGE!r} sentences, set no bar for a "
        f"wiki in {lang!r}")
    calib, gates = decide_bars([(x.prop, x.features, bool(x.right)) for x in scored
                                if x.right is not None], {x.prop for x in scored},
                               gold_outcomes, min_precision, typed, no_gold_bars)
    report = _held_out_report(scored, min_precision, held is not None, gold_outcomes, typed,
                              no_gold_bars)

    # Pass 2: every fact, decided and written.
    tmp = out / (MODEL_FACTS_FILE + ".tmp")
    counts: Counter[str] = Counter()
    refused: dict[str, Counter[str]] = {}
    asserted_by: Counter[str] = Counter()
    agree = n_triples = 0
    with open(tmp, "w", encoding="utf-8") as fout:
        for f in facts():
            if f.refused is not None:
                refused.setdefault(f.prop, Counter())[f.refused] += 1
                counts["refused"] += 1
                continue
            confidence = calib(f.prop, f.features())
            why = why_not_asserted(gates.get(f.prop), min_precision, confidence,
                                   f.best_score, f.types_known)
            f = replace(f, confidence=confidence, status="candidate" if why else "asserted",
                        why=why or "")
            predicate = relation_iri(f.prop)
            if f.status == "asserted":
                info = entities.get(f.subject)
                agrees = bool(info and (f.prop, f.object) in info.facts)
                agree += agrees
                lines = model_fact_lines(f, ns, predicate, model_name, agrees, iri)
                asserted_by[f.prop] += 1
            else:
                lines = candidate_lines(f, ns, predicate, model_name, iri)
            counts[f.status] += 1
            n_triples += len(lines)
            fout.writelines(lines)
        n_typed, lines = _ner_type_lines(ner, graph_type, ns, model_name, iri)
        fout.writelines(lines)
        n_triples += len(lines)
    os.replace(tmp, out / MODEL_FACTS_FILE)
    report.update({
        "min_precision": min_precision, "calibration": calib.to_json(),
        "gates": {p: {"source": g.source, "scored": g.scored,
                      "threshold": None if g.threshold is None else round(g.threshold, 4),
                      "precision": g.precision, "above": g.above,
                      "asserted": asserted_by.get(p, 0), "why": g.why}
                  for p, g in sorted(gates.items())},
        "refused": {p: dict(c) for p, c in sorted(refused.items())},
        "entities_typed_by_ner": n_typed})
    log(f"[read] model facts: {counts['asserted']:,} asserted, {counts['candidate']:,} kept as "
        f"candidates, {counts['refused']:,} refused by their types; {n_typed:,} entities typed "
        "by their mentions")
    _log_measures(report, calib, log)
    return {"model_facts": counts["asserted"], "candidate_facts": counts["candidate"],
            "refused_facts": counts["refused"], "model_fact_triples": n_triples,
            "agreeing_with_infobox": agree, "assertion": report}


def _ner_type_lines(ner: Any, graph_type: Callable[[str], str | None], ns: str,
                    model_name: str, iri: Callable[[str], str]) -> tuple[int, list[str]]:
    """The entities the graph had no type for, typed by their mentions' majority NER type:
    (how many, their N-Quads lines with the provenance of ``graph/ner-types``)."""
    from kgx.rdf.quads import ner_type_lines, ner_types_provenance
    from kgx.read.assertion import NER_CLASSES

    lines: list[str] = []
    n_typed = 0
    for title, (label, _mentions, _share) in sorted(ner.types.items()):
        if label in NER_CLASSES and graph_type(title) is None:
            lines += ner_type_lines(title, NER_CLASSES[label], ns, iri)
            n_typed += 1
    if n_typed:
        lines += ner_types_provenance(ns, model_name)
    return n_typed, lines


def _log_measures(report: dict[str, Any], calib: Any, log: Callable[[str], None]) -> None:
    """The held-out precision and what calibrated the confidence, as log lines."""
    ap = report.get("asserted_precision")
    if ap is not None:
        judged = (f"{ap['closed_world']} of the {ap['facts_judged']:,} their infobox can judge "
                  "(closed world)" if ap["facts_judged"] else
                  "none of them of a property their infobox states (closed world: no figure)")
        log(f"[read] held-out infobox facts: of the {ap['facts']:,} facts asserted about the "
            f"{report['held_out_subjects']:,} held-out subjects, right {judged}"
            + (f"; at least {ap['strict']} counting every fact the infobox does not state as "
               "wrong" if ap["facts"] else ""))
    main = calib.main
    log(f"[read] confidence calibrated on {main.source} facts ({main.examples:,})"
        + (f"; of {', '.join(sorted(calib.gold_props))}, whose bars gold dev set, on gold dev "
           f"relations ({calib.gold.examples:,})" if calib.split else "")
        if main.fitted else "[read] confidence: too few held-out facts or gold dev relations "
        "to calibrate on; a fact's confidence is its best sentence score")


FACT_SELECT = "h, p, t, page, rev, s0, s1, e0, e1, sentence, conf, title, h0, h1, t0, t1, " \
              "hl, tl, hs, ts"


def held_out_rule(out: Path, meta: dict[str, Any], entities: Any) -> Any:
    """The held-out subjects of the corpus the model was trained on, when that corpus is
    this output's (a model trained elsewhere leaves nothing to score: None)."""
    from kgx.corpus.labelling import held_out_subject
    from kgx.read.assertion import HeldOut

    held = (meta.get("corpus_stats") or {}).get("held_out") or {}
    graph = (meta.get("corpus_stats") or {}).get("graph")
    if not held.get("share") or not graph or Path(graph).resolve() != out.resolve():
        return None
    share, salt = float(held["share"]), str(held["salt"])

    def facts_of(title: str) -> list[tuple[str, str]]:
        info = entities.get(title)
        return list(info.facts) if info else []

    return HeldOut(lambda t: held_out_subject(t, share, salt), facts_of)


class Scored(NamedTuple):
    """A fact about a held-out subject, as the held-out figures need it."""

    subject: str
    prop: str
    features: list[float]
    types_known: tuple[str, str]
    right: bool | None  # what the subject's infobox says of it (None: nothing)


def _held_out_report(scored: list[Scored], min_precision: float, have_held_out: bool,
                     gold_outcomes: dict[str, Any], typed: Callable[[str], bool],
                     no_gold_bars: str | None = None) -> dict[str, Any]:
    """Held-out figures, cross-fitted: each fold of subjects is decided with the calibration
    and bars fitted on the other fold (and the gold dev relations, which no held-out fact
    made), so no fact is judged by a rule fitted on itself."""
    from kgx.read.assertion import decide_bars, fold_of, precision_at, reliability, why_not_asserted

    if not have_held_out:
        return {"held_out": False, "note": "the model was not trained on this output's "
                "corpus (--model): no held-out facts to measure its precision on"}
    conf: list[float] = []
    strict: list[bool] = []
    closed: list[bool | None] = []
    asserted: list[bool] = []
    props = {x.prop for x in scored}
    for k in (0, 1):
        calib, gates = decide_bars([(x.prop, x.features, bool(x.right)) for x in scored
                                    if x.right is not None and fold_of(x.subject) != k],
                                   props, gold_outcomes, min_precision, typed, no_gold_bars)
        for x in scored:
            if fold_of(x.subject) != k:
                continue
            c = calib(x.prop, x.features)
            conf.append(c)
            strict.append(bool(x.right))
            closed.append(x.right)
            best = 1.0 / (1.0 + math.exp(-x.features[0]))  # the fact's best sentence score
            asserted.append(why_not_asserted(gates.get(x.prop), min_precision, c, best,
                                             x.types_known) is None)
    judged_idx = [i for i, y in enumerate(closed) if y is not None]
    on = [i for i in range(len(conf)) if asserted[i]]
    on_judged = [i for i in on if closed[i] is not None]
    return {
        "held_out": True,
        "held_out_subjects": len({s for s, *_ in scored}),
        "held_out_facts": len(scored),
        "held_out_facts_judged": sum(x.right is not None for x in scored),
        "note": "precision of the reader's facts about held-out subjects: 'strict' counts "
                "every fact their infobox does not state as wrong (a lower bound); "
                "'closed_world' leaves out facts of a property the infobox does not state "
                "(cross-fitted over two folds of subjects)",
        "asserted_precision": {
            "facts": len(on), "facts_judged": len(on_judged),
            "strict": round(sum(strict[i] for i in on) / len(on), 3) if on else None,
            "closed_world": round(sum(bool(closed[i]) for i in on_judged) / len(on_judged), 3)
            if on_judged else None},
        "precision_at": {"strict": precision_at(conf, strict),
                         "closed_world": precision_at([conf[i] for i in judged_idx],
                                                      [bool(closed[i]) for i in judged_idx])},
        "reliability": reliability([conf[i] for i in judged_idx],
                                   [bool(closed[i]) for i in judged_idx])}
