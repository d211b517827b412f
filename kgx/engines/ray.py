"""Ray as the engine of ``kgx extract``'s chunked stages: ``--engine ray [--ray-address ADDR]``.

Takes the stages' chunk functions; gives :class:`RayPool`, which the stages get from
:func:`kgx.engines.pools.new_pool` while :func:`use_engine` is in force. It has the local pool's
interface (:class:`kgx.engines.local.OrderedPool`): ``map(fn, tasks, split=None)`` yields
``fn(*task)`` in submission order, at most ``window`` tasks a worker in flight.

* **Workers** are Ray actors, one per pool worker. Each runs the stage's initializer once, as a
  process of the local pool does, then the stage's chunks. Chunks are committed by the stage
  runner in the driver, as with the local engine, so a run started on one engine and killed
  can be finished on the other.
* **Faults**: a chunk whose actor dies (its process killed, its node lost) is run again on a
  new actor, split into pages where the stage can (the structure stage), as the local pool
  does; one that dies again is yielded as :class:`kgx.engines.local.Crashed` and reported as lost.
  When a node is lost and the cluster has no CPU left for a new actor, the pool goes on with
  fewer actors. Ray counts a lost node's CPUs until it knows the node is lost (seconds to
  a minute), so an actor asked for meanwhile may never start: the pool never waits on Ray
  for longer than :data:`POLL_SECONDS`, and gives such an actor up, its chunks going to the
  others, once the cluster has fewer CPUs than the pool has actors.
  An exception raised by the stage's own code is raised in the driver, as locally.
* **Where data lives**: the dump and ``OUT`` must be on storage every node sees (a shared
  file system path), and kgx installed on every node, at the same path or as the same
  package; tasks pass paths, not data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kgx.engines.local import Crashed
from kgx.runtime.progress import LINE_EXTRAS


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def alive_nodes(ray: Any) -> int:
    """The Ray cluster's live nodes."""
    return sum(1 for n in ray.nodes() if n.get("Alive"))


