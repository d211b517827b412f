"""``kgx extract --engine ray`` against the local engine, and on a two-node Ray cluster that
loses a node half way, on one synthetic dump, in one run.

* **Overhead**: the local engine and Ray started by kgx on this machine (local mode), on the
  same cores, ``--runs`` times each, alternating.
* **Two nodes on one machine** (``tests/support/ray_nodes.py``): ``ray start --head`` and a second
  ``ray start --address``, one CPU each, both announcing 127.0.0.1, with a token of their own
  (``RAY_AUTH_MODE=token``), stopped by the PIDs of their own processes. kgx runs on one such
  cluster once whole, then on a fresh one with the second node's raylet killed (SIGKILL) at
  half the whole run's time; the seconds lost are the difference. The cluster is started
  before each run, so these runs do not pay for starting Ray; the local-mode runs do.
* **Same graph**: every run's ``graph.nq`` is compared with the first local run's (line count
  and an order-free digest).
* **Projection for N nodes**, as arithmetic, from the Ray run's measured chunk seconds: the
  chunks spread over N nodes of the measured cores each; what the driver does alone (the
  store load, anchor sums, entity tables, merge) stays.

The dump is ``bench_scale.py``'s synthetic multistream dump (``--copies`` copies of the
sample; 40 is its 4x). ``--no-model`` throughout. Usage:
``python -m benchmarks.bench_cluster [--copies 40] [--runs 2] [--work DIR]``.
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

from benchmarks.bench_scale import ENWIKI, digest
from benchmarks.common import build_dump, printed_page
from tests.support.ray_nodes import TwoNodeCluster  # noqa: E402

BASE_ENV = {"KGX_THREADS": "1", "KGX_PROGRESS_SECONDS": "30", "RAY_USAGE_STATS_ENABLED": "0"}


def extract(dump: str, out: Path, workers: int, env: dict[str, str], engine: str = "local",
            cluster: TwoNodeCluster | None = None, kill_after: float | None = None) -> dict:
    """One ``kgx extract --no-model``, on ``cluster`` if given; with ``kill_after``, the
    cluster's second raylet is killed that many seconds in."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "kgx", "extract", dump, "-o", str(out), "--no-model",
           "--no-progress", "--workers", str(workers), "--engine", engine]
    if cluster is not None:
        cmd += ["--ray-address", cluster.address]
        env = {**cluster.env, **BASE_ENV}
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    killed = None
    if kill_after is not None:
        try:
            proc.wait(kill_after)
        except subprocess.TimeoutExpired:
            killed = cluster.second_raylet() if cluster is not None else None
            if killed:
                os.kill(killed, signal.SIGKILL)
    output, _ = proc.communicate()
    seconds = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"kgx extract ({engine}) failed:\n{output[-4000:]}")
    report = json.loads((out / "report.json").read_text())
    stages = json.loads((out / "stages.json").read_text())
    return {"seconds": round(seconds, 1), "graph": digest(out / "graph.nq"),
            "engine": report["pipeline"]["engine"], "pages_lost": report["pages"]["lost"],
            "stages": {k: v["seconds"] for k, v in stages.items() if "seconds" in v},
            "structure_parts": report["seconds"], "killed_raylet": killed,
            "entities_tables": stages.get("entities", {}).get("seconds_tables")}


def projection(run: dict, cores: int) -> str:
    """Wall time on N nodes from one Ray run: chunk seconds spread, driver seconds kept."""
    busy = sum(run["engine"]["task_seconds_per_node"].values())
    alone = max(0.0, run["seconds"] - busy / cores)
    lines = [f"chunk seconds (sum over the run's actors) {busy:.1f}; the rest of the run's "
             f"{run['seconds']:.1f} s, {alone:.1f} s, is the driver's alone (start, store "
             "load, anchors, entity tables, merge)",
             "", "| nodes | cores | = driver s + chunk s / cores | scaled to enwiki "
             "(x pages) |", "|---|---|---|---|"]
    scale = ENWIKI["pages"] / run["pages"]
    for n in (1, 2, 4, 8, 16, 32):
        c = n * cores
        t = alone + busy / c
        lines.append(f"| {n} | {c} | {alone:.1f} + {busy:.1f} / {c} = {t:.1f} s | "
                     f"{t * scale / 3600:,.1f} h |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-cluster"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    meta = build_dump(args.copies, args.work)
    env = {**os.environ, **BASE_ENV}
    print(f"dump: {meta['copies']} copies of the sample, {meta['pages']:,} pages, "
          f"{meta['xml_bytes'] / 1e6:,.0f} MB of XML; {os.cpu_count()} cores, "
          f"{args.workers} workers")
    results: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(args.runs):
        for engine in ("local", "ray"):
            r = extract(meta["dump"], args.work / f"out-{engine}", args.workers, env, engine)
            results[engine].append(r)
            print(f"{engine}: {r['seconds']} s", flush=True)
    reference = results["local"][0]["graph"]
    with TwoNodeCluster() as cluster:
        whole = extract(meta["dump"], args.work / "out-2nodes", args.workers, env, "ray",
                        cluster)
        print(f"two nodes: {whole['seconds']} s", flush=True)
    with TwoNodeCluster() as cluster:  # a fresh one: the first lost no node
        killed = extract(meta["dump"], args.work / "out-2nodes-kill", args.workers, env, "ray",
                         cluster, kill_after=whole["seconds"] / 2)
        print(f"two nodes, one killed at {whole['seconds'] / 2:.0f} s: {killed['seconds']} s",
              flush=True)
    local = [r["seconds"] for r in results["local"]]
    ray = [r["seconds"] for r in results["ray"]]
    mean = {k: sum(v) / len(v) for k, v in (("local", local), ("ray", ray))}
    print("\n| engine | runs | mean | same graph |\n|---|---|---|---|")
    for name, rs in results.items():
        runs = ", ".join(f"{r['seconds']} s" for r in rs)
        print(f"| {name} ({args.workers} workers) | {runs} | {mean[name]:.1f} s | "
              f"{all(r['graph'] == reference for r in rs)} |")
    print(f"\nRay local mode / local engine: {mean['ray'] / mean['local']:.2f}x (goal <= 1.15)")
    for name, r in (("whole", whole), ("second node killed", killed)):
        print(f"two nodes, {name}: {r['seconds']} s, nodes at the start "
              f"{r['engine']['nodes']}, chunks per node "
              f"{sorted(r['engine']['chunks_per_node'].values())}, pages lost "
              f"{r['pages_lost']}, same graph {r['graph'] == reference}"
              + (f", raylet {r['killed_raylet']} killed" if r["killed_raylet"] else ""))
    print(f"seconds lost to the fault: {killed['seconds'] - whole['seconds']:.1f}")
    print("\n" + projection({**results["ray"][-1], "pages": meta["pages"]}, args.workers))
    (args.work / "bench-cluster.json").write_text(json.dumps(
        {"meta": meta, "results": results, "two_nodes": whole, "two_nodes_killed": killed},
        indent=1))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
