"""The structure part of ``kgx update``: a newer dump's changed pages through the structure
pass's workers, chunk by chunk into a journal, then applied to the graph step by step.

Every step is resumable: the chunks commit to ``OUT/.work/update``, the plan and each applied
step are recorded there, and each step can run again (the alias table changes in one
transaction, marked with the update's key; the files are written whole and renamed; the
store is a set of quads). The caller (:mod:`kgx.stages.update`) records the new structure
key, then calls :func:`finish`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from kgx.dump.reader import DumpReader
from kgx.engines.chunks import ChunkJob
from kgx.engines.journal import concatenate, dump_fingerprint, stage_key
from kgx.engines.local import Crashed
from kgx.engines.pools import new_pool
from kgx.ontology import load_mappings
from kgx.outdir import (
    ALIASES_FILE,
    DOCUMENTS_FILE,
    GRAPH_FILE,
    PAGES_DIR,
    REPORT_FILE,
    STORE_DIR,
    WORK_DIR,
)
from kgx.rdf.store import load_store
from kgx.runtime.progress import Progress
from kgx.structure.extract import append_ontology, page_crashed, page_row
from kgx.structure.pages import Context, Limits, TaskResult, run_pages
from kgx.text.site import Site, page_url_prefix
from kgx.update.apply import (
    SCHEMA,
    Live,
    Resolving,
    apply_to_aliases,
    mark_step,
    page_rows,
    patch_store,
    plan,
    rebase_pages,
    resolve_live,
    step_done,
    write_documents,
)
from kgx.update.scan import Batch, Scan, UpdateError, check_same_wiki

WORK_NAME = "update"


@dataclass(slots=True)
class UpdateOptions:
    """Settings of ``kgx update``.

    Attributes:
        full: The dump is a whole dump: pages the graph has and it lacks are deleted. Without
            it, a dump of changed pages (Wikimedia's adds-changes files): the others are kept.
        allow_older: Apply a dump older than the graph.
        workers: Worker processes (0: this one).
        progress: A progress bar (default: on a terminal).
        patch_store: Bring the store up to date quad by quad (False: load it afresh from the
            structure graph, for stages that read everything again).
        wikidata: A Wikidata JSON dump to take the ids from (default: the one the graph was
            made with, if any; given, the ids are taken again even if no page changed).
    """

    full: bool = False
    allow_older: bool = False
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    progress: bool | None = None
    patch_store: bool = True
    wikidata: str | None = None


@dataclass(slots=True)
class UpdateReport:
    """What an update did: the ``update`` section of ``report.json``."""

    dump: str
    full: bool
    key: str
    pages: Counter[str] = field(default_factory=Counter)  # unchanged, changed, added, deleted
    resolved_again: int = 0  # unchanged pages whose links resolve through a changed redirect
    quads_retracted: int = 0
    quads_added: int = 0
    generation: int = 0  # the pages' part folder the changed pages went to
    triples: dict[str, int] = field(default_factory=dict)  # the structure graph's, by extractor
    site: dict[str, str] = field(default_factory=dict)  # the newer dump's site name and base
    wikidata: dict[str, Any] | None = None  # what the Wikidata file gave (WikidataReport)
    new_wikidata: bool = False  # a Wikidata file given to the update
    broke_off: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def changes(self) -> int:
        p = self.pages
        return p["changed"] + p["added"] + p["deleted"] + (1 if self.new_wikidata else 0)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["pages"] = {k: self.pages.get(k, 0) for k in ("unchanged", "changed", "added",
                                                         "deleted")}
        del d["key"], d["new_wikidata"]
        if d["wikidata"] is None:
            del d["wikidata"]
        return d

    def summary(self) -> str:
        p = self.pages
        line = (f"update from {self.dump}: {p['unchanged']:,} pages unchanged, "
                f"{p['changed']:,} changed, {p['added']:,} added, {p['deleted']:,} deleted; "
                f"{self.resolved_again:,} more resolved again through changed redirects")
        if self.broke_off:
            line += f"\n  the dump broke off: {self.broke_off}"
        return line


def update_key(out: Path, dump: Path, opts: UpdateOptions) -> str:
    """The update's key: the graph's structure (as ``stages.json`` or the report records
    it), the dump, and whether it is whole."""
    from kgx.outdir import STAGES_FILE

    stages = out / STAGES_FILE
    base = json.loads(stages.read_text("utf-8")).get("structure", {}).get("key") \
        if stages.exists() else None
    return stage_key(base, dump_fingerprint(dump), opts.full, opts.allow_older, "update-1",
                     *([dump_fingerprint(Path(opts.wikidata))] if opts.wikidata else []))


def update_structure(out: Path, dump: Path, opts: UpdateOptions,
                     log: Callable[[str], None]) -> UpdateReport:
    """Apply ``dump``'s changed pages to the structure graph in ``out`` (the caller holds its
    lock); the work folder stays until :func:`finish`.

    Raises:
        UpdateError: The graph has no pages to update (built by an older kgx), the dump is of
            another wiki, or it is older than the graph (nothing changed in the graph).
        DumpError: The dump cannot be opened.
    """
    report_path = out / REPORT_FILE
    if not (out / ALIASES_FILE).exists() or not (out / PAGES_DIR).is_dir():
        raise UpdateError(f"{out} holds no graph that kgx update can update (no "
                          f"{ALIASES_FILE} and {PAGES_DIR}/: a graph from kgx extract keeps "
                          "them, one made by an earlier kgx does not): run kgx extract")
    graph_report = json.loads(report_path.read_text("utf-8"))
    wikidata = _wikidata_file(out, graph_report, opts)
    reader = DumpReader(dump)
    check_same_wiki(graph_report["site"], reader.site, str(dump), str(out))
    site = Site(reader.site, graph_report["site"]["namespace"])
    t0 = time.monotonic()
    rep = UpdateReport(str(dump), opts.full, update_key(out, dump, opts),
                       site={"sitename": reader.site.sitename, "base": reader.site.base},
                       new_wikidata=bool(opts.wikidata))
    work = out / WORK_DIR / WORK_NAME
    job = ChunkJob(work, rep.key, chunk_of=lambda res: res.task_id)
    db = sqlite3.connect(work / "update.sqlite")
    db.executescript(SCHEMA)
    job.open(db)
    graph = sqlite3.connect(f"file:{out / ALIASES_FILE}?mode=ro", uri=True)
    try:
        scan = Scan(reader, graph, opts.allow_older)
        settings = graph_report.get("settings", {})
        limits = Limits(**settings.get("limits", {}))
        ctx = Context(site, load_mappings(), limits, (out / DOCUMENTS_FILE).exists(),
                      str(job.parts))
        if step_done(db, "scanned") is None:
            try:
                _scan(scan, job, db, ctx, opts)
            except UpdateError:  # an older dump: nothing of it is kept
                db.close()
                job.close()
                finish(out)
                raise
            mark_step(db, "scanned", json.dumps({"broke_off": scan.broke_off}))
        rep.broke_off = json.loads(step_done(db, "scanned") or "{}").get("broke_off")
    finally:
        graph.close()
    rep.seconds["scan"] = round(time.monotonic() - t0, 3)
    for _, info in job.infos():
        rep.pages.update(info["pages"])
    delete = opts.full and rep.broke_off is None
    if opts.full and rep.broke_off:
        log(f"[update] the dump broke off ({rep.broke_off}): the pages after the break are "
            "kept, not deleted (--full deletes only on a whole dump)")
    _apply(out, work, job, db, site, graph_report["site"].get("base", ""), rep, opts, delete,
           wikidata, log)
    db.close()
    job.close()
    rep.seconds["total"] = round(time.monotonic() - t0, 3)
    return rep


def _scan(scan: Scan, job: ChunkJob, db: sqlite3.Connection, ctx: Context,
          opts: UpdateOptions) -> None:
    """The dump's pages read; the changed ones processed in the workers, a chunk at a time.

    Raises:
        UpdateError: The dump is older than the graph (:meth:`Scan.check_older`).
    """
    seen: dict[int, Batch] = {}

    def tasks() -> Iterator[tuple[Any, ...]]:
        for b in scan.batches():
            if b.task not in job.done:
                seen[b.task] = b
                yield (b.task, b.pages)

    def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        task_id, pages = task
        return [(task_id, [p], k) for k, p in enumerate(pages)]

    pool = new_pool(ctx, opts.workers, reuse_workers=True)
    try:
        with Progress(total=scan.reader.size, unit="B", enabled=opts.progress,
                      desc="update") as bar:
            for task_id, got in job.run(partial(pool.map, run_pages), tasks(), split):
                b = seen.pop(task_id)
                results = [page_crashed(r) if isinstance(r, Crashed) else r for r in got]
                _commit(job, b, results, scan.broke_off)
                bar.update_to(scan.reader.compressed_pos)
    finally:
        pool.close()
    db.execute("CREATE INDEX IF NOT EXISTS seen_id ON seen(id)")
    scan.check_older(db)


def _commit(job: ChunkJob, b: Batch, results: list[TaskResult], broke_off: str | None
            ) -> None:
    rows = [(*page_row(r, res.part), r.redirect_target) for res in results for r in res.results]
    pages: Counter[str] = Counter(unchanged=b.unchanged)
    for r in rows:
        pages["changed" if r[0] in b.in_graph else "added"] += 1

    def write(con: sqlite3.Connection) -> None:
        # A page id twice in the dump: the newer revision stands (on a tie, the later
        # copy), as in kgx extract.
        con.executemany(
            "INSERT INTO changed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
            "SET rev = excluded.rev, title = excluded.title, part = excluded.part, "
            "first = excluded.first, n = excluded.n, kind = excluded.kind, doc = excluded.doc, "
            "target = excluded.target WHERE coalesce(excluded.rev, 0) >= coalesce(rev, 0)",
            rows)
        con.executemany("INSERT INTO seen VALUES (?, ?)", b.seen)

    job.commit(b.task, {"pages": dict(pages), "broke_off": broke_off}, write)


def _apply(out: Path, work: Path, job: ChunkJob, db: sqlite3.Connection, site: Site,
           old_base: str, rep: UpdateReport, opts: UpdateOptions, delete: bool,
           wikidata: Path | None, log: Callable[[str], None]) -> None:
    """The plan, the pages' new generation, the alias table, graph.nq, the documents and
    the store, each step once."""
    import pyoxigraph as ox

    t = time.monotonic()
    pages_dir, aliases_path, store_dir = out / PAGES_DIR, out / ALIASES_FILE, out / STORE_DIR
    moved = page_url_prefix(old_base) != site.page_url_prefix
    if step_done(db, "planned") is None:
        store = ox.Store.read_only(str(store_dir)) if store_dir.is_dir() else None
        plan(db, aliases_path, store, site, delete, every_page=moved)
        del store
        mark_step(db, "planned")
    rep.pages["deleted"] = db.execute("SELECT count(*) FROM retracted WHERE deleted"
                                      ).fetchone()[0]
    rep.resolved_again = db.execute("SELECT count(*) FROM resolved_again").fetchone()[0]
    rep.seconds["plan"] = round(time.monotonic() - t, 3)
    if not rep.changes:
        return
    gen = step_done(db, "generation")
    if gen is None:
        gen = str(1 + max((int(p.name) for p in pages_dir.iterdir() if p.name.isdigit()),
                          default=0))
        db.execute("UPDATE changed SET part = ? || '/' || part WHERE part NOT LIKE '%/%'",
                   (gen,))
        mark_step(db, "generation", gen)
    rep.generation = int(gen)
    if moved and step_done(db, "rebased") is None:
        log(f"[update] the wiki's pages moved from {page_url_prefix(old_base)} to "
            f"{site.page_url_prefix}: every page's URL is written again")
        rebase_pages(pages_dir, page_url_prefix(old_base), site.page_url_prefix)
        mark_step(db, "rebased")
    if any(job.parts.iterdir()):  # one rename: the changed pages' parts join the graph's
        os.rename(job.parts, pages_dir / gen)
    (rep.quads_retracted,) = db.execute(
        "SELECT coalesce(sum(n), 0) FROM retracted").fetchone()
    (rep.quads_added,) = db.execute("SELECT coalesce(sum(n), 0) FROM changed").fetchone()
    apply_to_aliases(db, aliases_path, pages_dir, rep.key)
    aliases = sqlite3.connect(f"file:{aliases_path}?mode=ro", uri=True)
    again = [i for (i,) in db.execute("SELECT id FROM resolved_again")]
    resolved_lines = sum(n for _, _, n in page_rows(aliases, again))  # rewritten as they were
    rep.quads_retracted += resolved_lines
    rep.quads_added += resolved_lines
    t = time.monotonic()
    live = Live.of(aliases)
    if step_done(db, "graph") is None:
        counts, found = _write_graph(out, work, live, site, opts.workers, wikidata)
        mark_step(db, "graph", json.dumps({"triples": counts, "wikidata": found}))
    written = json.loads(step_done(db, "graph") or "{}")
    rep.triples, rep.wikidata = written["triples"], written["wikidata"]
    if (out / DOCUMENTS_FILE).exists() and step_done(db, "documents") is None:
        write_documents(aliases, pages_dir, out / DOCUMENTS_FILE)
        mark_step(db, "documents")
    aliases.close()
    rep.seconds["graph"] = round(time.monotonic() - t, 3)
    if store_dir.is_dir() and step_done(db, "store") is None:
        t = time.monotonic()
        if opts.patch_store:
            store = ox.Store(str(store_dir))
            try:
                patch_store(store, site, db, pages_dir, aliases_path, work / "added.nq", log,
                            work / WIKIDATA_FILE if wikidata else None)
            finally:
                del store
        else:  # the structure graph alone, as the stages after it (read again) expect
            load_store(out / GRAPH_FILE, store_dir)
        mark_step(db, "store")
        rep.seconds["store"] = round(time.monotonic() - t, 3)


WIKIDATA_FILE = "wikidata.nq"  # in the work folder: the Wikidata ids, for the store too


def _wikidata_file(out: Path, report: dict[str, Any], opts: UpdateOptions) -> Path | None:
    """The Wikidata dump the update takes ids from: the one given, or the graph's own."""
    from kgx.structure.wikidata import WikidataError, check_file

    given = opts.wikidata or (report.get("wikidata") or {}).get("file")
    if not given:
        return None
    path = Path(given)
    if not path.is_file():
        raise UpdateError(f"{out} holds Wikidata ids from {path}, which is not there any "
                          "more: give kgx update the Wikidata dump to take them from with "
                          "--wikidata FILE")
    try:
        check_file(path)
    except WikidataError as exc:
        raise UpdateError(str(exc)) from exc
    return path


