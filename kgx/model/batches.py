"""Training rows into the model's batches: each row tokenised, its labels aligned to
sub-tokens, cut into windows and its mentions grouped into entities (:class:`Feature`); rows of
similar length batched together; a batch collated into tensors.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from kgx.corpus.rows import NA, mention_entities
from kgx.model.decoding import word_tag_sequence
from kgx.model.tokens import (
    Window,
    bio_labels,
    first_window,
    pad_batch,
    token_span,
    tokenize,
    windows_for,
)


@dataclass(slots=True)
class Feature:
    """One training row: its windows, its mentions grouped into entities, its entity pairs."""

    windows: list[Window]
    spans: list[tuple[int, int, int]]  # (window of this row, first token, end token)
    span_entity: list[int]  # the entity (index within the row) of each span
    pairs: list[tuple[int, int]]  # (head entity, tail entity)
    targets: list[list[int]]  # relation label ids of each pair (empty: NA)
    word_tags: list[int]  # the row's tag of each word (-100: unknown), for the transitions


def featurize(rows: list[dict], tokenizer: Any, ner_labels: list[str], rel_labels: list[str],
              max_length: int) -> list[Feature]:
    """Tokenize, align labels to sub-tokens, cut into windows, group mentions into entities.

    A row's relations (between mention indices) become pairs of entities: the mentions of one
    entity are pooled by the model wherever they are in the row, so a document row teaches
    relations across sentences and windows.
    """
    label2id = {lab: i for i, lab in enumerate(ner_labels)}
    rel2id = {lab: i for i, lab in enumerate(rel_labels)}
    feats = []
    toks = tokenize(tokenizer, [r["text"] for r in rows])
    for r, tk in zip(rows, toks, strict=True):
        labels = bio_labels(tk, r["mentions"], r.get("ignore", []), label2id)
        bounds = windows_for(len(tk.ids), max_length - 2, 32)
        windows = [Window(0, a, tk.ids[a:b], labels[a:b], tk.shapes[a:b]) for a, b in bounds]
        keys = mention_entities(r)
        entity_of: dict[Any, int] = {}
        spans, span_entity = [], []
        for m, key in zip(r["mentions"], keys, strict=True):
            sp = token_span(tk, m["start"], m["end"])
            wi = None if sp is None else first_window(windows, sp)
            if sp is not None and wi is not None:
                a = windows[wi].tok_start
                spans.append((wi, sp[0] - a, sp[1] - a))
                span_entity.append(entity_of.setdefault(key, len(entity_of)))
        by_pair: dict[tuple[int, int], set[int]] = {}
        for x in r.get("relations", []):
            h, t = keys[x["head"]], keys[x["tail"]]
            if h in entity_of and t in entity_of and h != t and x["label"] in rel2id:
                got = by_pair.setdefault((entity_of[h], entity_of[t]), set())
                if x["label"] != NA:
                    got.add(rel2id[x["label"]])
        feats.append(Feature(windows, spans, span_entity, list(by_pair),
                              [sorted(v) for v in by_pair.values()],
                              word_tag_sequence(labels, tk.word_ids)))
    return feats


def collate(feats: list[Feature], tokenizer: Any, device: torch.device, n_labels: int
            ) -> dict[str, torch.Tensor]:
    windows = [w for f in feats for w in f.windows]
    batch = pad_batch(windows, tokenizer.cls_token_id, tokenizer.sep_token_id,
                      tokenizer.pad_token_id, device)
    spans: list[list[int]] = []
    span_entity: list[int] = []
    pairs: list[list[int]] = []
    targets: list[Any] = []
    row = n_entities = 0
    for f in feats:
        # +1: position 0 of each window is [CLS]
        spans.extend([row + w, a + 1, b + 1] for w, a, b in f.spans)
        span_entity.extend(n_entities + e for e in f.span_entity)
        for (h, t), labs in zip(f.pairs, f.targets, strict=True):
            pairs.append([n_entities + h, n_entities + t])
            hot = [0.0] * n_labels
            for j in labs:
                hot[j] = 1.0
            targets.append(hot)
        row += len(f.windows)
        n_entities += max(f.span_entity, default=-1) + 1
    if pairs:
        batch["spans"] = torch.tensor(spans, device=device)
        batch["span_entity"] = torch.tensor(span_entity, device=device)
        batch["pairs"] = torch.tensor(pairs, device=device)
        batch["pair_targets"] = torch.tensor(targets, device=device)
    return batch


def batches_by_length(feats: list[Feature], size: int, rng: random.Random,
                      tokens: int | None = None) -> list[list[int]]:
    """Batches of rows of similar length (less padding), in shuffled order: at most ``size``
    windows (a sentence is one, a document several) and ``tokens`` tokens each, so that a batch
    of short sentences and one of documents take about the same step."""
    lengths = [sum(len(w.input_ids) for w in f.windows) for f in feats]
    order = sorted(range(len(feats)), key=lambda i: (lengths[i], rng.random()))
    groups: list[list[int]] = []
    cur: list[int] = []
    n = t = 0
    for i in order:
        k = len(feats[i].windows)
        if cur and (n + k > size or (tokens is not None and t + lengths[i] > tokens)):
            groups.append(cur)
            cur, n, t = [], 0, 0
        cur.append(i)
        n += k
        t += lengths[i]
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    return groups
