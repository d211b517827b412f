"""The entity table and alias rows in ``aliases.sqlite``: every entity's names, with link
counts, summed in parallel parts.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import shutil
import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from kgx.linking import fuzzy
from kgx.ontology import KGX
from kgx.outdir import ALIASES_FILE, REPORT_FILE, STORE_DIR

_SPACE = re.compile(r"\s+")


_QUALIFIER = re.compile(r"\s*\([^)]*\)\s*$")


class LinkingIndexError(RuntimeError):
    """A missing, corrupted or mismatched entity index; says how to rebuild it."""


def alias_key(text: str) -> str:
    """The lookup key of an alias: NFKC, case-folded, spaces folded."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


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
    deletions are worked out by the workers too (:func:`kgx.linking.fuzzy.build`). Nothing writes
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
    from kgx.engines.local import ignore_interrupts_in_worker
    from kgx.engines.pools import new_pool

    build = _TableBuild(out, entities_info, workers, phases, phases_cpu)
    pool = None
    try:
        build.abstracts()
        # Spawned, not forked: this process holds an Oxigraph store and its threads.
        pool = new_pool(None, workers if workers > 1 else 0, window=2,
                        initializer=ignore_interrupts_in_worker, start_method="spawn",
                        reuse_workers=True)
        build.titles_and_redirects(pool)
        build.anchors(pool)
        build.sums(pool)
        pool.close()  # its actors (on Ray) give their CPUs back to the next pool's
        build.lap("sums")
        build.misspelt_names()
    finally:
        if pool is not None:
            pool.close()
        shutil.rmtree(build.work, ignore_errors=True)
    build.store.close()
    return build.n_entities


