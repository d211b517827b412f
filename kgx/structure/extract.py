"""The structure pass: a dump's pages through worker processes into ``graph.nq``,
``aliases.sqlite``, ``documents.jsonl`` and the store, with a report of what it read, skipped
and lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from kgx.dump.multistream import Stream, find_index, read_index, read_multistream_site
from kgx.dump.reader import DumpReader
from kgx.dump.sources import DumpError, detect_format
from kgx.engines.chunks import ChunkJob
from kgx.engines.journal import (
    concatenate,
    dump_fingerprint,
    stage_key,
    write_atomic,
)
from kgx.engines.local import Crashed, OrderedPool
from kgx.engines.pools import new_pool
from kgx.ontology import ONTOLOGY_DIR, ONTOLOGY_GRAPH, load_mappings
from kgx.outdir import (
    ALIASES_FILE,
    DOCUMENTS_FILE,
    GRAPH_FILE,
    PAGES_DIR,
    REPORT_FILE,
    STORE_DIR,
    WORK_DIR,
    output_lock,
)
from kgx.rdf.store import MAX_LISTED, load_store
from kgx.records import Page
from kgx.runtime.progress import Progress
from kgx.structure.aliases import AliasStore
from kgx.structure.pages import (
    Context,
    Limits,
    PageResult,
    TaskResult,
    resolve_part,
    run_pages,
    run_stream,
)
from kgx.text.site import Site, check_namespace
from kgx.version import __version__

PAGE_KINDS = ("read", "article", "disambiguation", "redirect", "category", "other-namespace",
              "skipped", "lost", "duplicate-id")


@dataclass(slots=True)
class ExtractOptions:
    """Settings of a structure pass.

    Attributes:
        workers: Worker processes (default: all cores); 0 runs in this process.
        limit: Stop after this many pages.
        namespace: IRI namespace (default: derived from the dump's site).
        limits: Per-page time, memory and size limits.
        index: Multistream index (default: found next to the dump).
        load_store: Build the Oxigraph store after writing ``graph.nq``.
        keep_documents: Also write ``documents.jsonl`` (plain text with link spans).
        progress: Show a progress bar (default: when stderr is a terminal).
        wikidata: A Wikidata JSON dump: every entity its items link gets its Wikidata id
            (:mod:`kgx.structure.wikidata`).
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    limit: int | None = None
    namespace: str | None = None
    limits: Limits = field(default_factory=Limits)
    index: str | None = None
    load_store: bool = True
    keep_documents: bool = False
    progress: bool | None = None
    wikidata: str | None = None


@dataclass(slots=True)
class Report:
    """What a run did; saved as ``report.json``."""

    dump: str
    out: str
    version: str = __version__
    settings: dict[str, Any] = field(default_factory=dict)
    site: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    error: str | None = None
    pages: Counter[str] = field(default_factory=Counter)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    stream_errors: list[str] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    revisions_skipped: int = 0  # a history dump's older revisions (the newest is read)
    refused_quads: int = 0
    refused: list[str] = field(default_factory=list)
    resumed_chunks: int = 0
    triples: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    # The CPU seconds of this process (its threads included) in each timed step: what stays
    # on one machine however many workers there are (bench_scale's projection reads it).
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    # The store load by step (StoreLoad.seconds and cpu_seconds): its bulk loads run one chunk
    # per core, its optimize on about one.
    store_steps: dict[str, dict[str, float]] = field(default_factory=dict)
    worker_crashes: int = 0
    wikidata: dict[str, Any] | None = None  # what --wikidata matched (WikidataReport)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if d["wikidata"] is None:
            del d["wikidata"]
        d["pages"] = {k: self.pages.get(k, 0) for k in PAGE_KINDS} | dict(self.pages)
        d["triples"] = dict(self.triples)
        d["triples_total"] = sum(self.triples.values())
        read = self.pages.get("read", 0)
        secs = self.seconds.get("pages", 0.0)
        d["pages_per_second"] = round(read / secs, 1) if secs else None
        return d

    def summary(self) -> str:
        p = self.pages
        lines = [
            f"structure pass {'finished' if self.finished else 'NOT FINISHED'}: {self.dump} -> "
            f"{self.out}",
            f"pages read {p.get('read', 0):,}: articles {p.get('article', 0):,}, "
            f"disambiguations {p.get('disambiguation', 0):,}, redirects {p.get('redirect', 0):,},"
            f" categories {p.get('category', 0):,}, other namespaces "
            f"{p.get('other-namespace', 0):,}, skipped {p.get('skipped', 0):,}, lost "
            f"{p.get('lost', 0):,}",
            "triples " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.triples.items()))
            + f" (total {sum(self.triples.values()):,})",
            "time " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()),
        ]
        for s in self.skipped[:10]:
            lines.append(f"  skipped page {s['id']} {s['title']!r}: {s['reason']}")
        if len(self.skipped) > 10:
            lines.append(f"  ... {p.get('skipped', 0) - 10} more skipped pages in the report")
        if self.wikidata:
            w = self.wikidata
            lines.append(f"  wikidata: {w['items_with_sitelink']:,} of {w['entities']:,} "
                         f"entities link a page of {w['site']}; {w['matched']:,} matched, "
                         f"{w['missing']:,} name a page this dump does not have")
            if w["cut"]:
                lines.append(f"  wikidata: {w['cut']}")
        if self.revisions_skipped:
            lines.append(f"  {self.revisions_skipped:,} older revisions skipped (a history "
                         "dump: the newest revision of each page is read)")
        if p.get("duplicate-id"):
            lines.append(f"  {p['duplicate-id']:,} page ids seen twice: the later revision "
                         "was kept (see duplicates in the report)")
        for e in self.stream_errors[:10]:
            lines.append(f"  stream error: {e}")
        if self.refused_quads:
            lines.append(f"  {self.refused_quads:,} quads refused by the store, e.g. "
                         f"{self.refused[0]}")
        if self.error:
            lines.append(f"error: {self.error}")
        return "\n".join(lines)


