"""``kgx evaluate``: entity and relation scores of a model on a corpus split, CoNLL or DocRED.

Entities are scored at the entity level with seqeval (precision / recall / F1 per type, micro
and macro) over word tags, with one word segmentation for gold and prediction. Relations are
scored given the gold mentions (relation classification), per label, micro and macro, NA
excluded. On DocRED / Re-DocRED, every ordered pair of a document's entities is classified on
the whole document, each entity pooling its mentions, and only the Wikidata properties
the model has a label for (through the ontology's alignment, or as the bare id a gold set
taught) are scored; the rest are reported as not covered.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from kgx.corpus.datasets import DataError, read_conll, read_docred, sniff_format
from kgx.corpus.rows import NA, iter_split, mention_entities, words


def word_tags(text: str, mentions: Sequence[Any], ignore: Sequence[Sequence[int]] = ()
              ) -> list[str]:
    """BIO tag per word of ``text`` for mentions given as dicts or objects with offsets."""
    tags = []
    for s, _e in words(text):
        tag = "O"
        for m in mentions:
            ms, me, lab = _get(m, "start"), _get(m, "end"), _get(m, "label")
            if lab and ms <= s < me:
                tag = ("B-" if s <= ms else "I-") + lab
                break
        tags.append(tag)
    return tags


def _get(m: Any, k: str) -> Any:
    return m[k] if isinstance(m, dict) else getattr(m, k)


def score_ner(gold: list[list[str]], pred: list[list[str]]) -> dict[str, Any]:
    """seqeval entity-level scores: per type, micro and macro."""
    from seqeval.metrics import classification_report

    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    out: dict[str, Any] = {"per_type": {}}
    for k, v in rep.items():
        row = {"precision": round(float(v["precision"]), 4), "recall": round(float(v["recall"]), 4),
               "f1": round(float(v["f1-score"]), 4), "support": int(v["support"])}
        if k == "micro avg":
            out["micro"] = row
        elif k == "macro avg":
            out["macro"] = row
        elif k != "weighted avg":
            out["per_type"][k] = row
    out.setdefault("micro", {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0})
    out.setdefault("macro", {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0})
    return out


def score_relations(gold: Sequence[tuple[Any, str]], pred: Sequence[tuple[Any, str]]
                    ) -> dict[str, Any]:
    """P/R/F1 per label over (key, label) items; NA is never a hit."""
    g = {(k, lab) for k, lab in gold if lab != NA}
    p = {(k, lab) for k, lab in pred if lab != NA}
    labels = sorted({lab for _, lab in g} | {lab for _, lab in p})
    per: dict[str, dict[str, float]] = {}
    for lab in labels:
        gl = {x for x in g if x[1] == lab}
        pl = {x for x in p if x[1] == lab}
        per[lab] = _prf(len(gl & pl), len(pl), len(gl))
    micro = _prf(len(g & p), len(p), len(g))
    f1s = [v["f1"] for v in per.values() if v["support"]]
    macro = {"f1": round(sum(f1s) / len(f1s), 4) if f1s else 0.0}
    return {"per_label": per, "micro": micro, "macro": macro}


def reliability(scores: Sequence[float], correct: Sequence[bool], bins: int = 5
                ) -> list[dict[str, Any]]:
    """A reliability table: predictions binned by score, with the share of each bin that is
    right. A calibrated model's facts at 0.8 are right about 80% of the time."""
    lo = min(scores, default=0.5)
    start = math.floor(min(lo, 0.5) * 10) / 10
    width = (1.0 - start) / bins
    out = []
    for b in range(bins):
        a, z = start + b * width, start + (b + 1) * width
        inside = [(s, c) for s, c in zip(scores, correct, strict=True)
                  if a <= s < z or (b == bins - 1 and s >= z)]
        n = len(inside)
        out.append({"from": round(a, 2), "to": round(z, 2), "predictions": n,
                    "precision": round(sum(c for _, c in inside) / n, 4) if n else None,
                    "mean_score": round(sum(s for s, _ in inside) / n, 4) if n else None})
    return out


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4),
            "support": n_gold}


def entity_scores(rows: Sequence[dict[str, Any]], predicted: Sequence[Sequence[Any]]
                  ) -> dict[str, Any]:
    """seqeval scores of predicted mentions against corpus-format rows; a prediction inside
    a row's ``ignore`` span (an entity of unknown type) is neither right nor wrong."""
    gold_tags, pred_tags = [], []
    for r, ms in zip(rows, predicted, strict=True):
        ignore = r.get("ignore", [])
        kept = [m for m in ms if not any(a < _get(m, "end") and _get(m, "start") < b
                                         for a, b in ignore)]
        gold_tags.append(word_tags(r["text"], r["mentions"]))
        pred_tags.append(word_tags(r["text"], kept))
    return score_ner(gold_tags, pred_tags)


