"""The README's first command, end to end: what a user waits and what it costs.

Runs ``kgx extract`` on the bundled sample into a fresh folder with the defaults (the first
command of the README) and reports the wall time, each stage's seconds, the peak resident
memory of the process tree and the disk the output takes. Two limits of this machine are
measured in the same run, on the same input: bz2 decompression of the dump on one core (what
the structure stage cannot beat) and the bare encoder's forward pass over the sentences the
read stage read (what the read stage cannot beat on this hardware); the ratios say how far
each stage is from its limit.

Usage: ``python -m benchmarks.bench_end_to_end [--out DIR] [--sentences N]``
"""

from __future__ import annotations

import argparse
import bz2
import json
import shutil
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, about, peak_mb, table, write_page

SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"


def decompress_seconds(path: Path) -> float:
    t0 = time.perf_counter()
    with bz2.open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    return time.perf_counter() - t0


def encoder_rate(out: Path, n: int) -> tuple[int, float]:
    """Sentences a second through the bare encoder (the reader's own weights, no heads, no
    linking), on the first ``n`` sentences of the articles, in the read stage's batches."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from kgx.runtime.logs import quiet_transformers
    from kgx.text.sentences import Sentencizer, paragraphs

    quiet_transformers()
    split = Sentencizer()
    texts: list[str] = []
    with open(out / "documents.jsonl", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            for _, para in paragraphs(doc["text"]):
                texts += [para[a:b] for a, b in split.spans(para)]
            if len(texts) >= n:
                break
    texts = texts[:n]
    tok = AutoTokenizer.from_pretrained(out / "model")
    enc = AutoModel.from_pretrained(out / "model").eval()
    texts.sort(key=len)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            batch = tok(texts[i:i + 64], padding=True, truncation=True, max_length=256,
                        return_tensors="pt")
            enc(**batch)
    return len(texts), len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "end-to-end" / "out")
    ap.add_argument("--sentences", type=int, default=3000,
                    help="sentences the bare encoder reads for its rate")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    peak, res = peak_mb([sys.executable, "-m", "kgx", "extract", str(SAMPLE), "-o",
                         str(args.out), "--no-progress"], every=0.2, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode:
        sys.exit(f"kgx extract failed ({res.returncode}):\n{res.stderr[-3000:]}")
    stages = json.loads((args.out / "stages.json").read_text())
    report = json.loads((args.out / "report.json").read_text())
    disk = sum(p.stat().st_blocks * 512 for p in args.out.rglob("*") if p.is_file())
    read = report["pipeline"]["read"]
    sentences = read["sentences"]
    read_rate = sentences / read["seconds_reading"]
    bz2_s = decompress_seconds(SAMPLE)
    n, enc_rate = encoder_rate(args.out, args.sentences)
    rows = [[name, round(info["seconds"], 1)] for name, info in stages.items()]
    summary = table(["figure", "value"], [
        ["wall time, whole command", f"{wall / 60:.1f} min ({wall:.0f} s)"],
        ["peak resident memory, process tree", f"{peak:,.0f} MB"],
        ["output folder on disk", f"{disk / 2**20:,.0f} MB"],
        ["model facts asserted / kept as candidates",
         f"{read['model_facts']:,} / {read['candidate_facts']:,}"],
        ["triples in the graph", f"{report['triples_total']:,}"],
    ])
    limits = table(["stage", "kgx", "this machine's limit, same run", "ratio"], [
        ["structure: seconds", round(stages["structure"]["seconds"], 2),
         f"{bz2_s:.2f} s (bz2 decompression alone, 1 core)",
         f"{stages['structure']['seconds'] / bz2_s:.1f}x"],
        ["read: sentences/s (reading loop)", round(read_rate, 1),
         f"{enc_rate:.1f} (the bare encoder's forward pass, {n:,} sentences)",
         f"{read_rate / enc_rate:.2f}"],
    ])
    sections = ["## The first command", summary, "Seconds by stage:",
                table(["stage", "seconds"], rows), "## Against the machine's limits", limits]
    print("\n\n".join(sections))
    write_page("bench_end_to_end", "The README's first command, end to end",
               [about(__doc__), *sections])


if __name__ == "__main__":
    main()
