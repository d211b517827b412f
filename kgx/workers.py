"""Page processing in worker processes, each page under a time and a memory limit.

Takes pages (or, for a multistream dump, whole bz2 streams that a worker reads itself, so no
page text crosses a process boundary); gives :class:`PageResult` s in the order the dump holds
them, whatever the number of workers, so a parallel run writes what a sequential run writes.

A page that takes longer than ``page_timeout`` seconds or more memory than ``page_memory_mb``
is stopped, skipped and reported; a worker that dies outright is replaced, and the pages of its
task are retried one by one so that only the culprit is lost.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import resource
import signal
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kgx.aliases import AliasStore
from kgx.dump import DumpError, Stream, iter_stream_pages
from kgx.ontology import KGX, Mappings
from kgx.rdf import to_nquads
from kgx.records import Document, Entity, Page
from kgx.site import Site, iri_escape
from kgx.structure import StructureExtractor
from kgx.wikitext import is_disambiguation, parse_page


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-page limits: seconds, megabytes of memory above the worker's start, page size."""

    page_timeout: float = 60.0
    page_memory_mb: int = 4096
    max_page_bytes: int = 16_000_000


@dataclass(slots=True)
class PageResult:
    """What one page gave: its kind, N-Quads, counts, and what the alias table needs."""

    page_id: int
    title: str
    kind: str  # article | disambiguation | redirect | category | other-namespace | skipped
    reason: str | None = None
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    redirect_target: str | None = None
    anchors: list[tuple[str, str]] = field(default_factory=list)
    document: Document | None = None
    revision_id: int | None = None
    revisions_skipped: int = 0  # older revisions of a history dump, not read
    first_line: int = 0  # where this page's lines start in its task's part file
    n_lines: int = 0


@dataclass(slots=True)
class TaskResult:
    """What one task (a batch of pages, or one multistream stream) gave.

    The task's N-Quads and documents are in ``part`` files the worker wrote itself, so that
    page text and facts never pass through the parent process; what comes back is small.
    """

    task_id: int
    results: list[PageResult]
    anchors: Counter[tuple[str, str]] = field(default_factory=Counter)
    error: str | None = None
    missing: list[tuple[int, str]] = field(default_factory=list)
    part: str = ""  # stem of the part files the task wrote


@dataclass(frozen=True, slots=True)
class Crashed:
    """A task whose worker process died (segfault, kill, out of memory) twice."""

    task: tuple[Any, ...]


CATEGORY_NS = 14


class PageTimeout(Exception):
    """Raised inside a worker when a page runs past its time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise PageTimeout()


@dataclass(slots=True)
class Context:
    """What a worker needs to process pages; sent to each worker once."""

    site: Site
    mappings: Mappings
    limits: Limits
    keep_documents: bool = False
    parts: str | None = None  # directory for per-task N-Quads and documents
    aliases: str | None = None  # the run's alias table (redirect resolution)
    _extractor: StructureExtractor | None = None

    @property
    def extractor(self) -> StructureExtractor:
        if self._extractor is None:
            self._extractor = StructureExtractor(self.site, self.mappings)
        return self._extractor


_CTX: Context | None = None


def init_worker(ctx: Context, limit_memory: bool = True) -> None:
    """Install the context, the alarm handler and the address-space limit in a worker."""
    global _CTX
    _CTX = ctx
    signal.signal(signal.SIGALRM, _alarm)
    ignore_interrupts_in_worker()  # never in the process that runs the stage itself
    if limit_memory:
        limit_address_space(ctx.limits.page_memory_mb)


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


def process_page(page: Page, ctx: Context) -> PageResult:
    """Turn one page into facts, within the context's time limit."""
    site = ctx.site
    if page.problem is not None:
        return PageResult(page.id, page.title, "skipped", page.problem)
    normalized = site.normalize(page.title)
    if page.ns == 0 and normalized is None:
        return PageResult(page.id, page.title, "skipped",
                          f"title {page.title[:80]!r} is not one MediaWiki allows")
    title = normalized or page.title
    category = page.ns == CATEGORY_NS and page.redirect is None and normalized is not None
    if page.ns != 0 and not category:
        return PageResult(page.id, page.title, "other-namespace")
    if page.redirect is not None:
        target = site.normalize(page.redirect)
        if not target or target == title:
            return PageResult(page.id, page.title, "skipped", "redirect without a valid target")
        facts = ctx.extractor.redirect_facts(page, title, target)
        lines, counts = to_nquads(facts, site, Entity(title))
        return PageResult(page.id, title, "redirect", None, lines, counts, target)
    size = len(page.text.encode("utf-8")) if len(page.text) * 4 > ctx.limits.max_page_bytes \
        else len(page.text)
    if size > ctx.limits.max_page_bytes:
        return PageResult(page.id, title, "skipped",
                          f"page too large ({size:,} bytes > {ctx.limits.max_page_bytes:,})")
    use_alarm = ctx.limits.page_timeout > 0
    if use_alarm:
        signal.setitimer(signal.ITIMER_REAL, ctx.limits.page_timeout)
    try:
        doc = parse_page(page, site, ctx.mappings.infobox_names())
        if category:  # its parent categories: the category tree, not an entity's facts
            facts = ctx.extractor.category_facts(page, doc, title)
            lines, counts = to_nquads(facts, site, Entity(title))
            return PageResult(page.id, title, "category", None, lines, counts)
        dab = is_disambiguation(doc, *ctx.mappings.disambiguation_markers(site.lang))
        facts = ctx.extractor.article_facts(page, doc, title, dab)
        lines, counts = to_nquads(facts, site, Entity(title))
        anchors = [(doc.text[ln.start:ln.end], ln.target) for ln in doc.links]
    except PageTimeout:
        return PageResult(page.id, title, "skipped",
                          f"timed out after {ctx.limits.page_timeout:g} s")
    except MemoryError:
        return PageResult(page.id, title, "skipped",
                          f"over the memory limit ({ctx.limits.page_memory_mb} MB)")
    except RecursionError:
        return PageResult(page.id, title, "skipped", "markup nested too deeply")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return PageResult(page.id, title, "disambiguation" if dab else "article", None, lines,
                      counts, None, anchors, doc if ctx.keep_documents else None)


