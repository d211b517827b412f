"""A pages-meta-history dump of one long page: the structure pass's peak memory at 1x and 2x.

A real history export of one page held 15,180 revisions (1.05 GB of XML). This benchmark
writes such a dump (one page, ``--revisions`` revisions of ``--kb`` KB each, in descending
order of time as some exports list them) and its double, runs ``kgx extract --no-model`` on
each in a child process, and samples the child's resident memory. The peer is the dump's own
size: a reader that kept the revisions would grow with it. Goal: flat, under 300 MB.

Usage: ``python -m benchmarks.bench_history [--revisions 8000] [--kb 64]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, about, peak_mb, table, write_page

HEAD = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" '
        'xml:lang="en"><siteinfo><sitename>Wikipedia</sitename><dbname>enwiki</dbname>'
        "<base>https://en.wikipedia.org/wiki/Main_Page</base><case>first-letter</case>"
        "</siteinfo>\n<page><title>Long page</title><ns>0</ns><id>1</id>\n")


def write_dump(path: Path, revisions: int, kb: int) -> int:
    body = ("Revision text of a long history, with a [[Link]] and {{cite web|url=x}}. " * 20)
    body = (body * (kb * 1024 // len(body) + 1))[: kb * 1024]
    with open(path, "w", encoding="utf-8") as f:
        f.write(HEAD)
        for k in range(revisions, 0, -1):  # newest first
            ts = f"{2000 + k // 500000:04d}-01-01T{k // 3600 % 24:02d}:{k // 60 % 60:02d}:" \
                 f"{k % 60:02d}Z"
            f.write(f"<revision><id>{k}</id><timestamp>{ts}</timestamp><text>Rev {k}. "
                    f"{body}</text></revision>\n")
        f.write("</page></mediawiki>\n")
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--revisions", type=int, default=8000)
    ap.add_argument("--kb", type=int, default=64)
    args = ap.parse_args()
    rows = []
    peaks = []
    with tempfile.TemporaryDirectory() as d:
        for scale in (1, 2):
            dump = Path(d) / f"history-{scale}x.xml"
            size = write_dump(dump, args.revisions * scale, args.kb)
            out = Path(d) / f"out-{scale}"
            peak, res = peak_mb([sys.executable, "-m", "kgx", "extract", str(dump), "-o",
                                 str(out), "--no-model", "--workers", "1", "--no-progress"],
                                cwd=ROOT)
            if res.returncode:
                raise SystemExit(res.stderr[-2000:])
            rep = json.loads((out / "report.json").read_text())
            peaks.append(peak)
            rows.append([f"{scale}x", args.revisions * scale, round(size / 2**20), round(peak),
                         rep["revisions_skipped"], round(peak / (size / 2**20), 3)])
            print(rows[-1], flush=True)
            dump.unlink()
            shutil.rmtree(out)
    headers = ["dump", "revisions", "XML (MB)", "peak memory (MB)", "revisions skipped",
               "peak / dump size"]
    verdict = (f"Peak memory {peaks[0]:.0f} MB at 1x and {peaks[1]:.0f} MB at 2x "
               f"({peaks[1] / peaks[0]:.2f}x for twice the dump; goal: flat, under 300 MB).")
    write_page("bench_history", "A history dump in bounded memory",
               [about(__doc__), table(headers, rows), verdict])


if __name__ == "__main__":
    main()
