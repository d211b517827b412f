"""The articles of ``documents.jsonl``: reading them, in chunks by byte offset, and naming the
documents a chunk lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def iter_documents(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


DOCS_PER_CHUNK = 200  # documents per committed chunk of the corpus stage


_COUNTED = ("sentences", "pages", "steps", "mentions", "mention_sources", "relations")


def document_chunks(docs_path: Path, size: int | None = None) -> Iterator[tuple[int, int]]:
    """(byte offset, documents) of each chunk of ``size`` documents (default
    :data:`DOCS_PER_CHUNK`) of ``documents.jsonl``."""
    size = size or DOCS_PER_CHUNK
    with open(docs_path, "rb") as f:
        start, n, pos = 0, 0, 0
        for line in f:
            pos += len(line)
            n += 1
            if n == size:
                yield start, n
                start, n = pos, 0
        if n:
            yield start, n


def document_offsets(docs_path: Path, offset: int, n: int) -> list[int]:
    """Byte offsets of the ``n`` documents from ``offset`` of ``documents.jsonl``."""
    offsets = []
    with open(docs_path, "rb") as f:
        f.seek(offset)
        for _ in range(n):
            offsets.append(offset)
            offset += len(f.readline())
    return offsets


def lost_documents(docs_path: Path, offset: int, n: int) -> dict[str, Any]:
    """What the report says of ``n`` documents of ``documents.jsonl`` whose reading killed its
    process on every try: the first one's page, and why."""
    with open(docs_path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    try:
        doc = json.loads(line)
        page_id, title = doc.get("page_id"), doc.get("title")
    except ValueError:
        page_id = title = None
    return {"page_id": page_id, "title": title, "documents": n, "offset": offset,
            "reason": "the process reading it died on every try"}


def read_documents(docs_path: str | Path, offset: int, n: int) -> Iterator[dict[str, Any]]:
    """``n`` documents from byte ``offset`` of ``documents.jsonl`` (a chunk's)."""
    with open(docs_path, "rb") as f:
        f.seek(offset)
        for _ in range(n):
            yield json.loads(f.readline())
