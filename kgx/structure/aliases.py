"""The alias table: titles, redirects and anchor texts with their counts, on disk.

Takes what the structure pass sees (titles, redirect pairs, link anchors); gives redirect
resolution during the pass's last step and, later, the prior P(entity | mention) for entity
linking. It lives in SQLite so that memory does not grow with the dump: the number of redirects
and distinct anchors grows with the wiki (on the sample, half the pages are redirects).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from kgx.runtime.cpu import sort_threads

_SCHEMA = """
CREATE TABLE IF NOT EXISTS titles (title TEXT PRIMARY KEY, page_id INTEGER, kind TEXT);
CREATE TABLE IF NOT EXISTS redirects (source TEXT PRIMARY KEY, target TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anchors (anchor TEXT NOT NULL, target TEXT NOT NULL,
                                    n INTEGER NOT NULL);
"""
# Link anchors as the structure pass sees them, one row per (chunk, anchor, target): appended
# without an index (cheap in the parent) to one of ANCHOR_PARTS tables by a hash of the anchor,
# summed at the end, each table by a worker of its own (sum_anchor_part), into ``anchors``:
# a plain table, read by rowid range (kgx.linking.tables.alias_rows); nothing looks it up by key, so
# it has no key index to keep in order while the parts are copied in.
ANCHOR_PARTS = 16  # fixed, not the worker count: a run resumed with other workers finds them
_ANCHOR_ROWS = "".join(
    f"CREATE TABLE IF NOT EXISTS anchor_rows_{k} (anchor TEXT NOT NULL, target TEXT NOT NULL, "
    "n INTEGER NOT NULL);\n" for k in range(ANCHOR_PARTS))
# Every page read, its revision and where its facts are (a part file of the graph's pages, its
# first line and lines, its document's line in the part's documents or -1): a page id seen twice
# keeps one page, and an update (kgx.update) tells changed pages from unchanged ones and finds
# what a changed page had written.
_PAGES = """
CREATE TABLE IF NOT EXISTS pages (id INTEGER PRIMARY KEY, rev INTEGER, title TEXT, part TEXT,
                                  first INTEGER, n INTEGER, kind TEXT, doc INTEGER);
"""
PAGE_COLUMNS = 8
MAX_REDIRECT_HOPS = 5


class AliasStore:
    """An SQLite alias table.

    Args:
        path: Database file; created if missing.
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        if read_only:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                      check_same_thread=False)
        else:
            self.db = sort_threads(sqlite3.connect(self.path, check_same_thread=False))
            self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA
                                  + _PAGES)
        self._anchor_tables = False
        self._resolve = lru_cache(maxsize=1 << 18)(self._resolve_uncached)

    # ------------------------------------------------------------ writing

    def add_pages(self, rows: list[tuple[Any, ...]]
                  ) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        """Record where pages' facts are: ``(id, revision, title, part, first line, lines,
        kind, document line)``.

        Returns:
            For each page id already recorded, ``(kept, dropped)``: MediaWiki keeps the later
            revision (on a tie, the page read later), and the dropped page's lines must go.
        """
        ids = [r[0] for r in rows]
        old = {r[0]: r for r in self.db.execute(
            f"SELECT * FROM pages WHERE id IN ({','.join('?' * len(ids))})", ids)} if ids else {}
        clashes = []
        final: dict[int, tuple[Any, ...]] = {}
        for r in rows:
            prev = final.get(r[0]) or old.get(r[0])
            if prev is None:
                final[r[0]] = r
            elif (r[1] or 0) >= (prev[1] or 0):
                clashes.append((r, prev))
                final[r[0]] = r
            else:
                clashes.append((prev, r))
        self.db.executemany(f"INSERT OR REPLACE INTO pages VALUES ({','.join('?' * PAGE_COLUMNS)})",
                            list(final.values()))
        return clashes

    def add_titles(self, rows: list[tuple[str, int, str]]) -> None:
        """``(title, page id, kind)`` rows; no commit (the caller's transaction)."""
        self.db.executemany("INSERT OR REPLACE INTO titles VALUES (?, ?, ?)", rows)

    def add_redirects(self, rows: list[tuple[str, str]]) -> None:
        """``(source, target)`` rows; no commit (the caller's transaction)."""
        self.db.executemany("INSERT OR REPLACE INTO redirects VALUES (?, ?)", rows)

    def add_anchor_rows(self, counts: Mapping[tuple[str, str], int]) -> None:
        """One chunk's anchor counts, appended unsummed; :meth:`finish` sums them."""
        if not self._anchor_tables:  # one statement each: a script would commit the chunk
            for create in _ANCHOR_ROWS.splitlines():
                self.db.execute(create)
            self._anchor_tables = True
        parts: list[list[tuple[str, str, int]]] = [[] for _ in range(ANCHOR_PARTS)]
        for (a, t), n in counts.items():
            parts[anchor_part(a)].append((a, t, n))
        for k, rows in enumerate(parts):
            if rows:
                self.db.executemany(f"INSERT INTO anchor_rows_{k} VALUES (?, ?, ?)", rows)

    def finish(self, map_tasks: Callable[..., Iterable[Any]] | None = None,
               log: Callable[[str], None] | None = None) -> None:
        """Flush; sum the anchor rows into ``anchors``, each of the :data:`ANCHOR_PARTS`
        tables by a task of its own (:func:`sum_anchor_part`, through ``map_tasks(fn,
        tasks)``, a worker pool's ``map``; in this process without one), ``log`` told of the
        parts summed every 10 s or more; drop the structure pass's page table (it served
        duplicate ids); leave one self-contained file.

        Idempotent: a run killed during it does it again, from the same rows.
        """
        self.db.commit()
        done = self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'anchors_summed'"
                               ).fetchone()
        if not done:
            self.db.executescript(_ANCHOR_ROWS)
            self.db.commit()
            work = self.path.parent / f"{self.path.name}.anchor-sums"
            shutil.rmtree(work, ignore_errors=True)  # a killed run's
            work.mkdir()
            tasks = [(str(self.path), k, str(work / f"{k:02d}.sqlite"))
                     for k in range(ANCHOR_PARTS)]
            sums = []
            t0 = last = time.monotonic()
            for task, path in zip(tasks, (map_tasks or _map_here)(sum_anchor_part, tasks),
                                  strict=True):
                if not isinstance(path, str):  # kgx.engines.local.Crashed: its worker died twice
                    raise RuntimeError(f"{self.path}: the anchor rows of part {task[1]} were "
                                       "not summed: their worker died twice")
                sums.append(path)
                if log is not None and time.monotonic() - last >= 10:  # a long sum only
                    last = time.monotonic()
                    log(f"[structure] anchor rows summed: part {len(sums)} of {len(tasks)} "
                        f"({last - t0:.1f} s)")
            self.db.execute("DELETE FROM anchors")  # a killed run's
            for path in sums:  # the parts' anchors are disjoint: no conflict to resolve
                self.db.commit()
                self.db.execute("ATTACH DATABASE ? AS part", (path,))
                self.db.execute("INSERT INTO anchors SELECT anchor, target, n FROM part.summed")
                self.db.commit()
                self.db.execute("DETACH DATABASE part")
            self.db.execute("CREATE TABLE anchors_summed (at TEXT)")
            self.db.commit()
            shutil.rmtree(work, ignore_errors=True)
        for k in range(ANCHOR_PARTS):
            self.db.execute(f"DROP TABLE IF EXISTS anchor_rows_{k}")
        self.db.commit()
        self.db.execute("PRAGMA journal_mode=DELETE")  # folds a WAL back into the file

    # ------------------------------------------------------------ reading

    def _resolve_uncached(self, title: str) -> str:
        seen = {title}
        cur = title
        for _ in range(MAX_REDIRECT_HOPS):
            row = self.db.execute("SELECT target FROM redirects WHERE source = ?",
                                  (cur,)).fetchone()
            if row is None or row[0] in seen:
                break
            cur = row[0]
            seen.add(cur)
        return cur

    def resolve(self, title: str) -> str:
        """Follow redirects from ``title`` (at most 5 hops, loops stopped)."""
        return self._resolve(title)

    def close(self) -> None:
        self.db.close()