def _batches(reader: DumpReader, limit: int | None, max_pages: int = 64,
             max_chars: int = 4_000_000) -> Iterator[tuple[int, list[Page]]]:
    batch: list[Page] = []
    chars = 0
    task = 0
    try:
        for n, page in enumerate(reader, 1):
            batch.append(page)
            chars += len(page.text)
            if len(batch) >= max_pages or chars >= max_chars:
                yield (task, batch)
                task += 1
                batch, chars = [], 0
            if limit is not None and n >= limit:
                break
    except DumpError:
        if batch:  # pages read before the fault are kept
            yield (task, batch)
        raise
    if batch:
        yield (task, batch)


WORK_NAME = "structure"  # OUT/.work/structure: a run's part files and alias table


def _delta() -> dict[str, Any]:
    """What one chunk adds to the report (kept in its journal row, so a resumed run's report
    counts every chunk, committed before the kill or after)."""
    return {"pages": Counter(), "triples": Counter(), "skipped": [], "lost": [],
            "stream_errors": [], "duplicates": [], "dropped": [], "revisions_skipped": 0}


class _Writer:
    """Commits task results chunk by chunk: the alias-table rows, the chunk's counts and its
    journal row in one SQLite transaction. Facts are in part files the workers wrote."""

    def __init__(self, job: ChunkJob, report: Report) -> None:
        self.job = job
        self.parts = job.parts
        self.aliases = AliasStore(job.work / ALIASES_FILE)
        job.open(self.aliases.db)  # a chunk's alias rows commit with it
        self.report = report
        self.committed = job.done
        self.dropped: dict[str, list[tuple[int, int]]] = {}  # part stem -> (first line, lines)
        for _, info in job.infos():
            self._apply(info)

    def commit(self, task_id: int, results: list[TaskResult]) -> None:
        """Record one chunk (a task, or the one-page retries of a task whose worker died)."""
        d = _delta()
        pages, titles, redirects = [], [], []
        anchors: Counter[tuple[str, str]] = Counter()
        for res in results:
            pages += [page_row(r, res.part) for r in res.results]
            for r in res.results:
                d["pages"]["read"] += 1
                d["pages"][r.kind] += 1
                d["revisions_skipped"] += r.revisions_skipped
                if r.kind == "skipped":
                    d["skipped"].append({"id": r.page_id, "title": r.title, "reason": r.reason})
                elif r.kind == "category":
                    d["triples"].update(r.counts)  # the category tree: no entity's title
                elif r.kind != "other-namespace":
                    d["triples"].update(r.counts)
                    titles.append((r.title, r.page_id, r.kind))
                    if r.redirect_target is not None:
                        redirects.append((r.title, r.redirect_target))
            anchors.update(res.anchors)
            if res.error:
                d["stream_errors"].append(res.error)
            if res.missing:
                reason = res.error or "page listed in the index but not found in its stream"
                d["pages"]["lost"] += len(res.missing)
                d["lost"] += [{"id": pid, "title": t, "reason": reason} for pid, t in res.missing]
        for k in ("skipped", "lost"):
            del d[k][MAX_LISTED:]

        def write(db: Any) -> None:
            for kept, dropped in self.aliases.add_pages(pages):
                d["dropped"].append([dropped[3], dropped[4], dropped[5]])
                d["pages"]["duplicate-id"] += 1
                if len(d["duplicates"]) < MAX_LISTED:
                    d["duplicates"].append({
                        "id": kept[0], "kept": {"title": kept[2], "revision": kept[1]},
                        "dropped": {"title": dropped[2], "revision": dropped[1]}})
            self.aliases.add_titles(titles)
            self.aliases.add_redirects(redirects)
            self.aliases.add_anchor_rows(anchors)

        self.job.commit(task_id, d, write)
        self._apply(d)

    def _apply(self, d: dict[str, Any]) -> None:
        rep = self.report
        rep.pages.update(d["pages"])
        rep.triples.update(d["triples"])
        for k in ("skipped", "lost", "duplicates"):
            lst = getattr(rep, k)
            lst += d[k][: max(0, MAX_LISTED - len(lst))]
        rep.stream_errors += d["stream_errors"]
        rep.revisions_skipped += d.get("revisions_skipped", 0)
        for stem, first, n in d["dropped"]:
            self.dropped.setdefault(stem, []).append((first, n))

    def stems(self) -> list[str]:
        """Part files of facts, in dump order."""
        return part_stems(self.parts)

    def close(self, pool: Any, log: Callable[[str], None]) -> None:
        """Sum the anchors in ``pool``'s workers, a line to ``log`` per part; flush the alias
        table."""
        self.aliases.finish(pool.map, log)


