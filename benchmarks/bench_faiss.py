"""What compressing the entity index costs in recall, against exact search, on real vectors.

Takes a ``kgx extract`` output (its ``entities.faiss`` holds the entity vectors, exactly, below
100,000 entities) and its ``aliases.sqlite``; queries are real mention texts (anchor texts of
the dump's links, ``--queries`` of them) embedded with the same encoder. For each index kgx
may build (``IndexIVFFlat``, and ``IndexIVFScalarQuantizer`` 8-bit, which kgx switches to above
2 GiB of float32 vectors) it prints recall@1 and @10 against the exact top 10, milliseconds per
query and bytes per vector, and whether the index answers the same memory-mapped.

Usage: ``python -m benchmarks.bench_faiss OUT [--queries 2000]``.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import printed_page


def main() -> None:
    import faiss

    from kgx.linking.encoder import shared_encoder
    from kgx.linking.vectors import make_index, train_index

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--queries", type=int, default=2000)
    args = ap.parse_args()
    exact = faiss.read_index(str(args.out / "entities.faiss"))
    if not isinstance(exact, faiss.IndexFlat):
        raise SystemExit("this benchmark needs an exact (flat) entity index: an output of "
                         "fewer than 100,000 entities")
    n, dim = exact.ntotal, exact.d
    vecs = exact.reconstruct_n(0, n)
    db = sqlite3.connect(args.out / "aliases.sqlite")
    anchors = [a for (a,) in db.execute("SELECT anchor FROM anchors GROUP BY anchor "
                                        "ORDER BY sum(n) DESC LIMIT ?", (args.queries,))]
    q = shared_encoder("minilm").encode(anchors)
    _, truth = exact.search(q, 10)
    print(f"{n:,} entity vectors of {dim} dimensions; {len(anchors):,} anchor-text queries")
    print("| index | recall@1 | recall@10 | ms/query | bytes/vector | same when mmapped |")
    print("|---|---|---|---|---|---|")
    t = time.perf_counter()
    exact.search(q, 10)
    ms = 1000 * (time.perf_counter() - t) / len(q)
    print(f"| IndexFlatIP (exact) | 1.000 | 1.000 | {ms:.3f} | {dim * 4} | - |")
    for compress in (False, True):
        # What kgx builds for this many vectors past its exact-search limit.
        index = make_index(dim, n, compress_above=0 if compress else 1 << 62, exact_limit=0)
        train_index(index, vecs)
        index.add(vecs)
        t = time.perf_counter()
        _, got = index.search(q, 10)
        ms = 1000 * (time.perf_counter() - t) / len(q)
        r1 = float(np.mean(got[:, 0] == truth[:, 0]))
        r10 = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth,
                                                                         strict=True)]))
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "i.faiss")
            faiss.write_index(index, path)
            size = Path(path).stat().st_size
            mm = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            mm.nprobe = index.nprobe
            same = bool((mm.search(q, 10)[1] == got).all())
        print(f"| {type(index).__name__} (nlist {index.nlist}, nprobe {index.nprobe}) | {r1:.3f} | "
              f"{r10:.3f} | {ms:.3f} | {size / n:.0f} | {same} |")


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
