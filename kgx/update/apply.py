"""The changed pages applied to a graph: what they touch, the alias table, ``graph.nq``, the
documents and the store.

What depends on a page beyond its own facts: the redirects it gives (a link to its title
resolves through them) and the anchors of its links (the alias table's counts). A changed
redirect changes how every page that links to its title resolves; those pages are found in
the store, by the entity their links resolved to before, and their facts resolved again.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgx.ontology import KGX
from kgx.structure.aliases import MAX_REDIRECT_HOPS, AliasStore
from kgx.structure.pages import ANCHORS_SUFFIX, redirect_resolver
from kgx.text.site import Site

# The update's own tables, in its work folder's database: each chunk's changed pages
# (the alias table's page row and, for a redirect, its target) and every page id read; the
# plan made from them.
SCHEMA = """
CREATE TABLE IF NOT EXISTS changed (id INTEGER PRIMARY KEY, rev INTEGER, title TEXT,
    part TEXT, first INTEGER, n INTEGER, kind TEXT, doc INTEGER, target TEXT);
CREATE TABLE IF NOT EXISTS seen (id INTEGER, rev INTEGER);
CREATE TABLE IF NOT EXISTS retracted (id INTEGER PRIMARY KEY, title TEXT, part TEXT,
    first INTEGER, n INTEGER, deleted INTEGER);
CREATE TABLE IF NOT EXISTS resolved_again (id INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS steps (name TEXT PRIMARY KEY, value TEXT);
"""


# The alias table's own tables, as the structure pass leaves them (and the updates applied).
STRUCTURE_TABLES = {"titles", "redirects", "anchors", "anchors_summed", "pages", "journal",
                    "updates"}


def step_done(db: sqlite3.Connection, name: str) -> str | None:
    row = db.execute("SELECT value FROM steps WHERE name = ?", (name,)).fetchone()
    return None if row is None else str(row[0])


def mark_step(db: sqlite3.Connection, name: str, value: str = "") -> None:
    db.execute("INSERT OR REPLACE INTO steps VALUES (?, ?)", (name, value))
    db.commit()


# ------------------------------------------------------------------ the plan


def plan(db: sqlite3.Connection, aliases_path: Path, store: Any, site: Site, delete: bool,
         every_page: bool = False) -> None:
    """Fill ``retracted`` (the graph's rows of the pages that changed or, with ``delete``,
    are gone from the dump) and ``resolved_again`` (unchanged pages whose links resolve
    through a redirect that changed) from the graph's alias table, before it changes.

    ``store`` is the graph's store opened read-only (None: no store, no page resolved again
    found through it, and every page is resolved again); ``every_page``: every page is
    written again (:func:`rebase_pages`).
    """
    db.execute("ATTACH DATABASE ? AS g", (f"file:{aliases_path}?mode=ro",))
    try:
        db.execute("DELETE FROM retracted")
        db.execute("INSERT INTO retracted SELECT p.id, p.title, p.part, p.first, p.n, 0 "
                   "FROM g.pages p JOIN changed c ON c.id = p.id")
        if delete:  # (seen is indexed by id once the scan is done)
            db.execute("INSERT OR IGNORE INTO retracted SELECT p.id, p.title, p.part, p.first, "
                       "p.n, 1 FROM g.pages p WHERE p.id NOT IN (SELECT id FROM seen)")
        old = {s: t for s, t in db.execute(
            "SELECT r.source, r.target FROM retracted x JOIN g.redirects r "
            "ON r.source = x.title")}
        new = dict(db.execute("SELECT title, target FROM changed WHERE kind = 'redirect'"))
        moved = {s for s in old.keys() | new.keys() if old.get(s) != new.get(s)}
        db.execute("DELETE FROM resolved_again")
        if every_page:
            db.execute("INSERT INTO resolved_again SELECT id FROM g.pages WHERE n > 0 AND id "
                       "NOT IN (SELECT id FROM retracted)")
        if not moved:
            db.commit()
            return
        db.commit()  # (its read of the graph's table ends: the index below writes it)
        con = sqlite3.connect(aliases_path)  # an index (no row changes), kept for later
        con.execute("CREATE INDEX IF NOT EXISTS redirects_target ON redirects(target)")
        con.commit()
        con.close()
        graph_aliases = AliasStore(aliases_path, read_only=True)
        try:
            titles = _redirecting_to(graph_aliases.db, moved)
            again: set[int] = set()
            if store is None:
                again = {i for (i,) in db.execute("SELECT id FROM g.pages")}
            else:
                for title in titles:
                    again |= pages_naming(store, site, graph_aliases.resolve(title))
        finally:
            graph_aliases.close()
        db.executemany("INSERT OR IGNORE INTO resolved_again VALUES (?)",
                       [(i,) for i in sorted(again)])
        db.execute("DELETE FROM resolved_again WHERE id IN (SELECT id FROM retracted)")
        db.commit()
    finally:
        db.execute("DETACH DATABASE g")


def _redirecting_to(aliases: sqlite3.Connection, titles: set[str]) -> set[str]:
    """``titles`` and every title whose redirects lead to one of them (within
    :data:`MAX_REDIRECT_HOPS` hops), by the graph's redirects."""
    found, frontier = set(titles), set(titles)
    for _ in range(MAX_REDIRECT_HOPS):
        nxt: set[str] = set()
        for t in frontier:
            nxt |= {s for (s,) in aliases.execute(
                "SELECT source FROM redirects WHERE target = ?", (t,))}
        frontier = nxt - found
        if not frontier:
            break
        found |= frontier
    return found


