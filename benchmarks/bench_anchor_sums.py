"""The structure stage's anchor sums: one GROUP BY in the building process (the previous
version) against kgx's tables by hash of the anchor, each summed by a worker process, on the
same synthetic anchor rows, in one run.

The rows imitate what the structure pass appends, one per (chunk, anchor, target): anchors of
one to three words drawn from a Zipf-like vocabulary, so common anchors recur across chunks,
each linking one of a few targets. Each way builds its own copy of the table file, in a fresh
child process (its peak memory is its own). Prints seconds, rows per second, CPU seconds of
the process tree over wall seconds, peak memory and whether both made the same ``anchors``.
Usage: ``python -m benchmarks.bench_anchor_sums [--rows 4000000] [--workers N] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import shutil
import sqlite3
import time
from pathlib import Path

from benchmarks.common import print_ways, printed_page, run_child

RUNNER = """
import sqlite3, sys, time
from benchmarks.common import child_usage
from kgx.structure.aliases import AliasStore
from kgx.engines.local import ignore_interrupts_in_worker; from kgx.engines.pools import new_pool

def one_group_by(path):
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
    with db:
        db.execute("INSERT INTO anchors SELECT anchor, target, sum(n) FROM anchor_rows "
                   "WHERE true GROUP BY anchor, target ON CONFLICT(anchor, target) "
                   "DO UPDATE SET n = n + excluded.n")
        db.execute("DROP TABLE anchor_rows")
    db.close()

if __name__ == "__main__":
    path, way, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t = time.perf_counter()
    if way == "one":
        one_group_by(path)
    else:
        store = AliasStore(path)
        pool = new_pool(None, workers, window=2, initializer=ignore_interrupts_in_worker,
                        start_method="spawn")
        store.finish(pool.map if workers else None)
        store.close()
    child_usage(time.perf_counter() - t)
"""


def synthetic_rows(n: int, seed: int = 7):
    """``n`` (anchor, target, count) rows, chunk by chunk of 20,000 distinct pairs."""
    rng = random.Random(seed)
    syll = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "an", "bel", "cor", "vin"]
    vocab = ["".join(rng.choice(syll) for _ in range(rng.randint(2, 4))).title()
             for _ in range(50_000)]
    cum = list(itertools.accumulate(1 / (i + 1) for i in range(len(vocab))))
    done = 0
    while done < n:
        chunk: dict[tuple[str, str], int] = {}
        while len(chunk) < min(20_000, n - done):
            words = rng.choices(vocab, cum_weights=cum, k=rng.randint(1, 3))
            anchor = " ".join(words)
            target = anchor if rng.random() < 0.7 else f"{anchor} ({rng.choice(vocab)})"
            chunk[(anchor, target)] = chunk.get((anchor, target), 0) + 1
        done += len(chunk)
        yield chunk


def anchors_digest(path: Path) -> str:
    con = sqlite3.connect(path)
    h = hashlib.sha256()
    for row in con.execute("SELECT anchor, target, n FROM anchors ORDER BY anchor, target"):
        h.update(repr(row).encode())
    con.close()
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=4_000_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-anchor-sums"))
    args = ap.parse_args()
    from kgx.structure.aliases import AliasStore

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    t = time.perf_counter()
    kgx_db = args.work / "kgx.sqlite"
    store = AliasStore(kgx_db)
    one_db = sqlite3.connect(args.work / "one.sqlite")
    one_db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                         "CREATE TABLE anchors (anchor TEXT NOT NULL, target TEXT NOT NULL, "
                         "n INTEGER NOT NULL, PRIMARY KEY (anchor, target));"
                         "CREATE TABLE anchor_rows (anchor TEXT NOT NULL, target TEXT NOT NULL,"
                         " n INTEGER NOT NULL);")
    rows = 0
    for chunk in synthetic_rows(args.rows):
        with store.db:
            store.add_anchor_rows(chunk)
        one_db.executemany("INSERT INTO anchor_rows VALUES (?, ?, ?)",
                           [(a, t, n) for (a, t), n in chunk.items()])
        one_db.commit()
        rows += len(chunk)
    store.close()
    one_db.close()
    print(f"{rows:,} anchor rows made in {time.perf_counter() - t:.1f} s; "
          f"{os.cpu_count()} cores")
    results = {}
    ways = {"one GROUP BY in one process (before)": ("one", args.work / "one.sqlite", 0),
            f"{16} tables by hash, {args.workers} workers (now)": ("parts", kgx_db,
                                                                   args.workers)}
    for name, (way, path, workers) in ways.items():
        results[name] = run_child(RUNNER, path, way, workers, what=name)
        results[name]["digest"] = anchors_digest(path)
        results[name]["anchors"] = sqlite3.connect(path).execute(
            "SELECT count(*) FROM anchors").fetchone()[0]
    print_ways(results, rows, "row", "anchors")
    print(f"{next(iter(results.values()))['anchors']:,} distinct (anchor, target)")
    (args.work / "bench-anchor-sums.json").write_text(json.dumps(
        {"rows": rows, "results": results}, indent=1))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
