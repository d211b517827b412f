"""The structure pass's work on one page, in a worker process: parse, render, extract facts and
N-Quads under a time and memory limit; and the passes over the results (anchor sums, redirect
resolution).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kgx.dump.multistream import Stream, iter_stream_pages
from kgx.dump.sources import DumpError
from kgx.engines.journal import part_name
from kgx.engines.local import ignore_interrupts_in_worker, limit_address_space
from kgx.ontology import KGX, Mappings
from kgx.rdf.quads import to_nquads
from kgx.records import Document, Entity, Page
from kgx.structure.aliases import AliasStore
from kgx.structure.facts import StructureExtractor
from kgx.text.site import Site
from kgx.text.wikitext import is_disambiguation, parse_page


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
    doc_line: int = -1  # its document's line in the task's documents part (-1: none)


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


CATEGORY_NS = 14
ANCHORS_SUFFIX = ".anchors.jsonl"  # a task's anchors part: a line per page with links


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

    def install(self, limit_memory: bool = True) -> None:
        """Set a worker up with this context (:func:`init_worker`): what a pool given a
        context calls in each of its processes."""
        init_worker(self, limit_memory)


_CTX: Context | None = None


def init_worker(ctx: Context, limit_memory: bool = True) -> None:
    """Install the context, the alarm handler and the address-space limit in a worker."""
    global _CTX
    _CTX = ctx
    signal.signal(signal.SIGALRM, _alarm)
    ignore_interrupts_in_worker()  # never in the process that runs the stage itself
    if limit_memory:
        limit_address_space(ctx.limits.page_memory_mb)


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
        lines, counts = to_nquads(ctx.extractor.redirect_facts(page, title, target), site,
                                  Entity(title))
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


def _run(task_id: int, pages: list[Page], stem: str, ctx: Context) -> TaskResult:
    results = [_guarded(p, ctx) for p in pages]
    anchors: Counter[tuple[str, str]] = Counter()
    line = doc = 0
    for p, r in zip(pages, results, strict=True):
        anchors.update(r.anchors)
        r.revision_id = p.revision_id
        r.revisions_skipped = p.revisions_skipped
        r.first_line, r.n_lines = line, len(r.lines)
        line += len(r.lines)
        if ctx.keep_documents and r.document is not None:
            r.doc_line, doc = doc, doc + 1
    if ctx.parts is not None:
        with open(os.path.join(ctx.parts, stem + ".nq"), "w", encoding="utf-8") as f:
            for r in results:
                f.writelines(r.lines)
                r.lines = []
        # Each page's anchors, ``[page id, [[anchor, target], ...]]`` a line: what an update
        # (kgx.update) takes back out of the alias table when the page changes.
        with open(os.path.join(ctx.parts, stem + ANCHORS_SUFFIX), "w", encoding="utf-8") as f:
            for r in results:
                if r.anchors:
                    f.write(json.dumps([r.page_id, r.anchors], ensure_ascii=False))
                    f.write("\n")
        if ctx.keep_documents:
            with open(os.path.join(ctx.parts, stem + ".jsonl"), "w", encoding="utf-8") as f:
                for r in results:
                    if r.document is not None:
                        f.write(json.dumps(r.document.to_json(), ensure_ascii=False))
                        f.write("\n")
                    r.document = None
    for r in results:
        r.anchors = []
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


def redirect_resolver(site: Site, aliases: AliasStore) -> Callable[[str], str]:
    """An N-Quads line -> the line with every entity that is a redirect pointed at its target
    (the subject of a ``kgx:redirectsTo`` fact stays: it is the redirect)."""
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

    def resolve(line: str) -> str:
        if prefix not in line:
            return line
        s, p, rest = line.split(" ", 2)
        if s.startswith(prefix) and p != redirect_pred:
            s = fix(s)
        if rest.startswith(prefix):
            end = rest.index(">") + 1
            rest = fix(rest[:end]) + rest[end:]
        return f"{s} {p} {rest}"

    return resolve


def resolve_redirects(parts: list[Path], dst: Path, site: Site, aliases: AliasStore,
                       dropped: dict[str, list[tuple[int, int]]] | None = None) -> None:
    """Concatenate the facts, pointing every entity that is a redirect at its target
    (:func:`redirect_resolver`).

    Lines of pages in ``dropped`` (part stem -> line ranges) are left out.
    """
    resolve = redirect_resolver(site, aliases)
    with open(dst, "w", encoding="utf-8") as fout:
        for part in parts:
            with open(part, encoding="utf-8") as fin:
                ranges = (dropped or {}).get(part.name[: -len(".nq")])
                for line in (skip_lines(fin, ranges) if ranges else fin):
                    fout.write(resolve(line))


_ALIAS_STORES: dict[tuple[str, int], AliasStore] = {}  # (path, inode) -> a read-only store


def resolve_part(stem: str, dropped: list[tuple[int, int]]) -> str:
    """Worker task: ``parts/STEM.nq`` with redirects resolved -> ``parts/STEM.resolved.nq``.

    Written under a temporary name and renamed, so a resumed run can tell done parts by name.
    The part itself is kept: the graph's pages (:data:`kgx.outdir.PAGES_DIR`) that an update
    resolves again.
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
    return stem