def pages_naming(store: Any, site: Site, title: str) -> set[int]:
    """The ids of the pages whose graphs hold the entity ``title`` as a subject or object."""
    import pyoxigraph as ox

    node = ox.NamedNode(site.entity_iri(title))
    prefix = site.graph + "page/"
    ids: set[int] = set()
    for q in (*store.quads_for_pattern(node, None, None), *store.quads_for_pattern(
            None, None, node)):
        g = q.graph_name
        if isinstance(g, ox.NamedNode) and g.value.startswith(prefix):
            head = g.value[len(prefix):].split("/", 1)[0]
            if head.isdigit():
                ids.add(int(head))
    return ids


def rebase_pages(pages: Path, old: str, new: str) -> None:
    """Point every page's ``foaf:isPrimaryTopicOf`` at its URL under the wiki's new page
    URLs (``old`` -> ``new`` prefixes: a wiki that moved to https), part file by part file
    (each written whole and renamed)."""
    from kgx.ontology import FOAF_PRIMARY_TOPIC_OF

    was = f"<{FOAF_PRIMARY_TOPIC_OF}> <{old}"
    now = f"<{FOAF_PRIMARY_TOPIC_OF}> <{new}"
    for part in sorted(pages.glob("*/*.nq")):
        with open(part, encoding="utf-8") as f:
            text = f.read()
        if was in text:
            tmp = part.with_name(part.name + ".tmp")
            tmp.write_text(text.replace(was, now), encoding="utf-8")
            os.replace(tmp, part)


# ------------------------------------------------------------------ the alias table


def apply_to_aliases(db: sqlite3.Connection, aliases_path: Path, pages: Path, key: str
                     ) -> None:
    """Bring the alias table up to date in one transaction: the retracted pages' titles,
    redirects, anchors and rows out, the changed pages' in. Done once per update ``key``."""
    con = sqlite3.connect(aliases_path)  # a rollback journal: all or nothing
    try:
        con.execute("CREATE TABLE IF NOT EXISTS updates (key TEXT PRIMARY KEY)")
        if con.execute("SELECT 1 FROM updates WHERE key = ?", (key,)).fetchone():
            return
        con.execute("CREATE INDEX IF NOT EXISTS anchors_key ON anchors(anchor, target)")
        delta: Counter[tuple[str, str]] = Counter()
        parts: dict[str, dict[int, list[tuple[str, str]]]] = {}
        for pid, title, part, deleted in db.execute(
                "SELECT id, title, part, deleted FROM retracted"):
            con.execute("DELETE FROM titles WHERE title = ? AND page_id = ?", (title, pid))
            con.execute("DELETE FROM redirects WHERE source = ?", (title,))
            delta.subtract(page_anchors(pages, part, pid, parts))
            if deleted:
                con.execute("DELETE FROM pages WHERE id = ?", (pid,))
        rows = db.execute("SELECT id, rev, title, part, first, n, kind, doc, target "
                          "FROM changed").fetchall()
        con.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [r[:8] for r in rows])
        con.executemany("INSERT OR REPLACE INTO titles VALUES (?, ?, ?)",
                        [(r[2], r[0], r[6]) for r in rows
                         if r[6] in ("article", "disambiguation", "redirect")])
        con.executemany("INSERT OR REPLACE INTO redirects VALUES (?, ?)",
                        [(r[2], r[8]) for r in rows if r[6] == "redirect" and r[8]])
        for r in rows:
            delta.update(page_anchors(pages, r[3], r[0], parts))
        _apply_anchors(con, delta)
        # What later stages built from the table (entity types and facts, the entity
        # table, the alias index) is built again from it.
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                   ).fetchall():
            if name not in STRUCTURE_TABLES:
                con.execute(f'DROP TABLE "{name}"')
        con.execute("INSERT INTO updates VALUES (?)", (key,))
        con.commit()
    finally:
        con.close()