def _guarded(page: Page, ctx: Context) -> PageResult:
    try:
        return process_page(page, ctx)
    except Exception as exc:  # one bad page never stops a run
        return PageResult(page.id, page.title, "skipped", f"{type(exc).__name__}: {exc}")


def part_name(task_id: int, sub: int | None = None) -> str:
    """File stem of a task's part; retries of one page of a task sort right after it."""
    return f"{task_id:09d}" if sub is None else f"{task_id:09d}-{sub:05d}"


def _run(task_id: int, pages: list[Page], stem: str, ctx: Context) -> TaskResult:
    results = [_guarded(p, ctx) for p in pages]
    anchors: Counter[tuple[str, str]] = Counter()
    line = 0
    for p, r in zip(pages, results, strict=True):
        anchors.update(r.anchors)
        r.anchors = []
        r.revision_id = p.revision_id
        r.revisions_skipped = p.revisions_skipped
        r.first_line, r.n_lines = line, len(r.lines)
        line += len(r.lines)
    if ctx.parts is not None:
        with open(os.path.join(ctx.parts, stem + ".nq"), "w", encoding="utf-8") as f:
            for r in results:
                f.writelines(r.lines)
                r.lines = []
        if ctx.keep_documents:
            with open(os.path.join(ctx.parts, stem + ".jsonl"), "w", encoding="utf-8") as f:
                for r in results:
                    if r.document is not None:
                        f.write(json.dumps(r.document.to_json(), ensure_ascii=False))
                        f.write("\n")
                    r.document = None
    return TaskResult(task_id, results, anchors, part=stem)


def run_pages(task_id: int, pages: list[Page], sub: int | None = None) -> TaskResult:
    """Worker task: process a batch of pages (``sub``: a one-page retry of a batch)."""
    assert _CTX is not None, "worker not initialised"
    return _run(task_id, pages, part_name(task_id, sub), _CTX)


def run_stream(task_id: int, path: str, stream: Stream, keep: int | None = None) -> TaskResult:
    """Worker task: read one stream of a multistream dump and process its pages.

    Args:
        keep: Process only the stream's first ``keep`` pages (``--limit`` ends in this stream).
    """
    assert _CTX is not None, "worker not initialised"
    expected = list(zip(stream.page_ids, stream.titles, strict=False))[:keep]
    try:
        pages = iter_stream_pages(path, stream)[:keep]
    except DumpError as exc:
        return TaskResult(task_id, [], Counter(), str(exc), expected)
    found = {p.id for p in pages}
    missing = [(i, t) for i, t in expected if i not in found]
    res = _run(task_id, pages, part_name(task_id), _CTX)
    res.missing = missing
    return res


def skip_lines(lines: Any, ranges: list[tuple[int, int]]) -> Iterator[str]:
    """The lines of a part file outside ``(first, count)`` ranges (pages dropped as duplicates)."""
    drop = {k for first, n in ranges for k in range(first, first + n)}
    return (line for k, line in enumerate(lines) if k not in drop)


