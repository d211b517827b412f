"""Words, shapes and encoder windows of a text: tokenisation with offsets, windows over long
texts, BIO labels and padded batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy
import torch


@dataclass(slots=True)
class Window:
    """A slice of one text's tokens, as fed to the encoder."""

    text_index: int
    tok_start: int  # first token of the text in this window
    input_ids: list[int]
    labels: list[int] | None = None
    shapes: list[int] | None = None  # word shape per token (see word_shapes)


@dataclass(slots=True)
class Tokenized:
    """A text's tokens (no special tokens) with character offsets and word ids, and its
    words: (first character, end character, first token) each, from :func:`word_bounds`.
    The words are cut where the text is tokenised, so the read stage's model process does
    not redo it."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    shapes: list[int] = field(default_factory=list)
    words: list[tuple[int, int, int]] = field(default_factory=list)


# Word shapes, the casing feature: 0 is for special and padding tokens.
SHAPES = ("special", "lower", "Capitalised", "UPPER", "X", "digit", "punct", "mIxed",
          "caseless")


@lru_cache(maxsize=1 << 16)  # words recur: a dictionary lookup instead of five scans
def shape_of(word: str) -> int:
    """Index in :data:`SHAPES` of a word's shape (``Paris`` -> Capitalised)."""
    if any(c.isdigit() for c in word):
        return 5
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 6
    if not any(c.isupper() or c.islower() for c in letters):
        return 8  # a script without case (Chinese, Arabic, ...)
    if not any(c.isupper() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 4 if len(letters) == 1 else 3
    return 2 if letters[0].isupper() and word[0] == letters[0] and \
        not any(c.isupper() for c in letters[1:]) else 7


def word_shapes(text: str, offsets: Sequence[tuple[int, int]],
                word_ids: Sequence[int | None]) -> list[int]:
    """The shape of each token's whole word (a word's pieces share it)."""
    span: dict[int, list[int]] = {}
    for (s, e), w in zip(offsets, word_ids, strict=True):
        if w is not None:
            sp = span.get(w)
            if sp is None:
                span[w] = [s, e]
            else:
                if s < sp[0]:
                    sp[0] = s
                if e > sp[1]:
                    sp[1] = e
    shape = {w: shape_of(text[a:b]) for w, (a, b) in span.items()}
    return [0 if w is None else shape[w] for w in word_ids]


def word_bounds(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None]
                ) -> list[tuple[int, int, int]]:
    """(first character, end character, first token) of each word: a word's pieces are
    consecutive tokens with its word id."""
    out: list[tuple[int, int, int]] = []
    prev = None
    for i, w in enumerate(word_ids):
        if w is None:
            continue
        if w == prev and out:
            out[-1] = (out[-1][0], offsets[i][1], out[-1][2])
        else:
            out.append((offsets[i][0], offsets[i][1], i))
        prev = w
    return out


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[Tokenized]:
    """Each text's tokens, with no special tokens and never truncated."""
    backend = getattr(tokenizer, "backend_tokenizer", None) \
        if getattr(tokenizer, "is_fast", False) else None
    if backend is not None and backend.truncation is None and backend.padding is None:
        # a fast tokenizer read directly: what transformers' call gives, without its
        # conversion of every encoding into Python lists and dictionaries
        out = []
        for text, enc in zip(texts, backend.encode_batch(list(texts), add_special_tokens=False),
                             strict=True):
            offsets, word_ids = enc.offsets, enc.word_ids
            out.append(Tokenized(enc.ids, offsets, word_ids,
                                 word_shapes(text, offsets, word_ids),
                                 word_bounds(offsets, word_ids)))
        return out
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                    truncation=False, verbose=False)
    out = []
    for i, text in enumerate(texts):
        offsets = [tuple(o) for o in enc["offset_mapping"][i]]
        word_ids = enc.word_ids(i)
        out.append(Tokenized(enc["input_ids"][i], offsets, word_ids,
                             word_shapes(text, offsets, word_ids),
                             word_bounds(offsets, word_ids)))
    return out