def page_row(r: PageResult, part: str) -> tuple[Any, ...]:
    """A page's row of the alias table's ``pages`` (:meth:`AliasStore.add_pages`)."""
    return (r.page_id, r.revision_id, r.title, part, r.first_line, r.n_lines, r.kind,
            r.doc_line)


def part_stems(parts: Path) -> list[str]:
    """The stems of the part files of facts in ``parts``, in dump order."""
    return sorted(f.name[: -len(".nq")] for f in parts.glob("*.nq")
                  if not f.name.endswith(RESOLVED))


RESOLVED = ".resolved.nq"


def extract(dump: str | os.PathLike[str], out: str | os.PathLike[str],
            options: ExtractOptions | None = None) -> Report:
    """Run the structure pass over ``dump`` into directory ``out``.

    Resumes: the chunks (multistream streams, or batches of pages) that an interrupted run with
    the same dump and settings committed are not read again.

    Returns:
        The report (also saved as ``out/report.json``); ``report.finished`` is False when the
        dump broke off, and ``report.error`` says where.

    Raises:
        DumpError: The dump cannot be opened at all (missing, unknown format, no siteinfo).
        ValueError: The namespace is not an absolute http(s) IRI.
        OutputInUse: Another kgx process is writing ``out``.
        WikidataError: ``options.wikidata`` is not a Wikidata JSON dump (before any work), or
            a line inside it is damaged.
    """
    opts = options or ExtractOptions()
    detect_format(dump)
    if opts.wikidata:
        from kgx.structure.wikidata import check_file

        check_file(Path(opts.wikidata))
    if opts.namespace:
        check_namespace(opts.namespace)
    with output_lock(Path(out)):
        return _extract(Path(dump), Path(out), opts)


