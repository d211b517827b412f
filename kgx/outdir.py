"""The output folder of ``kgx extract``: the name of everything in it, and who may write it.

Every file and folder name kgx leaves in OUT is defined here, once. A writer holds
``OUT/.kgx.lock`` (:func:`output_lock`) while it writes; a reader asks :func:`run_state` whether
what it reads is a finished graph.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GRAPH_FILE = "graph.nq"
STORE_DIR = "store"
REPORT_FILE = "report.json"
ALIASES_FILE = "aliases.sqlite"
DOCUMENTS_FILE = "documents.jsonl"
PAGES_DIR = "pages"  # the structure pass's parts, by generation: what kgx update reads again
STAGES_FILE = "stages.json"
LOCK_FILE = ".kgx.lock"
LOG_FILE = "kgx.log"
WORK_DIR = ".work"
SERVE_DIR = ".serve"  # kgx serve's pinned versions of the store (hard links)
CORPUS_DIR = "corpus"
MODEL_DIR = "model"
MODEL_WEIGHTS_FILE = "model.safetensors"  # in a model folder (kgx.model.network)
MODEL_FACTS_FILE = "model.nq"
MENTIONS_FILE = "mentions.nq"
ENTITY_INDEX_FILE = "entities.faiss"  # the entities stage's FAISS index
ENTITY_META_FILE = "entities.json"  # ... and what it holds
LINKER_FILE = "linker.json"  # the linker's scorer, fitted on the dump's own links


def check_output(out: Path) -> None:
    """Refuse an output folder kgx cannot write, before anything is written.

    Raises:
        ValueError: ``out`` is a file, or neither it nor the folder it would be made in can be
            written.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; -o names the folder the graph goes into")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{probe} is a file, so {out} cannot be made inside it")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{probe} cannot be written (read-only folder or medium); choose "
                         "another output folder with -o")


def remove_if_unused(out: Path, existed: bool) -> None:
    """Remove what a run that failed at its start left in a folder it created: the lock, the
    log, an empty work folder; the folder itself when nothing else is in it."""
    if existed or not out.is_dir():
        return
    debris = {LOCK_FILE, LOG_FILE, WORK_DIR}
    if any(p.name not in debris for p in out.iterdir()):
        return
    work = out / WORK_DIR
    if work.is_dir() and any(f.is_file() for f in work.rglob("*")):
        return  # committed work: kept for the next run
    import shutil

    shutil.rmtree(out, ignore_errors=True)


class OutputInUse(RuntimeError):
    """Another kgx process is writing the same output directory."""


_LOCKS: dict[str, tuple[Any, int]] = {}  # output dir -> (open lock file, depth) in this process


def _close_locks_in_child() -> None:
    """In a forked child: drop this process's copy of every lock file, so that the lock is
    the parent's alone and goes when the parent goes (an ``flock`` is held by every process
    that shares its file description)."""
    for f, _ in _LOCKS.values():
        with contextlib.suppress(OSError):
            f.close()
    _LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_locks_in_child)


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold ``OUT/.kgx.lock`` while writing OUT, so that two runs never write one folder.

    An ``flock`` dies with its process, so a killed run leaves no stale lock; a worker forked
    by the run does not hold it (:func:`_close_locks_in_child`). Re-entrant within one process
    (the pipeline holds it while the structure pass takes it again).

    Raises:
        OutputInUse: Another process holds it.
    """
    import fcntl

    key = str(out.resolve())
    held = _LOCKS.get(key)
    if held is not None:
        _LOCKS[key] = (held[0], held[1] + 1)
        try:
            yield
        finally:
            f, depth = _LOCKS[key]
            _LOCKS[key] = (f, depth - 1)
        return
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held across the yield
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        who = f.read().strip() or "another process"
        f.close()
        raise OutputInUse(f"{out} is being written by {who}; wait for it to finish, or choose "
                          "another output directory") from None
    f.seek(0)
    f.truncate()
    f.write(f"kgx (pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
    f.flush()
    _LOCKS[key] = (f, 1)
    try:
        yield
    finally:
        _LOCKS.pop(key, None)
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def writer(out: Path) -> str | None:
    """Who is writing ``out`` now ("kgx (pid N, started ...)"), or None.

    Read without taking the lock: on Linux from ``/proc/locks``; elsewhere by asking for a
    shared lock and giving it back at once.
    """
    path = out / LOCK_FILE
    try:
        st = path.stat()
    except OSError:
        return None
    held = _held_in_proc_locks(st) if os.path.exists("/proc/locks") else _held_by_trying(path)
    if not held:
        return None
    try:
        return path.read_text("utf-8").strip() or "another process"
    except OSError:
        return "another process"


def _held_in_proc_locks(st: os.stat_result) -> bool:
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            return any(" FLOCK " in line and f" {ident} " in line for line in f)
    except OSError:
        return False


def _held_by_trying(path: Path) -> bool:
    import fcntl

    try:
        with open(path, encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def run_state(out: Path) -> str | None:
    """A warning for a reader of ``out`` whose graph is not a finished run's, or None.

    Says so when a run is writing the folder now, or when the last run stopped before it
    finished (interrupted, killed, or broke off on a bad dump).
    """
    who = writer(out)
    if who is not None:
        return (f"{out} is being written by {who}: answers come from a graph that is not "
                "finished and may change")
    try:
        report = json.loads((out / REPORT_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("finished") is False:
        why = report.get("error") or "it stopped early"
        return (f"the run that wrote {out} did not finish ({why}): the graph holds what it had "
                "done; run the same kgx extract command again to finish it")
    return None