def windows_for(n_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges covering ``n_tokens`` with windows of ``max_tokens``, overlapping."""
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max(1, max_tokens - stride)
    out = []
    start = 0
    while True:
        end = min(n_tokens, start + max_tokens)
        out.append((start, end))
        if end == n_tokens:
            return out
        start += step


def token_span(tok: Tokenized, start: int, end: int) -> tuple[int, int] | None:
    """Tokens covering characters ``[start, end)``, or None if no token falls inside."""
    first: int | None = None
    last = 0
    for i, (s, e) in enumerate(tok.offsets):
        if e > start and s < end and e > s:
            if first is None:
                first = i
            last = i
    return None if first is None else (first, last + 1)


def first_window(windows: Sequence[Window], span: tuple[int, int]) -> int | None:
    """The first of a text's windows that holds the whole token ``span``, or None."""
    for i, w in enumerate(windows):
        if w.tok_start <= span[0] and span[1] <= w.tok_start + len(w.input_ids):
            return i
    return None


def bio_labels(tok: Tokenized, mentions: Sequence[dict[str, Any]],
               ignore: Sequence[Sequence[int]], label2id: dict[str, int]) -> list[int]:
    """Label ids per token: first piece of each word gets B-/I-/O, the rest -100."""
    labels = []
    prev_word = None
    for (s, _e), w in zip(tok.offsets, tok.word_ids, strict=True):
        if w is None or w == prev_word:
            labels.append(-100)  # continuation piece: its word was labelled on its first piece
            prev_word = w
            continue
        prev_word = w
        lab = "O"
        for m in mentions:
            if m.get("label") and m["start"] <= s < m["end"]:  # no label: not an entity type
                lab = ("B-" if s <= m["start"] else "I-") + m["label"]
                break
        else:
            if any(a <= s < b for a, b in ignore):
                labels.append(-100)  # an entity of unknown type: neither "O" nor a guess
                continue
        labels.append(label2id.get(lab, label2id["O"]))
    return labels


def pad_batch(windows: Sequence[Window], cls_id: int, sep_id: int, pad_id: int,
              device: torch.device) -> dict[str, torch.Tensor]:
    """The encoder's input for ``windows``: [CLS] window [SEP], padded to the longest; the
    labels (-100 outside them) and word shapes (0 outside them) where the windows have some.
    Filled with one copy of every window's tokens, not a copy a window."""
    lengths = numpy.array([len(w.input_ids) for w in windows], dtype=numpy.int64)
    longest = int(lengths.max()) + 2
    cols = numpy.arange(longest)
    inner = (cols >= 1) & (cols[None, :] <= lengths[:, None])  # the windows' own tokens
    total = int(lengths.sum())

    def filled(value: int, rows: Iterable[Sequence[int]]) -> torch.Tensor:
        out = numpy.full((len(windows), longest), value, dtype=numpy.int64)
        out[inner] = numpy.fromiter(chain.from_iterable(rows), dtype=numpy.int64, count=total)
        return torch.from_numpy(out)

    ids = filled(pad_id, (w.input_ids for w in windows))
    ids[:, 0] = cls_id
    ids[torch.arange(len(windows)), torch.from_numpy(lengths + 1)] = sep_id
    mask = torch.from_numpy((cols[None, :] <= lengths[:, None] + 1).astype(numpy.int64))
    out = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if any(w.labels is not None for w in windows):
        out["labels"] = filled(-100, (w.labels if w.labels is not None else [-100] * n
                                      for w, n in zip(windows, lengths.tolist(), strict=True))
                               ).to(device)
    if any(w.shapes for w in windows):
        out["shape_ids"] = filled(0, (w.shapes or [0] * n for w, n
                                      in zip(windows, lengths.tolist(), strict=True))).to(device)
    return out
