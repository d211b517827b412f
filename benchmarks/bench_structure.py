"""Benchmark of the structure pass against its floor and its peer, in one run.

Builds a multistream dump of at least ``--mb`` MB of XML by repeating the sample's pages under
fresh ids and titles (streams of 100 pages and an index, as Wikimedia publishes), then measures:

* bz2 decompression alone of the same file (Python's bz2, one core): the floor;
* WikiExtractor (PyPI ``wikiextractor``, 1 process) on the same file: plain text only;
* ``kgx extract`` with 1 and 2 workers: pages/s, MB/s and peak memory of the process tree;
* kgx's peak memory on a dump a quarter of the size, to show memory does not grow with input.

Usage: ``python benchmarks/bench_structure.py [--mb 200] [--work DIR]``. Prints a table and
writes ``bench-structure.json`` in the work directory.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"


def build_dump(target_mb: int, out: Path) -> tuple[Path, int, int]:
    """Repeat the sample's pages under fresh ids/titles into a multistream dump."""
    xml = bz2.decompress(SAMPLE.read_bytes()).decode("utf-8")
    head_end = xml.index("<page>")
    header, body = xml[:head_end], xml[head_end:xml.rindex("</page>") + 7]
    pages = re.findall(r"  <page>.*?</page>\n", body + "\n", re.S)
    dump = out / f"bench{target_mb}-multistream.xml.bz2"
    index = out / f"bench{target_mb}-multistream-index.txt.bz2"
    if dump.exists() and index.exists():
        meta = json.loads((out / f"bench{target_mb}.json").read_text())
        return dump, meta["pages"], meta["bytes"]
    idx_lines: list[str] = []
    total = 0
    n = 0
    with open(dump, "wb") as f:
        f.write(bz2.compress(header.encode()))
        total += len(header.encode())
        copy = 0
        batch: list[str] = []
        while total < target_mb * 1_000_000:
            copy += 1
            for p in pages:
                n += 1
                pid = 1_000_000 * copy + n
                title = re.search(r"<title>(.*?)</title>", p).group(1) + f" (copy {copy})"
                p2 = re.sub(r"<title>.*?</title>", f"<title>{title}</title>", p, count=1)
                p2 = re.sub(r"<id>\d+</id>", f"<id>{pid}</id>", p2, count=1)
                p2 = re.sub(r'<redirect title="(.*?)"', lambda m, c=copy: f'<redirect title='
                            f'"{m.group(1)} (copy {c})"', p2, count=1)
                batch.append(p2)
                idx_lines.append(f"{{off}}:{pid}:{title}")
                if len(batch) == 100:
                    total += _flush(f, batch, idx_lines)
                    batch = []
        if batch:
            total += _flush(f, batch, idx_lines)
        footer = "</mediawiki>\n"
        f.write(bz2.compress(footer.encode()))
    with bz2.open(index, "wt", encoding="utf-8") as ix:
        ix.write("\n".join(idx_lines) + "\n")
    (out / f"bench{target_mb}.json").write_text(json.dumps({"pages": n, "bytes": total}))
    return dump, n, total


def _flush(f, batch: list[str], idx_lines: list[str]) -> int:  # type: ignore[no-untyped-def]
    off = f.tell()
    for i in range(len(idx_lines) - len(batch), len(idx_lines)):
        idx_lines[i] = idx_lines[i].replace("{off}", str(off))
    data = "".join(batch).encode()
    f.write(bz2.compress(data))
    return len(data)


class PeakRSS:
    """Samples the resident memory of a process and all its descendants every 50 ms, keeping
    the peak and each sample with its time."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _tree(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{task}/children") as fh:
                        todo.extend(int(c) for c in fh.read().split())
            except OSError:
                pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in self._tree():
                try:
                    with open(f"/proc/{p}/statm") as fh:
                        total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                except OSError:
                    pass
            self.peak = max(self.peak, total)
            self.samples.append((time.time(), total))
            time.sleep(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak

    def peak_between(self, t0: float, t1: float) -> int:
        """The peak among the samples taken from ``t0`` to ``t1`` (``time.time()``)."""
        return max((r for t, r in self.samples if t0 <= t <= t1), default=0)


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

    big, pages, xml_bytes = build_dump(args.mb, args.work)
    small, small_pages, small_bytes = build_dump(max(1, args.mb // 4), args.work)
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
    main()
