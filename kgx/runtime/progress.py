"""Progress of a long stage: a bar on a terminal, a line every 20 s in logs.

On a terminal, a tqdm bar on stderr. In every case (unless switched off), a progress line
through :mod:`kgx.runtime.logs` every ``KGX_PROGRESS_SECONDS`` (20) seconds, from a timer thread, so
that a log file, CI or ``nohup`` shows items done, rate and ETA even while one item is slow;
the lines reach stderr only when it is not a terminal.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from tqdm import tqdm

from kgx.runtime.logs import progress_line

_ACTIVE: list[Progress] = []  # open Progress objects with items, innermost last
_PHASES: list[str] = []  # what the running stage is doing, innermost last (see phase)
LIVE_SLOTS = 64


class LiveCount:
    """How far the processes working on chunks have come inside their chunk in flight, so
    that a stage's progress moves inside a chunk, not only when one is committed.

    One shared number per process (a slot it claims, :func:`attach_live`): the process sets
    its slot to how many items of its current chunk it has done (:func:`live_progress`), and
    back to 0 when the chunk is handed back. A stage's :class:`Progress` shows the committed
    items plus every slot. Shared memory works for this machine's processes; on Ray the
    slots stay empty and progress moves chunk by chunk.
    """

    def __init__(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.values = ctx.Array("d", LIVE_SLOTS)
        self.claimed = ctx.Value("i", 0)

    def __getstate__(self) -> dict[str, Any]:
        # Shared memory goes to a process this machine starts; pickled for anywhere else (a
        # Ray actor), the count arrives empty and its slots stay unset.
        from multiprocessing.context import get_spawning_popen

        if get_spawning_popen() is None:
            return {"values": None, "claimed": None}
        return {"values": self.values, "claimed": self.claimed}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.values, self.claimed = state["values"], state["claimed"]

    def total(self) -> float:
        return float(sum(self.values[:]))

    def reset(self) -> None:
        """Forget every slot (a process died with a chunk in flight)."""
        with self.values.get_lock():
            for i in range(LIVE_SLOTS):
                self.values[i] = 0.0


_LIVE: tuple[LiveCount, int] | None = None  # this process's count and slot


def attach_live(live: LiveCount | None) -> None:
    """In a worker (or the process itself, with no workers): take a slot of ``live``."""
    global _LIVE
    if live is None or live.values is None:
        _LIVE = None
        return
    with live.claimed.get_lock():
        slot = live.claimed.value % LIVE_SLOTS
        live.claimed.value += 1
    _LIVE = (live, slot)


def live_progress(done: float) -> None:
    """Items of this process's chunk in flight done so far (0 once it is handed back)."""
    if _LIVE is not None:
        live, slot = _LIVE
        live.values[slot] = float(done)


def set_phase(text: str) -> None:
    """Say what the running stage does from now on, until the next :func:`set_phase` or
    the stage's end (see :func:`phase`)."""
    if _PHASES:
        _PHASES[-1] = text
    else:
        _PHASES.append(text)


@contextlib.contextmanager
def phase(text: str) -> Iterator[None]:
    """Name what a stage does for a while ("scoring the dev sentences"): its heartbeat line
    says so instead of "working"."""
    _PHASES.append(text)
    try:
        yield
    finally:
        _PHASES.pop()
# Functions whose text ends every progress line while they are here (the Ray engine's nodes
# and their throughput, say).
LINE_EXTRAS: list[Callable[[], str]] = []


def _interval() -> float:
    try:
        return max(0.05, float(os.environ.get("KGX_PROGRESS_SECONDS", "20")))
    except ValueError:
        return 20.0


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60}:{s % 60:02d}"


