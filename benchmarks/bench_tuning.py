"""Fine-tuning three ways, and what a kill -9 costs training, on one corpus, in one run.

For ``--tuning`` full, top:2 and lora:8 on the default encoder, each trained from the same
corpus with the same seed and budget: dev entity F1, dev relation F1, entity F1 on the silver
test split, training seconds per epoch, the peak memory of the training process, the saved
model's size on disk, and the reader's sentences per second with the saved model. Then for
``full``: training killed with SIGKILL half way through its unkilled time and run again, the
training time the kill cost against the checkpoint interval, and a checkpoint's size and the
seconds it takes to write.

Usage: ``python -m benchmarks.bench_tuning [--dump DUMP] [--sentences 1500] [--epochs 2]
[--work DIR]``. The dump defaults to the 797 real English pages of ``../shared/data/dumps``
where present, else the bundled sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, SAMPLE, run_child, silver_corpus, table, write_page

REAL = ROOT.parent / "shared" / "data" / "dumps" / "enwiki-real-797-pages.xml.bz2"
WAYS = ("full", "top:2", "lora:8")

TRAIN = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from benchmarks.common import child_usage
corpus, out, way, sentences, epochs, minutes = sys.argv[1:7]
from kgx.model.train import TrainOptions, train
t = time.perf_counter()
lines = []
res = train(corpus, out, TrainOptions(tuning=way, max_train_sentences=int(sentences),
            epochs=int(epochs), patience=10, max_eval_sentences=400,
            checkpoint_minutes=float(minutes)), log=lines.append)
resumed = next((m for m in lines if m.startswith("resuming training from")), None)
seconds = time.perf_counter() - t
saved_at = time.perf_counter() - t0  # from the start of the process to the saved model
from kgx.model.predictor import Predictor
texts = [json.loads(l)["text"] for l in open(Path(corpus) / "test.jsonl", encoding="utf-8")][:400]
reader = Predictor.load(out, device="cpu")
reader.predict(texts[:16])  # warm
t = time.perf_counter()
reader.predict(texts)
read_s = time.perf_counter() - t
ent = lambda s: s.get("entities", {}).get("micro", {}).get("f1")
rel = lambda s: s.get("relations", {}).get("micro", {}).get("f1")
child_usage(seconds, train_seconds=res.seconds, epochs=res.epochs_run,
            dev_entity_f1=ent(res.dev), dev_relation_f1=rel(res.dev),
            test_entity_f1=ent(res.test), sentences_per_second=len(texts) / read_s,
            precision=res.precision, saved_at=saved_at, resumed=resumed,
            link_typing_s=res.link_typing.get("seconds"))
"""


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def killed_run(corpus: Path, out: Path, args: argparse.Namespace, after: float,
               minutes: float) -> dict[str, Any]:
    """Train, SIGKILL it after ``after`` seconds, run it again to the end: the two walls."""
    cmd = [sys.executable, "-c", TRAIN, str(corpus), str(out), "full", str(args.sentences),
           str(args.epochs), str(minutes)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=after)
        sys.exit("the run to kill ended before half its time: raise --sentences")
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first = time.perf_counter() - t
    ckpts = sorted((out / ".checkpoints").glob("ckpt-*.pt"))
    info: dict[str, Any] = {"killed_after": first, "checkpoints": len(ckpts)}
    if ckpts:
        import torch

        info["checkpoint_mb"] = ckpts[-1].stat().st_size / 1e6
        state = torch.load(ckpts[-1], map_location="cpu", weights_only=True)
        t = time.perf_counter()
        torch.save(state, out / "timing.pt")
        info["checkpoint_write_s"] = time.perf_counter() - t
        (out / "timing.pt").unlink()
    t = time.perf_counter()
    info["rerun"] = run_child(TRAIN, corpus, out, "full", args.sentences, args.epochs, minutes,
                              what="the resumed run")
    info["rerun_wall"] = time.perf_counter() - t
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", type=Path, default=REAL if REAL.exists() else SAMPLE)
    ap.add_argument("--sentences", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "tuning")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = silver_corpus(args.dump, args.work)
    print(f"corpus of {args.dump.name}: {corpus}", flush=True)
    rows, runs = [], {}
    for way in WAYS:
        out = args.work / f"model-{way.replace(':', '-')}"
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        r = run_child(TRAIN, corpus, out, way, args.sentences, args.epochs, 4.0, what=way)
        r["wall"] = time.perf_counter() - t
        r["model_mb"] = folder_mb(out)
        runs[way] = r
        rows.append([way, r["dev_entity_f1"], r["dev_relation_f1"], r["test_entity_f1"],
                     round(r["train_seconds"] / max(1, r["epochs"]), 1), round(r["rss_mb"]),
                     round(r["model_mb"], 1), round(r["sentences_per_second"], 1)])
        print(json.dumps({way: r}), flush=True)
    ways = table(["--tuning", "dev entity F1", "dev relation F1", "test entity F1 (silver)",
                  "training s/epoch (dev scoring, link typing in)", "peak RSS MB", "model MB",
                  "read sentences/s"], rows)
    print(ways)

    # A kill -9 half way through `full`, with checkpoints every eighth of its training time.
    full = runs["full"]
    minutes = full["train_seconds"] / 8 / 60
    out = args.work / "model-killed"
    shutil.rmtree(out, ignore_errors=True)
    k = killed_run(corpus, out, args, full["saved_at"] / 2, minutes)
    cost = k["killed_after"] + k["rerun"]["saved_at"] - full["saved_at"]
    startup = full["saved_at"] - full["train_seconds"]
    kill = table(["figure", "value"], [
        ["unkilled run, s to the saved model", round(full["saved_at"], 1)],
        ["killed at, s", round(k["killed_after"], 1)],
        ["run again, s to the saved model", round(k["rerun"]["saved_at"], 1)],
        ["time the kill cost, s", round(cost, 1)],
        ["checkpoint interval, s", round(minutes * 60, 1)],
        ["start-up and finish of a run (its time less training), s", round(startup, 1)],
        ["cost / (interval + start-up)", round(cost / (minutes * 60 + startup), 2)],
        ["checkpoints kept at the kill", k["checkpoints"]],
        ["checkpoint size, MB", round(k.get("checkpoint_mb", 0), 1)],
        ["seconds to write one", round(k.get("checkpoint_write_s", 0), 2)],
        ["the run again said", (k["rerun"]["resumed"] or "(no resume)").split(": ", 1)[-1]],
        ["link typing after epoch 1 (not checkpointed inside), s",
         full.get("link_typing_s") or "-"],
        ["resumed model: dev entity F1 / unkilled", f"{k['rerun']['dev_entity_f1']} / "
                                                    f"{full['dev_entity_f1']}"]])
    print(kill)
    write_page("bench_tuning", "Fine-tuning three ways, and what a kill costs", [
        __doc__.split("\n\n")[1],
        f"Corpus: the silver corpus of `{args.dump.name}`; {args.sentences:,} training "
        f"sentences, {args.epochs} epochs, seed 13, the default encoder (all-MiniLM-L6-v2), "
        "on CPU (fp32). Entity F1 on the test split is against silver labels (the dump's own "
        "links), CoNLL-style (seqeval, exact spans).",
        ways,
        "A kill -9 of `--tuning full` at half its unkilled wall time, checkpoints every "
        "eighth of its training time (the default is every 4 minutes):",
        kill])


if __name__ == "__main__":
    main()