def _apply_anchors(con: sqlite3.Connection, delta: Counter[tuple[str, str]]) -> None:
    for (a, t), d in delta.items():
        if d == 0:
            continue
        cur = con.execute("UPDATE anchors SET n = n + ? WHERE anchor = ? AND target = ?",
                          (d, a, t))
        if cur.rowcount == 0 and d > 0:
            con.execute("INSERT INTO anchors VALUES (?, ?, ?)", (a, t, d))
        elif d < 0:
            con.execute("DELETE FROM anchors WHERE anchor = ? AND target = ? AND n <= 0",
                        (a, t))


def page_anchors(pages: Path, part: str, page_id: int,
                 cache: dict[str, dict[int, list[tuple[str, str]]]]
                 ) -> Counter[tuple[str, str]]:
    """The anchors of page ``page_id`` as its part's anchors file holds them (``cache``:
    the parts read so far, by part)."""
    got = cache.get(part)
    if got is None:
        if len(cache) > 64:
            cache.clear()
        got = {}
        path = pages / (part + ANCHORS_SUFFIX)
        if path.exists():
            with open(path, encoding="utf-8") as f:
                for line in f:
                    pid, anchors = json.loads(line)
                    got[pid] = [(a, t) for a, t in anchors]
        cache[part] = got
    return Counter(got.get(page_id, []))


# ------------------------------------------------------------------ the graph's files


@dataclass(frozen=True, slots=True)
class Live:
    """Where the graph's pages are: each part's live line ranges, from the alias table's
    ``pages`` (a page's lines in an older part are dead)."""

    ranges: dict[str, list[tuple[int, int]]]

    @classmethod
    def of(cls, aliases: sqlite3.Connection) -> Live:
        ranges: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for part, first, n in aliases.execute(
                "SELECT part, first, n FROM pages WHERE n > 0 ORDER BY part, first"):
            ranges[part].append((first, n))
        return cls(dict(ranges))

    def parts(self) -> list[str]:
        """Every part with a live line, in the order the graph lists them (by generation,
        then by chunk)."""
        return sorted(self.ranges, key=_part_order)


def _part_order(part: str) -> tuple[int, str]:
    gen, _, stem = part.partition("/")
    return (int(gen), stem)


def lines_in(path: Path, ranges: list[tuple[int, int]]) -> Iterator[str]:
    """The lines of ``path`` inside the ``(first, count)`` ranges (sorted by first)."""
    if not ranges:
        return
    k = 0
    it = iter(ranges)
    first, n = next(it)
    with open(path, encoding="utf-8") as f:
        for line in f:
            while k >= first + n:
                nxt = next(it, None)
                if nxt is None:
                    return
                first, n = nxt
            if k >= first:
                yield line
            k += 1


_RESOLVING: tuple[Site, str, Path] | None = None


@dataclass(frozen=True, slots=True)
class Resolving:
    """What a worker that resolves parts needs: the site, the alias table, the pages."""

    site: Site
    aliases: str
    pages: str

    def install(self, limit_memory: bool = True) -> None:
        global _RESOLVING
        _RESOLVING = (self.site, self.aliases, Path(self.pages))


def resolve_live(part: str, ranges: list[tuple[int, int]], dst: str) -> Counter[str]:
    """Worker task: the live lines of ``part`` with redirects resolved, into ``dst``
    (written under a temporary name and renamed); returns its facts by extractor (the last
    step of a fact's graph, ``graph/page/ID/EXTRACTOR``; provenance left out)."""
    assert _RESOLVING is not None, "worker not initialised"
    site, aliases_path, pages = _RESOLVING
    aliases = AliasStore(aliases_path, read_only=True)
    prov = f"<{site.graph}provenance>"
    counts: Counter[str] = Counter()
    try:
        fix = redirect_resolver(site, aliases)
        with open(dst + ".tmp", "w", encoding="utf-8") as f:
            for line in lines_in(pages / (part + ".nq"), ranges):
                f.write(fix(line))
                g = _graph(line)
                if g != prov:
                    counts[g[g.rfind("/") + 1: -1]] += 1
    finally:
        aliases.close()
    os.replace(dst + ".tmp", dst)
    return counts


def _graph(line: str) -> str:
    """The graph term of an N-Quads line."""
    return line.rstrip()[:-1].rstrip().rsplit(" ", 1)[-1]