def structure_key(dump: Path, opts: ExtractOptions, index: str | None) -> str:
    """What a structure pass's output depends on: the dump (a changed file starts over), the
    ontology and infobox mappings it maps onto (an edited mapping starts over), and every
    setting that changes what is written."""
    import hashlib

    vocabulary = hashlib.sha1()
    for path in (ONTOLOGY_DIR / "kgx.ttl", ONTOLOGY_DIR / "mappings" / "infoboxes.yaml"):
        vocabulary.update(path.read_bytes() if path.exists() else b"")
    # "anchors-2": the anchor rows' tables changed (kgx.structure.aliases.ANCHOR_PARTS); a pass
    # begun
    # by an earlier version starts over rather than leave its rows unsummed.
    return stage_key(__version__, dump_fingerprint(dump), opts.limit, opts.namespace,
                     asdict(opts.limits), opts.keep_documents, index, vocabulary.hexdigest(),
                     "anchors-2", "pages-2", *([dump_fingerprint(Path(opts.wikidata))]
                                    if opts.wikidata else []))


def _extract(dump_p: Path, out_p: Path, opts: ExtractOptions) -> Report:
    from kgx.runtime.logs import info as log

    out_p.mkdir(parents=True, exist_ok=True)
    index_path = opts.index or find_index(dump_p)
    work = out_p / WORK_DIR / WORK_NAME
    job = ChunkJob(work, structure_key(dump_p, opts, str(index_path or "")),
                   chunk_of=lambda res: res.task_id)
    report = Report(dump=str(dump_p), out=str(out_p))
    report.settings = {"workers": opts.workers, "limit": opts.limit,
                       "namespace": opts.namespace, "limits": asdict(opts.limits),
                       "index": opts.index}
    t0 = time.monotonic()

    streams: list[Stream] | None = read_index(index_path) if index_path else None
    reader: DumpReader | None = None
    if streams:
        info = read_multistream_site(dump_p, streams[0].offset)
        report.settings["index"] = str(index_path)
    else:
        reader = DumpReader(dump_p)
        info = reader.site
    site = Site(info, opts.namespace)
    report.site = {"sitename": info.sitename, "dbname": info.dbname, "base": info.base,
                   "lang": info.lang, "namespace": site.base}
    mappings = load_mappings()
    writer = _Writer(job, report)
    if job.resumed:
        log(f"[structure] resuming: {len(writer.committed):,} chunks committed before "
            f"({report.pages.get('read', 0):,} pages); {job.stale} part files of unfinished "
            "chunks dropped")
    report.resumed_chunks = len(writer.committed)
    write_atomic(out_p / REPORT_FILE, json.dumps(report.to_json(), indent=2))
    ctx = Context(site, mappings, opts.limits, opts.keep_documents, str(writer.parts),
                  str(work / ALIASES_FILE))
    # One pool for the pages, the anchor sums and the redirects: its workers are kept.
    pool = new_pool(ctx, opts.workers, reuse_workers=True)
    try:
        if streams is not None:
            _run_multistream(dump_p, streams, pool, writer, opts)
        else:
            assert reader is not None
            _run_sequential(reader, pool, writer, opts)
        report.finished = True
    except DumpError as exc:
        report.error = str(exc)
    except KeyboardInterrupt:
        report.error = "interrupted"
        raise
    finally:
        report.worker_crashes = pool.crashes
        report.seconds["pages"] = round(time.monotonic() - t0, 3)
        try:
            if report.error != "interrupted":
                t, cpu = time.monotonic(), time.process_time()
                writer.close(pool, log)  # the anchor rows summed (AliasStore.finish)
                report.seconds["anchors"] = round(time.monotonic() - t, 3)
                report.cpu_seconds["anchors"] = round(time.process_time() - cpu, 3)
                try:
                    _finish(out_p, work, pool, writer, report, opts, site)
                except Exception as exc:
                    # The report must not claim what did not happen. The committed chunks
                    # stay in .work: the same command continues from them.
                    report.finished = False
                    report.error = f"while writing the outputs: {type(exc).__name__}: {exc}"
                    write_atomic(out_p / REPORT_FILE,
                                 json.dumps(report.to_json(), indent=2, ensure_ascii=False))
                    raise
        finally:
            pool.close()
    return report


