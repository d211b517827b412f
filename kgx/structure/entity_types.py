"""What the structure graph says of each entity: its type and its infobox facts, on disk.

Takes a structure-pass output (its store and ``aliases.sqlite``); gives :class:`EntityTypes`,
a read-only mapping from title to :class:`EntityInfo` kept in two SQLite tables of
``aliases.sqlite`` (``entity_types``, ``entity_facts``), built once from the store by streamed
queries. Memory does not grow with the dump: the English Wikipedia has about 7 million typed
entities, which as Python objects would take gigabytes in every stage that labels or links.

Used by the corpus (mention types, distant supervision), the entity table (types of linking
candidates) and the read stage (does a model fact restate an infobox fact?).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from kgx.ontology import KGX, RDF_TYPE, Ontology, load_ontology
from kgx.outdir import ALIASES_FILE, REPORT_FILE, STORE_DIR
from kgx.runtime.cpu import sort_threads

_COARSE_OF = {"Person": "PER", "Deity": "PER", "Organisation": "ORG", "Place": "LOC"}
_BATCH = 50_000
# What the tables' building does; tables of another version are built again on first use.
TYPES_VERSION = "entity-types-2"  # 2: a range type is the one most facts give
_SCHEMA = """
DROP TABLE IF EXISTS entity_types; DROP TABLE IF EXISTS entity_facts;
DROP TABLE IF EXISTS entity_types_done;
CREATE TABLE entity_types (title TEXT PRIMARY KEY, coarse TEXT, fine TEXT, depth INTEGER,
                           source TEXT) WITHOUT ROWID;