def row_pairs(row: dict[str, Any]) -> tuple[list[int], dict[tuple[int, int], list[str]]]:
    """A corpus-format row's entity of each mention (one entity's mentions are scored as one,
    as trained) and its relation examples by entity pair: every label, NA included."""
    keys = mention_entities(row)
    entity = {k: e for e, k in enumerate(dict.fromkeys(keys))}
    gold: dict[tuple[int, int], list[str]] = {}
    for x in row["relations"]:
        pair = (entity[keys[x["head"]]], entity[keys[x["tail"]]])
        if pair[0] != pair[1]:
            gold.setdefault(pair, []).append(x["label"])
    return [entity[k] for k in keys], gold


def evaluate_rows(predictor: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores on corpus-format rows (kgx corpus or CoNLL)."""
    texts = [r["text"] for r in rows]
    preds = predictor.predict(texts, relations=False)
    result: dict[str, Any] = {"sentences": len(rows),
                              "entities": entity_scores(rows, [p.mentions for p in preds])}
    rel_rows = [r for r in rows if r.get("relations")]
    if rel_rows and len(predictor.relation_labels) > 1:
        gold_items: list[Any] = []
        pred_items: list[Any] = []
        for ri, r in enumerate(rel_rows):
            span_entity, gold = row_pairs(r)
            spans = [(m["start"], m["end"]) for m in r["mentions"]]
            pairs = sorted(gold)
            scored = predictor.classify_pairs(r["text"], spans, pairs, span_entity)
            gold_items.extend(((ri, *pair), lab) for pair, labs in gold.items() for lab in labs)
            for pair, found in zip(pairs, scored, strict=True):
                pred_items.extend(((ri, *pair), lab) for lab, _sc in found)
        result["relations"] = score_relations(gold_items, pred_items)
        result["relations"]["note"] = "given gold mentions"
    return result


def relation_outcomes(predictor: Any, rows: list[dict[str, Any]], cap: int = 1000
                      ) -> dict[str, list[tuple[float, bool]]]:
    """Each relation the predictor reads between the gold mentions of ``rows`` (those with
    relation examples), by label: (score, whether the row states it), most confident first,
    at most ``cap`` a label. The yardstick of a property whose own facts a dump cannot judge."""
    out: dict[str, list[tuple[float, bool]]] = {}
    for r in rows:
        if not r.get("relations"):
            continue
        span_entity, gold = row_pairs(r)
        pairs = sorted(gold)
        spans = [(m["start"], m["end"]) for m in r["mentions"]]
        for pair, found in zip(pairs, predictor.classify_pairs(r["text"], spans, pairs,
                                                                 span_entity), strict=True):
            for lab, score in found:
                out.setdefault(lab, []).append((round(float(score), 4), lab in gold[pair]))
    return {lab: sorted(v, key=lambda x: -x[0])[:cap] for lab, v in sorted(out.items())}


def evaluate_docred(predictor: Any, rows: list[dict[str, Any]],
                    wikidata_of: dict[str, str]) -> dict[str, Any]:
    """Entity scores per sentence, and relation scores on DocRED documents, on the Wikidata ids
    the model covers: every ordered pair of a document's gold entities is classified on the
    whole document, each entity pooling all its mentions (given gold mentions, as DocRED
    systems are scored)."""
    covered = {wikidata_of[lab] for lab in predictor.relation_labels if lab in wikidata_of}
    gold_all: Counter[str] = Counter()
    gold_items: list[Any] = []
    pred_items: list[Any] = []
    intra_gold: set[Any] = set()
    pred_scores: list[float] = []
    gold_tags, pred_tags = [], []
    for di, doc in enumerate(rows):
        for h, t, r in doc["labels"]:
            gold_all[r] += 1
            if r in covered:
                gold_items.append(((di, h, t), r))
        for si, (s0, s1) in enumerate(doc["sent_spans"]):
            text = doc["text"][s0:s1]
            ms = [m for m in doc["mentions"] if m["sent"] == si]
            local = [{"start": m["start"] - s0, "end": m["end"] - s0, "label": m["label"]}
                     for m in ms]
            gold_tags.append(word_tags(text, local))
            intra_gold.update((di, a["entity"], b["entity"]) for a in ms for b in ms)
        entities = sorted({m["entity"] for m in doc["mentions"]})
        pairs = [(h, t) for h in entities for t in entities if h != t]
        if pairs and covered:
            scored = predictor.classify_pairs(
                doc["text"], [(m["start"], m["end"]) for m in doc["mentions"]], pairs,
                [m["entity"] for m in doc["mentions"]])
            for (h, t), found in zip(pairs, scored, strict=True):
                for lab, sc in found:
                    if lab in wikidata_of:
                        pred_items.append(((di, h, t), wikidata_of[lab]))
                        pred_scores.append(sc)
        texts = [doc["text"][a:b] for a, b in doc["sent_spans"]]
        for text, p in zip(texts, predictor.predict(texts, relations=False), strict=True):
            pred_tags.append(word_tags(text, p.mentions))
    rel = score_relations(gold_items, pred_items)
    intra = [x for x in gold_items if x[0] in intra_gold]
    rel["recall_on_same_sentence_pairs"] = score_relations(intra, pred_items)["micro"]["recall"]
    gold_set = set(gold_items)
    rel["reliability"] = reliability(pred_scores, [x in gold_set for x in pred_items])
    return {
        "documents": len(rows),
        "relations": rel,
        "covered_properties": sorted(covered),
        "gold_relations": sum(gold_all.values()),
        "gold_relations_covered": sum(v for k, v in gold_all.items() if k in covered),
        "not_covered": dict(sorted(((k, v) for k, v in gold_all.items() if k not in covered),
                                   key=lambda kv: -kv[1])),
        "entities": score_ner(gold_tags, pred_tags),
    }


def evaluate(model_dir: str | Path, data: str | Path, fmt: str | None = None,
             limit: int | None = None, device: str | None = None) -> dict[str, Any]:
    """Score a saved model on ``data``.

    Args:
        model_dir: A model directory written by ``kgx train``.
        data: A corpus split (``.jsonl``), a CoNLL file, or a DocRED JSON file.
        fmt: ``corpus``, ``conll`` or ``docred``; sniffed from the file when omitted.
        limit: Use only the first N sentences / documents.

    Raises:
        DataError: Unreadable data, or entity types the model does not know.
    """
    from kgx.model.predictor import Predictor
    from kgx.ontology import is_wikidata_property, load_ontology

    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    fmt = fmt or sniff_format(path)
    predictor = Predictor.load(model_dir, device=device)
    known = {lab.split("-", 1)[1] for lab in predictor.model.ner_labels if "-" in lab}
    if fmt == "docred":
        rows = read_docred(path)[:limit]
        onto = load_ontology()
        wd = {local: p.wikidata for local, p in onto.properties.items() if p.wikidata}
        wd.update((lab, lab) for lab in predictor.relation_labels if is_wikidata_property(lab))
        out = evaluate_docred(predictor, rows, wd)
    else:
        if fmt == "conll":
            rows = read_conll(path)
        elif fmt == "corpus":
            try:
                rows = list(islice(iter_split(path), limit))
            except ValueError as exc:
                raise DataError(str(exc)) from exc
        else:
            raise DataError(f"unknown format {fmt!r}; known: corpus, conll, docred")
        rows = rows[:limit]
        if not rows:
            raise DataError(f"{path}: no sentences to evaluate")
        gold_types = {m["label"] for r in rows for m in r["mentions"]}
        unknown = sorted(gold_types - known)
        out = evaluate_rows(predictor, rows)
        if unknown:
            out["unknown_gold_types"] = unknown
            out["note"] = (f"gold types {unknown} are not in the model's label set "
                           f"{sorted(known)}: they count as misses")
    out["format"] = fmt
    out["data"] = str(path)
    out["model"] = str(model_dir)
    return out


def headline_scores(scores: dict) -> dict:
    """Entity and relation micro F1 of a score report (what `kgx train` prints)."""
    out = {}
    if "entities" in scores:
        out["entity_f1"] = scores["entities"]["micro"]["f1"]
    if "relations" in scores:
        out["relation_f1"] = scores["relations"]["micro"]["f1"]
    return out


def format_scores(res: dict) -> str:
    """A plain-text score report."""
    lines = [f"{res['format']} {res['data']}"]
    ent = res.get("entities")
    if ent:
        lines.append(f"{'entities':12} {'P':>7} {'R':>7} {'F1':>7} {'support':>8}")
        for k, v in list(ent["per_type"].items()) + [("micro", ent["micro"]),
                                                       ("macro", ent["macro"])]:
            lines.append(f"{k:12} {v['precision']:7.3f} {v['recall']:7.3f} {v['f1']:7.3f} "
                         f"{v.get('support', 0):8}")
    rel = res.get("relations")
    if rel:
        lines.append(f"{'relations':24} {'P':>7} {'R':>7} {'F1':>7} {'support':>8}")
        for k, v in rel["per_label"].items():
            lines.append(f"{k:24} {v['precision']:7.3f} {v['recall']:7.3f} {v['f1']:7.3f} "
                         f"{v['support']:8}")
        m = rel["micro"]
        lines.append(f"{'micro':24} {m['precision']:7.3f} {m['recall']:7.3f} {m['f1']:7.3f}")
        lines.append(f"{'macro':24} {'':7} {'':7} {rel['macro']['f1']:7.3f}")
    if "not_covered" in res:
        lines.append(f"relations not covered by kgx's ontology: {len(res['not_covered'])} "
                     f"properties, {sum(res['not_covered'].values())} gold labels")
    return "\n".join(lines)