@contextlib.contextmanager
def ray_session(address: str | None, workers: int, log: Callable[[str], None]) -> Iterator[Any]:
    """Ray, joined at ``address`` (``auto``: the running cluster) or started on this machine
    with ``workers`` CPUs; shut down at the end when this started it."""
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--engine ray needs Ray: pip install 'kgx[cluster]'") from exc
    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
        if address:
            ctx = ray.init(address=address, **kwargs)
        else:
            # A Ray of one machine announces loopback (its servers still listen on every
            # interface: Ray 2.60 binds them so whatever the node address).
            ctx = ray.init(num_cpus=max(1, workers), _node_ip_address="127.0.0.1", **kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        url = getattr(ctx, "dashboard_url", None)
        log(f"kgx: Ray {'cluster at ' + address if address else 'started on this machine'}: "
            f"{alive_nodes(ray)} node(s), {cpus} CPU(s)"
            + (f"; dashboard http://{url}" if url else ""))
    try:
        yield ray
    finally:
        if started:
            if not address:
                stop_autoscaler_monitor(ray)
            ray.shutdown()


def stop_autoscaler_monitor(ray: Any) -> None:
    """End the autoscaler monitor of a Ray that this process started on this machine, which
    has nothing to scale. ``ray.shutdown`` sends each of Ray's processes SIGTERM, waits up
    to a second, then kills it. The monitor used the whole second (Ray 2.60, 2 cores, timed
    once: 1.02 of the shutdown's 1.30 s); killed first, it is skipped (three runs each way:
    1.22-1.61 s before, 0.44-0.63 s after). Ray's private API: where it has moved, the
    shutdown is only slower."""
    with contextlib.suppress(Exception):
        node = ray._private.worker._global_node
        for info in list(node.all_processes.get("monitor", [])):
            if info.process.poll() is None:
                info.process.kill()
                info.process.wait(timeout=5)


class RayPool:
    """Ordered chunk results from Ray actors (see the module docstring).

    Args:
        ctx, workers, window, initializer, initargs, start_method: As
            :class:`kgx.engines.local.OrderedPool` takes them (``start_method`` is ignored: every
            actor is a fresh process, as ``spawn`` gives).
        reuse_workers: Keep the actors between this pool's maps, set up once, until
            :meth:`close` (the structure pass maps its pages, then its anchor sums, then
            its redirect resolution, on one pool). Otherwise each map starts its own and
            ends them. Kept actors hold their CPUs: close the pool before another pool
            needs them.
    """

    def __init__(self, ctx: Any, workers: int, window: int = 3,
                 initializer: Callable[..., None] | None = None,
                 initargs: tuple[Any, ...] = (), start_method: str | None = None,
                 reuse_workers: bool = False) -> None:
        if initializer is None:
            initializer, initargs = ctx.install, ()
        self.workers = max(1, workers)
        self.window = self.workers * max(1, window)
        self.crashes = 0
        self.reuse_workers = reuse_workers
        self._init = (initializer, initargs)
        self._actors: list[Any] = []
        self.node_chunks: dict[str, tuple[int, float]] = {}  # node -> chunks, task seconds
        self._t0 = time.monotonic()

    def _count(self, node: str, seconds: float) -> None:
        for table in (NODE_CHUNKS, self.node_chunks):
            n, busy = table.get(node, (0, 0.0))
            table[node] = (n + 1, busy + seconds)

    def nodes_line(self) -> str:
        """The nodes at work in this map, for the progress lines: ``2 nodes; node 1a2b3c:
        12 chunks, 0.40/s`` (chunks a second of this map's time)."""
        import ray

        elapsed = max(1e-9, time.monotonic() - self._t0)
        return f"{alive_nodes(ray)} node(s); " + "; ".join(
            f"node {node[:6]}: {n:,} chunks, {n / elapsed:.2f}/s"
            for node, (n, _) in sorted(self.node_chunks.items()))

    def _new_actor(self, i: int) -> None:
        """A new actor in slot ``i``, and the call that says when it has started."""
        import ray

        self._actors[i] = _actor_class(ray).remote(*self._init)
        self._started[i] = self._actors[i].ping.remote()
        self._born[i] = time.monotonic()

    def _drop(self, i: int) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self._actors[i], no_restart=True)
        self._actors[i] = self._started[i] = None

    def _replace(self, i: int) -> None:
        """A new actor in slot ``i`` after its actor died, not waited for; the slot is dropped
        when the cluster has no CPU left for it (a node was lost): its chunks go to the other
        actors."""
        import ray

        self._drop(i)
        others = sum(a is not None for a in self._actors)
        if not others or others < int(ray.cluster_resources().get("CPU", 0)):
            self._new_actor(i)

    def _has_started(self, i: int) -> bool:
        import ray

        ready, _ = ray.wait([self._started[i]], timeout=0)
        return bool(ready)

    def _unplaceable(self) -> list[int]:
        """Slots whose actor has not started and should be given up: as many as the live
        actors exceed the cluster's CPUs (a lost node's CPUs are counted until Ray knows it
        is lost, so an actor may have been asked for that has no CPU to start on), and any
        still waiting :data:`REPLACE_TIMEOUT` seconds after it was asked for while another
        has started (its CPU went to another job)."""
        import ray

        live = [i for i, a in enumerate(self._actors) if a is not None]
        waiting = [i for i in live if not self._has_started(i)]
        if len(waiting) == len(live):
            return []  # all still setting up (a stage's set-up may take minutes)
        excess = len(live) - int(ray.cluster_resources().get("CPU", 0))
        now = time.monotonic()
        return sorted(set(waiting[max(0, len(waiting) - excess):]
                          + [i for i in waiting if now - self._born[i] > REPLACE_TIMEOUT]))

    def _start_actors(self) -> None:
        """The map's actors: one per worker, at most one per CPU of the live nodes (a node
        lost in an earlier map leaves fewer: an actor with no CPU would never start). They
        are not waited for: a stage's set-up (loading a model) may take minutes. The actors
        an earlier map of this pool kept (``reuse_workers``) are used again; only the empty
        slots get new ones, within the CPUs the kept actors leave."""
        import ray

        if not self._actors:
            self._actors = [None] * self.workers
            self._started = [None] * self.workers
            self._born = [0.0] * self.workers
        free = int(ray.cluster_resources().get("CPU", 0)) - sum(
            a is not None for a in self._actors)
        for i in range(self.workers):
            if self._actors[i] is None and (free > 0 or all(a is None for a in self._actors)):
                self._new_actor(i)
                free -= 1

    def close(self) -> None:
        """End the actors this pool kept between its maps (``reuse_workers``); a later map
        starts new ones."""
        for i, a in enumerate(self._actors):
            if a is not None:
                self._drop(i)
        self._actors = []

    def _idle(self, inflight: list[int]) -> int | None:
        """A live slot with no chunk in flight, if any."""
        live = [i for i, a in enumerate(self._actors) if a is not None]
        if not live:
            raise RuntimeError("no Ray worker is left: every node of the pool was lost")
        return next((i for i in live if not inflight[i]), None)

    def map(self, fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]],
            split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
            ) -> Iterator[Any]:
        """Yield ``fn(*task)`` for each task, in order (see the module docstring for faults).

        Each actor runs one chunk at a time, so an actor that dies takes only its own chunk
        with it. That chunk is replaced, where it stood in the order, by its ``split`` parts
        (or by itself), which run on whichever actors are free, the dead one's replacement
        among them; a part that dies again is yielded as :class:`kgx.engines.local.Crashed`.
        Nothing blocks for longer than :data:`POLL_SECONDS`, and that often actors that
        cannot start are given up (:meth:`_unplaceable`); their chunks, which never ran, go
        to the others.
        """
        import ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        died = (RayActorError, WorkerCrashedError)
        self.node_chunks.clear()
        self._t0 = time.monotonic()
        LINE_EXTRAS.append(self.nodes_line)
        # One actor per worker, each holding a CPU: the pool never asks for more, so no actor
        # waits for another to end.
        self._start_actors()
        inflight = [0] * self.workers  # chunks running (or queued) on each slot's actor
        pending: deque[_Chunk] = deque()  # in the order results are yielded
        it = iter(tasks)
        exhausted = False
        looked = time.monotonic()  # when actors that cannot start were last looked for
        ended = False  # every task done: the actors have nothing in flight, and may be kept
        try:
            while True:
                for c in pending:  # chunks to run again, or moved, first
                    if c.ref is None and (i := self._idle(inflight)) is not None:
                        self._submit(c, i, fn, inflight)
                while not exhausted and len(pending) < self.window:
                    if (i := self._idle(inflight)) is None:
                        break
                    try:
                        c = _Chunk(next(it))
                    except StopIteration:
                        exhausted = True
                        break
                    self._submit(c, i, fn, inflight)
                    pending.append(c)
                if not pending:
                    ended = True
                    return
                running = [c.ref for c in pending if c.ref is not None and c.outcome is None]
                if running:
                    ready, _ = ray.wait(running, num_returns=1, timeout=POLL_SECONDS)
                    for ref in ready:
                        k, c = next((k, c) for k, c in enumerate(pending) if c.ref is ref)
                        inflight[c.slot] -= 1
                        try:
                            c.outcome = ("ok", ray.get(ref))
                        except died:
                            self.crashes += 1
                            if self._actors[c.slot] is c.actor:  # not replaced already
                                self._replace(c.slot)
                            if c.retried:
                                c.outcome = ("lost", c.task)
                            else:
                                del pending[k]
                                for n, part in enumerate(split(c.task) if split else [c.task]):
                                    pending.insert(k + n, _Chunk(part, retried=True))
                        except RayTaskError as exc:
                            c.outcome = ("error", exc)
                    if time.monotonic() - looked >= POLL_SECONDS:
                        self._move_unplaceable(pending, inflight)
                        looked = time.monotonic()
                while pending and pending[0].outcome is not None:
                    kind, value = pending.popleft().outcome
                    if kind == "ok":
                        result, node, seconds = value
                        self._count(node, seconds)
                        yield result
                    elif kind == "error":
                        raise value.as_instanceof_cause()
                    else:
                        yield Crashed(value)
        finally:
            with contextlib.suppress(ValueError):
                LINE_EXTRAS.remove(self.nodes_line)
            if not (ended and self.reuse_workers):
                self.close()

    def _submit(self, c: _Chunk, i: int, fn: Callable[..., Any], inflight: list[int]) -> None:
        inflight[i] += 1
        c.slot, c.actor = i, self._actors[i]
        c.ref = c.actor.run.remote(fn, c.task)

    def _move_unplaceable(self, pending: deque[_Chunk], inflight: list[int]) -> None:
        """Give up the actors that cannot start (:meth:`_unplaceable`); their chunks, which
        never ran, wait for the other actors, in the same places of the order."""
        gone = self._unplaceable()
        for i in gone:
            self._drop(i)
            inflight[i] = 0
        for c in pending:
            if c.ref is not None and c.outcome is None and c.slot in gone:
                c.ref = None


