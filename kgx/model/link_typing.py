"""Types for the links whose target the dump leaves untyped, read from their contexts.

Takes the silver corpus's training rows, whose ``untyped`` field lists each link to a page the
structure graph gives no type (no infobox class, category rule or property range: on the
bundled excerpt 14,051 of its 22,620 links are capitalised and untyped, most of them to pages
outside it), and
a tagger part-way through training. Gives a type for every target that the tagger's reading
of its links agrees on, and the rows with those links turned into mentions
(``source: "context"``), for the epochs that follow.

This is self-training with the dump's own boundaries: the link says where the name is and
which page it names; the tagger, trained so far on typed links only, says what kind of name
it is in each sentence; a target takes the type most of its links get (a page is one entity
of one type), and none when most of them are read as no name at all.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgx.corpus.datasets import DataError
from kgx.corpus.rows import LINKS, read_rows_at, training_offsets

__all__ = ["LinkTyping", "draw_rows", "relabel", "sample_lines", "type_links", "vote_types"]


READ_AT_ONCE = 512  # sentences a predict() call reads: its memory follows this, not the rows


@dataclass(slots=True)
class LinkTyping:
    """What one round of link typing did (saved in the model's ``kgx.json``)."""

    rows_read: int = 0
    links: int = 0
    targets: int = 0
    typed: dict[str, int] = field(default_factory=dict)  # targets typed, by type
    mentions_added: int = 0
    seconds: float = 0.0


def draw_rows(corpus: Path, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """Rows that hold untyped links: of up to ``n`` training rows of ``corpus`` drawn
    uniformly (every kind), those that hold one, and up to ``n`` sentences of
    ``train.links.jsonl`` (the sentences the corpus dropped for an unlabelled name: links
    to read, not rows to train on). Only the drawn rows are read.

    Raises:
        DataError: A drawn row or sentence is not what the corpus writes (named with its
            file, and its byte offset or its first characters).
    """
    by_kind = training_offsets(corpus)  # compact arrays: a whole dump's are 8 bytes a row
    total = sum(len(a) for a in by_kind)
    picked = []
    for i in sorted(range(total) if total <= n else rng.sample(range(total), n)):
        for a in by_kind:
            if i < len(a):
                picked.append(a[i])
                break
            i -= len(a)
    try:
        rows = [r for r in read_rows_at(corpus / "train.jsonl", sorted(picked))
                if r.get("untyped")]
    except ValueError as exc:  # names the file and the row's byte offset
        raise DataError(str(exc)) from exc
    links = corpus / f"{LINKS}.jsonl"
    if links.exists():
        rows += [_link_context(links, line) for line in sample_lines(links, n, rng)]
    return rows


def _link_context(path: Path, line: bytes) -> dict[str, Any]:
    try:
        row = json.loads(line)
        ok = isinstance(row, dict) and isinstance(row.get("text"), str) and \
            isinstance(row.get("untyped"), list)
    except ValueError:
        ok = False
    if not ok:
        raise DataError(f"{path}: the line {line[:60]!r}... is not a link context (a JSON "
                        "object with 'text' and 'untyped'); build the corpus again with "
                        "`kgx corpus`")
    return row


def sample_lines(path: Path, n: int, rng: random.Random, whole_below: int = 64 << 20
                 ) -> list[bytes]:
    """About ``n`` lines of a file, drawn at random: all of a file under ``whole_below``
    bytes read and sampled; of a larger one, the line after each of ``n`` random byte
    offsets (a long line is a little likelier to precede one), so that a corpus of a whole
    dump costs ``n`` reads, not a pass."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= whole_below:
            lines = [x for x in f if x.strip()]
            return lines if len(lines) <= n else rng.sample(lines, n)
        found: dict[int, bytes] = {}
        for off in sorted(rng.randrange(size) for _ in range(n)):
            f.seek(off)
            f.readline()  # the rest of the line the offset fell in
            pos = f.tell()
            line = f.readline()
            if line.strip():
                found[pos] = line
        return list(found.values())


def vote_types(predictor: Any, rows: Sequence[dict[str, Any]], min_share: float = 0.5
               ) -> tuple[dict[str, str], int]:
    """The type of each untyped link target, by the tagger's reading of its links.

    Each link votes for the type the tagger gives exactly its span, or for no type ("O")
    when the tagger finds no mention with its bounds. A target takes the most voted type
    when it is not "O" and has at least ``min_share`` of the votes.

    Returns:
        (target -> type, the number of links read).
    """
    votes: dict[str, Counter[str]] = {}
    with_links = [r for r in rows if r.get("untyped")]
    n_links = 0
    for i in range(0, len(with_links), READ_AT_ONCE):  # the encoder's states of a slice only
        part = with_links[i:i + READ_AT_ONCE]
        preds = predictor.predict([r["text"] for r in part], relations=False)
        for r, p in zip(part, preds, strict=True):
            found = {(m.start, m.end): m.label for m in p.mentions}
            for a, b, target in r["untyped"]:
                votes.setdefault(target, Counter())[found.get((a, b), "O")] += 1
                n_links += 1
    types = {}
    for target, c in votes.items():
        label, n = c.most_common(1)[0]
        if label != "O" and n >= min_share * sum(c.values()):
            types[target] = label
    return types, n_links


def relabel(rows: Sequence[dict[str, Any]], types: dict[str, str]
            ) -> tuple[list[dict[str, Any]], int]:
    """Copies of ``rows`` whose untyped links to a typed target are mentions of that type
    (appended after the row's mentions, so relation examples keep their indices), no longer
    masked; and how many mentions were added."""
    out, added = [], 0
    for r in rows:
        now = [x for x in r.get("untyped", []) if x[2] in types]
        if not now:
            out.append(r)
            continue
        spans = {(a, b) for a, b, _t in now}
        out.append(dict(
            r,
            mentions=r["mentions"] + [{"start": a, "end": b, "label": types[t], "fine": None,
                                       "entity": t, "source": "context"} for a, b, t in now],
            ignore=[x for x in r.get("ignore", []) if (x[0], x[1]) not in spans],
            untyped=[x for x in r["untyped"] if x[2] not in types]))
        added += len(now)
    return out, added


def type_links(predictor: Any, train_rows: list[dict[str, Any]],
               drawn: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], LinkTyping]:
    """One round: the untyped link targets of ``train_rows`` and ``drawn`` typed by
    ``predictor``; and the training rows of both (each sentence once; a dropped sentence of
    ``train.links.jsonl``, which has no ``mentions``, is read for its links only) with those
    links relabelled."""
    t0 = time.monotonic()
    seen = {(r.get("page_id"), r.get("start")) for r in train_rows}
    pool = list(train_rows) + [r for r in drawn if (r.get("page_id"), r.get("start")) not in seen]
    types, n_links = vote_types(predictor, pool)
    rows, added = relabel([r for r in pool if "mentions" in r], types)
    info = LinkTyping(rows_read=len(drawn), links=n_links,
                      targets=len({x[2] for r in pool for x in r.get("untyped", [])}),
                      typed=dict(Counter(types.values()).most_common()), mentions_added=added,
                      seconds=round(time.monotonic() - t0, 1))
    return rows, info
