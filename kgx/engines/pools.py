"""The pool of the engine in force, and chunk work made of steps.

:func:`new_pool` gives the local process pool, or the engine registered by
:func:`kgx.engines.ray.use_engine`; :func:`map_steps` runs each chunk through a list of
:class:`Step` on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kgx.engines.local import OrderedPool, ignore_interrupts_in_worker

# The pool class of the engine in force: None is the local process pool (OrderedPool);
# kgx.engines.ray.use_engine sets kgx.engines.ray.RayPool for --engine ray.
POOL_CLASS: Any = None
# The engine's own map_steps, registered with POOL_CLASS (None: the local engine's).
ENGINE_MAP_STEPS: Callable[..., Iterator[Any]] | None = None


def new_pool(ctx: Any, workers: int, **kwargs: Any) -> Any:
    """The chunk pool of the engine in force (:class:`OrderedPool`'s arguments and interface).
    ``workers=0`` always runs tasks in this process."""
    cls = POOL_CLASS if POOL_CLASS is not None and workers > 0 else OrderedPool
    return cls(ctx, workers, **kwargs)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a chunk's work: ``cls(*args, **kwargs)`` is built once per process and
    called with the step before's output (the first step with the task's items).

    ``model`` marks the step that runs the model: an engine that runs steps apart gives it the
    GPUs or, on CPUs, sets its ``threads`` keyword (torch threads).
    """

    cls: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    model: bool = False

    def build(self, **extra: Any) -> Any:
        """The step's callable, ``extra`` keywords over its own."""
        return self.cls(*self.args, **{**self.kwargs, **extra})


_STEPS: list[Any] = []  # a worker's built steps (init_steps)


def init_steps(steps: list[Step], live: Any = None) -> None:
    """Worker initialiser: build each step once; take a slot of ``live`` (a
    :class:`kgx.runtime.progress.LiveCount`) for the progress of the chunk in flight."""
    from kgx.runtime.progress import attach_live

    ignore_interrupts_in_worker()
    attach_live(live)
    _STEPS[:] = [s.build() for s in steps]


def run_steps(*task: Any) -> Any:
    """Worker task: the task through every step, in order."""
    x = _STEPS[0](*task)
    for step in _STEPS[1:]:
        x = step(x)
    return x


def map_steps(steps: list[Step], tasks: Iterable[tuple[Any, ...]], workers: int,
              split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None,
              live: Any = None) -> Iterator[Any]:
    """Each task through ``steps``, on the engine in force.

    Locally, ``workers`` processes (spawned: the steps may run torch) each run all the steps
    of a chunk, and results come in task order; a task whose worker died is retried as
    :meth:`OrderedPool.map` retries it (``split``). On Ray (:func:`kgx.engines.ray.map_steps`),
    the same, on actors; or, on a cluster with GPUs, each step is a pool of its own, results
    come as they finish, and a task lost on every retry is read again as its ``split`` parts
    in a local worker once the stream has ended (a part whose worker dies twice is yielded as
    :class:`Crashed`).
    ``workers=0`` runs them in this process.
    """
    if ENGINE_MAP_STEPS is not None and workers > 0:
        yield from ENGINE_MAP_STEPS(steps, tasks, workers, split)
        return
    yield from map_steps_here(steps, tasks, workers, split, live)


def map_steps_here(steps: list[Step], tasks: Iterable[tuple[Any, ...]], workers: int,
                   split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None,
                   live: Any = None) -> Iterator[Any]:
    """:func:`map_steps` on this machine's processes, whatever the engine in force;
    ``live`` (a :class:`kgx.runtime.progress.LiveCount`) gets the progress of the chunks in
    flight."""
    pool = OrderedPool(None, workers, window=2, initializer=init_steps,
                       initargs=(steps, live), start_method="spawn")
    yield from pool.map(run_steps, tasks, split=split)
