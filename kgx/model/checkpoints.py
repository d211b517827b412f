"""Training checkpoints: what a kill of the model stage costs is the steps since the last one.

A checkpoint holds everything the training loop needs to go on as if it had not stopped:
the weights (all of them, or with LoRA the adapter in place), the optimiser, the scheduler,
the gradient scaler, the random states (Python's at the start of the epoch, from which the
epoch's batches are drawn again, and torch's at the step), the epoch and the batch to go on
from, the best dev score so far with its weights, and the history. It is written under a
temporary name and renamed into place (no half-written checkpoint is ever read), and the last
two are kept. What one reads is loaded with ``weights_only`` (tensors and plain values only).

When checkpoints are written: within an epoch every ``every_steps`` optimiser steps if
given, else whenever ``every_seconds`` (default 4 minutes) of training have passed since the
last; when an epoch's batches are done; and at the epoch's end, after its dev scoring and link
typing. So a kill -9 costs at most that much training plus the start-up, or, when it falls in
them, the epoch's dev scoring and link typing (bounded by the dev rows and
``link_typing_rows``, not by the corpus) or the final decoding choice and calibration.

A checkpoint written for other training options or data (its fingerprint differs) is not
resumed: training starts over and the log says which settings changed.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = ".checkpoints"
EVERY_SECONDS = 240.0
KEEP = 2
ROWS_FILE = "typed-rows.jsonl"  # the training rows as link typing relabelled them


class Checkpoints:
    """The checkpoints of one training run, in ``folder``.

    Args:
        folder: Where they are written (created on the first save).
        fingerprint: What the run depends on (options, data files, labels): a checkpoint
            with another is not resumed.
        log: Where "resuming at ..." and "starting over: ..." lines go.
        every_steps: Checkpoint every N optimiser steps within an epoch (None: by time).
        every_seconds: Else, whenever this much training time has passed since the last.
    """

    def __init__(self, folder: Path, fingerprint: dict[str, Any], log: Callable[[str], None],
                 every_steps: int | None = None, every_seconds: float = EVERY_SECONDS) -> None:
        self.folder = folder
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.log = log
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._last = time.monotonic()
        self._steps = 0

    # ------------------------------------------------------------------ reading

    def _files(self) -> list[Path]:
        return sorted(self.folder.glob("ckpt-*.pt"), reverse=True) if self.folder.exists() \
            else []

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint that loads and fits this run, else None (and why, logged)."""
        for path in self._files():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # truncated, damaged: never load garbage
                self.log(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                         f"{str(exc)[:120]}); trying the one before")
                continue
            if not isinstance(state, dict) or "fingerprint" not in state:
                self.log(f"checkpoint {path} is not a kgx training checkpoint; skipped")
                continue
            if state["fingerprint"] != self.fingerprint:
                changed = sorted(k for k in set(self.fingerprint) | set(state["fingerprint"])
                                 if self.fingerprint.get(k) != state["fingerprint"].get(k))
                self.log(f"starting training over: the checkpoints in {self.folder} were "
                         f"written for other settings or data ({', '.join(changed)} changed)")
                self.clear()
                return None
            state["path"] = str(path)
            return dict(state)
        if self._files():
            self.log(f"starting training over: no checkpoint in {self.folder} could be read")
        return None

    def read_rows(self) -> list[dict[str, Any]]:
        with open(self.folder / ROWS_FILE, encoding="utf-8") as f:
            return [json.loads(line) for line in f]

    # ------------------------------------------------------------------ writing

    def due(self) -> bool:
        """Whether a checkpoint is due within an epoch (called once per optimiser step)."""
        self._steps += 1
        if self.every_steps is not None:
            return self._steps % self.every_steps == 0
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``state`` as the checkpoint of optimiser ``step``; keep the last two.

        Raises:
            OSError: The disk is full (or the folder cannot be written): the message names
                the folder; the checkpoints before stay as they were.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"ckpt-{step:09d}.pt"
        tmp = path.with_name(path.name + ".tmp")
        try:
            torch.save({**state, "fingerprint": self.fingerprint}, tmp)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            full = exc.errno == errno.ENOSPC
            raise OSError(exc.errno, f"{self.folder}: "
                          + ("no space left on the device" if full else str(exc.strerror or exc))
                          + " while writing a training checkpoint; the checkpoints before it "
                          "are kept, and the same command continues from them") from exc
        for old in self._files()[KEEP:]:
            old.unlink(missing_ok=True)
        self._last = time.monotonic()
        return path

    def save_rows(self, rows: list[dict[str, Any]]) -> None:
        """The training rows link typing relabelled (written once, read on resume)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (ROWS_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, self.folder / ROWS_FILE)

    def clear(self) -> None:
        """Remove the checkpoints (once the model is saved, or when they do not fit)."""
        if self.folder.exists():
            for f in self.folder.iterdir():
                f.unlink()
            self.folder.rmdir()


def data_fingerprint(paths: list[Path]) -> list[Any]:
    """Each training source as a checkpoint sees it: its files' sizes and times."""
    out: list[Any] = []
    for p in paths:
        files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
        out.append([str(p), [(f.name, f.stat().st_size, f.stat().st_mtime_ns)
                             for f in files if f.exists()]])
    return out


def rng_states() -> dict[str, Any]:
    """torch's random states (CPU and every CUDA device)."""
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["cpu"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
