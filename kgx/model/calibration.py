"""After training: the relation scores' temperature and the tag decoding, each chosen on dev."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy
import torch

from kgx.corpus.rows import (
    NA,
)
from kgx.model.decoding import tag_counts, tag_transitions
from kgx.model.predictor import Predictor

TEMPERATURES = tuple(round(2 ** (k / 4), 4) for k in range(-8, 13))  # 0.25 to 8


def fit_relation_temperature(reader: Predictor, dev_sets: dict[str, list[dict]],
                             log: Callable[[str], None]) -> dict[str, Any]:
    """The temperature T of the relation scores, ``sigmoid((logit - threshold logit) / T)``,
    that minimises their log loss on the dev sets' relation examples (temperature scaling,
    Guo et al. 2017). Dividing by T moves no score across 0.5, so the model's decisions at
    its threshold stay as trained; only what a score of 0.8 means changes.

    Returns:
        ``relation_temperature`` and ``relation_calibration`` (the pair-and-property scores
        it was fitted on, ``examples``, and the positive ones; the log loss and
        the expected calibration error of the scores at or above 0.5, those a fact can carry,
        before and after) for ``kgx.json``; nothing when the dev sets hold no relation
        example of both kinds or the model has no adaptive threshold.
    """
    from kgx.model.evaluate import reliability, row_pairs

    if not reader.model.adaptive_threshold or len(reader.relation_labels) < 2:
        return {}
    index = {lab: i for i, lab in enumerate(reader.relation_labels)}
    margins, targets = [], []
    for rows in dev_sets.values():
        for r in rows:
            if not r.get("relations"):
                continue
            span_entity, gold = row_pairs(r)
            pairs = sorted(gold)
            todo, logits = reader.pair_logits_of(
                r["text"], [(m["start"], m["end"]) for m in r["mentions"]], pairs, span_entity)
            if not todo:
                continue
            y = torch.zeros((len(todo), len(index) - 1))
            for row, k in enumerate(todo):
                for lab in gold[pairs[k]]:
                    if lab in index and lab != NA:
                        y[row, index[lab] - 1] = 1.0
            margins.append(logits[:, 1:] - logits[:, :1])
            targets.append(y)
    if not margins:
        return {}
    m, y = torch.cat(margins).flatten(), torch.cat(targets).flatten()
    if not 0 < float(y.sum()) < len(y):
        return {}

    def loss(t: float) -> float:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(m / t, y))

    def ece(t: float) -> float:
        scores = torch.sigmoid(m / t)
        keep = scores >= 0.5  # the scores a fact can carry
        table = reliability(scores[keep].tolist(), (y[keep] > 0).tolist(), bins=5)
        n = sum(b["predictions"] for b in table)
        return sum(b["predictions"] * abs(b["precision"] - b["mean_score"])
                   for b in table if b["predictions"]) / n if n else 0.0

    best = min(TEMPERATURES, key=loss)
    out = {"examples": len(y), "positives": int(y.sum()), "log_loss_before": round(loss(1.0), 4),
           "log_loss_after": round(loss(best), 4), "ece_before": round(ece(1.0), 4),
           "ece_after": round(ece(best), 4)}
    log(f"relation scores: temperature {best} fitted on {out['examples']:,} dev scores (pairs x "
        f"properties, {out['positives']:,} positive); log loss {out['log_loss_before']} -> "
        f"{out['log_loss_after']}, calibration error {out['ece_before']} -> {out['ece_after']}")
    return {"relation_temperature": best, "relation_calibration": out}


PRIOR_WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the tag decodings tried on dev (see choose_decoder)


def choose_decoder(reader: Predictor, tag_sequences: list[tuple[list[int], float]],
                   dev_sets: dict[str, list[dict]], log: Callable[[str], None]
                   ) -> dict[str, Any]:
    """The tag decoding that gives the best mean entity F1 on the dev sets: word by word, or
    Viterbi over tag transitions counted on the training rows (see
    :func:`kgx.model.decoding.tag_transitions`), with each weight of :data:`PRIOR_WEIGHTS` on the
    tags' prior. One encoder pass serves every candidate.

    Returns:
        What goes into the model's ``kgx.json`` (``tag_transitions`` when Viterbi won, the
        choice, every candidate's dev F1) and, under ``dev_entities``, the chosen decoding's
        entity scores on each dev set.
    """
    from kgx.model.evaluate import entity_scores

    labels = reader.model.ner_labels
    counted = tag_counts(tag_sequences, len(labels))  # once, for every weight
    candidates: dict[str, Any] = {"argmax": None}
    for w in PRIOR_WEIGHTS:
        candidates[f"viterbi, prior weight {w}"] = tag_transitions(counted, labels,
                                                                   prior_weight=w)
    encoded = {n: reader.encode_texts([r["text"] for r in rows], keep_hidden=False)
               for n, rows in dev_sets.items() if rows}
    scores: dict[str, dict[str, Any]] = {}
    for name, trans in candidates.items():
        reader.transitions = None if trans is None else numpy.array(trans)
        scores[name] = {n: entity_scores(dev_sets[n], reader.decode_mentions(
            [r["text"] for r in dev_sets[n]], enc)) for n, enc in encoded.items()}
    reader.transitions = None

    def mean_f1(name: str) -> float:
        f1s = [v["micro"]["f1"] for v in scores[name].values()]
        return sum(f1s) / len(f1s) if f1s else 0.0

    best = max(candidates, key=mean_f1)  # the first of equals: word by word
    log("tag decoding on dev (entity F1): " + ", ".join(
        f"{n} {mean_f1(n):.4f}" for n in candidates) + f"; keeping {best}")
    out: dict[str, Any] = {"tag_decoder": best,
                           "tag_decoder_dev_f1": {n: mean_f1(n) for n in candidates},
                           "dev_entities": scores[best]}
    if candidates[best] is not None:  # strict JSON: a forbidden transition is null
        out["tag_transitions"] = [[None if math.isinf(v) else v for v in row]
                                  for row in candidates[best]]
    return out
