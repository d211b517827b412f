"""Misspelt names: a symmetric-delete index over the alias keys, sublinear in their number.

Takes the alias keys of the alias table; gives, for a misspelt name, the keys within two edits
of it. The method is SymSpell's (Wolf Garbe): each key is indexed under every string one
deletion away from its first ``PREFIX`` characters; a query looks up the deletions (up to two)
of its own prefix, so a lookup is one indexed read of a few dozen hashes whatever the number
of keys, and the candidates are verified by Levenshtein distance (rapidfuzz). Every key one
edit away is found, and most two edits away (two substitutions, or two deletions from the
key, are not: that would take two deletions on both sides, about eight times the index).
Deletions are stored as 64-bit hashes (a collision only adds a candidate that verification
drops), in SQLite beside the alias table, so memory does not grow with the wiki. They sit in
one clustered B-tree ordered by (hash, key length, key id): a query's candidates for one
deletion are adjacent on disk, and keys whose length is more than two away from the query's
(which no two edits can reach) are never read.

FTS5 trigram search, used before, grows with the table: common trigrams have posting lists of
millions (0.3 s per misspelt name at 1 million aliases, measured on the development machine).
A prefix of 7 characters, SymSpell's default, made names that share a first word (common in
titles) share candidates by the thousand; 16 keeps them apart.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from kgx.runtime.cpu import sort_threads

PREFIX = 16  # characters of a key whose deletions are indexed (SymSpell's prefix length)
MAX_CANDIDATES = 2000  # keys verified per query at most (a very common prefix)

SCHEMA = """
DROP TABLE IF EXISTS alias_deletes; DROP TABLE IF EXISTS alias_keys;
CREATE TABLE alias_keys (id INTEGER PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE alias_deletes (variant INTEGER NOT NULL, len INTEGER NOT NULL, key INTEGER NOT NULL,
                            PRIMARY KEY (variant, len, key)) WITHOUT ROWID;
DROP TABLE IF EXISTS temp.staged_deletes;
CREATE TEMP TABLE staged_deletes (variant INTEGER NOT NULL, len INTEGER NOT NULL,
                                  key INTEGER NOT NULL);
"""


def variant_hash(text: str) -> int:
    """A stable signed 64-bit hash (SQLite's INTEGER) of a deletion variant."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(),
                          "little", signed=True)


def deletions(key: str, prefix: int = PREFIX, depth: int = 1) -> set[str]:
    """The key's prefix and every string up to ``depth`` deletions away from it."""
    out = {key[:prefix]}
    frontier = out
    for _ in range(depth):
        frontier = {v[:i] + v[i + 1:] for v in frontier for i in range(len(v))}
        out |= frontier
    return out


def build(db: sqlite3.Connection, keys: Iterable[str], batch: int = 200_000,
          workers: int = 0, parts: Path | None = None) -> int:
    """(Re)build the index in ``db`` from distinct alias keys, best given in sorted order
    (:func:`iter_keys`).

    The keys are numbered and written first; their deletions are then worked out by
    ``workers`` processes (0 or 1: this one), :data:`CHUNK_KEYS` keys a task, each reading
    its keys from ``db``'s file and writing its rows to an SQLite file of its own in
    ``parts``, which this process copies in, in order: any number of workers makes the same
    index.

    Returns:
        The number of keys indexed.
    """
    sort_threads(db)
    db.executescript(SCHEMA)
    n = 0
    key_rows: list[tuple[int, str]] = []
    for key in keys:
        if not key:
            continue
        n += 1
        key_rows.append((n, key))
        if len(key_rows) >= batch:
            db.executemany("INSERT INTO alias_keys VALUES (?, ?)", key_rows)
            key_rows.clear()
    db.executemany("INSERT INTO alias_keys VALUES (?, ?)", key_rows)
    db.commit()  # the workers read the keys from here on; nothing writes the file meanwhile
    file = db.execute("PRAGMA database_list").fetchone()[2]
    ranges = [(lo, min(n, lo + CHUNK_KEYS - 1)) for lo in range(1, n + 1, CHUNK_KEYS)]
    if workers > 1 and file and parts is not None and len(ranges) > 1:
        from kgx.engines.local import Crashed, ignore_interrupts_in_worker
        from kgx.engines.pools import new_pool

        parts.mkdir(parents=True, exist_ok=True)
        # Spawned, not forked: the building process may hold an Oxigraph store's threads.
        pool = new_pool(None, workers, window=2, initializer=ignore_interrupts_in_worker,
                        start_method="spawn")
        for found in pool.map(deletion_rows, [(file, lo, hi, str(parts)) for lo, hi in ranges]):
            if isinstance(found, Crashed):
                raise RuntimeError(f"the misspelt-name index of alias keys {found.task[1]:,}-"
                                   f"{found.task[2]:,} was not made: its worker died twice")
            db.execute("ATTACH DATABASE ? AS part", (found,))
            db.execute("INSERT INTO staged_deletes SELECT variant, len, key FROM part.rows")
            db.commit()
            db.execute("DETACH DATABASE part")
            Path(found).unlink()
    else:
        rows: list[tuple[int, int, int]] = []
        for lo, hi in ranges:
            for row in _deletion_rows(db, lo, hi):
                rows.append(row)
                if len(rows) >= batch:
                    db.executemany("INSERT INTO staged_deletes VALUES (?, ?, ?)", rows)
                    rows.clear()
        db.executemany("INSERT INTO staged_deletes VALUES (?, ?, ?)", rows)
    # One sort at the end (SQLite's external merge sort, spilling to its temporary files) costs
    # far less than keeping the B-tree ordered through every insert.
    db.execute("INSERT OR IGNORE INTO alias_deletes SELECT variant, len, key FROM staged_deletes "
               "ORDER BY variant, len, key")
    db.execute("DROP TABLE temp.staged_deletes")
    db.commit()
    return n


# Alias keys a worker task indexes: about 8 s of one core (29.9 s of the workers' CPU for
# 751,749 synthetic keys, on the development machine).
CHUNK_KEYS = 200_000


def _deletion_rows(db: sqlite3.Connection, first: int, last: int
                   ) -> Iterator[tuple[int, int, int]]:
    """(variant hash, key length, key id) of the keys numbered ``first``..``last``."""
    for kid, key in db.execute("SELECT id, key FROM alias_keys WHERE id BETWEEN ? AND ?",
                               (first, last)).fetchall():
        size = len(key)
        for v in deletions(key):
            yield variant_hash(v), size, kid


def deletion_rows(db_file: str, first: int, last: int, parts: str) -> str:
    """Worker task: the deletion rows of keys ``first``..``last`` of ``db_file``'s
    ``alias_keys`` (opened read-only), in a new SQLite file in ``parts``; returns its path."""
    db = sqlite3.connect(f"{Path(db_file).as_uri()}?mode=ro", uri=True)
    path = os.path.join(parts, f"deletes-{first:012d}.sqlite")
    part = sqlite3.connect(path + ".tmp")
    try:
        part.execute("DROP TABLE IF EXISTS rows")
        part.execute("CREATE TABLE rows (variant INTEGER, len INTEGER, key INTEGER)")
        part.executemany("INSERT INTO rows VALUES (?, ?, ?)", _deletion_rows(db, first, last))
        part.commit()
    finally:
        part.close()
        db.close()
    os.replace(path + ".tmp", path)
    return path


def search(db: sqlite3.Connection, key: str, k: int = 10, max_distance: int = 2
           ) -> list[tuple[str, int]]:
    """Keys within ``max_distance`` edits of ``key``: ``(key, distance)``, nearest first.

    Raises:
        sqlite3.OperationalError: The index was never built (callers fall back).
    """
    from rapidfuzz.distance import Levenshtein

    variants = [variant_hash(v) for v in deletions(key, depth=2)]
    marks = ",".join("?" * len(variants))
    rows = db.execute(
        f"SELECT k.key FROM alias_keys k WHERE k.id IN (SELECT key FROM alias_deletes "
        f"WHERE variant IN ({marks}) AND len BETWEEN ? AND ? LIMIT {MAX_CANDIDATES})",
        [*variants, len(key) - max_distance, len(key) + max_distance]).fetchall()
    found = []
    for (cand,) in rows:
        if abs(len(cand) - len(key)) > max_distance:
            continue
        d = Levenshtein.distance(key, cand, score_cutoff=max_distance)
        if d <= max_distance:
            found.append((cand, d))
    found.sort(key=lambda x: (x[1], x[0]))
    return found[:k]


def iter_keys(db: sqlite3.Connection) -> Iterator[str]:
    """The distinct keys of the alias table, streamed in order (read from its key index):
    keys that share a prefix get neighbouring ids, so one query's candidates share pages."""
    for (key,) in db.cursor().execute("SELECT DISTINCT key FROM alias_index ORDER BY key"):
        yield key
