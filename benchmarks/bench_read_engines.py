"""The read stage on the local engine against its Ray Data pipeline, on the same cores and
the same documents, in one run.

* **Local**: ``read_workers`` processes, each splitting, predicting and linking its chunk (on
  2 cores: one process with two torch threads).
* **Ray** (``--engine ray``, Ray started by kgx on this machine), both ways
  :func:`kgx.engines.ray.map_steps` can run the steps: fused (each actor splits, predicts and
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
``python -m benchmarks.bench_read_engines OUT [--documents 20] [--chunk 2] [--runs 2]
[--workers 2] [--engines local,ray,ray-pools] [--device cuda]``.

On a GPU, ``--engines local --device cuda --workers N`` for N = 1, 4, 16 measures how well
N reading processes share it (the local engine starts one a core there, as many as the GPU's
memory holds: :func:`kgx.runtime.hardware.encoder_workers`); each run prints how many it started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from benchmarks.common import printed_page

ENGINES = ("local", "ray", "ray-pools")
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


def read_once(out: Path, engine: str, workers: int, chunk: int, device: str | None = None
              ) -> dict[str, object]:
    import kgx.engines.ray
    from kgx.engines.ray import use_engine
    from kgx.read.run import read_dump
    from kgx.stages.pipeline import PipelineOptions
    from kgx.stages.read import MENTIONS_FILE, MODEL_FACTS_FILE
    from kgx.structure.extract import ExtractOptions

    for name in (MODEL_FACTS_FILE, MENTIONS_FILE):
        (out / name).unlink(missing_ok=True)
    opts = PipelineOptions(extract=ExtractOptions(workers=workers, progress=False),
                           model=str(out / "model"), progress=False,
                           read_chunk_documents=chunk, device=device)
    kgx.engines.ray.STEP_POOLS = "pools" if engine == "ray-pools" else "fused"
    t0 = time.monotonic()
    with use_engine(engine.split("-")[0], None, workers, lambda m: None):
        t1 = time.monotonic()
        res = read_dump(out, out / ".work" / "read", out / "model", f"bench-{engine}", opts,
                        lambda m: None)
        seconds = time.monotonic() - t1
    return {"engine": engine, "readers": res.get("reading_processes"),
            "seconds": round(seconds, 2),
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
    ap.add_argument("--engines", default=",".join(ENGINES),
                    help=f"which to run, of {','.join(ENGINES)}")
    ap.add_argument("--device", default=None,
                    help="cpu or cuda (default: kgx's choice: CUDA when present)")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    if not engines or any(e not in ENGINES for e in engines):
        ap.error(f"--engines: a comma-separated choice of {','.join(ENGINES)}")
    chars = copy_out(args.out, args.work / "out", args.documents)
    print(f"read stage, {args.documents} documents ({chars:,} characters) in chunks of "
          f"{args.chunk}, {args.workers} workers, {os.cpu_count()} CPUs, device "
          f"{args.device or 'kgx default'}")
    runs = []
    for r in range(args.runs):
        for engine in engines:
            run = read_once(args.work / "out", engine, args.workers, args.chunk, args.device)
            runs.append(run)
            print(f"  run {r + 1} {engine:9}: {run['readers']} reading process(es), "
                  f"{run['seconds']:.1f} s reading "
                  f"({run['seconds_with_start']:.1f} s with the engine's start), "
                  f"{run['sentences'] / run['seconds']:.1f} sentences/s, "
                  f"{run['model_facts']} model facts, {run['mentions']} mentions")
    first = runs[0]["lines"]
    for run in runs[1:]:
        diff = {name: len(set(first[name]) ^ set(lines)) for name, lines in run["lines"].items()}
        print(f"  {run['engine']:9} against the first local run: lines differing {diff}")
    mean = {e: sum(r["seconds"] for r in runs if r["engine"] == e)
            / sum(1 for r in runs if r["engine"] == e) for e in engines}
    base = mean[engines[0]]
    print("mean seconds reading: " + ", ".join(
        f"{e} {mean[e]:.1f} ({mean[e] / base:.2f}x)" for e in engines))
    summary = [{k: v for k, v in r.items() if k != "lines"} for r in runs]
    (args.work / "bench-read-engines.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
