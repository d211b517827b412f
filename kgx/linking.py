"""Entity linking: an alias table with priors, a FAISS index of entity embeddings, a scorer.

Takes the structure pass's output (titles, redirects, anchor texts with link counts, types and
abstracts in the graph); gives, for a mention, ranked candidate entities with the signals that
matched, or NIL. Split as relik splits it:

* :class:`AliasTable` -- candidates by exact (case-folded) alias, with the prior
  P(entity | mention) from link counts; titles and redirects count as one link each.
* :class:`VectorIndex` -- FAISS over "label: description" embeddings (MiniLM), for what the
  alias table misses: typos, paraphrases, unseen aliases. Exact inner-product search up to
  100,000 entities, an inverted file (IVF, 32 lists probed) above.
* :class:`Linker` -- scores candidates from both by prior, context similarity, type
  compatibility and name similarity; below ``nil_threshold`` the answer is NIL.

Files in the output directory: ``aliases.sqlite`` (tables ``entities`` and ``alias_index``
added here), ``entities.faiss`` and ``entities.json`` (what built the index).
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import shutil
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from kgx import fuzzy
from kgx.ontology import KGX

INDEX_FILE = "entities.faiss"
INDEX_META = "entities.json"
EXACT_LIMIT = 100_000
# Above this many bytes of float32 vectors the index stores them as 8-bit scalars (4x smaller:
# the English Wikipedia's 7 million 384-d vectors take 2.7 GB instead of 10.8 GB). The recall
# this costs is measured by benchmarks/bench_faiss.py.
COMPRESS_ABOVE_BYTES = 2 << 30
# Index files above this size are memory-mapped, not read: processes share the page cache.
MMAP_ABOVE_BYTES = 256 << 20
MAX_QUERY_CHARS = 1000
# Digits a candidate's score and signals keep; rank sorts by the score so rounded, then title.
SCORE_DIGITS = 4
_SPACE = re.compile(r"\s+")
_QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")


class LinkingIndexError(RuntimeError):
    """A missing, corrupted or mismatched entity index; says how to rebuild it."""


def alias_key(text: str) -> str:
    """The lookup key of an alias: NFKC, case-folded, spaces folded."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A candidate entity for a mention, with the signals that scored it."""

    iri: str
    title: str
    label: str
    types: tuple[str, ...]
    score: float
    signals: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------- building


