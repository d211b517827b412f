"""Runs the stages of `kgx extract`: keys, the manifest (``stages.json``), reuse of finished
stages, and marking a run unfinished.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kgx.engines.journal import DiskFull, disk_used, write_atomic
from kgx.outdir import REPORT_FILE, STAGES_FILE, WORK_DIR
from kgx.runtime.progress import stage as heartbeat


@dataclass(slots=True)
class Run:
    """One ``kgx extract``: where, with what, and what the stages have found so far."""

    dump: Path
    out: Path
    opts: Any  # kgx.stages.pipeline.PipelineOptions
    log: Callable[[str], None]
    keys: dict[str, str] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def work(self, name: str) -> Path:
        return self.out / WORK_DIR / name

    def upstream(self, stage: Stage) -> list[str | None]:
        """The keys of the stages ``stage`` reads from (its declared ``inputs``), in order;
        None for one that does not run in this run."""
        return [self.keys.get(name) for name in stage.inputs]


class Stage:
    """The shape every stage has (see the module docstring)."""

    name: ClassVar[str]
    # The stages whose outputs this one reads: their keys enter its key, in this order, and
    # each of them that runs runs before it (run_stages checks).
    inputs: ClassVar[tuple[str, ...]] = ()

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
    path = out / REPORT_FILE
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
    order = [s.name for s in active]
    for s in active:
        late = [i for i in s.inputs if i in order and order.index(i) > order.index(s.name)]
        if late:
            raise RuntimeError(f"stage {s.name} reads {', '.join(late)}, which would run after it")
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