def anchor_part(anchor: str) -> int:
    """Which of the :data:`ANCHOR_PARTS` tables an anchor's rows go to (a hash that every
    process agrees on, unlike Python's own)."""
    return zlib.crc32(anchor.encode("utf-8", "surrogatepass")) % ANCHOR_PARTS


def sum_anchor_part(db: str, k: int, out: str) -> str:
    """Worker task: the rows of ``anchor_rows_K`` in the alias table ``db`` summed by (anchor,
    target), sorted, into the table ``summed`` of a new SQLite file ``out``.

    GROUP BY sorts on disk when it must (SQLite's external sorter), so memory stays flat
    however many anchors a dump has.
    """
    if os.path.exists(out):
        os.unlink(out)
    con = sort_threads(sqlite3.connect(out + ".tmp", uri=True))
    con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                      "DROP TABLE IF EXISTS summed; "
                      "CREATE TABLE summed (anchor TEXT NOT NULL, target TEXT NOT NULL, "
                      "n INTEGER NOT NULL);")
    con.execute("ATTACH DATABASE ? AS src", (f"file:{db}?mode=ro",))
    con.execute(f"INSERT INTO summed SELECT anchor, target, sum(n) FROM src.anchor_rows_{k} "
                "GROUP BY anchor, target")
    con.commit()
    con.close()
    os.replace(out + ".tmp", out)
    return out


def _map_here(fn: Callable[..., Any], tasks: Iterable[tuple[Any, ...]]) -> Iterator[Any]:
    for t in tasks:
        yield fn(*t)