def _progress(opts: ExtractOptions, total: int | None, unit: str) -> Progress:
    return Progress(total=total, unit=unit, enabled=opts.progress, desc="pages")


def _run_sequential(reader: DumpReader, pool: OrderedPool, writer: _Writer,
                    opts: ExtractOptions) -> None:
    def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Retry a batch whose worker died page by page (its partial output dropped)."""
        task_id, pages = task
        return [(task_id, [p], k) for k, p in enumerate(pages)]

    with _progress(opts, reader.size, "B") as bar:
        n = writer.report.pages.get("read", 0)
        for task_id, got in writer.job.run(partial(pool.map, run_pages),
                                           _batches(reader, opts.limit), split):
            results = [page_crashed(r) if isinstance(r, Crashed) else r for r in got]
            writer.commit(task_id, results)  # a split task: committed when all are in
            n += sum(len(r.results) for r in results)
            bar.update_to(reader.compressed_pos, pages=n)


def page_crashed(res: Crashed) -> TaskResult:
    """A one-page retry that killed its worker again: the page is skipped."""
    task_id, pages, _ = res.task
    page = pages[0]
    return TaskResult(task_id, [PageResult(page.id, page.title, "skipped",
                                           "worker process died")])


def _run_multistream(path: Path, streams: list[Stream], pool: OrderedPool, writer: _Writer,
                     opts: ExtractOptions) -> None:
    # (stream, pages of it to process): --limit may end inside a stream, and the worker,
    # which writes the facts itself, must stop there too.
    plan: list[tuple[Stream, int | None]] = []
    left = opts.limit
    for s in streams:
        if left is not None and left <= 0:
            break
        keep = None if left is None or left >= len(s.page_ids) else left
        plan.append((s, keep))
        if left is not None:
            left -= len(s.page_ids)
    total = sum(len(s.page_ids) if k is None else k for s, k in plan)
    done = writer.committed
    with _progress(opts, total, "pages") as bar:
        bar.update(sum(len(s.page_ids) if k is None else k for s, k in plan if s.index in done))
        n = writer.report.pages.get("read", 0)
        tasks = ((s.index, str(path), s, k) for s, k in plan)
        for _, (res,) in writer.job.run(partial(pool.map, run_stream), tasks):
            if isinstance(res, Crashed):
                _, _, s, k = res.task
                res = TaskResult(s.index, [], Counter(),
                                 f"{path} at byte {s.offset:,}: worker process died reading "
                                 "this stream", list(zip(s.page_ids, s.titles, strict=False))[:k])
            writer.commit(res.task_id, [res])
            n += len(res.results)
            bar.update(len(res.results) + len(res.missing), pages=n)


def _finish(out: Path, work: Path, pool: OrderedPool, writer: _Writer, report: Report,
            opts: ExtractOptions, site: Site) -> None:
    """Redirects resolved part by part in the workers, then one graph.nq, one store; the
    parts themselves kept as the graph's pages (``OUT/pages/0``: an update reads them again)."""
    moving = work / "pages-moving"  # graph.nq, the documents and the store are written
    if not moving.exists():
        t = time.monotonic()
        todo = [(stem, writer.dropped.get(stem, [])) for stem in writer.stems()
                if not (writer.parts / (stem + RESOLVED)).exists()]
        for _ in pool.map(resolve_part, todo):
            pass
        pool.close()  # its last map: the store load needs no worker

        def ontology(f: BinaryIO) -> None:
            report.triples["ontology"] += append_ontology(f)
            if opts.wikidata:
                found = append_wikidata(f, Path(opts.wikidata), site, writer.aliases)
                report.wikidata = asdict(found)
                report.triples["wikidata"] += found.facts

        resolved = sorted(writer.parts.glob("*" + RESOLVED))
        concatenate(resolved, out / GRAPH_FILE, ontology)
        if opts.keep_documents:
            concatenate(document_parts(writer.parts, writer.stems()), out / DOCUMENTS_FILE)
        report.seconds["resolve"] = round(time.monotonic() - t, 3)
        if opts.load_store:
            t = time.monotonic()
            loaded = load_store(out / GRAPH_FILE, out / STORE_DIR)
            report.refused_quads = loaded.refused
            report.refused = loaded.examples
            report.seconds["store"] = round(time.monotonic() - t, 3)
            report.store_steps = {"seconds": loaded.seconds, "cpu_seconds": loaded.cpu_seconds}
        for f in resolved:
            f.unlink()
        writer.aliases.db.execute("UPDATE pages SET part = '0/' || part "
                                  "WHERE part NOT LIKE '%/%'")
        writer.aliases.db.commit()
        shutil.rmtree(out / PAGES_DIR, ignore_errors=True)  # an earlier graph's
        moving.touch()
    if any(writer.parts.iterdir()):  # one rename: the parts are the pages' generation 0
        (out / PAGES_DIR).mkdir(exist_ok=True)
        os.rename(writer.parts, out / PAGES_DIR / "0")
    # The alias table holds the journal: it leaves the work folder only once everything else
    # is written, so a store load that fails (a full disk) keeps every committed chunk.
    writer.aliases.close()
    os.replace(work / ALIASES_FILE, out / ALIASES_FILE)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()  # .work, when no other stage has work in flight
    write_atomic(out / REPORT_FILE, json.dumps(report.to_json(), indent=2, ensure_ascii=False))