def _write_graph(out: Path, work: Path, live: Live, site: Site, workers: int,
                 wikidata: Path | None) -> tuple[dict[str, int], dict[str, Any] | None]:
    """``graph.nq`` again from the graph's live pages, resolved in ``workers`` processes,
    and the Wikidata ids of its entities; returns the facts by extractor and what the
    Wikidata file gave."""
    resolved = work / "resolved"
    resolved.mkdir(exist_ok=True)
    tasks = [(part, live.ranges.get(part, []), str(resolved / f"{k:09d}.nq"))
             for k, part in enumerate(live.parts())]
    pool = new_pool(Resolving(site, str(out / ALIASES_FILE), str(out / PAGES_DIR)), workers)
    counts: Counter[str] = Counter()
    try:
        for got in pool.map(resolve_live, tasks):
            counts.update(got)
    finally:
        pool.close()

    found: dict[str, Any] | None = None
    if wikidata is not None:
        from kgx.structure.aliases import AliasStore
        from kgx.structure.extract import append_wikidata

        aliases = AliasStore(out / ALIASES_FILE, read_only=True)
        try:
            with open(work / (WIKIDATA_FILE + ".tmp"), "wb") as f:
                report = append_wikidata(f, wikidata, site, aliases)
        finally:
            aliases.close()
        os.replace(work / (WIKIDATA_FILE + ".tmp"), work / WIKIDATA_FILE)
        found = asdict(report)
        counts["wikidata"] = report.facts

    def tail(f: Any) -> None:
        counts["ontology"] += append_ontology(f)
        if wikidata is not None:
            with open(work / WIKIDATA_FILE, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

    concatenate([Path(t[2]) for t in tasks], out / GRAPH_FILE, tail)
    shutil.rmtree(resolved, ignore_errors=True)
    return dict(counts), found


def finish(out: Path) -> None:
    """The update's work folder removed (its key recorded by the caller first)."""
    import contextlib

    work = out / WORK_DIR / WORK_NAME
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()