class _TableBuild:
    """One :func:`build_entity_table`: its databases, the entities numbered so far, and the
    seconds of each step."""

    def __init__(self, out: Path, entities_info: dict[str, Any] | None, workers: int,
                 phases: dict[str, float] | None, phases_cpu: dict[str, float] | None) -> None:
        import pyoxigraph as ox

        from kgx.outdir import WORK_DIR
        from kgx.structure.aliases import AliasStore
        from kgx.structure.entity_types import EntityTypes, load_entities

        self.out = out
        self.phases = {} if phases is None else phases
        self.phases_cpu = {} if phases_cpu is None else phases_cpu
        self.clock = [time.monotonic(), time.process_time()]
        if entities_info is None:
            load_entities(out).close()  # the tables exist from here on
        self.lap("types")
        report = json.loads((out / REPORT_FILE).read_text("utf-8"))
        self.res = (report.get("site", {}).get("namespace") or "") + "resource/"
        self.graph = ox.Store.read_only(str(out / STORE_DIR))
        self.store = AliasStore(out / ALIASES_FILE)
        db = self.db = self.store.db
        self.info = entities_info if entities_info is not None else \
            EntityTypes(out / ALIASES_FILE, connection=db)
        # While the workers read aliases.sqlite (maybe from other hosts, over a shared file
        # system), nothing writes it: the new tables grow in a database of their own, copied
        # in at the end. Every table here lives in SQLite and every read streams: nothing is
        # held per entity, anchor or abstract, so memory does not grow with the dump.
        self.work = out / WORK_DIR / "entity-tables"
        shutil.rmtree(self.work, ignore_errors=True)  # a killed run's
        self.parts = self.work / "alias-rows"
        self.parts.mkdir(parents=True)
        db.executescript("DROP TABLE IF EXISTS entities; DROP TABLE IF EXISTS alias_index;")
        db.commit()
        self.build_file = str(self.work / "tables.sqlite")
        db.execute("ATTACH DATABASE ? AS build", (self.build_file,))
        # The alias rows go to tables by key range (bounds from the titles' keys). From
        # SUM_IN_WORKERS_FROM workers, each range is summed by a task of its own
        # (sum_alias_part) and the sums appended in key order: no sort of every row in this
        # process. With fewer, one range, summed here.
        self.bounds = _key_bounds(db, SUM_PARTS_PER_WORKER * workers
                                  if workers >= SUM_IN_WORKERS_FROM else 1)
        self.n_ranges = len(self.bounds) + 1
        self.workers = workers
        db.executescript("""
            PRAGMA build.journal_mode=OFF; PRAGMA build.synchronous=OFF;
            CREATE TABLE build.entities (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL,
                                         coarse TEXT, fine TEXT, description TEXT);
            CREATE TEMP TABLE abstracts (title TEXT PRIMARY KEY, text TEXT);
        """ + "".join(f"CREATE TABLE build.alias_rows_{k} (key TEXT NOT NULL, "
                      "title TEXT NOT NULL, n REAL NOT NULL);\n" for k in range(self.n_ranges)))
        self.n_entities = 0
        self.entity_id = lru_cache(maxsize=1 << 20)(self._entity_id)

    def lap(self, name: str) -> None:
        now, cpu = time.monotonic(), time.process_time()
        self.phases[name] = round(self.phases.get(name, 0.0) + now - self.clock[0], 2)
        self.phases_cpu[name] = round(self.phases_cpu.get(name, 0.0) + cpu - self.clock[1], 2)
        self.clock[:] = [now, cpu]

    def query(self, q: str) -> Any:
        return self.graph.query(f"PREFIX kgx: <{KGX}> " + q, use_default_graph_as_union=True)

    def title_of(self, iri: str) -> str:
        from urllib.parse import unquote

        return unquote(iri[len(self.res):]).replace("_", " ")

    def abstracts(self) -> None:
        """Each article's first sentence, the description its entity row will carry."""
        rows: list[tuple[Any, ...]] = []
        for sol in self.query("SELECT ?s ?a WHERE { ?s kgx:abstract ?a }"):
            rows.append((self.title_of(sol["s"].value), _first_sentence(sol["a"].value)))
            if len(rows) >= 50_000:
                self.db.executemany("INSERT OR REPLACE INTO abstracts VALUES (?, ?)", rows)
                rows.clear()
        self.db.executemany("INSERT OR REPLACE INTO abstracts VALUES (?, ?)", rows)
        self.db.commit()
        self.lap("abstracts")

    def _entity_id(self, t: str) -> int | None:
        """The entity id of a resolved title, made on first sight; None for non-entities."""
        db = self.db
        row = db.execute("SELECT id FROM build.entities WHERE title = ?", (t,)).fetchone()
        if row is not None:
            return int(row[0])
        kind = db.execute("SELECT kind FROM titles WHERE title = ?", (t,)).fetchone()
        if kind is not None and kind[0] != "article":
            return None  # disambiguation pages and leftover redirects
        inf = self.info.get(t)
        abstract = db.execute("SELECT text FROM abstracts WHERE title = ?", (t,)).fetchone()
        self.n_entities += 1
        db.execute("INSERT INTO build.entities VALUES (?, ?, ?, ?, ?)",
                   (self.n_entities, t, inf.coarse if inf else None, inf.fine if inf else None,
                    abstract[0] if abstract else ""))
        return self.n_entities

    def take(self, found: Any) -> None:
        """A task's titles numbered, then its alias rows copied in (SQLite to SQLite)."""
        from kgx.engines.local import Crashed

        if isinstance(found, Crashed):
            raise RuntimeError(f"the alias rows of {found.task[0]} rows {found.task[1]:,}-"
                               f"{found.task[2]:,} were not made: their worker died twice")
        titles, part = found
        for t in titles:
            self.entity_id(t)
        db = self.db
        db.commit()
        db.execute("ATTACH DATABASE ? AS part", (part,))
        for k in range(self.n_ranges):
            db.execute(f"INSERT INTO build.alias_rows_{k} SELECT key, title, n FROM part.rows_{k}")
        db.commit()
        db.execute("DETACH DATABASE part")
        os.unlink(part)

    def chunks(self, table: str) -> list[tuple[Any, ...]]:
        top = self.db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0] or 0
        return [(table, lo, lo + ALIAS_CHUNK_ROWS - 1, str(self.parts),
                 str(self.out / ALIASES_FILE), tuple(self.bounds))
                for lo in range(1, top + 1, ALIAS_CHUNK_ROWS)]

    def titles_and_redirects(self, pool: Any) -> None:
        """The rows of the articles' titles and the redirects (in the workers), then the
        names in bold in each article's lead (here)."""
        self.db.commit()
        for found in pool.map(alias_rows, self.chunks("titles") + self.chunks("redirects")):
            self.take(found)
        rows: list[tuple[Any, ...]] = []

        def put_rows() -> None:
            for k, some in enumerate(_by_range(self.bounds, rows)):
                self.db.executemany(f"INSERT INTO build.alias_rows_{k} VALUES (?, ?, ?)", some)
            rows.clear()

        for sol in self.query('SELECT ?s ?a WHERE { GRAPH ?g { ?s kgx:alias ?a } '
                              '?g kgx:extractor "label" }'):
            title = self.store.resolve(self.title_of(sol["s"].value))
            self.entity_id(title)
            if sol["a"].value.strip():
                rows.append((alias_key(sol["a"].value), title, 1.0))
            if len(rows) >= LABEL_BATCH_ROWS:  # one name an article: written as they come
                put_rows()
        put_rows()
        self.lap("titles_and_redirects")

    def anchors(self, pool: Any) -> None:
        for found in pool.map(alias_rows, self.chunks("anchors")):
            self.take(found)
        self.db.commit()
        self.lap("anchors")

    def sums(self, pool: Any) -> None:
        """The rows summed by key range in the workers (SQLite's sorter spills to disk when
        it must) into ``alias_index``; titles that are no entity (disambiguation pages) find
        no entity row and drop out. Nothing writes the build tables meanwhile."""
        from kgx.engines.local import Crashed

        db = self.db
        # Numbered by title, not in the order first seen: the same entities get the same
        # ids (and the index the same rows) whatever order the alias table's rows are in, as
        # after kgx update.
        db.executescript("""
            CREATE TABLE build.numbered AS SELECT row_number() OVER (ORDER BY title) AS id,
                title, coarse, fine, description FROM build.entities;
            DELETE FROM build.entities;
            INSERT INTO build.entities SELECT * FROM build.numbered ORDER BY id;
            DROP TABLE build.numbered;
        """)
        sums = self.work / "sums"
        sums.mkdir()
        summed = pool.map(sum_alias_part, [(self.build_file, k, str(sums / f"{k:04d}.sqlite"))
                                           for k in range(self.n_ranges)]) \
            if self.n_ranges > 1 else []
        db.executescript("""
            CREATE TABLE main.entities (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL,
                                        coarse TEXT, fine TEXT, description TEXT);
            INSERT INTO main.entities SELECT * FROM build.entities ORDER BY id;
            CREATE TABLE main.alias_index (key TEXT NOT NULL, entity INTEGER NOT NULL,
                                           n REAL NOT NULL, PRIMARY KEY (key, entity))
                WITHOUT ROWID;
        """)
        if self.n_ranges == 1:  # few workers: one sort here costs less than a copy more
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

    def misspelt_names(self) -> None:
        """A symmetric-delete index over every alias key (:mod:`kgx.linking.fuzzy`)."""
        self.db.execute("DROP TABLE IF EXISTS alias_trigrams")
        fuzzy.build(self.db, fuzzy.iter_keys(self.db), workers=self.workers,
                    parts=self.work / "deletes")
        self.lap("misspelt_index")


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
    from kgx.structure.aliases import AliasStore

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