def document_parts(parts: Path, stems: list[str]) -> list[Path]:
    """The documents parts of ``stems`` in ``parts`` that exist, in order."""
    return [p for p in (parts / f"{stem}.jsonl" for stem in stems) if p.exists()]


def append_wikidata(f: BinaryIO, path: Path, site: Site, aliases: AliasStore) -> Any:
    """Write the Wikidata ids (and labels, aliases) of the entities the items of ``path``
    link, each in its page's ``wikidata`` graph; returns what was found
    (:class:`kgx.structure.wikidata.WikidataReport`)."""
    from kgx.rdf.quads import to_nquads
    from kgx.structure.wikidata import WikidataReport, read_items, site_key, wikidata_facts

    info = site.info
    found = WikidataReport(str(path), site_key(info.dbname, info.lang))

    def page_of(raw: str) -> tuple[str, int] | None:
        title = site.normalize(raw)
        if title is None:
            return None
        title = aliases.resolve(title)
        row = aliases.db.execute("SELECT page_id, kind FROM titles WHERE title = ?",
                                 (title,)).fetchone()
        return (title, row[0]) if row and row[1] in ("article", "disambiguation") else None

    items = read_items(path, found.site, info.lang, found)
    for entity, facts in wikidata_facts(items, page_of, info.lang, __version__, found):
        lines, _ = to_nquads(facts, site, entity)
        f.write("".join(lines).encode("utf-8"))
    return found


def append_ontology(f: BinaryIO) -> int:
    """Write the ontology's triples to ``f`` as N-Quads in its own graph; returns how many."""
    import pyoxigraph as ox

    n = 0
    with open(ONTOLOGY_DIR / "kgx.ttl", "rb") as src:
        for t in ox.parse(src, format=ox.RdfFormat.TURTLE):
            f.write(f"{t.subject} {t.predicate} {t.object} <{ONTOLOGY_GRAPH}> .\n".encode())
            n += 1
    return n