class Progress:
    """Progress over bytes, pages, sentences, batches..., with rate and ETA.

    Args:
        total: Total units (bytes of the file, pages, ...), if known.
        unit: ``"B"`` (shown as MB), ``"pages"``, ``"sentences"``...
        enabled: False: silent. True or None: a bar on a terminal, periodic lines always.
        desc: The stage's name, first on every line.
    """

    def __init__(self, total: int | None, unit: str, enabled: bool | None = None,
                 desc: str = "", live: LiveCount | None = None) -> None:
        self.total, self.unit, self.desc = total, unit, desc
        self.live = live
        self.enabled = enabled is not False
        self.n = 0
        self.pages: int | None = None
        self.counts: dict[str, int] = {}
        self._t0 = time.monotonic()
        self._bar = tqdm(total=total, unit=unit, unit_scale=unit == "B", desc=desc,
                         disable=not (self.enabled and sys.stderr.isatty()),
                         dynamic_ncols=True, mininterval=0.5, file=sys.stderr)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled:
            _ACTIVE.append(self)
            self._thread = threading.Thread(target=self._beat, daemon=True,
                                            name=f"progress-{desc}")
            self._thread.start()

    def update(self, n: int, pages: int | None = None, **counts: int) -> None:
        """``n`` more units done; ``counts`` (``sentences=...``) are shown as they are."""
        self.n += n
        self.counts.update(counts)
        self._bar.update(n)
        self._postfix(pages)

    def update_to(self, value: int, pages: int | None = None) -> None:
        step = max(0, value - self.n)
        self.n += step
        self._bar.update(step)
        self._postfix(pages)

    def _postfix(self, pages: int | None) -> None:
        if pages is None:
            return
        self.pages = pages
        if not self._bar.disable:
            rate = pages / max(1e-9, time.monotonic() - self._t0)
            self._bar.set_postfix_str(f"{pages:,} pages, {rate:,.0f} pages/s", refresh=False)

    def done(self) -> float:
        """Units done: those counted, and (with a :class:`LiveCount`) those of the chunks in
        flight, never past the total."""
        n = self.n + (self.live.total() if self.live is not None else 0.0)
        return min(n, self.total) if self.total else n

    def line(self, final: bool = False) -> str:
        """The progress line: items done, rate and ETA (``final``: the closing summary)."""
        elapsed = max(1e-9, time.monotonic() - self._t0)
        scale, unit = (1e6, "MB") if self.unit == "B" else (1, self.unit)
        n = self.n if final else self.done()
        done = n / scale
        rate = done / elapsed
        head = f"[{self.desc}] " if self.desc else ""
        if final:
            return (f"{head}done: {done:,.0f} {unit} in {_duration(elapsed)} "
                    f"({rate:,.1f} {unit}/s)")
        parts = [f"{done:,.0f}" + (f"/{self.total / scale:,.0f}" if self.total else "")
                 + f" {unit}"]
        if self.total:
            parts[0] += f" ({100 * n / self.total:.0f}%)"
        parts.append(f"{rate:,.1f} {unit}/s")
        if self.pages is not None and unit != "pages":
            parts.append(f"{self.pages:,} pages")
        parts += [f"{v:,} {k}" for k, v in self.counts.items()]
        if self.total and rate > 0:
            parts.append(f"ETA {_duration(max(0.0, (self.total - n) / scale / rate))}")
        parts.append(f"elapsed {_duration(elapsed)}")
        for extra in list(LINE_EXTRAS):
            with contextlib.suppress(Exception):  # a progress line never fails the run
                parts.append(extra())
        return head + ", ".join(parts)

    def _beat(self) -> None:
        while not self._stop.wait(_interval()):
            if self.live is not None and not self._bar.disable:
                with contextlib.suppress(Exception):  # the bar follows the chunks in flight
                    self._bar.n = int(self.done())
                    self._bar.refresh()
            progress_line(self.line())

    def close(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._thread is not None:
            self._stop.set()
            self._thread.join(5)
            self._thread = None
            progress_line(self.line(final=True))
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class stage:  # noqa: N801 - used as a context manager, like a function
    """A heartbeat for a stage without an item count: ``[name] working, elapsed 1:20``.

    Silent while a :class:`Progress` inside it reports, so lines are never doubled.
    """

    def __init__(self, name: str, enabled: bool | None = None) -> None:
        self.name = name
        self.enabled = enabled is not False
        self._stop = threading.Event()
        self._t0 = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(_interval()):
            if not _ACTIVE:
                doing = _PHASES[-1] if _PHASES else "working"
                progress_line(f"[{self.name}] {doing}, elapsed "
                              f"{_duration(time.monotonic() - self._t0)}")

    def __enter__(self) -> stage:
        self._phases = len(_PHASES)
        _PHASES.append("working")
        if self.enabled:
            threading.Thread(target=self._beat, daemon=True, name=f"stage-{self.name}").start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        del _PHASES[self._phases:]