@dataclasses.dataclass(eq=False)
class _Chunk:
    """A task of :meth:`RayPool.map`: where it runs, and how it ended once it has."""

    task: tuple[Any, ...]
    retried: bool = False  # a part of a chunk whose actor died: lost if it dies too
    slot: int = -1
    actor: Any = None
    ref: Any = None  # None until submitted (again)
    # once ended: ("ok", (value, node, seconds)) | ("lost", task) | ("error", exception)
    outcome: Any = None


_ACTOR: Any = None
# Seconds an actor may wait to start (its stage's set-up included) while another of its pool has
# started, before it is given up and its chunks go to the others (its CPU went elsewhere).
REPLACE_TIMEOUT = 300.0
# The longest the pool waits on Ray at a time before it looks for actors that cannot start.
POLL_SECONDS = 5.0


def _actor_class(ray: Any) -> Any:
    """The Ray actor class, defined once Ray is imported (Ray is an optional install)."""
    global _ACTOR
    if _ACTOR is None:

        class ChunkWorker:
            def __init__(self, initializer: Callable[..., None], initargs: tuple[Any, ...]
                         ) -> None:
                os.environ.setdefault("KGX_ENGINE", "ray")
                initializer(*initargs)
                self.node = ray.get_runtime_context().get_node_id()

            def ping(self) -> str:
                return self.node

            def run(self, fn: Callable[..., Any], args: tuple[Any, ...]
                    ) -> tuple[Any, str, float]:
                t = time.monotonic()
                result = fn(*args)
                return result, self.node, time.monotonic() - t

        _ACTOR = ray.remote(num_cpus=1, max_restarts=0)(ChunkWorker)
    return _ACTOR


