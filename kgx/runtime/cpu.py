"""CPU threads: torch's on a machine whose cores other work may share, and SQLite's sorter's.

Takes the loop's own batch timings; gives the number of intra-op threads to use. torch's
default (one thread per core) collapses when another process holds a core: its OpenMP threads
wait on each other. Measured on the 2-core development machine (MiniLM forward + backward,
batches of 16 x 64 tokens): idle, 2 threads 22.0 and 1 thread 12.6 sentences/s; with one other
busy process, 2 threads 7.4 and 1 thread 11.7. No fixed setting wins both ways, so kgx starts
from the cores that are free now and keeps testing its neighbour while the loop runs.
"""

from __future__ import annotations

import os
import sqlite3
import time


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's core count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


SORT_THREADS: int | None = None  # SQLite sorter threads; None: one per usable core (at most 8)


def sort_threads(db: sqlite3.Connection) -> sqlite3.Connection:
    """Let SQLite's external sorter use helper threads (``PRAGMA threads``) on ``db``.

    The big sorts of a run (the anchor sums, the alias index, the misspelt-name index, the
    read stage's facts) are single statements over millions of rows; SQLite then sorts its
    runs in parallel. Measured on the 2-core development machine, a GROUP BY of 4 million
    anchor rows into a keyed table: 6.95 s with no helper thread, 5.7-5.9 s with 1, 2 or 4;
    a larger page cache made it slower (8.8 s at 64 MB). SQLite caps the helpers at 8.
    """
    n = usable_cores() if SORT_THREADS is None else SORT_THREADS
    db.execute(f"PRAGMA threads = {max(0, min(8, int(n)))}")
    return db


def _cpu_times() -> tuple[int, int] | None:
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields)


def free_cores(sample_seconds: float = 0.2) -> int:
    """Usable cores minus those other processes keep busy, sampled over ``sample_seconds``."""
    cores = usable_cores()
    a = _cpu_times()
    if a is None:
        return cores
    time.sleep(sample_seconds)
    b = _cpu_times()
    if b is None or b[1] <= a[1]:
        return cores
    machine = os.cpu_count() or cores
    busy = (1 - (b[0] - a[0]) / (b[1] - a[1])) * machine
    return max(1, min(cores, round(cores - busy)))


class ThreadTuner:
    """Picks torch's intra-op thread count from the loop's own throughput.

    Call :meth:`step` after each batch with its seconds and its size. Every ``period`` batches
    it tries a neighbouring thread count for ``trial`` batches and keeps whichever ran faster,
    so load that comes or goes mid-run is followed. It does nothing on a GPU.

    Args:
        enabled: False leaves torch's setting alone (a GPU, or a user's own choice).
    """

    def __init__(self, enabled: bool = True, period: int = 60, trial: int = 8) -> None:
        import torch

        self.torch = torch
        self.enabled = enabled and "KGX_THREADS" not in os.environ
        self.max = usable_cores()
        if "KGX_THREADS" in os.environ:
            torch.set_num_threads(max(1, int(os.environ["KGX_THREADS"])))
        self.threads = free_cores() if self.enabled else torch.get_num_threads()
        if self.enabled:
            torch.set_num_threads(self.threads)
        self.period, self.trial = period, trial
        self._since = 0
        self._rate: dict[int, list[float]] = {}
        self._trying: int | None = None
        self._trial_n = 0
        self._up = False

    def step(self, seconds: float, items: int) -> None:
        """Record one batch; switch thread count when a trial says so."""
        if not self.enabled or seconds <= 0:
            return
        cur = self.torch.get_num_threads()
        rates = self._rate.setdefault(cur, [])
        rates.append(items / seconds)
        del rates[:-self.trial]
        if self._trying is not None:
            self._trial_n += 1
            if self._trial_n >= self.trial:
                base = self._median(self.threads)
                if self._median(self._trying) > 1.05 * base:
                    self.threads = self._trying
                self.torch.set_num_threads(self.threads)
                self._trying = None
            return
        self._since += 1
        if self._since >= self.period and self.max > 1:
            self._since = 0
            self._up = not self._up  # alternate: one trial more threads, the next fewer
            want = self.threads + (1 if self._up else -1)
            if not 1 <= want <= self.max:
                want = self.threads + (-1 if self._up else 1)
            self._trying = want
            self._rate[want] = []
            self._trial_n = 0
            self.torch.set_num_threads(self._trying)

    def _median(self, threads: int) -> float:
        xs = sorted(self._rate.get(threads, []))
        return xs[len(xs) // 2] if xs else 0.0
