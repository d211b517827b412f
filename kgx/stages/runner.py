"""The stage runner: every stage of ``kgx extract`` has one shape, and this module runs them.

A stage is a class in ``kgx/stages/<name>.py`` with

* ``name``, ``outputs(run)`` (files and folders in OUT it leaves) and ``key(run)``: a hash of
  its settings and of the keys of the stages it reads, computed before anything runs;
* ``execute(run)``: does the work and returns figures for the report.

Inside ``execute`` a long stage works in **chunks** (a multistream stream, a batch of pages, a
shard of documents). Each chunk's results are committed atomically together with a row in the
stage's :class:`Journal`, so after a kill -9, an out-of-memory kill or a power cut a re-run
redoes only the chunks that were not committed. A stage's work folder (``OUT/.work/<name>``)
carries the key it was started with: a different key (another dump, other settings) starts
the stage over instead of mixing two runs.

The runner (:func:`run_stages`) skips a stage whose key is recorded in ``stages.json`` and whose
outputs are there (or were consumed by a later stage that is itself done), times the others,
and records the disk each output uses. Chunks are handed to workers through an executor with
``map(fn, tasks)``; the local process pool is :class:`kgx.workers.OrderedPool`, Ray's is
:class:`kgx.cluster.RayPool` (:func:`kgx.workers.new_pool` gives the one in force). A stage
whose chunk goes through steps that want different hardware (the read stage: split on a CPU,
predict on the GPU, link on a CPU) hands :func:`kgx.workers.map_steps` its steps: locally
each worker runs all of a chunk's steps, and on Ray each step is a pool of its own.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from kgx.progress import stage as heartbeat

STAGES_FILE = "stages.json"
WORK_DIR = ".work"
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
    :meth:`kgx.workers.OrderedPool.map`'s ``split``) back into one commit.

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


@dataclass(slots=True)
class Run:
    """One ``kgx extract``: where, with what, and what the stages have found so far."""

    dump: Path
    out: Path
    opts: Any  # kgx.pipeline.PipelineOptions
    log: Callable[[str], None]
    keys: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def work(self, name: str) -> Path:
        return self.out / WORK_DIR / name


class Stage:
    """The shape every stage has (see the module docstring)."""

    name: ClassVar[str]

    def enabled(self, run: Run) -> bool:
        return True

    def outputs(self, run: Run) -> list[str]:
        raise NotImplementedError

    def key(self, run: Run) -> str:
        raise NotImplementedError

    def execute(self, run: Run) -> dict[str, Any]:
        raise NotImplementedError

    def consumes(self, run: Run) -> dict[str, list[str]]:
        """Outputs of earlier stages this stage folds into its own and may delete:
        ``{stage: [output, ...]}``."""
        return {}


class Manifest:
    """``stages.json``: each finished stage with its key, seconds, figures and disk use."""

    def __init__(self, out: Path) -> None:
        self.path = out / STAGES_FILE
        self.out = out
        self.data: dict[str, Any] = json.loads(self.path.read_text("utf-8")) \
            if self.path.exists() else {}

    def done(self, name: str, key: str, outputs: list[str], keys: dict[str, str]) -> bool:
        rec = self.data.get(name)
        if not rec or rec.get("key") != key:
            return False
        consumer = rec.get("consumed_by")
        for o in outputs:
            if (self.out / o).exists():
                continue
            # Folded into a later stage's output and deleted: fine while that stage is done
            # with the key this run expects of it.
            crec = self.data.get(consumer or "")
            if not (consumer and o in rec.get("consumed", []) and crec
                    and crec.get("key") == keys.get(consumer)):
                return False
        return True

    def finish(self, name: str, key: str, seconds: float, outputs: list[str],
               info: dict[str, Any]) -> None:
        disk = {o: disk_used(self.out / o) for o in outputs}
        self.data[name] = {"key": key, "started": round(time.time() - seconds, 2),
                           "seconds": round(seconds, 2), "disk_bytes": disk, **info}
        self.save()

    def consumed(self, name: str, by: str, outputs: list[str]) -> None:
        rec = self.data.get(name)
        if rec is not None:
            rec["consumed_by"] = by
            rec["consumed"] = outputs
            self.save()

    def forget(self, name: str) -> None:
        if self.data.pop(name, None) is not None:
            self.save()

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, indent=2, ensure_ascii=False))


def _is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full: an errno,
    SQLite's words, or RocksDB's (pyoxigraph's store raises an OSError without an errno)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc).lower()
        if isinstance(exc, (OSError, sqlite3.OperationalError)) and any(
                w in text for w in ("disk is full", "no space left", "disk quota exceeded")):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def mark_unfinished(out: Path, why: str) -> None:
    """Say in ``OUT/report.json`` that the run stopped before it finished, and why, so that
    ``kgx query`` and ``kgx serve`` warn of it (:func:`kgx.outdir.run_state`); the next run
    that finishes writes ``finished: true`` again."""
    path = out / "report.json"
    try:
        report = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        report = {}
    report["finished"] = False
    report["error"] = why
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(report, indent=2, ensure_ascii=False))


def run_stages(stages: list[Stage], run: Run) -> None:
    """Run every enabled stage whose key or outputs changed, in order.

    Keys are computed first, all of them, so that a stage can tell whether the stage that
    consumed its outputs is done.

    Raises:
        DiskFull: The disk filled up; what was committed is kept, and the same command
            continues once there is room.
    """
    manifest = Manifest(run.out)
    active = [s for s in stages if s.enabled(run)]
    for s in active:
        run.keys[s.name] = s.key(run)
    for s in active:
        key, outputs = run.keys[s.name], s.outputs(run)
        t = time.monotonic()
        if manifest.done(s.name, key, outputs, run.keys):
            run.log(f"[{s.name}] unchanged inputs: reusing {', '.join(outputs)}")
            run.info[s.name] = {k: v for k, v in manifest.data[s.name].items()
                                if k not in ("key", "started", "seconds", "consumed_by",
                                             "consumed")}
            run.seconds[s.name] = time.monotonic() - t
            continue
        manifest.forget(s.name)
        try:
            with heartbeat(s.name, getattr(run.opts, "progress", None)):
                info = s.execute(run)
        except BaseException as exc:
            stopped = (f"interrupted during the {s.name} stage" if isinstance(
                exc, KeyboardInterrupt) else f"stopped in the {s.name} stage: "
                f"{type(exc).__name__}: {exc}")
            mark_unfinished(run.out, stopped)
            if _is_disk_full(exc):
                raise DiskFull(errno.ENOSPC, f"{run.out}: no space left on the device during "
                               f"the {s.name} stage ({exc}); committed chunks are kept: free "
                               "some space and run the same command again") from exc
            raise
        run.info[s.name] = info
        run.seconds[s.name] = time.monotonic() - t
        manifest.finish(s.name, key, run.seconds[s.name], outputs, info)
        # Only now, with this stage recorded, may what it folded in go.
        for producer, files in s.consumes(run).items():
            manifest.consumed(producer, s.name, files)
            if not getattr(run.opts, "keep_intermediate", False):
                for f in files:
                    (run.out / f).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (run.out / WORK_DIR).rmdir()  # empty once every stage is done
