"""The entities stage's first step (entity table, alias index, misspelt-name index) in one
process against worker processes, on one finished output, in one run.

Copies ``OUT/aliases.sqlite`` (the structure stage's titles, redirects and anchors) and builds
the tables from it three times, each in a fresh child process: with ``--workers 0`` (every
alias row made in the building process) and with ``--workers N``
(:func:`kgx.linking.tables.alias_rows` and :func:`kgx.linking.fuzzy.deletion_rows` in N
spawned processes), SQLite's sorter on one thread, then N workers with the sorter's helper
threads (:func:`kgx.runtime.cpu.sort_threads`, kgx's default). Prints
seconds, pages per second, anchor rows, CPU seconds of the process tree over wall seconds and
peak memory, whether every way made the same tables, and each step's seconds. Usage:
``python -m benchmarks.bench_entity_tables OUT [--workers N] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

from benchmarks.common import print_ways, printed_page, run_child

RUNNER = """
import sys, time
from pathlib import Path
from benchmarks.common import child_usage
import kgx.runtime.cpu
from kgx.linking.tables import build_entity_table
if __name__ == "__main__":
    kgx.runtime.cpu.SORT_THREADS = None if sys.argv[3] == "auto" else int(sys.argv[3])
    t = time.perf_counter()
    phases = {}
    n = build_entity_table(Path(sys.argv[1]), workers=int(sys.argv[2]), phases=phases)
    child_usage(time.perf_counter() - t, entities=n, phases=phases)
"""


STEP_NOTES = {  # where each step of kgx.linking.tables.build_entity_table runs
    "types": " (this process: SPARQL over the store)",
    "abstracts": " (this process)",
    "titles_and_redirects": " (workers; numbering and copy-in here)",
    "anchors": " (workers; numbering and copy-in here)",
    "sums": " (this process, SQLite's sorter threads)",
    "misspelt_index": " (deletions in workers; the sort here)",
}


def tables_digest(db: Path) -> str:
    con = sqlite3.connect(db)
    h = hashlib.sha256()
    for table, order in (("entities", "id"), ("alias_index", "key, entity"),
                         ("alias_keys", "id"), ("alias_deletes", "variant, len, key")):
        for row in con.execute(f"SELECT * FROM {table} ORDER BY {order}"):
            h.update(repr(row).encode())
    con.close()
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="a finished kgx output folder")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-entity-tables"))
    args = ap.parse_args()
    src = sqlite3.connect(args.out / "aliases.sqlite")
    pages = src.execute("SELECT count(*) FROM titles").fetchone()[0]
    anchors = src.execute("SELECT count(*) FROM anchors").fetchone()[0]
    src.close()
    print(f"{args.out}: {pages:,} pages, {anchors:,} anchor rows; {os.cpu_count()} cores")
    rows = {}
    ways = {"0 (this process), sorter 1 thread": (0, "0"),
            f"{args.workers}, sorter 1 thread": (args.workers, "0"),
            f"{args.workers}, sorter helper threads (now)": (args.workers, "auto")}
    for way, (workers, threads) in ways.items():
        dst = args.work / f"w{workers}-{threads}"
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        shutil.copyfile(args.out / "aliases.sqlite", dst / "aliases.sqlite")
        shutil.copyfile(args.out / "report.json", dst / "report.json")
        (dst / "store").symlink_to((args.out / "store").resolve())
        rows[way] = run_child(RUNNER, dst, workers, threads, what=way)
        rows[way]["digest"] = tables_digest(dst / "aliases.sqlite")
        shutil.rmtree(dst)
    print_ways(rows, pages, "page", "tables")
    print(f"{next(iter(rows.values()))['entities']:,} entities")
    # Each step's seconds: what a projection needs to know is which steps the workers share
    names = list(rows)
    print("\n| step (seconds) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for step in next(iter(rows.values()))["phases"]:
        print(f"| {step}{STEP_NOTES.get(step, '')} | "
              + " | ".join(f"{rows[w]['phases'][step]:.2f}" for w in names) + " |")
    (args.work / "bench-entity-tables.json").write_text(json.dumps(
        {"pages": pages, "anchors": anchors, "rows": rows}, indent=1))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
