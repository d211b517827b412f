"""A newer dump read against a graph: which of its pages changed, and whether it is a dump of
the graph's wiki at all."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kgx.dump.reader import DumpReader
from kgx.dump.sources import DumpError
from kgx.records import Page, SiteInfo


class UpdateError(ValueError):
    """An update that cannot be applied (another wiki, an older dump, a graph without its
    pages); nothing in the graph was changed."""


def check_same_wiki(graph_site: dict[str, Any], dump_site: SiteInfo, dump: str, out: str
                    ) -> None:
    """Refuse a dump of another wiki than the graph's (its database name, or, where a dump
    lacks one, its base URL; its site name; its language).

    Raises:
        UpdateError: Naming what differs.
    """
    def host(base: str) -> str:
        return base.split("//", 1)[-1].split("/", 1)[0]

    differ = []
    if graph_site.get("dbname") and dump_site.dbname:
        if graph_site["dbname"] != dump_site.dbname:
            differ.append(f"database name {dump_site.dbname!r}, not {graph_site['dbname']!r}")
    elif host(graph_site.get("base", "")) != host(dump_site.base):
        differ.append(f"base URL {dump_site.base!r}, not {graph_site.get('base')!r}")
    if graph_site.get("sitename", dump_site.sitename) != dump_site.sitename:
        differ.append(f"site name {dump_site.sitename!r}, not {graph_site['sitename']!r}")
    if graph_site.get("lang", dump_site.lang) != dump_site.lang:
        differ.append(f"language {dump_site.lang!r}, not {graph_site['lang']!r}")
    if differ:
        raise UpdateError(f"{dump} is a dump of another wiki than the graph in {out}: its "
                          + "; ".join(differ) + ". kgx update takes a newer dump of the same "
                          "wiki; extract this one into a folder of its own.")


@dataclass(slots=True)
class Batch:
    """Pages of the newer dump to process, with every page id read since the last batch."""

    task: int
    pages: list[Page]
    seen: list[tuple[int, int | None]] = field(default_factory=list)  # (id, revision)
    unchanged: int = 0
    in_graph: set[int] = field(default_factory=set)  # ids of ``pages`` the graph has (changed)


@dataclass(slots=True)
class Scan:
    """The newer dump read page by page against the graph's ``pages`` table.

    Args:
        reader: The newer dump.
        graph: The graph's alias table (its ``pages``: id, revision).
        allow_older: Apply pages whose revision is older than the graph's.
    """

    reader: DumpReader
    graph: sqlite3.Connection
    allow_older: bool = False
    broke_off: str | None = None  # where the dump broke off: its pages before are kept
    older: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # id: title, revs

    def batches(self, max_pages: int = 64, max_chars: int = 4_000_000,
                max_seen: int = 20_000) -> Iterator[Batch]:
        """Batches of pages whose revision differs from the graph's (changed) or that the graph
        lacks (added), in dump order; unchanged pages are counted, not read further.

        Raises:
            UpdateError: A page is older here than in the graph (without ``allow_older``),
                once the dump is read (a page id may come twice: its newer copy counts).
        """
        b = Batch(0, [])
        chars = 0
        try:
            for page in self.reader:
                b.seen.append((page.id, page.revision_id))
                row = self.graph.execute("SELECT rev FROM pages WHERE id = ?",
                                         (page.id,)).fetchone()
                old = None if row is None else row[0]
                rev = page.revision_id
                if old is not None and rev is not None and rev < old and not self.allow_older:
                    # Older than the graph: refused once the dump is read (check_older),
                    # unless the same page id comes at a newer revision too (a dump's newer
                    # copy of a page wins).
                    self.older.setdefault(page.id, (page.title, rev, old))
                    b.seen.pop()
                    continue
                if old is not None and old == rev:
                    b.unchanged += 1
                else:
                    b.pages.append(page)
                    if old is not None:
                        b.in_graph.add(page.id)
                    chars += len(page.text)
                if len(b.pages) >= max_pages or chars >= max_chars or len(b.seen) >= max_seen:
                    yield b
                    b, chars = Batch(b.task + 1, []), 0
        except DumpError as exc:
            self.broke_off = str(exc)
        if b.pages or b.seen:
            yield b

    def check_older(self, seen: sqlite3.Connection) -> None:
        """Refuse the dump if a page of it is older than the graph's and no copy of the same
        page id in it is as new (``seen``: every ``(id, rev)`` read that was not older).

        Raises:
            UpdateError: Naming the first such page and how many there are.
        """
        older = [(pid, t) for pid, t in self.older.items() if seen.execute(
            "SELECT 1 FROM seen WHERE id = ? AND rev >= ?", (pid, t[2])).fetchone() is None]
        if older:
            pid, (title, rev, old) = older[0]
            raise UpdateError(
                f"{self.reader.path}: page {pid} ({title!r}) is at revision {rev} in this dump "
                f"and at {old} in the graph ({len(older):,} pages are older here): the dump "
                "is older than the graph. Nothing was changed; --allow-older applies it "
                "anyway.")
