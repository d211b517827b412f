"""The corpus's rows on disk: splits, kinds of rows, row offsets, and reading a split or the
rows at given offsets.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

NA = "NA"


_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]", re.U)


def split_of(page_id: int) -> str:
    """train / dev / test by a hash of the page id (80 / 10 / 10)."""
    h = int(hashlib.sha1(str(page_id).encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "dev" if h == 1 else "train"


SPLITS = ("train", "dev", "test")


# ``train.links.jsonl``: training pages' sentences dropped for an unlabelled name that hold
# links to untyped pages (page_id, start, text, untyped), read by kgx.model.link_typing only.
LINKS = "train.links"
STATS_FILE = "stats.json"  # what the labelling did (kgx.corpus.build)


# Kinds of training row, in the order the trainer takes them (see kgx.model.sources.plan_sample).
KINDS = ("relation", "mentions", "empty")


def mention_entities(row: dict[str, Any]) -> list[Any]:
    """The entity each mention of a row refers to: its ``entity`` field, else the mention
    itself. Mentions with the same key are one entity to the relation head."""
    return [("mention", i) if m.get("entity") is None else ("entity", m["entity"])
            for i, m in enumerate(row["mentions"])]


def row_kind(row: dict[str, Any]) -> int:
    """0: a sentence with a relation example; 1: with typed mentions only; 2: with neither
    (a pronoun alone is no entity to tag)."""
    if any(x["label"] != NA for x in row.get("relations", [])):
        return 0
    return 1 if any(m.get("label") for m in row["mentions"]) else 2


def offsets_path(corpus: Path, kind: int) -> Path:
    """``train.<kind>.offsets``: the byte offset in ``train.jsonl`` of every training row of
    one kind, as little-endian uint64, so a sample of rows costs its size, not the corpus's."""
    return corpus / f"train.{KINDS[kind]}.offsets"


def training_offsets(corpus: Path) -> list[array]:
    """The byte offsets of the training rows of each kind (see :data:`KINDS`).

    Read from the ``train.<kind>.offsets`` files the corpus stage writes; for a corpus without
    them (written by hand or by kgx 0.1), or whose files do not match ``train.jsonl`` and the
    row count in ``stats.json``, found by one pass over ``train.jsonl`` that keeps 8 bytes a
    row.

    Raises:
        ValueError: A line of ``train.jsonl`` is not a corpus row (named by line number).
    """
    train = corpus / "train.jsonl"
    paths = [offsets_path(corpus, k) for k in range(len(KINDS))]
    if all(p.exists() for p in paths):
        size = train.stat().st_size
        out = []
        for p in paths:
            a = array("Q")
            a.frombytes(p.read_bytes())
            out.append(a)
        stats = corpus / STATS_FILE
        rows = json.loads(stats.read_text("utf-8")).get("sentences", {}).get("train") \
            if stats.exists() else None
        if all(not a or a[-1] < size for a in out) and rows == sum(len(a) for a in out):
            return out
    out = [array("Q") for _ in KINDS]
    with open(train, "rb") as f:
        pos = 0
        for n, line in enumerate(f, 1):
            if line.strip():
                out[row_kind(_parse_row(line, train, f"line {n}"))].append(pos)
            pos += len(line)
    return out


def _parse_row(line: bytes | str, path: Path, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: {where}: not JSON ({exc.msg})") from exc
    if not isinstance(row, dict) or "text" not in row or "mentions" not in row:
        raise ValueError(f"{path}: {where}: expected an object with 'text' and 'mentions'")
    return row


def read_rows_at(path: Path, offsets: Iterable[int]) -> list[dict[str, Any]]:
    """The rows of a corpus split that start at ``offsets``, in that order (read in file
    order)."""
    want = list(offsets)
    rows: dict[int, dict[str, Any]] = {}
    with open(path, "rb") as f:
        for off in sorted(set(want)):
            f.seek(off)
            rows[off] = _parse_row(f.readline(), path, f"byte {off}")
    return [rows[o] for o in want]


def read_split(path: Path) -> list[dict[str, Any]]:
    """Read a corpus split whole (see :func:`iter_split` to stream one).

    Raises:
        ValueError: A line is not a JSON object with ``text`` and ``mentions``.
    """
    return list(iter_split(path))


def iter_split(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of a corpus split, one JSON object a line.

    Raises:
        ValueError: A line is not a JSON object with ``text`` and ``mentions``.
    """
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield _parse_row(line, path, f"line {n}")


def words(text: str) -> list[tuple[int, int]]:
    """Word spans used for word-level (seqeval) scoring."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]
