"""Loading graph.nq into the Oxigraph store: kgx's way against its alternatives, in one run.

Builds an N-Quads file of ``--copies`` copies of a kgx ``graph.nq`` (each copy's resource IRIs
renamed), then loads it into a fresh store in a child process, four ways:

* ``chunks``: ``bulk_load(input=...)`` on 16 MB chunks one after the other, one loader per
  call (what kgx 0.2 did);
* ``parallel``: what kgx does now (``kgx.rdf.store.add_to_store``): the same chunks, one per core
  at a time (at most 8), each with its own loader;
* ``file``: one ``bulk_load(path=...)`` of the whole file, Oxigraph's streaming loader, which
  parses on one thread and writes on another, aiming at 2 GB of memory per thread;
* ``chunks-256``: 256 MB chunks one after the other;
* ``parallel-N`` (only when named in ``--ways``): kgx's way with N MB chunks.

For each: seconds, quads per second, CPU seconds over wall seconds (the cores it kept busy, out
of the machine's), and the peak resident memory of the loading process. Usage:
``python -m benchmarks.bench_store_load OUT [--copies 16] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from benchmarks.common import ROOT, printed_page, run_child

LOADER = """
import sys, time
from pathlib import Path
import pyoxigraph as ox
from benchmarks.common import child_usage
how, graph, store_dir = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
from kgx.rdf.store import add_to_store
store = ox.Store(store_dir)
t = time.perf_counter()
if how == "file":
    store.bulk_load(path=str(graph), format=ox.RdfFormat.N_QUADS)
elif how.startswith("parallel"):  # "parallel-64": 64 MB chunks
    import kgx.rdf.store
    if "-" in how:
        kgx.rdf.store.LOAD_CHUNK_BYTES = int(how.split("-")[1]) << 20
    add_to_store(store, graph)
else:
    size = {"chunks": 16 << 20, "chunks-256": 256 << 20}[how]
    with open(graph, "rb") as f:
        while chunk := f.readlines(size):
            store.bulk_load(input=b"".join(chunk), format=ox.RdfFormat.N_QUADS)
store.optimize()
child_usage(time.perf_counter() - t, quads=len(store))
"""


def make_graph(src: Path, copies: int, dst: Path) -> int:
    """``copies`` copies of ``src`` with every resource IRI renamed per copy; returns quads."""
    data = src.read_bytes()
    with open(dst, "wb") as f:
        for i in range(copies):
            f.write(data.replace(b"/resource/", f"/resource/c{i}_".encode()))
    return data.count(b"\n") * copies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="a kgx output folder (its graph.nq is copied)")
    ap.add_argument("--copies", type=int, default=16)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "store-load")
    ap.add_argument("--ways", nargs="+", default=["chunks", "parallel", "file", "chunks-256"])
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    graph = args.work / "graph.nq"
    lines = make_graph(args.out / "graph.nq", args.copies, graph)
    print(f"{graph}: {graph.stat().st_size / 1e6:,.0f} MB, {lines:,} lines; "
          f"{os.cpu_count()} cores", flush=True)
    rows = []
    for how in args.ways:
        store = args.work / f"store-{how}"
        shutil.rmtree(store, ignore_errors=True)
        r = run_child(LOADER, how, graph, store, what=how)
        rows.append({"way": how, "quads": r["quads"], "seconds": round(r["seconds"], 1),
                     "quads_per_s": round(r["quads"] / r["seconds"]),
                     "cores_busy": round(r["cpu"] / r["seconds"], 2),
                     "peak_rss_mb": round(r["rss_mb"])})
        print(json.dumps(rows[-1]), flush=True)
        shutil.rmtree(store, ignore_errors=True)
    base = rows[0]["seconds"]
    print("\n| way | quads | seconds | quads/s | cores busy | peak RSS MB | speed vs chunks |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['way']} | {r['quads']:,} | {r['seconds']} | {r['quads_per_s']:,} | "
              f"{r['cores_busy']} | {r['peak_rss_mb']:,} | {base / r['seconds']:.2f}x |")
    (args.work / "bench-store-load.json").write_text(json.dumps(rows, indent=2))
    graph.unlink()


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
