"""The query workers of ``kgx serve``: processes that run queries under a time and memory limit.

A query runs in a worker process, because a signal cannot stop pyoxigraph's Rust loop and a
process kill can. What this module adds to "a pool of processes":

* **Lanes.** ``workers`` queries may run as long as the timeout allows (the long lane). One
  more runs in the light lane when the long lane is full, with ``light_timeout`` seconds (half a
  second): a light query never waits behind other clients' slow ones, and a slow query that
  finds the long lane full is answered 503 after that half second instead of holding the last
  worker.
* **Known slow queries.** A query that has run past ``light_timeout`` once (the same text, its
  spaces aside) is known slow: it waits for the long lane only, so slow queries sent again and
  again by many clients cannot take the light lane from light ones, and cost no worker a kill.
* **Fair order.** Waiting requests are served by how many queries their client (its address)
  already runs, then light before known slow, then by arrival, so one client's burst does not
  queue everyone else.
* **Start-up is nobody's query.** A worker counts as free only once it has opened the store
  and said so; a killed or crashed worker is replaced in the background, and one spare process
  is kept started, so a replacement takes no query's time.

Jobs are those of :func:`kgx.serve.queries.run_job`; messages from a worker are tagged
(``("ready",)``, ``("result", status, ctype, body, headers)``, and requests for the server's
entity index: ``("lookup", name)``, ``("suggest", name, k)``).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kgx.serve.options import Refused, ServeOptions

Answer = tuple[int, str, bytes, dict[str, str]]
START_SECONDS = 120.0  # a worker that has not opened the store by then is given up
SPARES = 1  # processes kept started beyond the lanes, to replace a killed one at once
LIGHT_LANE = 1  # queries that may run at once in the light lane


class _Worker:
    """One worker process and the pipe to it."""

    def __init__(self, ctx: Any, out: str, store: str, opts: ServeOptions) -> None:
        from kgx.serve.queries import worker_main

        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(out, store, child, opts), daemon=True,
                                name="kgx-query-worker")
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float) -> str | None:
        """None once the worker has opened the store; else why it did not."""
        try:
            if not self.conn.poll(timeout):
                return f"no answer within {timeout:g} s"
            msg = self.conn.recv()
        except (EOFError, OSError) as exc:
            return f"it exited ({type(exc).__name__})"
        if msg and msg[0] == "ready":
            return None
        return str(msg[1]) if msg and msg[0] == "failed" else f"unexpected message {msg!r}"

    def kill(self) -> None:
        try:
            self.proc.kill()
        finally:
            self.proc.join(5)
            with contextlib.suppress(OSError):
                self.conn.close()


@dataclass(slots=True, eq=False)
class _Ticket:
    client: str
    arrived: float
    shape: str = ""  # the job's fingerprint (see job_shape)
    known_slow: bool = False
    worker: _Worker | None = None
    lane: str = ""
    order: int = field(default_factory=itertools.count().__next__)


def job_shape(job: tuple[Any, ...]) -> str:
    """A job's fingerprint: its kind and text with runs of white space made one (the same
    query sent again, however it is laid out)."""
    import hashlib

    text = " ".join(str(x) for x in job[:2])
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8", "replace"),
                           digest_size=8).hexdigest()


KNOWN_SLOW = 10_000  # fingerprints of slow queries remembered (the oldest forgotten first)


class QueryPool:
    """Worker processes over one store, and the order in which requests get them.

    Args:
        out: The output directory (its ``report.json``).
        store: The store the workers open (the server's pinned version of ``OUT/store``).
        opts: The endpoint's settings (``workers``, ``timeout``, ``light_timeout``,
            ``queue_wait``, ``memory_mb``).
        lookup: ``name -> IRI or None`` for ``kgx:lookup()``, run in this process.
        suggest: ``(name, k) -> IRIs`` for a 404 page's suggestions.
        log: Where a worker that cannot start is reported.

    Raises:
        RuntimeError: No worker could open the store.
    """

    def __init__(self, out: str, store: str, opts: ServeOptions,
                 lookup: Callable[[str], str | None] | None = None,
                 suggest: Callable[[str, int], list[str]] | None = None,
                 log: Callable[[str], None] = lambda m: None) -> None:
        self.out, self.store, self.opts = out, store, opts
        self.lookup, self.suggest, self.log = lookup, suggest, log
        # spawn: a fresh interpreter per worker, whatever threads and libraries the server
        # process holds (forking a process with torch's thread pools can hang the child).
        self.ctx = mp.get_context("spawn")
        self.size = opts.workers + LIGHT_LANE + SPARES
        self.timeouts = 0
        self.crashes = 0
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._alive = 0  # processes started or starting, busy ones included
        self._lanes: Counter[str] = Counter()
        self._clients: Counter[str] = Counter()
        self._waiting: list[_Ticket] = []
        self._slow: dict[str, float] = {}  # fingerprint -> when it last ran long
        self._closed = False
        self._spawner = threading.Thread(target=self._keep_started, daemon=True,
                                         name="kgx-query-spawner")
        self._spawner.start()
        with self._cond:
            ready = self._cond.wait_for(lambda: len(self._idle) >= self.size or self._failed,
                                        timeout=START_SECONDS)
        if not ready or not self._idle:
            self.close()
            raise RuntimeError(f"no query worker could open {store}: {self._failed or 'timeout'}")

    _failed: str | None = None

    # ------------------------------------------------------------------ processes

    def _keep_started(self) -> None:
        """Start processes until :attr:`size` are alive, in this thread (a worker's
        parent-death signal follows the thread that started it); those missing at once start
        together."""
        failures = 0
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._alive < self.size)
                if self._closed:
                    return
                n = self.size - self._alive
                self._alive += n
            started = [_Worker(self.ctx, self.out, self.store, self.opts) for _ in range(n)]
            for w in started:
                why = w.wait_ready(START_SECONDS)
                with self._cond:
                    if why is None and not self._closed:
                        self._idle.append(w)
                        failures = 0
                        self._dispatch()
                        w = None  # type: ignore[assignment]  # handed on
                    else:
                        self._alive -= 1
                        if why is not None:
                            failures += 1
                            self._failed = why
                            self.log(f"kgx: a query worker did not start: {why}")
                    self._cond.notify_all()
                if w is not None:
                    w.kill()
            if failures:
                time.sleep(min(30.0, 0.5 * 2 ** failures))

    def _retire(self, w: _Worker) -> None:
        w.kill()
        with self._cond:
            self._alive -= 1
            self._cond.notify_all()

    # ------------------------------------------------------------------ scheduling

    def _dispatch(self) -> None:
        """Give idle workers to waiting tickets, fairest first (caller holds the lock): the
        long lane to any, the light lane to a ticket not known slow."""
        while self._idle and self._waiting:
            if self._lanes["long"] < self.opts.workers:
                lane, eligible = "long", self._waiting
            elif self._lanes["light"] < LIGHT_LANE:
                lane, eligible = "light", [t for t in self._waiting if not t.known_slow]
            else:
                return
            if not eligible:
                return
            t = min(eligible, key=lambda x: (self._clients[x.client], x.known_slow, x.order))
            self._waiting.remove(t)
            t.worker, t.lane = self._idle.pop(), lane
            self._lanes[lane] += 1
            self._clients[t.client] += 1
            self._cond.notify_all()

    def _acquire(self, client: str, shape: str) -> _Ticket:
        t = _Ticket(client, time.monotonic(), shape)
        with self._cond:
            t.known_slow = shape in self._slow
            if self._closed:
                raise Refused(503, "the server is shutting down")
            self._waiting.append(t)
            self._dispatch()
            self._cond.wait_for(lambda: t.worker is not None or self._closed,
                                timeout=self.opts.queue_wait)
            if t.worker is None:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(t)
                raise Refused(503, f"all {self.opts.workers} query workers are busy"
                              + (" with long queries, and this one ran long before"
                                 if t.known_slow else "") + "; try again later")
        return t

    def _release(self, t: _Ticket, w: _Worker | None) -> None:
        with self._cond:
            self._lanes[t.lane] -= 1
            self._clients[t.client] -= 1
            if self._clients[t.client] <= 0:
                del self._clients[t.client]
            if w is not None:
                if self._closed:
                    w.kill()
                    self._alive -= 1
                else:
                    self._idle.append(w)
            self._dispatch()
            self._cond.notify_all()

    # ------------------------------------------------------------------ jobs

    def run(self, job: tuple[Any, ...], client: str = "") -> Answer:
        """Run a job (see :func:`kgx.serve.queries.run_job`) in a worker: (status, content
        type, body, headers).

        Raises:
            Refused: 503 when no worker is free within ``queue_wait``, when the worker dies,
                or when a query in the light lane runs past ``light_timeout``; 504 past the
                timeout.
        """
        t = self._acquire(client, job_shape(job))
        w = t.worker
        assert w is not None
        keep: _Worker | None = w
        limit = self.opts.timeout if t.lane == "long" else min(self.opts.timeout,
                                                               self.opts.light_timeout)
        try:
            w.conn.send(job)
            start = time.monotonic()
            deadline = start + limit
            while w.conn.poll(max(0.0, deadline - time.monotonic())):
                msg = w.conn.recv()
                if msg[0] == "result":
                    if time.monotonic() - start > self.opts.light_timeout:
                        self._mark_slow(t.shape)
                    return msg[1:]
                # ("lookup", name) from kgx:lookup(), ("suggest", name, k) from a 404 page
                w.conn.send(self._lookup(msg[1]) if msg[0] == "lookup" else
                            self._suggest(msg[1], msg[2]))
            keep = None
            self._retire(w)
            self._mark_slow(t.shape)
            what = "query" if job[0] == "sparql" else "page"
            if limit < self.opts.timeout:
                raise Refused(503, f"all {self.opts.workers} query workers are running long "
                              f"queries, and this {what} ran past the {limit:g} s a query may "
                              "take while they do; try again later")
            self.timeouts += 1
            raise Refused(504, f"{what} stopped: it ran past the {limit:g} s timeout")
        except (EOFError, OSError, BrokenPipeError):
            keep = None
            self.crashes += 1
            self._retire(w)
            raise Refused(503, "the query worker died (out of memory?); try a smaller query"
                          ) from None
        finally:
            self._release(t, keep)

    def _mark_slow(self, shape: str) -> None:
        with self._cond:
            self._slow.pop(shape, None)
            self._slow[shape] = time.monotonic()
            while len(self._slow) > KNOWN_SLOW:
                del self._slow[next(iter(self._slow))]

    def _lookup(self, name: Any) -> str | None:
        if self.lookup is None or not isinstance(name, str) or not name.strip():
            return None
        try:
            return self.lookup(name)
        except (ValueError, RuntimeError, OSError):
            return None

    def _suggest(self, name: Any, k: Any) -> list[str]:
        if self.suggest is None or not isinstance(name, str) or not name.strip() \
                or not isinstance(k, int):
            return []
        try:
            return self.suggest(name, max(1, min(k, 20)))
        except (ValueError, RuntimeError, OSError):
            return []

    def running(self, lane: str) -> int:
        """Jobs running now in ``lane`` ("long" or "light")."""
        with self._cond:
            return self._lanes[lane]

    def drained(self) -> bool:
        """Whether no worker process of this pool is left (after :meth:`close`)."""
        with self._cond:
            return self._closed and self._alive <= 0

    def close(self) -> None:
        """End the idle workers now and the busy ones as their jobs end."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
            self._cond.notify_all()
        for w in idle:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
            w.kill()
