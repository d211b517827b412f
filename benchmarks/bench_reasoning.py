"""The merge's entailments: kgx's chunked way against the SPARQL fixpoint, on one graph, in
one run.

Takes a finished kgx ``OUT`` (its ``graph.nq`` and store), removes the inferred graph from a
copy of each, and finds the entailments again two ways, each in a fresh child process:

* ``sparql``: :func:`kgx.rdf.reasoning.materialise`, SPARQL CONSTRUCTs run to a fixpoint inside
  Oxigraph, one process (what the merge did before);
* ``chunks``: what the merge does now (:func:`kgx.rdf.merge.merge`): chunks of ``graph.nq``
  read by ``--workers`` processes against the store opened read-only, then the transitive
  chains; the entailments appended to ``graph.nq`` and loaded into the store.

For each: seconds, stated triples per second, CPU seconds of the process tree over wall
seconds, and its peak resident memory; then whether both found the same quads. Usage:
``python -m benchmarks.bench_reasoning OUT [--workers N] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import printed_page, run_child

RUNNER = """
import sys, time
from pathlib import Path
from benchmarks.common import child_usage
how, out, stated, graph, workers = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), \\
    sys.argv[4], int(sys.argv[5])
t = time.perf_counter()
if how == "sparql":
    import pyoxigraph as ox
    from kgx.rdf.reasoning import materialise
    store = ox.Store(str(out / "store"))
    with open(out / "graph.nq", "a", encoding="utf-8") as f:
        f.writelines(materialise(store, graph))
    store.flush()
    del store
else:
    from kgx.rdf.merge import merge
    merge(out, [], True, stated, "bench", workers=workers, log=lambda m: None)
child_usage(time.perf_counter() - t)
"""


def stated_part(graph: Path) -> tuple[int, int, str]:
    """Bytes and lines of ``graph`` before its inferred graph's lines, and that graph's IRI."""
    size = lines = 0
    iri = ""
    with open(graph, "rb") as f:
        for line in f:
            if line.rstrip().endswith(b"/graph/inferred> ."):
                iri = line.rsplit(b" ", 2)[-2].decode()[1:-1]
                break
            size += len(line)
            lines += 1
    return size, lines, iri


def prepare(src: Path, dst: Path, stated: int, graph: str) -> None:
    """``dst``: ``src``'s report, its graph.nq cut at ``stated`` bytes, and its store without
    the inferred graph."""
    import pyoxigraph as ox

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    shutil.copyfile(src / "report.json", dst / "report.json")
    with open(src / "graph.nq", "rb") as f, open(dst / "graph.nq", "wb") as g:
        left = stated
        while left:
            block = f.read(min(left, 1 << 20))
            g.write(block)
            left -= len(block)
    shutil.copytree(src / "store", dst / "store")
    (dst / "store" / "kgx-merge.json").unlink(missing_ok=True)
    store = ox.Store(str(dst / "store"))
    store.remove_graph(ox.NamedNode(graph))
    store.flush()
    del store


def inferred_digest(out: Path, stated: int) -> tuple[int, str]:
    """Distinct lines appended after ``stated`` bytes, and an order-free digest of them."""
    with open(out / "graph.nq", "rb") as f:
        f.seek(stated)
        lines = set(f.read().splitlines())
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line + b"\n")
    return len(lines), h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="a finished kgx output folder")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-reasoning"))
    args = ap.parse_args()
    stated, lines, graph = stated_part(args.out / "graph.nq")
    if not graph:
        sys.exit(f"{args.out / 'graph.nq'}: no inferred graph (was it extracted with "
                 "reasoning?)")
    print(f"{args.out}: {lines:,} stated lines ({stated / 1e6:.1f} MB); "
          f"{os.cpu_count()} cores, {args.workers} workers")
    rows = {}
    for how in ("sparql", "chunks"):
        dst = args.work / how
        prepare(args.out, dst, stated, graph)
        rows[how] = run_child(RUNNER, how, dst, stated, graph, args.workers, what=how)
        rows[how]["inferred"], rows[how]["digest"] = inferred_digest(dst, stated)
        shutil.rmtree(dst / "store")
        time.sleep(1)
    base = rows["sparql"]["seconds"]
    print("| way | seconds | stated triples/s | cores busy | peak RSS MB | inferred | speed |")
    print("|---|---|---|---|---|---|---|")
    for how, r in rows.items():
        print(f"| {how} | {r['seconds']:.1f} | {lines / r['seconds']:,.0f} | "
              f"{r['cpu'] / r['seconds']:.2f} | {r['rss_mb']:,.0f} | {r['inferred']:,} | "
              f"{base / r['seconds']:.2f}x |")
    same = rows["sparql"]["digest"] == rows["chunks"]["digest"]
    print(f"same entailments: {same} ({rows['chunks']['digest']})")
    print(f"per stated triple: sparql {1e6 * base / lines:.1f} us on 1 process; chunks "
          f"{1e6 * rows['chunks']['cpu'] / lines:.1f} us of CPU over {args.workers} workers")
    (args.work / "bench-reasoning.json").write_text(json.dumps(
        {"lines": lines, "workers": args.workers, "rows": rows}, indent=1))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