def priors(counts: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    """P(entity | alias) from (entity, link count) rows, smoothed: an alias seen once as a
    title still has a prior below certainty."""
    total = sum(n for _, n in counts) + 1e-9
    return [(e, (n + 0.1) / (total + 0.1 * len(counts))) for e, n in counts]


ALIAS_CHUNK_ROWS = 100_000  # rows of titles, redirects or anchors per alias task
LABEL_BATCH_ROWS = 50_000  # rows of the articles' bold names written at a time


def build_entity_table(out: Path, entities_info: dict[str, Any] | None = None,
                       workers: int = 0, phases: dict[str, float] | None = None,
                       phases_cpu: dict[str, float] | None = None) -> int:
    """Add ``entities`` and ``alias_index`` to ``out/aliases.sqlite``.

    Entities are the dump's articles and every page they link to (resolved through
    redirects); disambiguation pages and redirects are not entities. Alias keys and redirect
    targets are worked out by ``workers`` processes (0: this one), chunks of titles,
    redirects and anchors at a time (:func:`alias_rows`); this process numbers the entities
    in the order the chunks give them (so any number of workers makes the same tables) and
    writes the rows to tables by key range (:func:`_range_of`). With
    :data:`SUM_IN_WORKERS_FROM` workers or more, the workers sum each range
    (:func:`sum_alias_part`) and this process appends the sums in key order, so no sort of
    every row runs here; with fewer, there is one range, summed here. The misspelt-name index's
    deletions are worked out by the workers too (:func:`kgx.fuzzy.build`). Nothing writes
    ``aliases.sqlite`` while the workers read it (the new tables grow in
    ``OUT/.work/entity-tables`` first), so workers on other hosts may read it over a shared
    file system.

    Args:
        phases: Filled, when given, with the seconds of each step (``types``, ``abstracts``,
            ``titles_and_redirects``, ``anchors``, ``sums``, ``misspelt_index``): which run
            in workers and which in this process is what a projection to a larger dump needs.
        phases_cpu: Filled, when given, with this process's CPU seconds in each step (its
            threads included): the part no number of workers shortens.

    Returns:
        The number of entities.
    """
    from urllib.parse import unquote

    import pyoxigraph as ox

    from kgx.aliases import AliasStore
    from kgx.entities import EntityTypes, load_entities
    from kgx.workers import Crashed, ignore_interrupts_in_worker, new_pool

    phases = {} if phases is None else phases
    phases_cpu = {} if phases_cpu is None else phases_cpu
    clock = [time.monotonic(), time.process_time()]

    def lap(name: str) -> None:
        now, cpu = time.monotonic(), time.process_time()
        phases[name] = round(phases.get(name, 0.0) + now - clock[0], 2)
        phases_cpu[name] = round(phases_cpu.get(name, 0.0) + cpu - clock[1], 2)
        clock[:] = [now, cpu]

    if entities_info is None:
        load_entities(out).close()  # the tables exist from here on
    lap("types")
    report = json.loads((out / "report.json").read_text("utf-8"))
    res = (report.get("site", {}).get("namespace") or "") + "resource/"
    graph = ox.Store.read_only(str(out / "store"))

    def query(q: str) -> Iterator[Any]:
        return graph.query(f"PREFIX kgx: <{KGX}> " + q, use_default_graph_as_union=True)

    def title_of(iri: str) -> str:
        return unquote(iri[len(res):]).replace("_", " ")

    from kgx.stages.runner import WORK_DIR

    store = AliasStore(out / "aliases.sqlite")
    db = store.db
    info = entities_info if entities_info is not None else \
        EntityTypes(out / "aliases.sqlite", connection=db)
    # While the workers read aliases.sqlite (maybe from other hosts, over a shared file
    # system), nothing writes it: the new tables grow in a database of their own, copied in
    # at the end. Every table here lives in SQLite and every read streams: nothing is held
    # per entity, anchor or abstract, so memory does not grow with the dump.
    work = out / WORK_DIR / "entity-tables"
    shutil.rmtree(work, ignore_errors=True)  # a killed run's
    (work / "alias-rows").mkdir(parents=True)
    db.executescript("DROP TABLE IF EXISTS entities; DROP TABLE IF EXISTS alias_index;")
    db.commit()
    build_file = str(work / "tables.sqlite")
    db.execute("ATTACH DATABASE ? AS build", (build_file,))
    # The alias rows go to tables by key range (bounds from the titles' keys). From
    # SUM_IN_WORKERS_FROM workers, each range is summed by a task of its own (sum_alias_part)
    # and the sums appended in key order: no sort of every row in this process. With fewer,
    # one range, summed here.
    bounds = _key_bounds(db, SUM_PARTS_PER_WORKER * workers
                         if workers >= SUM_IN_WORKERS_FROM else 1)
    n_ranges = len(bounds) + 1
    db.executescript("""
        PRAGMA build.journal_mode=OFF; PRAGMA build.synchronous=OFF;
        CREATE TABLE build.entities (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL,
                                     coarse TEXT, fine TEXT, description TEXT);
        CREATE TEMP TABLE abstracts (title TEXT PRIMARY KEY, text TEXT);
    """ + "".join(f"CREATE TABLE build.alias_rows_{k} (key TEXT NOT NULL, title TEXT NOT NULL, "
                  "n REAL NOT NULL);\n" for k in range(n_ranges)))
    rows: list[tuple[Any, ...]] = []
    for sol in query("SELECT ?s ?a WHERE { ?s kgx:abstract ?a }"):
        rows.append((title_of(sol["s"].value), _first_sentence(sol["a"].value)))
        if len(rows) >= 50_000:
            db.executemany("INSERT OR REPLACE INTO abstracts VALUES (?, ?)", rows)
            rows.clear()
    db.executemany("INSERT OR REPLACE INTO abstracts VALUES (?, ?)", rows)
    rows.clear()
    db.commit()
    lap("abstracts")
    n_entities = 0

    @lru_cache(maxsize=1 << 20)
    def entity_id(t: str) -> int | None:
        """The entity id of a resolved title, made on first sight; None for non-entities."""
        nonlocal n_entities
        row = db.execute("SELECT id FROM build.entities WHERE title = ?", (t,)).fetchone()
        if row is not None:
            return row[0]
        kind = db.execute("SELECT kind FROM titles WHERE title = ?", (t,)).fetchone()
        if kind is not None and kind[0] != "article":
            return None  # disambiguation pages and leftover redirects
        inf = info.get(t)
        abstract = db.execute("SELECT text FROM abstracts WHERE title = ?", (t,)).fetchone()
        n_entities += 1
        db.execute("INSERT INTO build.entities VALUES (?, ?, ?, ?, ?)",
                   (n_entities, t, inf.coarse if inf else None, inf.fine if inf else None,
                    abstract[0] if abstract else ""))
        return n_entities

    def number(titles: Iterable[str]) -> None:
        for t in titles:
            entity_id(t)

    def take(found: Any) -> None:
        """A task's titles numbered, then its alias rows copied in (SQLite to SQLite)."""
        if isinstance(found, Crashed):
            raise RuntimeError(f"the alias rows of {found.task[0]} rows {found.task[1]:,}-"
                               f"{found.task[2]:,} were not made: their worker died twice")
        titles, part = found
        number(titles)
        db.commit()
        db.execute("ATTACH DATABASE ? AS part", (part,))
        for k in range(n_ranges):
            db.execute(f"INSERT INTO build.alias_rows_{k} SELECT key, title, n FROM part.rows_{k}")
        db.commit()
        db.execute("DETACH DATABASE part")
        os.unlink(part)

    def chunks(table: str) -> list[tuple[str, int, int, str]]:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        return [(table, lo, lo + ALIAS_CHUNK_ROWS - 1, str(parts), str(out / "aliases.sqlite"),
                 tuple(bounds)) for lo in range(1, top + 1, ALIAS_CHUNK_ROWS)]

    parts = work / "alias-rows"
    db.commit()
    pool = None
    try:
        # Spawned, not forked: this process holds an Oxigraph store and its threads.
        pool = new_pool(None, workers if workers > 1 else 0, window=2,
                        initializer=ignore_interrupts_in_worker, start_method="spawn",
                        reuse_workers=True)
        for found in pool.map(alias_rows, chunks("titles") + chunks("redirects")):
            take(found)

        def put_rows() -> None:
            for k, some in enumerate(_by_range(bounds, rows)):
                db.executemany(f"INSERT INTO build.alias_rows_{k} VALUES (?, ?, ?)", some)
            rows.clear()

        for sol in query('SELECT ?s ?a WHERE { GRAPH ?g { ?s kgx:alias ?a } '
                         '?g kgx:extractor "label" }'):  # names in bold in an article's lead
            title = store.resolve(title_of(sol["s"].value))
            number([title])
            if sol["a"].value.strip():
                rows.append((alias_key(sol["a"].value), title, 1.0))
            if len(rows) >= LABEL_BATCH_ROWS:  # one name an article: written as they come
                put_rows()
        put_rows()
        lap("titles_and_redirects")
        for found in pool.map(alias_rows, chunks("anchors")):
            take(found)
        db.commit()
        lap("anchors")
        # The rows summed by key range in the workers (SQLite's sorter spills to disk when it
        # must); titles that are no entity (disambiguation pages) find no entity row and drop
        # out. Nothing writes the build tables meanwhile.
        sums = work / "sums"
        sums.mkdir()
        summed = pool.map(sum_alias_part, [(build_file, k, str(sums / f"{k:04d}.sqlite"))
                                           for k in range(n_ranges)]) if n_ranges > 1 else []
        db.executescript("""
            CREATE TABLE main.entities (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL,
                                        coarse TEXT, fine TEXT, description TEXT);
            INSERT INTO main.entities SELECT * FROM build.entities ORDER BY id;
            CREATE TABLE main.alias_index (key TEXT NOT NULL, entity INTEGER NOT NULL,
                                           n REAL NOT NULL, PRIMARY KEY (key, entity))
                WITHOUT ROWID;
        """)
        if n_ranges == 1:  # few workers: one sort here costs less than a copy more
            db.execute(_SUM_ROWS.format(rows="build.alias_rows_0", entities="build.entities",
                                        into="main.alias_index"))
        for k, path in enumerate(summed):  # ranges in key order: appended, never sorted
            if isinstance(path, Crashed):
                raise RuntimeError(f"the alias rows of key range {k} were not summed: their "
                                   "worker died twice")
            db.commit()
            db.execute("ATTACH DATABASE ? AS part", (path,))
            db.execute("INSERT INTO main.alias_index SELECT key, entity, n FROM part.summed")
            db.commit()
            db.execute("DETACH DATABASE part")
            os.unlink(path)
        db.commit()
        db.execute("DETACH DATABASE build")
        pool.close()  # its actors (on Ray) give their CPUs back to the next pool's
        lap("sums")
        # Misspelt names: a symmetric-delete index over every alias key (kgx.fuzzy).
        db.execute("DROP TABLE IF EXISTS alias_trigrams")
        fuzzy.build(db, fuzzy.iter_keys(db), workers=workers, parts=work / "deletes")
        lap("misspelt_index")
    finally:
        if pool is not None:
            pool.close()
        shutil.rmtree(work, ignore_errors=True)
    n = n_entities
    store.close()
    return n


_ALIAS_SOURCES = {
    "titles": "SELECT title, title, 1 FROM titles WHERE kind = 'article' AND rowid BETWEEN ? AND ?",
    "redirects": "SELECT source, target, 1 FROM redirects WHERE rowid BETWEEN ? AND ?",
    "anchors": "SELECT anchor, target, n FROM anchors WHERE rowid BETWEEN ? AND ?",
}


def alias_rows(table: str, first: int, last: int, parts: str, db: str,
               bounds: tuple[str, ...] = ()) -> tuple[list[str], str]:
    """Worker task: the alias rows of ``table``'s rows ``first``..``last`` (by rowid) in the
    alias table ``db``, opened read-only for the task (a Ray actor may outlive it).

    An article's title (and the title without its qualifier, "Paris (band)" -> "Paris"), a
    redirect's source, a link's anchor and its target's own title (count 0: an alias even
    unseen as an anchor), each with the title it resolves to. The rows, ``(alias key,
    title, count)`` summed, go to an SQLite file of their own in ``parts``: table ``rows_K``
    holds those of the key range K that ``bounds`` cut (:func:`_range_of`).

    Returns:
        The resolved titles in the order they first come (blank aliases included), and the
        file.
    """
    from kgx.aliases import AliasStore

    aliases = AliasStore(db, read_only=True)
    counts: dict[tuple[str, str], float] = {}
    titles: dict[str, None] = {}

    def add(alias: str, title: str, n: float) -> None:
        titles[title] = None
        if alias.strip():
            k = (alias_key(alias), title)
            counts[k] = counts.get(k, 0.0) + n

    for alias, target, n in aliases.db.execute(_ALIAS_SOURCES[table], (first, last)):
        title = aliases.resolve(target)
        add(alias, title, float(n))
        if table == "titles":
            short = _QUALIFIER.sub("", alias)
            if short != alias:
                add(short, title, 1.0)
        elif table == "anchors":
            add(target, title, 0.0)
    aliases.close()
    path = os.path.join(parts, f"{table}-{first:012d}.sqlite")
    part = sqlite3.connect(path + ".tmp")  # a worker that died here left it: tables dropped
    for r, rows in enumerate(_by_range(bounds, [(k, t, n) for (k, t), n in counts.items()])):
        part.execute(f"DROP TABLE IF EXISTS rows_{r}")
        part.execute(f"CREATE TABLE rows_{r} (key TEXT, title TEXT, n REAL)")
        part.executemany(f"INSERT INTO rows_{r} VALUES (?, ?, ?)", rows)
    part.commit()
    part.close()
    os.replace(path + ".tmp", path)
    return list(titles), path


# Key ranges whose alias rows are summed by a task each: this many per worker, so that the
# tasks stay small enough to share out evenly. Any number gives the same tables.
SUM_PARTS_PER_WORKER = 4
# With fewer workers than this the rows are summed in one sort by the building process. The
# ranges cost a copy more of the sums: on bench_scale's 16x output with 2 workers (three runs
# each way, 2 cores) the tables took 24.0-25.3 s against 21.9-23.1 s in one sort, the
# workers' CPU 28.4-30.8 s against 22.5-24.6 s, but the building process's own CPU 8.0-8.1 s
# against 12.4-12.6 s: that part bounds the step however many cores there are.
SUM_IN_WORKERS_FROM = 4
_SUM_ROWS = ("INSERT INTO {into} SELECT r.key, e.id, sum(r.n) FROM {rows} r "
             "JOIN {entities} e ON e.title = r.title GROUP BY r.key, e.id")
_KEY_SAMPLE = 20_000  # article titles whose keys set the ranges' bounds


def _key_bounds(db: sqlite3.Connection, parts: int) -> list[str]:
    """``parts - 1`` alias keys that cut the keys into ranges of about equal numbers of
    article titles (read evenly spaced from the ``titles`` table, so the same table gives
    the same bounds); fewer where the titles have fewer distinct keys."""
    top = db.execute("SELECT max(rowid) FROM titles").fetchone()[0] or 0
    if parts <= 1 or not top:
        return []
    step = max(1, top // _KEY_SAMPLE)
    keys = sorted({alias_key(t) for (t,) in db.execute(
        "SELECT title FROM titles WHERE kind = 'article' AND rowid % ? = 0", (step,))} - {""})
    return sorted({keys[len(keys) * i // parts] for i in range(1, parts)} if keys else set())


def _range_of(bounds: Sequence[str], key: str) -> int:
    """The key range that holds ``key``: range K holds the keys from ``bounds[K - 1]`` up
    to, not including, ``bounds[K]``."""
    return bisect.bisect_right(bounds, key)


def _by_range(bounds: Sequence[str], rows: Iterable[tuple[Any, ...]]
              ) -> list[list[tuple[Any, ...]]]:
    """``rows`` (alias key first) in one list per key range (:func:`_range_of`), in order."""
    out: list[list[tuple[Any, ...]]] = [[] for _ in range(len(bounds) + 1)]
    for row in rows:
        out[_range_of(bounds, row[0])].append(row)
    return out


def sum_alias_part(build: str, k: int, out: str) -> str:
    """Worker task: the alias rows of key range ``k`` in the build database ``build``
    (``alias_rows_K``) summed by (key, entity), keyed, into the table ``summed`` of a new
    SQLite file ``out``; rows whose title is no entity drop out. ``build`` is read, not
    written (a worker on another host reads it over a shared file system)."""
    if os.path.exists(out):
        os.unlink(out)
    con = sqlite3.connect(out + ".tmp", uri=True)
    con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                      "DROP TABLE IF EXISTS summed; "  # left by a worker that died here
                      "CREATE TABLE summed (key TEXT NOT NULL, entity INTEGER NOT NULL, "
                      "n REAL NOT NULL, PRIMARY KEY (key, entity)) WITHOUT ROWID;")
    con.execute("ATTACH DATABASE ? AS b", (f"file:{build}?mode=ro",))
    con.execute(_SUM_ROWS.format(rows=f"b.alias_rows_{k}", entities="b.entities",
                                 into="summed"))
    con.commit()
    con.close()
    os.replace(out + ".tmp", out)
    return out


def _first_sentence(text: str, limit: int = 300) -> str:
    text = text.split("\n", 1)[0]
    m = re.search(r"(?<=[a-z0-9)\]][.!?])\s+(?=[A-Z])", text)
    return (text[: m.start()] if m else text)[:limit]


def entity_text(title: str, description: str) -> str:
    """What is embedded for an entity: its label and the first sentence of its abstract."""
    label = _QUALIFIER.sub("", title)
    return f"{label}: {description}" if description else label


ENTITY_CHUNK = 20_000  # entities embedded per chunk (and per committed chunk of the stage)
TRAIN_SAMPLE = 200_000  # vectors an inverted-file index trains its centroids on


def entity_chunks(n: int) -> list[tuple[int, int]]:
    """(first id, last id) of each chunk of :data:`ENTITY_CHUNK` entities, for ids 1..n."""
    return [(lo, min(n, lo + ENTITY_CHUNK - 1)) for lo in range(1, n + 1, ENTITY_CHUNK)]


def entity_count(out: Path) -> int:
    """Entities in ``out/aliases.sqlite``, whose ids run 1..n.

    Raises:
        LinkingIndexError: The ids are not contiguous (a table from a failed build).
    """
    db = sqlite3.connect(out / "aliases.sqlite")
    try:
        n, first, last = db.execute("SELECT count(*), min(id), max(id) FROM entities").fetchone()
    finally:
        db.close()
    if n and (first, last) != (1, n):
        raise LinkingIndexError(f"{out}: entity ids are not contiguous; rebuild the table")
    return n


def embed_entities(out: Path, encoder: Any, first: int, last: int,
                   batch_size: int = 256, on_batch: Any = None) -> np.ndarray:
    """Vectors of the entities with ids ``first`` to ``last`` (inclusive), in id order;
    ``on_batch(done)`` after each batch."""
    db = sqlite3.connect(f"file:{out / 'aliases.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT title, description FROM entities WHERE id BETWEEN ? AND ? "
                          "ORDER BY id", (first, last)).fetchall()
    finally:
        db.close()
    return encoder.encode([entity_text(t, d) for t, d in rows], batch_size=batch_size,
                          on_batch=on_batch)


def write_vector_index(out: Path, parts: Iterable[np.ndarray], n: int, dim: int,
                       encoder_name: str) -> dict[str, Any]:
    """Write ``entities.faiss`` and ``entities.json`` from the entity vectors, given in id
    order in parts (arrays, or memory-mapped files), holding only what the index trains on.
    """
    import faiss

    index = make_index(dim, n)
    pending: list[np.ndarray] = []  # parts held until the index has trained on them

    def train_and_add_pending() -> None:
        train_index(index, np.concatenate(pending)[:TRAIN_SAMPLE])
        for v in pending:
            index.add(np.ascontiguousarray(v))
        pending.clear()

    for vecs in parts:
        if index.is_trained:
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            continue
        pending.append(np.asarray(vecs, dtype=np.float32))
        if sum(len(v) for v in pending) >= TRAIN_SAMPLE:
            train_and_add_pending()
    if pending:
        train_and_add_pending()
    if index.ntotal != n:
        raise LinkingIndexError(f"{out}: {index.ntotal:,} entity vectors for {n:,} entities")
    tmp = out / (INDEX_FILE + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(out / INDEX_FILE)
    meta = {"entities": n, "dim": dim, "encoder": encoder_name,
            "index": type(index).__name__, "text": "label: first sentence of abstract"}
    (out / INDEX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def build_vector_index(out: Path, encoder: Any, batch_size: int = 256) -> dict[str, Any]:
    """Embed every entity in this process and write ``entities.faiss`` and ``entities.json``
    (``kgx extract`` does the same in chunks, in worker processes: kgx.stages.entities)."""
    n = entity_count(out)
    parts = (embed_entities(out, encoder, lo, hi, batch_size) for lo, hi in entity_chunks(n))
    return write_vector_index(out, parts, n, encoder.dim, encoder.name)


def make_index(dim: int, n: int, compress_above: int | None = None,
               exact_limit: int = EXACT_LIMIT) -> Any:
    """Exact inner product up to ``EXACT_LIMIT`` vectors; above, an inverted file (IVF), whose
    vectors are 8-bit scalar-quantised once they would take more than ``compress_above`` bytes
    as float32 (default :data:`COMPRESS_ABOVE_BYTES`).

    IVF rather than HNSW: on 2 CPU cores an HNSW graph of a million 384-d vectors took over
    ten minutes to build, where IVF trains its centroids on a sample and then only assigns
    each vector to its nearest centroid, in one streaming pass. ``nprobe`` = 32 lists are
    searched per query. The index must be trained (:func:`train_index`) before vectors are added.
    """
    import faiss

    if n <= exact_limit:
        return faiss.IndexFlatIP(dim)
    nlist = int(min(4 * math.sqrt(n), n / 39))
    limit = COMPRESS_ABOVE_BYTES if compress_above is None else compress_above
    if n * dim * 4 > limit:
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
    index.nprobe = 32
    # Entity vectors are read back by id (context scoring): keep the id -> list map.
    index.set_direct_map_type(faiss.DirectMap.Array)
    return index


def train_index(index: Any, sample: np.ndarray) -> None:
    """Train an IVF index's centroids on a sample of the vectors (no-op for exact search)."""
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


# --------------------------------------------------------------------------- reading


class AliasTable:
    """Candidates by alias with their prior P(entity | alias)."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise LinkingIndexError(f"{path}: missing alias table; run `kgx extract` again")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        # an entity's row is read for each of its candidacies: the frequent ones stay at hand
        self.entity = lru_cache(maxsize=1 << 16)(self._entity)
        # so is a name's: the same names recur from sentence to sentence (the table is
        # read-only, so a cached answer is the table's answer)
        self._counts_of_key = lru_cache(maxsize=1 << 16)(self._counts_of_key_uncached)
        self._fuzzy_of_key = lru_cache(maxsize=1 << 14)(self._fuzzy_of_key_uncached)
        try:
            self.db.execute("SELECT 1 FROM alias_index LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise LinkingIndexError(f"{path}: no entity tables ({exc}); rebuild with "
                                    "`kgx index OUT`") from exc

    def counts(self, text: str, k: int = 20) -> list[tuple[int, float]]:
        """(entity id, link count) for an alias, most linked first."""
        return list(self._counts_of_key(alias_key(text), k))

    def _counts_of_key_uncached(self, key: str, k: int) -> tuple[tuple[int, float], ...]:
        return tuple(self.db.execute("SELECT entity, n FROM alias_index WHERE key = ? "
                                     "ORDER BY n DESC LIMIT ?", (key, k)).fetchall())

    def candidates(self, text: str, k: int = 20) -> list[tuple[int, float]]:
        """(entity id, prior) for an alias, best first."""
        return priors(self.counts(text, k))

    def fuzzy(self, text: str, k: int = 10) -> list[tuple[int, float]]:
        """(entity id, prior of the matched alias) for aliases within two edits of ``text``.

        A symmetric-delete lookup (:mod:`kgx.fuzzy`): a handful of indexed reads, whatever
        the number of aliases.
        """
        return list(self._fuzzy_of_key(alias_key(text), k))

    def _fuzzy_of_key_uncached(self, key: str, k: int) -> tuple[tuple[int, float], ...]:
        try:
            near = fuzzy.search(self.db, key, k=k)
        except sqlite3.OperationalError:
            return ()  # an index built before kgx.fuzzy: `kgx index OUT` rebuilds it
        out: dict[int, float] = {}
        for a, _ in near:
            for eid, prior in self.candidates(a, k=3):
                out.setdefault(eid, prior)
        return tuple(out.items())

    def _entity(self, eid: int) -> tuple[str, str | None, str | None, str]:
        row = self.db.execute("SELECT title, coarse, fine, description FROM entities "
                              "WHERE id = ?", (eid,)).fetchone()
        if row is None:
            raise LinkingIndexError(f"entity id {eid} is not in the entity table; the index "
                                    "and the table disagree: rebuild with `kgx index OUT`")
        return row

    def entity_id(self, title: str) -> int | None:
        row = self.db.execute("SELECT id FROM entities WHERE title = ?", (title,)).fetchone()
        return row[0] if row else None

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM entities").fetchone()[0]


class VectorIndex:
    """The FAISS index of entity embeddings, checked against its metadata on load."""

    def __init__(self, out: Path, n_entities: int) -> None:
        import faiss

        path, meta_path = out / INDEX_FILE, out / INDEX_META
        if not path.exists() or not meta_path.exists():
            raise LinkingIndexError(f"{path}: missing entity index; rebuild with "
                                    f"`kgx index {out}`")
        try:
            big = path.stat().st_size > MMAP_ABOVE_BYTES
            self.index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP |
                                          faiss.IO_FLAG_READ_ONLY) if big else \
                faiss.read_index(str(path))
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise LinkingIndexError(f"{path}: unreadable entity index ({exc}); rebuild with "
                                    f"`kgx index {out}`") from exc
        if self.index.ntotal != self.meta.get("entities") or self.index.ntotal != n_entities:
            raise LinkingIndexError(
                f"{path}: holds {self.index.ntotal} vectors but the entity table has "
                f"{n_entities}; rebuild with `kgx index {out}`")
        self.dim = self.index.d
        if hasattr(self.index, "make_direct_map") and self.index.direct_map.type == 0:
            self.index.make_direct_map()  # an IVF index written without its id map

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, entity ids) of the ``k`` nearest entities; ids are 1-based, 0 = none.

        Raises:
            ValueError: Wrong dimension, or NaN/inf in the query (FAISS would silently
                return id -1 for them).
        """
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"query vectors have shape {tuple(v.shape)}; the entity index "
                             f"expects (n, {self.dim})")
        if not np.isfinite(v).all():
            raise ValueError("query vector holds NaN or infinite values")
        if self.index.ntotal == 0:
            return np.zeros((len(v), 0), np.float32), np.zeros((len(v), 0), np.int64)
        scores, ids = self.index.search(v, min(k, self.index.ntotal))
        return scores, ids + 1  # faiss row i is entity id i + 1; -1 becomes 0


# --------------------------------------------------------------------------- linking


_TYPE_OK = {None: 0.5}


class Linker:
    """Alias table + vector index + scorer.

    Args:
        out: An output directory with the entity tables and index.
        namespace: Resource namespace for IRIs.
        encoder: A :class:`~kgx.encoder.SentenceEncoder` (loaded lazily when omitted).
        nil_threshold: Best scores below this link to NIL.
    """

    # Hand-set weights, used when the output has no fitted scorer (LINKER_FILE).
    WEIGHTS = {"prior": 0.45, "context": 0.25, "type": 0.15, "name": 0.15}
    NIL_THRESHOLD = 0.35
    LOOKUP_WEIGHTS = {"prior": 0.6, "vector": 0.25, "name": 0.15}
    # A lookup's NIL threshold where none was fitted: a name that is some entity's alias
    # scores 0.6 and more from its prior alone; one that only resembles names scores on
    # vector and name similarity (at most 0.4).
    LOOKUP_NIL_THRESHOLD = 0.4

    def __init__(self, out: Path, namespace: str, encoder: Any = None,
                 nil_threshold: float | None = None, fitted: bool = True) -> None:
        from kgx.site import iri_escape

        self.out = Path(out)
        self.aliases = AliasTable(self.out / "aliases.sqlite")
        self.vectors = VectorIndex(self.out, self.aliases.count())
        self.resource = namespace + "resource/"
        self._escape = iri_escape
        self._encoder = encoder
        path = self.out / LINKER_FILE
        self.scorer = LinkScorer.load(path) if fitted and path.exists() else None
        self.nil_threshold = nil_threshold if nil_threshold is not None else \
            self.scorer.nil_threshold if self.scorer else self.NIL_THRESHOLD
        self._vec_cache: dict[int, np.ndarray] = {}

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from kgx.encoder import shared_encoder

            self._encoder = shared_encoder(self.vectors.meta.get("encoder", "minilm"))
        if self._encoder.dim != self.vectors.dim:
            raise LinkingIndexError(f"the encoder gives {self._encoder.dim}-d vectors, the index "
                                    f"holds {self.vectors.dim}-d ones; rebuild with `kgx index`")
        return self._encoder

    def iri(self, title: str) -> str:
        return self.resource + self._escape(title.replace(" ", "_"))

    def _candidate(self, eid: int, score: float, signals: dict[str, float]) -> Candidate:
        title, coarse, fine, _ = self.aliases.entity(eid)
        types = tuple(t for t in (fine, coarse) if t)
        label = _QUALIFIER.sub("", title)
        return Candidate(self.iri(title), title, label, types, round(score, SCORE_DIGITS),
                         {k: round(v, SCORE_DIGITS) for k, v in signals.items()})

    def entity_vector(self, eid: int) -> np.ndarray:
        v = self._vec_cache.get(eid)
        if v is None:
            v = self.vectors.index.reconstruct(eid - 1)
            if len(self._vec_cache) < 100_000:
                self._vec_cache[eid] = v
        return v

    @property
    def lookup_threshold(self) -> float:
        """The score below which :meth:`lookup` answers NIL: fitted on held-out wikilinks
        (:func:`kgx.linking_fit.fit_linker`), else :attr:`LOOKUP_NIL_THRESHOLD`."""
        fitted = self.scorer.lookup_nil_threshold if self.scorer is not None else None
        return fitted if fitted is not None else self.LOOKUP_NIL_THRESHOLD

    def lookup(self, text: str, k: int = 10, use_vectors: bool = True, nil: bool = True
               ) -> list[Candidate]:
        """Ranked candidates for a name (no context), best first.

        Args:
            nil: Leave out candidates below :attr:`lookup_threshold`, so that a name this
                wiki has no entity for gets none (NIL) rather than the nearest stranger.

        Raises:
            ValueError: Empty text, or longer than 1,000 characters.
        """
        text = (text or "").strip()
        if not text:
            raise ValueError("lookup needs a non-empty name")
        if len(text) > MAX_QUERY_CHARS:
            raise ValueError(f"lookup text is {len(text):,} characters; names longer than "
                             f"{MAX_QUERY_CHARS:,} are not looked up")
        q = self.encoder.encode([text]) if use_vectors else None
        scored = self.lookup_scores(text, dict(self.aliases.candidates(text, k=max(k, 20))),
                                    q[0] if q is not None else None, k)
        floor = self.lookup_threshold if nil else -math.inf
        out = [self._candidate(eid, score, sig) for eid, score, sig in scored if score >= floor]
        out.sort(key=lambda c: (-c.score, c.title))
        return out[:k]

    def lookup_scores(self, text: str, prior: dict[int, float], vector: np.ndarray | None,
                      k: int = 10, exclude: int | None = None
                      ) -> list[tuple[int, float, dict[str, float]]]:
        """(entity, score, signals) of each candidate for a name looked up without context:
        those its alias prior names (or, with none, its misspellings), and its nearest
        vectors; ``exclude`` left out (a fit's stand-in for a name the wiki lacks)."""
        fuzzy = {} if prior else dict(self.aliases.fuzzy(text, k))
        vec: dict[int, float] = {}
        if vector is not None:
            scores, ids = self.vectors.search(vector[None], max(k, 10))
            vec = {int(i): float(s) for s, i in zip(scores[0], ids[0], strict=True) if i > 0}
        out = []
        for eid in set(prior) | set(vec) | set(fuzzy):
            if eid == exclude:
                continue
            title = self.aliases.entity(eid)[0]
            # A misspelt name keeps half the prior of the alias it resembles.
            sig = {"prior": prior.get(eid, 0.5 * fuzzy.get(eid, 0.0)),
                   "name": name_similarity(text, title)}
            if vector is not None:
                sig["vector"] = vec.get(eid, float(self.entity_vector(eid) @ vector))
            w = self.LOOKUP_WEIGHTS
            score = sum(w[s] * max(0.0, v) for s, v in sig.items())
            sig["alias_match"] = 1.0 if eid in prior else 0.0
            out.append((eid, score, sig))
        return out

    def link(self, mention: str, context: np.ndarray | None = None,
             mention_type: str | None = None, k: int = 10) -> Candidate | None:
        """The best entity for a mention in context, or None (NIL).

        Args:
            mention: The mention's text.
            context: A unit vector of the mention's context (sentence, page), if any.
            mention_type: Coarse type the reader gave it (PER/ORG/LOC/MISC).
        """
        ranked = self.rank(mention, context, mention_type, k)
        return ranked[0] if ranked and ranked[0].score >= self.nil_threshold else None

    def link_many(self, mentions: Sequence[tuple[str, str | None, np.ndarray | None]],
                  k: int = 10) -> list[Candidate | None]:
        """:meth:`link` for many (text, type, context) mentions, with one batched encoding
        of the mentions that the alias table does not know."""
        # each name once, in order of first use; asked as rank asks, so rank finds the
        # answer in the alias table's cache
        need = list(dict.fromkeys(t for t, _, _ in mentions
                                  if t.strip() and not self.aliases.candidates(t.strip(),
                                                                               k=max(k, 20))))
        vec_ids: dict[str, set[int]] = {}
        if need:
            q = self.encoder.encode(need)
            _, ids = self.vectors.search(q, k)
            vec_ids = {t: {int(x) for x in row if x > 0} for t, row in zip(need, ids, strict=True)}
        out: list[Candidate | None] = []
        for text, typ, ctx in mentions:
            ranked = self.rank(text, ctx, typ, k, vector_candidates=vec_ids.get(text, set()))
            out.append(ranked[0] if ranked and ranked[0].score >= self.nil_threshold else None)
        return out

    def rank(self, mention: str, context: np.ndarray | None = None,
             mention_type: str | None = None, k: int = 10, use_vectors: bool = True,
             vector_candidates: set[int] | None = None) -> list[Candidate]:
        """Candidates for a mention in context, scored (see :attr:`WEIGHTS`)."""
        mention = mention.strip()
        if not mention or len(mention) > MAX_QUERY_CHARS:
            return []
        prior = dict(self.aliases.candidates(mention, k=max(k, 20)))
        cands = set(prior)
        if not prior:
            # No prior for trigram candidates here: in context, a misspelt-looking mention is
            # as often a plain word ("novelist" ~ "Novelists"), and context must decide.
            # Giving them half a prior cut held-out accuracy@1 from 0.343 to 0.180.
            cands |= {e for e, _ in self.aliases.fuzzy(mention, k)}
        if vector_candidates is not None:
            cands |= vector_candidates
        elif use_vectors and len(prior) < k:
            q = self.encoder.encode([mention])
            _, ids = self.vectors.search(q, k)
            cands |= {int(i) for i in ids[0] if i > 0}
        scored = []
        for eid in cands:
            sig = self.signals(eid, mention, mention_type, context, prior.get(eid, 0.0))
            score = self.score(sig)
            # ordered as the Candidates would be (their score is rounded), and only the k
            # kept are made
            scored.append((-round(score, SCORE_DIGITS), self.aliases.entity(eid)[0], eid,
                           score, sig))
        scored.sort(key=lambda x: (x[0], x[1]))
        return [self._candidate(eid, score, sig) for _, _, eid, score, sig in scored[:k]]

    def signals(self, eid: int, mention: str, mention_type: str | None,
                context: np.ndarray | None, prior: float) -> dict[str, float]:
        """What scores a candidate: its prior for the mention's text, name similarity, type
        agreement with the mention, similarity of its embedding to the context's."""
        title, coarse, _, _ = self.aliases.entity(eid)
        return {"prior": prior, "name": name_similarity(mention, title),
                "type": _type_score(mention_type, coarse),
                "context": float(self.entity_vector(eid) @ context) if context is not None
                else 0.0}

    def score(self, signals: dict[str, float]) -> float:
        """A candidate's score: the fitted scorer's probability, or the hand-set weights'
        sum."""
        if self.scorer is not None:
            return self.scorer.probability(signals)
        return sum(self.WEIGHTS[s] * max(0.0, v) for s, v in signals.items())


LINKER_FILE = "linker.json"


@dataclass(frozen=True, slots=True)
class LinkScorer:
    """A logistic regression over a candidate's signals (see :meth:`Linker.signals`), fitted
    on wikilinks by :func:`kgx.linking_fit.fit_linker`, with the NIL threshold fitted with it,
    and the NIL threshold of a lookup without context (None: not fitted)."""

    weights: dict[str, float]
    bias: float
    nil_threshold: float
    fitted_on: dict[str, Any] = field(default_factory=dict)
    lookup_nil_threshold: float | None = None

    def probability(self, signals: dict[str, float]) -> float:
        z = self.bias + sum(w * signals.get(s, 0.0) for s, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def load(cls, path: Path) -> LinkScorer:
        try:
            d = json.loads(path.read_text("utf-8"))
            lookup = d.get("lookup_nil_threshold")
            return cls({k: float(v) for k, v in d["weights"].items()}, float(d["bias"]),
                       float(d["nil_threshold"]), d.get("fitted_on", {}),
                       None if lookup is None else float(lookup))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LinkingIndexError(f"{path}: not a fitted linker scorer ({exc}); delete it "
                                    "to use the default weights, or run `kgx index` again"
                                    ) from exc

    def save(self, path: Path) -> None:
        from kgx.stages.runner import write_atomic

        write_atomic(path, json.dumps({"weights": self.weights, "bias": self.bias,
                                       "nil_threshold": self.nil_threshold,
                                       "lookup_nil_threshold": self.lookup_nil_threshold,
                                       "fitted_on": self.fitted_on}, indent=2))


def _type_score(mention_type: str | None, entity_type: str | None) -> float:
    if mention_type is None or entity_type is None:
        return 0.5
    return 1.0 if mention_type == entity_type else 0.0


@lru_cache(maxsize=1 << 16)  # a name recurs, with the same candidates
def name_similarity(mention: str, title: str) -> float:
    """Character similarity of a mention and an entity label, case-insensitive: the share of
    their characters in a longest common subsequence (rapidfuzz's normalised Indel
    similarity, ``2 * LCS / (len(a) + len(b))``)."""
    from rapidfuzz.distance import Indel  # the model extra's, as kgx.fuzzy's

    a, b = alias_key(mention), alias_key(_QUALIFIER.sub("", title))
    if a == b:
        return 1.0
    whole = Indel.normalized_similarity(a, b)
    if " " in a or " " not in b:
        return whole
    # A one-word mention against a longer name ("Einstien" / "Albert Einstein"): best word,
    # discounted so that the full name still wins over a partial match.
    part = max(Indel.normalized_similarity(a, w) for w in b.split())
    return max(whole, 0.9 * part)


def rank_percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles (0-100) of a sample, nearest rank."""
    s = sorted(values)
    if not s:
        return [math.nan for _ in qs]
    return [s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))] for q in qs]
