"""From the model's outputs to mentions and relations: tag transitions, Viterbi decoding, spans
from BIO tags.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy


@dataclass(frozen=True, slots=True)
class PredictedMention:
    """A predicted entity mention in character offsets of its text."""

    start: int
    end: int
    label: str
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class PredictedRelation:
    """A predicted relation between two predicted mentions (indices into ``mentions``)."""

    head: int
    tail: int
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """Mentions and relations of one text."""

    mentions: tuple[PredictedMention, ...]
    relations: tuple[PredictedRelation, ...]


def bio_allowed(prev: str | None, tag: str) -> bool:
    """Whether BIO allows ``tag`` after ``prev`` (None: the first word): an I- tag only
    continues a mention of its own type."""
    if not tag.startswith("I-"):
        return True
    return prev is not None and prev != "O" and prev[2:] == tag[2:]


def word_tag_sequence(labels: Sequence[int], word_ids: Sequence[int | None]) -> list[int]:
    """The tag of each word (its first piece's label, -100 where it is unknown) from
    :func:`bio_labels`'s per-token labels."""
    out = []
    prev = None
    for lab, w in zip(labels, word_ids, strict=True):
        if w is not None and w != prev:
            out.append(lab)
        prev = w
    return out


def tag_counts(sequences: Iterable[tuple[Sequence[int], float]], n_labels: int
               ) -> tuple[list[list[float]], list[float]]:
    """How often each tag follows each other in training tag sequences (each with a weight),
    and how often each tag occurs: the input of :func:`tag_transitions`. Row 0 of the first
    table is the first word of a text, row ``1 + i`` follows tag ``i``. A sequence's -100 (a
    word of unknown label) breaks it: no transition into or out of it is counted."""
    counts = [[0.0] * n_labels for _ in range(n_labels + 1)]
    prior = [0.0] * n_labels
    for seq, weight in sequences:
        prev: int | None = 0  # row of "start of text"
        for t in seq:
            if t < 0:
                prev = None
                continue
            prior[t] += weight
            if prev is not None:
                counts[prev][t] += weight
            prev = 1 + t
    return counts, prior


def tag_transitions(counted: tuple[list[list[float]], list[float]], labels: Sequence[str],
                    smoothing: float = 1.0, prior_weight: float = 1.0) -> list[list[float]]:
    """Transition scores between the tags of consecutive words, from :func:`tag_counts`:
    ``log P(tag | previous tag) - prior_weight * log P(tag)``, add-``smoothing``. Row 0 is
    the first word of a text, row ``1 + i`` follows tag ``i``; transitions that BIO forbids
    are ``-inf``.

    The tagger's outputs are posteriors that already hold each tag's prior, so the prior is
    divided out (the hybrid HMM's scaled likelihood): what is left says only how much more or
    less likely a tag is after the previous one. In silver data most mentions are one word
    long (a surname, a repeated name), so a tagger alone tends to tag each word of "Salt Lake
    City" as a new mention; the counts say how rarely two mentions of one type follow each
    other with nothing between them.
    """
    counts, prior = counted
    smoothed = [c + smoothing for c in prior]
    log_prior = [math.log(c / sum(smoothed)) for c in smoothed]
    out = []
    for row_i, row in enumerate(counts):
        before = None if row_i == 0 else labels[row_i - 1]
        allowed = [bio_allowed(before, lab) for lab in labels]
        total = sum(c + smoothing for c, ok in zip(row, allowed, strict=True) if ok)
        out.append([math.log((c + smoothing) / total) - prior_weight * lp if ok else -math.inf
                    for c, ok, lp in zip(row, allowed, log_prior, strict=True)])
    return out


def viterbi(emissions: Any, transitions: Any) -> list[int]:
    """The best tag sequence for per-word log-probabilities ``emissions`` (words x tags)
    under ``transitions`` (see :func:`tag_transitions`); arrays or CPU tensors."""
    return viterbi_batch([emissions], transitions)[0]


def viterbi_batch(emissions: Sequence[Any], transitions: Any) -> list[list[int]]:
    """:func:`viterbi` of several sentences at once, each ``emissions`` (words x tags, at
    least one word), in NumPy: a step a word over all the sentences, so that the Python
    cost is the longest sentence's words, not every sentence's. The sentences are taken
    longest first, so a step computes only those that still have words (the work is their
    words, not the longest's times their count). Each path is what it would be alone (the
    same float64 steps, ties to the lowest tag)."""
    tr = numpy.asarray(transitions, dtype=numpy.float64)
    step = tr[1:]  # previous tag x tag
    if not len(emissions):
        return []
    order = sorted(range(len(emissions)), key=lambda k: -len(emissions[k]))
    lengths = numpy.array([len(emissions[k]) for k in order], dtype=numpy.int64)
    em = numpy.zeros((len(lengths), int(lengths[0]), tr.shape[1]))
    for row, k in enumerate(order):
        em[row, : lengths[row]] = numpy.asarray(emissions[k], dtype=numpy.float64)
    # live[i]: the sentences (a prefix, longest first) with a word i
    live = numpy.searchsorted(-lengths, -numpy.arange(em.shape[1]), side="left")
    score = em[:, 0] + tr[0]
    back = numpy.zeros((len(lengths), max(0, em.shape[1] - 1), tr.shape[1]), dtype=numpy.int64)
    for i in range(1, em.shape[1]):
        n = live[i]
        total = score[:n, :, None] + step  # sentence x previous tag x tag
        back[:n, i - 1] = total.argmax(1)
        score[:n] = total.max(1) + em[:n, i]
    # Back from each sentence's best last tag, all sentences a step at a time: a sentence
    # joins once the step reaches its last word.
    path = numpy.zeros((len(lengths), em.shape[1]), dtype=numpy.int64)
    cur = score.argmax(1)
    path[numpy.arange(len(lengths)), lengths - 1] = cur
    for i in range(em.shape[1] - 1, 0, -1):
        n = live[i]
        cur[:n] = back[numpy.arange(n), i - 1, cur[:n]]
        path[:n, i - 1] = cur[:n]
    out: list[list[int]] = [[] for _ in emissions]
    for row, k in enumerate(order):
        out[k] = path[row, : lengths[row]].tolist()
    return out


def spans_from_bio(text: str, words: Iterable[tuple[int, int, str, float]]
                   ) -> list[PredictedMention]:
    """Merge word tags (start, end, BIO tag, score) into mentions; a stray I- starts one."""
    out: list[PredictedMention] = []
    cur: list[Any] | None = None
    for s, e, tag, sc in words:
        if tag == "O" or "-" not in tag:
            if cur:
                out.append(_mention(text, cur))
            cur = None
            continue
        kind, label = tag.split("-", 1)
        if kind == "B" or cur is None or cur[2] != label:
            if cur:
                out.append(_mention(text, cur))
            cur = [s, e, label, [sc]]
        else:
            cur[1] = e
            cur[3].append(sc)
    if cur:
        out.append(_mention(text, cur))
    return out


def _mention(text: str, cur: list[Any]) -> PredictedMention:
    s, e, label, scores = cur
    return PredictedMention(s, e, label, round(math.fsum(scores) / len(scores), 4), text[s:e])
