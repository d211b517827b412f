"""The read stage on the local engine against its Ray Data pipeline, on the same cores and
the same documents, in one run.

* **Local**: ``read_workers`` processes, each splitting, predicting and linking its chunk (on
  2 cores: one process with two torch threads).
* **Ray** (``--engine ray``, Ray started by kgx on this machine), both ways
  :func:`kgx.cluster.map_steps` can run the steps: fused (each actor splits, predicts and
  links its chunk, what a cluster without GPUs gets) and in three actor pools, one per step
  (the Ray Data pipeline a cluster with GPUs gets). Ray's start is timed apart.
* **Same output**: the two runs' ``model.nq`` and ``mentions.nq`` are compared line for line
  (sorted). ``KGX_THREADS=1``-style equality is not forced: both runs use the threads they
  would use, so a difference would be numeric noise, and the script prints how many lines
  differ.

Takes an ``OUT`` that the README's first command wrote (it needs ``documents.jsonl``, the
model, the alias table and the entity index) and reads its first ``--documents`` documents,
``--runs`` times each way, alternating, in chunks of ``--chunk`` documents (2: enough chunks
for Ray's three steps to overlap, as they do on a dump). Usage:
``python benchmarks/bench_read_engines.py OUT [--documents 20] [--chunk 2] [--runs 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NEEDED = ("report.json", "aliases.sqlite", "entities.faiss", "entities.json", "linker.json",
          "model")


def copy_out(src: Path, dst: Path, documents: int) -> int:
    """What the read stage needs from ``src``, with the first ``documents`` documents;
    returns their sentences' characters (a size check)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for name in NEEDED:
        p = src / name
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, dst / name)
    chars = 0
    with open(src / "documents.jsonl", "rb") as f, open(dst / "documents.jsonl", "wb") as g:
        for _ in range(documents):
            line = f.readline()
            chars += len(json.loads(line)["text"])
            g.write(line)
    return chars


def read_once(out: Path, engine: str, workers: int, chunk: int) -> dict[str, object]:
    import kgx.cluster
    from kgx.cluster import use_engine
    from kgx.extract import ExtractOptions
    from kgx.pipeline import PipelineOptions
    from kgx.stages.read import MENTIONS_FILE, MODEL_FACTS_FILE, read_dump

    for name in (MODEL_FACTS_FILE, MENTIONS_FILE):
        (out / name).unlink(missing_ok=True)
    opts = PipelineOptions(extract=ExtractOptions(workers=workers, progress=False),
                           model=str(out / "model"), progress=False,
                           read_chunk_documents=chunk)
    kgx.cluster.STEP_POOLS = "pools" if engine == "ray-pools" else "fused"
    t0 = time.monotonic()
    with use_engine(engine.split("-")[0], None, workers, lambda m: None):
        t1 = time.monotonic()
        res = read_dump(out, out / ".work" / "read", out / "model", f"bench-{engine}", opts,
                        lambda m: None)
        seconds = time.monotonic() - t1
    return {"engine": engine, "seconds": round(seconds, 2),
            "seconds_with_start": round(time.monotonic() - t0, 2),
            "sentences": res["sentences"], "model_facts": res["model_facts"],
            "mentions": res["mentions"],
            "lines": {name: sorted((out / name).read_text("utf-8").splitlines())
                      for name in (MODEL_FACTS_FILE, MENTIONS_FILE)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="an OUT of the README's first command")
    ap.add_argument("--documents", type=int, default=20)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=2,
                    help="documents per chunk: a few chunks per step, so the steps overlap")
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-read-engines"))
    args = ap.parse_args()
    chars = copy_out(args.out, args.work / "out", args.documents)
    print(f"read stage, {args.documents} documents ({chars:,} characters) in chunks of "
          f"{args.chunk}, {args.workers} workers, {os.cpu_count()} CPUs")
    runs = []
    for r in range(args.runs):
        for engine in ("local", "ray", "ray-pools"):
            run = read_once(args.work / "out", engine, args.workers, args.chunk)
            runs.append(run)
            print(f"  run {r + 1} {engine:9}: {run['seconds']:.1f} s reading "
                  f"({run['seconds_with_start']:.1f} s with the engine's start), "
                  f"{run['sentences'] / run['seconds']:.1f} sentences/s, "
                  f"{run['model_facts']} model facts, {run['mentions']} mentions")
    first = runs[0]["lines"]
    for run in runs[1:]:
        diff = {name: len(set(first[name]) ^ set(lines)) for name, lines in run["lines"].items()}
        print(f"  {run['engine']:9} against the first local run: lines differing {diff}")
    mean = {e: sum(r["seconds"] for r in runs if r["engine"] == e)
            / sum(1 for r in runs if r["engine"] == e) for e in ("local", "ray", "ray-pools")}
    print(f"mean seconds reading: local {mean['local']:.1f}, Ray fused {mean['ray']:.1f} "
          f"({mean['ray'] / mean['local']:.2f}x), Ray pools {mean['ray-pools']:.1f} "
          f"({mean['ray-pools'] / mean['local']:.2f}x)")
    summary = [{k: v for k, v in r.items() if k != "lines"} for r in runs]
    (args.work / "bench-read-engines.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
