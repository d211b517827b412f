"""Reading a Wikidata JSON dump for ``--wikidata``: entities per second and peak memory as it grows.

The real 400-item sample of ``../shared/data/wikidata`` (or a synthetic item where it is
absent) copied 1x, 10x and 100x under fresh ids, bz2-compressed as Wikimedia publishes it,
then read by :func:`kgx.structure.wikidata.read_items` in a fresh process for each size:
entities per second on one core, the bz2 decompression of the same file alone (the floor),
and the reader's peak resident memory, which should not grow with the file.

Usage: ``python -m benchmarks.bench_wikidata [--copies 1,10,100] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import bz2
import json
from pathlib import Path

from benchmarks.common import ROOT, run_child, table, write_page

REAL = ROOT.parent / "shared" / "data" / "wikidata" / "wikidata-400-items.json.bz2"

READ = """
import bz2, sys, time
from pathlib import Path
from benchmarks.common import child_usage
from kgx.structure.wikidata import WikidataReport, read_items
path, how = Path(sys.argv[1]), sys.argv[2]
t = time.perf_counter()
if how == "bz2":
    with bz2.open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    child_usage(time.perf_counter() - t)
else:
    rep = WikidataReport(str(path), "enwiki")
    n = sum(1 for _ in read_items(path, "enwiki", "en", rep))
    child_usage(time.perf_counter() - t, entities=rep.entities, linked=n)
"""


def entities() -> list[dict]:
    if REAL.exists():
        with bz2.open(REAL, "rt", encoding="utf-8") as f:
            return [json.loads(line.strip().rstrip(",")) for line in f
                    if line.strip() not in ("[", "]", "")]
    return [{"id": "Q1", "type": "item", "labels": {"en": {"language": "en", "value": "x"}},
             "sitelinks": {"enwiki": {"site": "enwiki", "title": "X"}}}]


def write_copies(base: list[dict], copies: int, path: Path) -> None:
    with bz2.open(path, "wt", encoding="utf-8", compresslevel=1) as f:  # quick to write
        f.write("[\n")
        first = True
        for c in range(copies):
            for e in base:
                e2 = dict(e, id=f"{e['id']}{'' if c == 0 else f'0{c}'}")
                links = {k: dict(v, title=f"{v.get('title')} {c}")
                         for k, v in (e.get("sitelinks") or {}).items()}
                e2["sitelinks"] = links
                f.write(("" if first else ",\n") + json.dumps(e2))
                first = False
        f.write("\n]\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", default="1,10,100")
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "wikidata")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    base = entities()
    rows = []
    for copies in (int(x) for x in args.copies.split(",")):
        path = args.work / f"wikidata-x{copies}.json.bz2"
        if not path.exists():
            write_copies(base, copies, path)
        floor = run_child(READ, path, "bz2", what="bz2 alone")
        r = run_child(READ, path, "kgx", what="kgx")
        rows.append([f"{copies}x", r["entities"], round(path.stat().st_size / 1e6, 1),
                     round(r["entities"] / r["seconds"]), round(floor["seconds"] /
                                                                 r["seconds"], 2),
                     round(r["rss_mb"])])
        print(rows[-1], flush=True)
    text = table(["size", "entities", "bz2 MB", "entities/s (1 core)",
                  "bz2 alone / kgx (time share of decompression)", "peak RSS MB"], rows)
    print(text)
    write_page("bench_wikidata", "Reading a Wikidata JSON dump", [
        __doc__.split("\n\n")[1],
        f"Source: {'the real 400-item sample' if REAL.exists() else 'a synthetic item'}; "
        "each copy renames ids and sitelink titles.", text,
        "One core: the reader is one stream (a bz2 file decompresses serially in Python). "
        "The time a full Wikidata dump takes here is its entity count divided by the rate "
        "above."])


if __name__ == "__main__":
    main()
