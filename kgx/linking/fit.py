"""Fitting the linker's scorer: weights and NIL threshold learned from the dump's own wikilinks.

Takes an output directory with the entity tables and index (:mod:`kgx.linking`) and its
``documents.jsonl``; gives ``linker.json`` (:class:`kgx.linking.linker.LinkScorer`), which
:class:`kgx.linking.linker.Linker` then uses instead of its hand-set weights.

Every wikilink is a labelled example: its anchor text is the mention, its sentence the context,
its target the right answer. The links of the corpus's *dev* pages
(:func:`kgx.corpus.rows.split_of`) are used, so the test pages stay unseen. Each candidate the
linker would consider becomes a row of signals (prior, name, type, context) labelled right or
wrong, and a logistic regression (scikit-learn) learns the weights. Two things keep the examples
honest:

* **Leave the page out.** The alias table counts the page's own links; each link's prior is
computed with its page's links to that entity taken out, as for text the dump never linked. *
**NIL.** For a fifth of the links the right entity is removed from the candidates, as for a
mention of an entity the dump does not have. The NIL threshold is then the score that gets the
most links right, NIL included.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from kgx.linking.linker import LINKER_FILE, Linker, LinkScorer, priors
from kgx.linking.tables import alias_key
from kgx.outdir import ALIASES_FILE, DOCUMENTS_FILE

SIGNALS = ("prior", "name", "type", "context")
NIL_SHARE = 0.2
SCAN_FACTOR = 20  # links read per link kept, at most


def link_context(text: str, start: int, end: int) -> str:
    """The sentence around a link: from the line or sentence start before it to the next
    sentence end."""
    a = max(0, text.rfind("\n", 0, start) + 1, text.rfind(". ", 0, start) + 2)
    b = text.find(". ", end)
    return text[a:len(text) if b < 0 else b + 1]


def split_links(docs_path: Path, max_links: int, rng: random.Random, split: str = "dev"
                ) -> list[dict[str, Any]]:
    """At most ``max_links`` wikilinks of the pages of one corpus split, each with its anchor,
    target, context and its page's count of the same (anchor, target).

    A uniform sample of the split's first ``SCAN_FACTOR * max_links`` links: on a full dump
    the fit reads the start of ``documents.jsonl``, not all of it.
    """
    from kgx.corpus.documents import iter_documents
    from kgx.corpus.rows import split_of

    sample: list[dict[str, Any]] = []
    seen = 0
    for doc in iter_documents(docs_path):
        if seen >= SCAN_FACTOR * max_links:
            break
        if split_of(doc["page_id"]) != split:
            continue
        text = doc["text"]
        own = Counter((alias_key(text[s:e]), t) for s, e, t in doc["links"])
        for s, e, t in doc["links"]:
            seen += 1
            link = {"anchor": text[s:e], "target": t, "context": link_context(text, s, e),
                    "own": own[(alias_key(text[s:e]), t)]}
            if len(sample) < max_links:
                sample.append(link)
            else:
                j = rng.randrange(seen)
                if j < max_links:
                    sample[j] = link
    return sample


def fit_linker(out: Path, namespace: str, max_links: int = 1000, seed: int = 13,
               encoder: Any = None) -> dict[str, Any]:
    """Fit the scorer on the dev pages' wikilinks and write ``out/linker.json``.

    Returns:
        What was fitted: link and candidate counts, the weights, the NIL threshold and the
        accuracy on the fitting links (hand-set weights beside it). Nothing is written when
        there are too few links to fit (fewer than 50, or no right candidate).
    """
    from sklearn.linear_model import LogisticRegression

    from kgx.structure.aliases import AliasStore

    rng = random.Random(seed)
    links = split_links(out / DOCUMENTS_FILE, max_links, rng)
    linker = Linker(out, namespace, encoder=encoder, fitted=False)
    resolve = AliasStore(out / ALIASES_FILE).resolve
    contexts = linker.encoder.encode([ln["context"] for ln in links]) if links else []
    anchors = linker.encoder.encode([ln["anchor"] for ln in links]) if links else []
    rows: list[list[float]] = []
    labels: list[int] = []
    groups: list[tuple[int, int, bool]] = []  # (first row, rows, gold removed) per link
    for ln, ctx, q in zip(links, contexts, anchors, strict=True):
        gold = linker.aliases.entity_id(resolve(ln["target"]))
        counts = [(e, n - ln["own"] if e == gold else n)
                  for e, n in linker.aliases.counts(ln["anchor"], 20)]
        prior = dict(priors([(e, n) for e, n in counts if n > 0]))
        cands = set(prior)
        if not prior:
            cands |= {e for e, _ in linker.aliases.fuzzy(ln["anchor"], 10)}
        _, ids = linker.vectors.search(q[None], 10)
        cands |= {int(i) for i in ids[0] if i > 0}
        removed = gold is not None and rng.random() < NIL_SHARE
        if removed:
            cands.discard(gold)
        mention_type = linker.aliases.entity(gold)[1] if gold is not None else None
        first = len(rows)
        for eid in sorted(cands):
            sig = linker.signals(eid, ln["anchor"], mention_type, ctx, prior.get(eid, 0.0))
            rows.append([sig[s] for s in SIGNALS])
            labels.append(int(eid == gold))
        groups.append((first, len(rows) - first, removed or gold is None))
    if len(links) < 50 or not any(labels):
        return {"links": len(links), "fitted": False}
    x, y = np.asarray(rows), np.asarray(labels)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    best_t, best_acc = _nil_threshold(model.predict_proba(x)[:, 1], y, groups)
    hand = np.asarray([linker.score(dict(zip(SIGNALS, r, strict=True))) for r in rows])
    lookup_t, lookup_acc, lookup_default = _lookup_threshold(linker, links, anchors, resolve,
                                                             random.Random(seed))
    info = {"links": len(links), "candidates": len(rows), "nil_share": NIL_SHARE,
            "split": "dev", "accuracy": round(best_acc, 4),
            "hand_weights_accuracy": round(_accuracy(hand, y, groups, linker.nil_threshold), 4),
            "lookup_accuracy": round(lookup_acc, 4),
            "lookup_default_threshold_accuracy": round(lookup_default, 4)}
    scorer = LinkScorer(dict(zip(SIGNALS, map(float, model.coef_[0]), strict=True)),
                        float(model.intercept_[0]), best_t, info, lookup_t)
    scorer.save(out / LINKER_FILE)
    return {**info, "fitted": True, "weights": scorer.weights, "bias": scorer.bias,
            "nil_threshold": best_t, "lookup_nil_threshold": lookup_t}


def _lookup_threshold(linker: Linker, links: list[dict[str, Any]], anchors: Any, resolve: Any,
                      rng: random.Random) -> tuple[float, float, float]:
    """The NIL threshold of a lookup by name alone (``kg.lookup``, ``/lookup``,
    ``kgx:lookup``), fitted on the same held-out links as the linker's: each anchor looked up
    as a name, its page's own links left out of the prior, and for :data:`NIL_SHARE` of them
    the right entity removed, as for a name the wiki has no entity for.

    Returns:
        The threshold, the share of lookups it answers right (NIL included), and the share
        the default threshold (:attr:`Linker.LOOKUP_NIL_THRESHOLD`) answers right.
    """
    rows: list[float] = []
    labels: list[int] = []
    groups: list[tuple[int, int, bool]] = []
    for ln, q in zip(links, anchors, strict=True):
        gold = linker.aliases.entity_id(resolve(ln["target"]))
        counts = [(e, n - ln["own"] if e == gold else n)
                  for e, n in linker.aliases.counts(ln["anchor"], 20)]
        prior = dict(priors([(e, n) for e, n in counts if n > 0]))
        removed = gold is not None and rng.random() < NIL_SHARE
        scored = linker.lookup_scores(ln["anchor"], prior, q, exclude=gold if removed else None)
        first = len(rows)
        for eid, score, _ in scored:
            rows.append(score)
            labels.append(int(eid == gold))
        groups.append((first, len(rows) - first, removed or gold is None))
    scores, y = np.asarray(rows), np.asarray(labels)
    if not len(scores):
        return Linker.LOOKUP_NIL_THRESHOLD, 0.0, 0.0
    t, acc = _nil_threshold(scores, y, groups)
    return t, acc, _accuracy(scores, y, groups, Linker.LOOKUP_NIL_THRESHOLD)


def _accuracy(scores: np.ndarray, y: np.ndarray, groups: list[tuple[int, int, bool]],
              threshold: float) -> float:
    """Share of links answered right: the top candidate when it reaches ``threshold`` and is
    the right one, or NIL when the right entity is not among the candidates."""
    right = 0
    for first, n, nil in groups:
        top = first + int(np.argmax(scores[first:first + n])) if n else -1
        answer_nil = n == 0 or scores[top] < threshold
        right += (nil and answer_nil) or (not nil and not answer_nil and bool(y[top]))
    return right / max(1, len(groups))


def _nil_threshold(scores: np.ndarray, y: np.ndarray, groups: list[tuple[int, int, bool]]
                   ) -> tuple[float, float]:
    """The threshold (among the top candidates' scores) that gets the most links right."""
    tops = sorted({float(scores[f:f + n].max()) for f, n, _ in groups if n})
    best = (0.5, _accuracy(scores, y, groups, 0.5))
    for t in tops[:: max(1, len(tops) // 200)]:
        acc = _accuracy(scores, y, groups, t)
        if acc > best[1]:
            best = (t, acc)
    return best