def write_documents(aliases: sqlite3.Connection, pages: Path, dst: Path) -> None:
    """``documents.jsonl`` again: every live document, by page id (the order of a
    Wikimedia dump, so the stages after read them as they read a fresh extraction's)."""
    cache: dict[str, list[str]] = {}
    with open(str(dst) + ".tmp", "w", encoding="utf-8") as f:
        for part, doc in aliases.execute(
                "SELECT part, doc FROM pages WHERE doc >= 0 ORDER BY id"):
            lines = cache.get(part)
            if lines is None:
                if len(cache) >= 64:
                    cache.pop(next(iter(cache)))
                with open(pages / (part + ".jsonl"), encoding="utf-8") as src:
                    lines = cache[part] = src.readlines()
            f.write(lines[doc])
    os.replace(str(dst) + ".tmp", dst)


# ------------------------------------------------------------------ the store


def graphs_of(lines: Iterable[str], provenance: str) -> set[str]:
    """The named graphs (N-Triples IRIs) of ``lines``, the provenance graph left out."""
    return {g for g in map(_graph, lines) if g != provenance}


def patch_store(store: Any, site: Site, db: sqlite3.Connection, pages: Path,
                aliases_path: Path, added: Path, log: Callable[[str], None],
                wikidata: Path | None = None) -> tuple[int, int]:
    """Take the retracted and resolved-again pages' graphs out of the store (their
    provenance with them) and put the new ones in, through ``added`` (an N-Quads file
    written here, loaded as every graph file is: a line the store refuses costs that line);
    with ``wikidata`` (N-Quads of the graph's Wikidata ids), every ``wikidata`` graph is
    replaced by those. Returns (quads retracted, quads added).

    Idempotent: the store is a set of quads, and what goes is found from the part files of
    the graph before the update, which do not change.
    """
    import pyoxigraph as ox

    from kgx.rdf.store import add_to_store

    prov = f"<{site.graph}provenance>"
    prov_node = ox.NamedNode(site.graph + "provenance")
    aliases = AliasStore(aliases_path, read_only=True)
    retracted = 0
    try:
        # The old graphs: of the retracted pages, as their old rows say; of the pages
        # resolved again, as their rows (unchanged) say.
        again = [i for (i,) in db.execute("SELECT id FROM resolved_again")]
        old_rows = db.execute("SELECT part, first, n FROM retracted").fetchall()
        old_rows += page_rows(aliases.db, again)
        gone = {g[1:-1] for g in graphs_of(rows_lines(pages, old_rows), prov)}
        if wikidata is not None:
            gone |= {q.subject.value for q in store.quads_for_pattern(
                None, ox.NamedNode(KGX + "extractor"), ox.Literal("wikidata"), prov_node)}
        for g in sorted(gone):
            node = ox.NamedNode(g)
            quads = list(store.quads_for_pattern(None, None, None, node))
            quads += list(store.quads_for_pattern(node, None, None, prov_node))
            for q in quads:
                store.remove(q)
            retracted += len(quads)
        fix = redirect_resolver(site, aliases)
        ids = [i for (i,) in db.execute("SELECT id FROM changed UNION "
                                        "SELECT id FROM resolved_again")]
        n_added = 0
        with open(added, "w", encoding="utf-8") as f:
            for line in rows_lines(pages, page_rows(aliases.db, ids)):
                f.write(fix(line))
                n_added += 1
    finally:
        aliases.close()
    loaded = add_to_store(store, added)
    if wikidata is not None:
        loaded.extend(add_to_store(store, wikidata))
        with open(wikidata, "rb") as w:
            n_added += sum(1 for _ in w)
    store.flush()
    log(f"[update] store: {retracted:,} quads retracted, {n_added:,} added"
        + (f"; {loaded.refused:,} refused, e.g. {loaded.examples[0]}" if loaded.refused
           else ""))
    return retracted, n_added


def rows_lines(pages: Path, rows: Iterable[tuple[str, int, int]]) -> Iterator[str]:
    """The lines of ``(part, first, lines)`` rows, each part file read once (its rows
    together, in order of their first line)."""
    by_part: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for part, first, n in rows:
        by_part[part].append((first, n))
    for part in sorted(by_part, key=_part_order):
        yield from lines_in(pages / (part + ".nq"), sorted(by_part[part]))


def page_rows(aliases: sqlite3.Connection, ids: list[int]) -> list[tuple[str, int, int]]:
    """``(part, first, lines)`` of the pages ``ids`` that have lines, in the graph's order."""
    rows: list[tuple[str, int, int]] = []
    for k in range(0, len(ids), 500):
        chunk = ids[k: k + 500]
        rows += aliases.execute(f"SELECT part, first, n FROM pages WHERE n > 0 AND id IN "
                                f"({','.join('?' * len(chunk))})", chunk).fetchall()
    return sorted(rows, key=lambda r: (_part_order(r[0]), r[1]))