CREATE TABLE entity_facts (title TEXT NOT NULL, prop TEXT NOT NULL, object TEXT NOT NULL);
"""


@dataclass(slots=True)
class EntityInfo:
    """What the graph says of one entity: coarse and fine type, facts with it as subject."""

    coarse: str | None = None
    fine: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)  # (property local, object title)
    source: str = "class"  # "class" (the page's own type) or "range" (object of a typed fact)


def coarse_type(onto: Ontology, cls_iri: str) -> str:
    """PER / ORG / LOC / MISC for an ontology class, through its superclasses."""
    for c in onto.ancestors(cls_iri):
        name = c[len(KGX):] if c.startswith(KGX) else ""
        if name in _COARSE_OF:
            return _COARSE_OF[name]
    return "MISC"


class Signatures:
    """Domain and range of each ontology property as coarse types (PER/ORG/LOC/MISC).

    A relation between mentions whose coarse types are not the ones its property's domain or
    range declares (a person as ``kgx:notableWork``) cannot hold. ``None`` for a type is
    unknown, and fits anything.
    """

    def __init__(self, onto: Ontology | None = None) -> None:
        onto = onto or load_ontology()
        self.sig: dict[str, tuple[str | None, str | None]] = {}
        for local, p in onto.properties.items():
            if not p.object:
                continue
            dom = p.domain if p.domain and p.domain[len(KGX):] in onto.classes else None
            rng = p.range if p.range and p.range[len(KGX):] in onto.classes else None
            self.sig[local] = (coarse_type(onto, dom) if dom else None,
                               coarse_type(onto, rng) if rng else None)
        self._any: dict[tuple[str | None, str | None], bool] = {}

    def fits(self, prop: str, head_type: str | None, tail_type: str | None) -> bool:
        dom, rng = self.sig.get(prop, (None, None))
        return (dom is None or head_type is None or dom == head_type) and \
            (rng is None or tail_type is None or rng == tail_type)

    def any_fits(self, head_type: str | None, tail_type: str | None) -> bool:
        """Whether some property could hold between mentions of these types: the pairs a
        relation example is worth teaching on (a type-valid negative)."""
        key = (head_type, tail_type)
        hit = self._any.get(key)
        if hit is None:
            hit = self._any[key] = any(self.fits(p, head_type, tail_type) for p in self.sig)
        return hit


class EntityTypes:
    """Title -> :class:`EntityInfo`, read from ``aliases.sqlite`` (see :func:`load_entities`)."""

    def __init__(self, db_path: Path, connection: sqlite3.Connection | None = None) -> None:
        # A process that writes the same file must read through its own connection: a
        # second one is refused ("database is locked") once the writer spills to disk.
        self.db = connection or sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                                check_same_thread=False)
        self._own = connection is None
        self.get = lru_cache(maxsize=1 << 16)(self._get)

    def _get(self, title: str) -> EntityInfo | None:
        row = self.db.execute("SELECT coarse, fine, source FROM entity_types WHERE title = ?",
                              (title,)).fetchone()
        facts = [(p, o) for p, o in self.db.execute(
            "SELECT prop, object FROM entity_facts WHERE title = ?", (title,))]
        if row is None and not facts:
            return None
        coarse, fine, source = row if row else (None, None, "class")
        return EntityInfo(coarse, fine, facts, source)

    def close(self) -> None:
        if self._own:
            self.db.close()


def load_entities(graph_dir: Path, onto: Ontology | None = None) -> EntityTypes:
    """Types and infobox object facts of every entity in a structure-pass output, by title.

    The tables are built on first use and kept in ``aliases.sqlite``; the structure pass
    writes a new ``aliases.sqlite``, so they never outlive the graph they were read from.
    """
    graph_dir = Path(graph_dir)
    db_path = graph_dir / ALIASES_FILE
    db = sort_threads(sqlite3.connect(db_path))
    try:
        have = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'entity_types_done'"
                          ).fetchone()
        if not have or db.execute("SELECT at FROM entity_types_done").fetchone() != \
                (TYPES_VERSION,):
            _build(graph_dir, db, onto or load_ontology())
    finally:
        db.close()
    return EntityTypes(db_path)


def _namespace(graph_dir: Path) -> str:
    report = json.loads((graph_dir / REPORT_FILE).read_text("utf-8"))
    return report.get("site", {}).get("namespace") or ""


def _titles(store: Any, query: str, res: str, positions: tuple[int, ...]
            ) -> Iterator[tuple[Any, ...]]:
    """Solutions of ``query``, the terms at ``positions`` turned into titles (None when they
    are not resource IRIs)."""
    import pyoxigraph as ox

    for sol in store.query(query, use_default_graph_as_union=True):
        row = list(sol)
        for i in positions:
            v = row[i]
            row[i] = unquote(v.value[len(res):]).replace("_", " ") \
                if isinstance(v, ox.NamedNode) and v.value.startswith(res) else None
        yield tuple(row)


def _build(graph_dir: Path, db: sqlite3.Connection, onto: Ontology) -> None:
    import pyoxigraph as ox

    res = _namespace(graph_dir) + "resource/"
    store = ox.Store.read_only(str(graph_dir / STORE_DIR))
    depth = {c: len(onto.ancestors(KGX + c)) for c in onto.classes}
    db.executescript(_SCHEMA)
    upsert = ("INSERT INTO entity_types VALUES (?, ?, ?, ?, 'class') ON CONFLICT(title) DO "
              "UPDATE SET coarse = excluded.coarse, fine = excluded.fine, depth = excluded.depth"
              " WHERE excluded.depth > entity_types.depth")
    rows: list[tuple[Any, ...]] = []
    classes = f"SELECT ?s ?c WHERE {{ ?s <{RDF_TYPE}> ?c }}"
    for t, c in _titles(store, classes, res, (0,)):
        if t is None or not isinstance(c, ox.NamedNode) or not c.value.startswith(KGX):
            continue
        name = c.value[len(KGX):]
        if name not in depth:
            continue
        rows.append((t, coarse_type(onto, KGX + name), KGX + name, depth[name]))
        if len(rows) >= _BATCH:
            db.executemany(upsert, rows)
            rows.clear()
    db.executemany(upsert, rows)
    # Infobox facts whose property is aligned with Wikidata: distant supervision's positives.
    wd_props = {p.iri: local for local, p in onto.properties.items() if p.object and p.wikidata}
    facts: list[tuple[str, str, str]] = []
    ranged: list[tuple[str, str, str]] = []
    db.executescript("""
        DROP TABLE IF EXISTS temp.ranged; DROP TABLE IF EXISTS temp.class_depth;
        CREATE TEMP TABLE ranged (title TEXT NOT NULL, coarse TEXT, fine TEXT);
        CREATE TEMP TABLE class_depth (fine TEXT PRIMARY KEY, depth INTEGER);""")
    db.executemany("INSERT INTO temp.class_depth VALUES (?, ?)",
                   [(KGX + c, d) for c, d in depth.items()])
    q = f'SELECT ?s ?p ?o WHERE {{ GRAPH ?g {{ ?s ?p ?o }} ?g <{KGX}extractor> "infobox" }}'
    for s, p, o in _titles(store, q, res, (0, 2)):
        local = wd_props.get(p.value) if isinstance(p, ox.NamedNode) else None
        if local is None or s is None or o is None:
            continue
        facts.append((s, local, o))
        rng = onto.properties[local].range
        if rng and rng.startswith(KGX) and rng[len(KGX):] in onto.classes:
            ranged.append((o, coarse_type(onto, rng), rng))
        if len(facts) >= _BATCH:
            _flush_facts(db, facts, ranged)
    _flush_facts(db, facts, ranged)
    # rdfs:range entailment: the object of kgx:birthPlace is a kgx:Place, even when its own
    # page is not in the dump. An object of several facts whose ranges differ takes the range
    # most of them give, the deeper class on a tie, then the first by name: never the first
    # fact the store happens to yield. A type the page itself states wins (class types were
    # all written first).
    db.execute("""
        INSERT INTO entity_types
        SELECT title, coarse, fine, -1, 'range' FROM (
            SELECT title, coarse, fine, row_number() OVER (
                PARTITION BY title ORDER BY count(*) DESC, max(depth) DESC, fine) AS pick
            FROM (SELECT r.title, r.coarse, r.fine, coalesce(d.depth, 0) AS depth
                  FROM temp.ranged r LEFT JOIN temp.class_depth d ON d.fine = r.fine)
            GROUP BY title, coarse, fine)
        WHERE pick = 1
        ON CONFLICT(title) DO NOTHING""")
    db.execute("DROP TABLE temp.ranged")
    db.execute("DROP TABLE temp.class_depth")
    db.execute("CREATE INDEX entity_facts_by_title ON entity_facts(title)")
    db.execute("CREATE TABLE entity_types_done (at TEXT)")
    db.execute("INSERT INTO entity_types_done VALUES (?)", (TYPES_VERSION,))
    db.commit()
    del store


def _flush_facts(db: sqlite3.Connection, facts: list[tuple[str, str, str]],
                 ranged: list[tuple[str, str, str]]) -> None:
    db.executemany("INSERT INTO entity_facts VALUES (?, ?, ?)", facts)
    db.executemany("INSERT INTO temp.ranged VALUES (?, ?, ?)", ranged)  # chosen at the end
    facts.clear()
    ranged.clear()