# A step's task that dies with its actor (the process killed, its node lost) is retried this
# many times on a restarted actor before its chunk is reported lost: a chunk that kills every
# process that reads it must not be retried for ever.
STEP_RETRIES = 3


# Where the read stage's steps run on Ray: "auto" gives each step a pool of its own (a Ray Data
# pipeline) when the cluster has GPUs, and runs all of a chunk's steps on one actor, as the
# local engine does, when it has none; "pools" and "fused" force one or the other. Measured on
# 2 CPU cores (benchmarks/bench_read_engines.py, three runs), separate pools took 1.18x the
# local engine's time and fused actors 1.01x: with no GPU the model is most of the work, and
# handing chunks between pools only takes CPU from it.
STEP_POOLS = "auto"


def map_steps(steps: list[Any], tasks: Iterable[tuple[Any, ...]], workers: int,
              split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None
              ) -> Iterator[Any]:
    """Each task through ``steps`` (:class:`kgx.engines.pools.Step`) on Ray: fused on one actor
    (:class:`RayPool`, which retries a task whose actor died as its ``split`` parts), or in a
    pool per step (:data:`STEP_POOLS`, :func:`map_step_pools`). A task lost on every retry
    of the pools is read again, once the stream has ended, as its ``split`` parts in a local
    worker process, so that only the part that kills its process is lost (a
    :class:`kgx.engines.local.Crashed`), as with the local engine."""
    import ray

    from kgx.engines.pools import init_steps, map_steps_here, run_steps

    gpus = int(ray.cluster_resources().get("GPU", 0))
    pools = STEP_POOLS == "pools" or (STEP_POOLS == "auto" and gpus > 0)
    if pools:
        try:
            import ray.data  # noqa: F401
        except ImportError:
            pools = False
    if pools:
        lost = []
        for result in map_step_pools(steps, tasks):
            if isinstance(result, Crashed):
                lost.append(result.task)
            else:
                yield result
        if lost and split is not None:
            # On this node, outside Ray: the parts are few, and Ray actors asked for now may
            # wait on CPUs that the stream's actors still hold (seen under pytest: the
            # stream's actors outlived it, and the next actors never started).
            yield from map_steps_here(steps, [part for t in lost for part in split(t)], 1)
        else:
            yield from (Crashed(t) for t in lost)
        return
    pool = RayPool(None, workers, window=2, initializer=init_steps, initargs=(steps,))
    yield from pool.map(run_steps, tasks, split=split)


