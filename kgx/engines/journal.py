"""How a chunk is made durable: the work folder, the journal of committed chunks (one SQLite
transaction per chunk), part files renamed into place, stage keys, and the disk checks around
them.

A kill at any moment costs at most the chunks in flight: what the journal holds was committed
with its results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

KEY_FILE = "key.json"


def stage_key(*parts: Any) -> str:
    """A short hash of settings and upstream keys."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dump_fingerprint(dump: Path) -> dict[str, Any]:
    """What identifies a dump file cheaply: path, size, modification time."""
    st = dump.stat()
    return {"path": str(dump.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def write_atomic(path: Path, data: str) -> None:
    """Write a text file under a temporary name, then rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, path)


def drop_uncommitted(parts: Path, committed: set[int]) -> int:
    """Delete the part files (named ``NNNNNNNNN...``, after their chunk) of chunks that a
    killed run did not commit; returns how many."""
    n = 0
    for f in parts.iterdir():
        if int(f.name[:9]) not in committed:
            f.unlink()
            n += 1
    return n


class SplitChunks:
    """Gathers a chunk that the pool retried in parts (its worker died: see
    :meth:`kgx.engines.local.OrderedPool.map`'s ``split``) back into one commit.

    Args:
        split: Task -> the smaller tasks to retry it as; the chunk id is each task's first
            item.
    """

    def __init__(self, split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]]) -> None:
        self._split = split
        self._waiting: dict[Any, tuple[int, list[Any]]] = {}  # chunk -> (parts, results)

    def split(self, task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The pool's ``split``: the parts, remembered so that :meth:`gather` waits for all."""
        parts = self._split(task)
        self._waiting[task[0]] = (len(parts), [])
        return parts

    def gather(self, chunk: Any, result: Any) -> list[Any] | None:
        """The results of ``chunk`` once all are in (one, for a chunk that was not split),
        else None."""
        if chunk not in self._waiting:
            return [result]
        want, got = self._waiting[chunk]
        got.append(result)
        if len(got) < want:
            return None
        del self._waiting[chunk]
        return got


def concatenate(parts: Iterable[Path], dst: Path,
                tail: Callable[[BinaryIO], None] | None = None) -> None:
    """Join ``parts`` (and what ``tail`` writes) into ``dst``, renamed into place when
    complete."""
    tmp = dst.with_name(dst.name + ".tmp")
    with open(tmp, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)
        if tail is not None:
            tail(f)
    os.replace(tmp, dst)


def count_committed(db: Path) -> int:
    """Chunks in a journal, read from another process while the run writes it (WAL allows
    that); 0 while the database or its table does not exist yet."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM journal").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def disk_used(path: Path) -> int:
    """Bytes on disk under ``path`` (a file or a folder), as ``du`` counts them."""
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_blocks * 512
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


class DiskFull(OSError):
    """The disk filled up while a stage was writing; committed chunks are kept."""


def prepare_work(folder: Path, key: str) -> bool:
    """Make ``folder`` the work folder of a run with ``key``.

    Returns:
        True when the folder holds the committed chunks of an interrupted run with the same
        key (resume); False when it was empty or belonged to another key and was cleared.
    """
    marker = folder / KEY_FILE
    if marker.exists():
        try:
            if json.loads(marker.read_text("utf-8")).get("key") == key:
                return True
        except (OSError, ValueError):
            pass
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    write_atomic(marker, json.dumps({"key": key}))
    return False


class Journal:
    """Which chunks of a stage are committed, in a table of the stage's own SQLite database.

    A chunk's rows and its journal row are written in one transaction (:meth:`commit`), so a
    chunk is either wholly there or not at all, whenever the process dies. The database runs
    in WAL mode with ``synchronous=NORMAL``: a killed process loses no committed transaction;
    a power cut may lose the last ones, never consistency.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS journal (chunk INTEGER PRIMARY KEY, info TEXT)")
        db.commit()

    def done(self) -> set[int]:
        return {r[0] for r in self.db.execute("SELECT chunk FROM journal")}

    def infos(self) -> Iterator[tuple[int, dict[str, Any]]]:
        for chunk, info in self.db.execute("SELECT chunk, info FROM journal ORDER BY chunk"):
            yield chunk, json.loads(info)

    def commit(self, chunk: int, info: dict[str, Any],
               write: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Run ``write`` and record ``chunk`` as done, in one transaction."""
        with self.db:  # BEGIN ... COMMIT, or ROLLBACK on an exception
            if write is not None:
                write(self.db)
            self.db.execute("INSERT OR REPLACE INTO journal VALUES (?, ?)",
                            (chunk, json.dumps(info, ensure_ascii=False)))


def part_name(task_id: int, sub: int | None = None) -> str:
    """File stem of a task's part; retries of one page of a task sort right after it."""
    return f"{task_id:09d}" if sub is None else f"{task_id:09d}-{sub:05d}"