def resolve_redirects(parts: list[Path], dst: Path, site: Site, aliases: AliasStore,
                       dropped: dict[str, list[tuple[int, int]]] | None = None) -> None:
    """Concatenate the facts, pointing every entity that is a redirect at its target.

    Lines of pages in ``dropped`` (part stem -> line ranges) are left out.
    """
    prefix = "<" + site.resource
    plen = len(prefix)
    redirect_pred = f"<{KGX}redirectsTo>"
    cache: dict[str, str] = {}

    def fix(iri_term: str) -> str:
        hit = cache.get(iri_term)
        if hit is not None:
            return hit
        title = unquote(iri_term[plen:-1]).replace("_", " ")
        target = aliases.resolve(title)
        new = iri_term if target == title else f"<{site.entity_iri(target)}>"
        if len(cache) < 1_000_000:
            cache[iri_term] = new
        return new

    with open(dst, "w", encoding="utf-8") as fout:
        for part in parts:
            with open(part, encoding="utf-8") as fin:
                ranges = (dropped or {}).get(part.name[: -len(".nq")])
                for line in (skip_lines(fin, ranges) if ranges else fin):
                    if prefix in line:
                        s, p, rest = line.split(" ", 2)
                        if s.startswith(prefix) and p != redirect_pred:
                            s = fix(s)
                        if rest.startswith(prefix):
                            end = rest.index(">") + 1
                            rest = fix(rest[:end]) + rest[end:]
                        line = f"{s} {p} {rest}"
                    fout.write(line)




_ALIAS_STORES: dict[tuple[str, int], AliasStore] = {}  # (path, inode) -> a read-only store


def resolve_part(stem: str, dropped: list[tuple[int, int]]) -> str:
    """Worker task: ``parts/STEM.nq`` with redirects resolved -> ``parts/STEM.resolved.nq``.

    Written under a temporary name and renamed, so a resumed run can tell done parts by name.
    """
    assert _CTX is not None and _CTX.parts is not None and _CTX.aliases is not None
    path = _CTX.aliases
    key = (path, os.stat(path).st_ino)
    aliases = _ALIAS_STORES.get(key)
    if aliases is None:
        for old in _ALIAS_STORES.values():
            old.close()
        _ALIAS_STORES.clear()
        aliases = _ALIAS_STORES[key] = AliasStore(path, read_only=True)
    src = os.path.join(_CTX.parts, stem + ".nq")
    dst = os.path.join(_CTX.parts, stem + ".resolved.nq")
    resolve_redirects([Path(src)], Path(dst + ".tmp"), _CTX.site, aliases,
                      {stem: dropped} if dropped else None)
    os.replace(dst + ".tmp", dst)
    os.unlink(src)
    return stem


# --------------------------------------------------------------------------- the pool


class OrderedPool:
    """Runs tasks in worker processes and yields their results in submission order.

    Args:
        ctx: Context installed in every worker (the structure pass's pages).
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

    def __init__(self, ctx: Context | None, workers: int, window: int = 3,
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
            initializer, initargs = init_worker, (ctx,)
            if workers == 0:
                init_worker(ctx, limit_memory=False)
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


# The pool class of the engine in force: None is the local process pool (OrderedPool);
# kgx.cluster.use_engine sets kgx.cluster.RayPool for --engine ray.
POOL_CLASS: Any = None


# How the corpus and merge stages start their workers: spawned, so that a worker holds only
# what its initialiser loads, not the memory of the `kgx extract` process that ran the stages
# before (forked, each merge worker counted the read stage's model again: see merge). Tests
# whose stand-ins must reach the workers set "fork".
STAGE_START_METHOD = "spawn"


def new_pool(ctx: Context | None, workers: int, **kwargs: Any) -> Any:
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
    :class:`kgx.progress.LiveCount`) for the progress of the chunk in flight."""
    from kgx.progress import attach_live

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
    :meth:`OrderedPool.map` retries it (``split``). On Ray (:func:`kgx.cluster.map_steps`),
    the same, on actors; or, on a cluster with GPUs, each step is a pool of its own, results
    come as they finish, and a task lost on every retry is read again as its ``split`` parts
    in a local worker once the stream has ended (a part whose worker dies twice is yielded as
    :class:`Crashed`).
    ``workers=0`` runs them in this process.
    """
    if POOL_CLASS is not None and workers > 0:
        from kgx.cluster import map_steps as ray_map_steps

        yield from ray_map_steps(steps, tasks, workers, split)
        return
    yield from map_steps_here(steps, tasks, workers, split, live)


def map_steps_here(steps: list[Step], tasks: Iterable[tuple[Any, ...]], workers: int,
                   split: Callable[[tuple[Any, ...]], list[tuple[Any, ...]]] | None = None,
                   live: Any = None) -> Iterator[Any]:
    """:func:`map_steps` on this machine's processes, whatever the engine in force;
    ``live`` (a :class:`kgx.progress.LiveCount`) gets the progress of the chunks in flight."""
    pool = OrderedPool(None, workers, window=2, initializer=init_steps,
                       initargs=(steps, live), start_method="spawn")
    yield from pool.map(run_steps, tasks, split=split)


def iri_key(title: str) -> str:
    """The path of an entity IRI under the resource namespace (what redirects are keyed by)."""
    return iri_escape(title.replace(" ", "_"))