def map_step_pools(steps: list[Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
    """Each task through ``steps`` (:class:`kgx.engines.pools.Step`) as a Ray Data stream: every
    step is an actor pool of its own, so the model step holds the GPUs and the others the
    CPUs, and Ray Data moves chunks between them with backpressure.

    * **Pools.** With GPUs in the cluster, the model step has :data:`MODEL_ACTORS_PER_GPU`
      actors on each GPU, and the other steps share the CPUs. With none, the model step has
      about two CPUs in three (torch threads to match) and the others the rest.
    * **Results** come as chunks finish, not in task order. A step's own exception is raised
      here, with its traceback. A task whose actor died :data:`STEP_RETRIES` times more is
      yielded as :class:`kgx.engines.local.Crashed`, once the stream has ended. A task queued on
      an actor that another task kills loses a retry with it, so a task that kills every
      actor can take a neighbour down too: both are reported, and :func:`map_steps` reads
      every lost task again in parts.
    """
    import pickle

    import ray
    import ray.data as rd

    tasks = list(tasks)
    if not tasks:
        return
    ctx = rd.DataContext.get_current()
    ctx.enable_progress_bars = False  # kgx's progress lines say it
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its plan, in its own log file
    ctx.max_errored_blocks = -1  # a chunk lost on every retry: found missing below, reported
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    sizes = step_pools(steps, cpus, gpus)
    items = [{"i": i, "data": pickle.dumps(("ok", t))} for i, t in enumerate(tasks)]
    ds: Any = rd.from_items(items, override_num_blocks=len(tasks))
    for k, (step, (actors, num_cpus, num_gpus)) in enumerate(zip(steps, sizes, strict=True)):
        threads = max(1, math.ceil(num_cpus)) if step.model and not gpus else None
        with warnings.catch_warnings():  # Ray 2.60 names no parameter for the retries
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map(_StepActor, fn_constructor_args=(step, k == 0, threads),
                        compute=rd.ActorPoolStrategy(size=actors), num_cpus=num_cpus,
                        num_gpus=num_gpus, max_restarts=-1, max_task_retries=STEP_RETRIES)
    seen: set[int] = set()
    try:
        for row in ds.iter_rows():
            seen.add(row["i"])
            kind, value = pickle.loads(row["data"])
            if kind == "error":
                raise RuntimeError(f"a chunk's step failed on Ray:\n{value}")
            yield value
    finally:
        # The stream's actors go once nothing refers to them, and Ray Data's executor holds
        # them in reference cycles: collected here, not whenever Python next collects.
        del ds
        gc.collect()
    for i, t in enumerate(tasks):
        if i not in seen:
            yield Crashed(t)


# Model actors that share a GPU. The model process's own work on the CPU (windows, tag
# decoding, pairs: 149-175 us a sentence on 2 cores, commit fbaf48d, bench_read_flops.py)
# caps one actor at about 5,700-6,700 sentences a second whatever its GPU; the dump-scale
# projection asks 9,500 of a GPU.
MODEL_ACTORS_PER_GPU = 2


def step_pools(steps: list[Any], cpus: float, gpus: int) -> list[tuple[int, float, float]]:
    """(actors, CPUs per actor, GPUs per actor) of each step's pool, within the cluster's
    ``cpus`` and ``gpus`` (see :func:`map_steps`)."""
    others = sum(1 for s in steps if not s.model)
    if gpus:
        n = gpus * MODEL_ACTORS_PER_GPU
        model = (n, min(1.0, cpus / (n + others)), 1.0 / MODEL_ACTORS_PER_GPU)
        left = max(cpus - model[0] * model[1], 0.5 * others)
    else:
        n = max(1, int(cpus * 2 // 3) // 2)  # actors of about two CPUs
        model = (n, min(cpus * 2 / 3, 2.0 * n) / n if others else cpus / n, 0.0)
        left = cpus - model[0] * model[1]
    out = []
    share = left / max(1, others)  # each other step's CPUs
    for s in steps:
        if s.model:
            out.append(model)
        else:
            actors = max(1, int(share))
            out.append((actors, share / actors, 0.0))
    return out


class _StepActor:
    """A Ray Data actor of one step: rows are ``{"i": task index, "data": pickled (kind,
    value)}``; an ``error`` passes through the later steps untouched."""

    def __init__(self, step: Any, first: bool, threads: int | None) -> None:
        os.environ.setdefault("KGX_ENGINE", "ray")
        self.fn = step.build(**({"threads": threads} if threads else {}))
        self.first = first

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import pickle
        import traceback

        kind, value = pickle.loads(row["data"])
        if kind == "ok":
            try:
                value = self.fn(*value) if self.first else self.fn(value)
            except Exception:  # noqa: BLE001 - raised in the driver, with this traceback
                kind, value = "error", traceback.format_exc()
        return {"i": row["i"], "data": pickle.dumps((kind, value))}


ENGINES = ("local", "ray")


@contextlib.contextmanager
def use_engine(engine: str, address: str | None, workers: int,
               log: Callable[[str], None]) -> Iterator[dict[str, Any]]:
    """Run the stages' chunks on ``engine`` inside the block.

    Yields a dict that ends up in the report: the engine, and under Ray the nodes and the
    chunks each node ran.
    """
    import kgx.engines.local
    import kgx.engines.pools
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    info: dict[str, Any] = {"name": engine}
    if engine == "local":
        yield info
        return
    with ray_session(address, workers, log) as ray:
        info["address"] = address or "local"
        info["nodes"] = alive_nodes(ray)
        NODE_CHUNKS.clear()
        kgx.engines.pools.POOL_CLASS = RayPool
        kgx.engines.pools.ENGINE_MAP_STEPS = map_steps
        try:
            yield info
        finally:
            kgx.engines.pools.POOL_CLASS = None
            kgx.engines.pools.ENGINE_MAP_STEPS = None
            info["chunks_per_node"] = {k: n for k, (n, _) in NODE_CHUNKS.items()}
            info["task_seconds_per_node"] = {k: round(s, 2) for k, (_, s) in NODE_CHUNKS.items()}
            info["chunks_per_task_second_per_node"] = {
                k: round(n / s, 3) if s else None for k, (n, s) in NODE_CHUNKS.items()}


NODE_CHUNKS: dict[str, tuple[int, float]] = {}  # node id -> chunks, task seconds, this run
