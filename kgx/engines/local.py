"""The local engine: an ordered pool of worker processes that die with their parent, retry a
chunk whose process died (split into pages where the stage can), and yield results in submission
order.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Crashed:
    """A task whose worker process died (segfault, kill, out of memory) twice."""

    task: tuple[Any, ...]


def ignore_interrupts_in_worker() -> None:
    """In a worker process (not in the parent that runs tasks itself): Ctrl-C is the
    parent's to handle, so a worker does not die mid-chunk with a traceback of its own."""
    if mp.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def limit_address_space(extra_mb: int) -> None:
    """Cap this process's address space at what it uses now plus ``extra_mb``.

    Relative, not absolute: a process forked from one that already maps gigabytes (torch,
    a model) would die at once under an absolute cap. Past the cap, allocations raise
    MemoryError, which callers turn into a skipped page or a refused query.
    """
    if extra_mb <= 0:
        return
    with open("/proc/self/statm") as f:
        vm_pages = int(f.read().split()[0])
    cap = vm_pages * os.sysconf("SC_PAGE_SIZE") + extra_mb * (1 << 20)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))


class OrderedPool:
    """Runs tasks in worker processes and yields their results in submission order.

    Args:
        ctx: A context installed in every worker by its ``install()`` (the structure
            pass's :class:`kgx.structure.pages.Context`).
        workers: Number of processes; 0 runs tasks in this process (no memory limit).
        window: Tasks in flight at once per worker (bounds memory).
        initializer: Instead of a context, a function to set each worker up (another
            stage's), called with ``initargs``.
        start_method: ``fork`` (default, where the platform has it) or ``spawn``: a worker
            that runs torch must be spawned, since a process forked from one whose torch
            (OpenMP) threads have run can hang in its first parallel region.
        reuse_workers: Keep the processes between this pool's maps, set up once, until
            :meth:`close` (a spawned process imports its stage's modules, about a second of
            CPU each); otherwise each map starts its own and ends them.
    """

    def __init__(self, ctx: Any, workers: int, window: int = 3,
                 initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = (), start_method: str | None = None,
                 reuse_workers: bool = False) -> None:
        self.ctx = ctx
        self.workers = workers
        self.window = max(1, workers) * window
        self.crashes = 0
        self._pool: ProcessPoolExecutor | None = None
        if initializer is None:
            assert ctx is not None
            initializer, initargs = ctx.install, ()
            if workers == 0:
                ctx.install(limit_memory=False)
        elif workers == 0:
            initializer(*initargs)
        self._init = (initializer, initargs)
        self._method = start_method
        self.reuse_workers = reuse_workers

    def close(self) -> None:
        """End the processes kept between maps (``reuse_workers``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def terminate(self) -> None:
        """End the processes now, the chunks in flight with them (an interrupted run: what
        they had not committed is done again by the next run)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs = list((getattr(pool, "_processes", None) or {}).values())
        for proc in procs:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                proc.join(5)

    def _new_pool(self) -> ProcessPoolExecutor:
        method = self._method or ("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        return ProcessPoolExecutor(self.workers, mp_context=mp.get_context(method),
                                   initializer=init_child,
                                   initargs=(os.getpid(), *self._init))

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]],
            split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
            ) -> Iterator[Any]:
        """Yield ``fn(*task)`` for each task, in order.

        Args:
            fn: A module-level task function.
            tasks: Argument tuples.
            split: For a task whose worker died: smaller tasks to retry it as (one per page),
                so that only the page that kills a worker is lost. Without it the task is
                retried whole. A retry that dies again yields :class:`Crashed`.
        """
        if self.workers == 0:
            for t in tasks:
                yield fn(*t)
            return
        if self._pool is None:
            self._pool = self._new_pool()
        pending: deque[tuple[tuple[Any, ...], Future[Any]]] = deque()
        it = iter(tasks)
        failure: BaseException | None = None
        ended = False  # every task done: nothing in flight, the processes may be kept
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < self.window:
                    try:
                        t = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    except Exception as exc:  # the source broke: finish what was read first
                        failure = exc
                        exhausted = True
                        break
                    pending.append((t, self._pool.submit(fn, *t)))
                if not pending:
                    if failure is not None:
                        raise failure
                    ended = True
                    return
                task, fut = pending.popleft()
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    self.crashes += 1
                    retry = [task] + [p[0] for p in pending]
                    pending.clear()
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._new_pool()
                    yield from self._retry(fn, retry[0], split)
                    for t in retry[1:]:
                        pending.append((t, self._pool.submit(fn, *t)))
        except BaseException:
            # Ctrl-C, or the caller gave up: the chunks in flight are not waited for.
            self.terminate()
            raise
        finally:
            if not (ended and self.reuse_workers):
                self.close()

    def _retry(self, fn: Callable[..., Any], task: tuple[Any, ...],
               split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None
               ) -> Iterator[Any]:
        assert self._pool is not None
        parts = split(task) if split else [task]
        for part in parts:
            try:
                yield self._pool.submit(fn, *part).result()
            except BrokenProcessPool:
                self.crashes += 1
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                yield Crashed(part)


def init_child(parent: int, initializer: Callable[..., None], initargs: tuple[Any, ...]
               ) -> None:
    """A pool process's first step: it ends with ``parent`` (a ``kill -9`` of the run takes
    its workers too), then ``initializer(*initargs)`` sets it up."""
    from kgx.runtime.processes import die_with_parent

    die_with_parent(parent)
    initializer(*initargs)


# How the corpus and merge stages start their workers: spawned, so that a worker holds only
# what its initialiser loads, not the memory of the `kgx extract` process that ran the stages
# before (forked, each merge worker counted the read stage's model again: see merge). Tests
# whose stand-ins must reach the workers set "fork".
STAGE_START_METHOD = "spawn"
