"""Benchmark of the structure pass against its floor and its peer, in one run.

Builds a multistream dump of at least ``--mb`` MB of XML by copying the sample's articles under
fresh ids and titles, links kept inside each copy (streams of 100 pages and an index, as
Wikimedia publishes: :func:`benchmarks.common.build_dump`), then measures:

* bz2 decompression alone of the same file (Python's bz2, one core): the floor;
* WikiExtractor (PyPI ``wikiextractor``, 1 process) on the same file: plain text only;
* ``kgx extract`` with 1 and 2 workers: pages/s, MB/s and peak memory of the process tree;
* kgx's peak memory on a dump a quarter of the size, to show memory does not grow with input.

Usage: ``python -m benchmarks.bench_structure [--mb 200] [--work DIR]``. Prints a table and
writes ``bench-structure.json`` in the work directory.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, PeakRSS, build_dump, copy_pages, printed_page, sample_pages


def dump_of(target_mb: int, work: Path) -> tuple[Path, int, int]:
    """The synthetic dump (:func:`benchmarks.common.build_dump`) with at least ``target_mb``
    MB of XML: its path, pages and XML bytes."""
    head, pages = sample_pages()
    per_copy = sum(len(p.encode()) for p in copy_pages(pages, 1, 1_000_000))
    copies = max(1, -(-(target_mb * 1_000_000 - len(head.encode())) // per_copy))
    meta = build_dump(copies, work, name="bench")
    return Path(meta["dump"]), meta["pages"], meta["xml_bytes"]


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, int, str]:
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    mon = PeakRSS(proc.pid)
    output, _ = proc.communicate()
    peak = mon.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{output[-2000:]}")
    return time.perf_counter() - t, peak, output


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=200, help="MB of XML in the large dump")
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--skip-wikiextractor", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    kgx = [sys.executable, "-m", "kgx.cli"]

    big, pages, xml_bytes = dump_of(args.mb, args.work)
    small, small_pages, small_bytes = dump_of(max(1, args.mb // 4), args.work)
    mb = xml_bytes / 1e6
    results: dict[str, dict[str, float]] = {}
    print(f"dump: {big.name}: {pages:,} pages, {mb:.0f} MB XML, "
          f"{big.stat().st_size / 1e6:.0f} MB bz2; machine: {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores", flush=True)

    t = time.perf_counter()
    with bz2.open(big, "rb") as fh:
        while fh.read(1 << 22):
            pass
    secs = time.perf_counter() - t
    results["bz2 decompression alone (1 core)"] = {"s": secs, "pages_s": pages / secs,
                                                   "mb_s": mb / secs, "peak_mb": 0}

    if not args.skip_wikiextractor:
        tmp = args.work / "wikiextractor-out"
        shutil.rmtree(tmp, ignore_errors=True)
        secs, peak, _ = timed([sys.executable, "-m", "wikiextractor.WikiExtractor", str(big),
                               "-o", str(tmp), "--processes", "1", "-q"])
        results["WikiExtractor, 1 process (text only)"] = {
            "s": secs, "pages_s": pages / secs, "mb_s": mb / secs, "peak_mb": peak / 1e6}
        shutil.rmtree(tmp, ignore_errors=True)

    for w in (1, 2):
        out = args.work / f"kgx-w{w}"
        secs, peak, output = timed(kgx + ["extract", str(big), "-o", str(out), "--workers",
                                          str(w), "--no-progress", "--no-model",
                                          "--no-reasoning"])
        rep = json.loads((out / "report.json").read_text())
        pass_s = rep["seconds"]["pages"]
        results[f"kgx extract, {w} worker{'s' if w > 1 else ''} (whole run)"] = {
            "s": secs, "pages_s": pages / secs, "mb_s": mb / secs, "peak_mb": peak / 1e6}
        results[f"kgx page pass, {w} worker{'s' if w > 1 else ''}"] = {
            "s": pass_s, "pages_s": pages / pass_s, "mb_s": mb / pass_s, "peak_mb": peak / 1e6}
        shutil.rmtree(out / "store", ignore_errors=True)

    out = args.work / "kgx-small"
    secs, small_peak, _ = timed(kgx + ["extract", str(small), "-o", str(out), "--workers", "2",
                                       "--no-progress", "--no-model", "--no-reasoning"])
    results[f"kgx extract, 2 workers, {small_bytes / 1e6:.0f} MB dump"] = {
        "s": secs, "pages_s": small_pages / secs, "mb_s": small_bytes / 1e6 / secs,
        "peak_mb": small_peak / 1e6}

    print(f"\n{'what':48} {'seconds':>8} {'pages/s':>9} {'MB/s':>7} {'peak MB':>8}")
    for k, v in results.items():
        print(f"{k:48} {v['s']:8.1f} {v['pages_s']:9.0f} {v['mb_s']:7.2f} {v['peak_mb']:8.0f}")
    w1 = results["kgx page pass, 1 worker"]["pages_s"]
    w2 = results["kgx page pass, 2 workers"]["pages_s"]
    print(f"\nscaling 1 -> 2 workers (page pass): {w2 / w1:.2f}x")
    if not args.skip_wikiextractor:
        we = results["WikiExtractor, 1 process (text only)"]["pages_s"]
        print(f"kgx 1 worker / WikiExtractor 1 process, pages/s: {w1 / we:.2f}")
    big_peak = results["kgx extract, 2 workers (whole run)"]["peak_mb"]
    print(f"peak memory {mb:.0f} MB dump / {small_bytes / 1e6:.0f} MB dump: "
          f"{big_peak / (small_peak / 1e6):.2f}")
    floor = results["bz2 decompression alone (1 core)"]["mb_s"]
    pass2 = results["kgx page pass, 2 workers"]["mb_s"]
    print(f"kgx 2 workers MB/s / bz2 floor MB/s: {pass2 / floor:.2f}")
    (args.work / "bench-structure.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
