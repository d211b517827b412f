"""``kgx update`` against a fresh ``kgx extract`` of the same dump: its time, and its graph.

The newer dump is real (by default the 797 real English pages); the older one is the same dump
with a share of its main-namespace pages (10% by default, chosen with a fixed seed) at an
earlier revision: the revision id one lower and the text cut at the line that ends its first
four fifths. A graph of the older dump is updated with the newer one (``--full``) and timed
against a fresh extraction of the newer dump, on the same machine in the same run, and so is a
graph of the older dump updated with a dump of the changed pages alone (as Wikimedia's daily
adds-changes dumps are); the graphs' sorted N-Quads are compared. Then the fresh graph is
updated with its own dump: nothing changed, so nothing of the graph may be written (every
file's modification time is checked but the report's and the log's).

Structure pass: ``--no-model`` graphs. Whole pipeline (``--model DIR``, on ``--model-dump``):
the model stages with a trained reader, never retrained by the update. Goals (issue 36):
update / fresh <= 0.2 for both with 10% changed; nothing changed <= 0.05.

Usage: ``python -m benchmarks.bench_update [--dump PATH] [--copies N] [--share 0.1] [--model DIR]
[--model-dump PATH] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import random
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, build_dump, printed_page, table

REAL_797 = ROOT.parent / "shared" / "data" / "dumps" / "enwiki-real-797-pages.xml.bz2"
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"


def _read(path: Path) -> str:
    opener: Any = bz2.open if path.suffix == ".bz2" else gzip.open if path.suffix == ".gz" \
        else open
    with opener(path, "rt", encoding="utf-8") as f:
        return str(f.read())


def older_dump(new: Path, dst: Path, share: float, seed: int, changes: Path | None = None
               ) -> int:
    """``new`` with ``share`` of its main-namespace pages one revision older (their text's
    last fifth gone); returns how many pages were changed. ``changes``: also write the
    newer revisions of those pages alone, as a dump of changed pages."""
    raw = _read(new)
    pages = list(re.finditer(r"<page>.*?</page>", raw, re.S))
    ids = Counter(_page_id(m.group(0)) for m in pages)
    # main-namespace pages whose id the dump holds once (a page id twice: its older copy is
    # no change a newer dump would bring)
    main = [m for m in pages if "<ns>0</ns>" in m.group(0) and ids[_page_id(m.group(0))] == 1]
    chosen = {m.start() for m in random.Random(seed).sample(main, round(share * len(main)))}
    out, last = [], 0
    for m in pages:
        out.append(raw[last:m.start()])
        page = m.group(0)
        if m.start() in chosen:
            page = re.sub(r"(<revision>\s*<id>)(\d+)(</id>)",
                          lambda r: f"{r.group(1)}{int(r.group(2)) - 1}{r.group(3)}", page,
                          count=1)
            page = re.sub(r"(<text[^>]*>)(.*?)(</text>)",
                          lambda r: r.group(1) + _cut(r.group(2)) + r.group(3), page, count=1,
                          flags=re.S)
        out.append(page)
        last = m.end()
    out.append(raw[last:])
    dst.write_text("".join(out), encoding="utf-8")
    if changes is not None:
        head = raw[: pages[0].start()] if pages else raw
        changes.write_text(head + "".join(m.group(0) + "\n" for m in pages
                                          if m.start() in chosen) + "</mediawiki>\n", "utf-8")
    return len(chosen)


def _page_id(page: str) -> int:
    m = re.search(r"<id>(\d+)</id>", page)
    return int(m.group(1)) if m else -1


def _cut(text: str) -> str:
    """The text's first four fifths, cut at a line's end (never inside an XML entity)."""
    end = text.rfind("\n", 0, len(text) * 4 // 5)
    return text[:end] if end > 0 else ""


def _options(model: str | None) -> Any:
    from kgx.stages.pipeline import PipelineOptions
    from kgx.structure.extract import ExtractOptions

    ex = ExtractOptions(progress=False)
    if model is None:
        return PipelineOptions(extract=ex, use_model=False, index=False, progress=False)
    return PipelineOptions(extract=ex, model=model, progress=False)


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    got = fn(*args)
    return time.perf_counter() - t, got


def _sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text("utf-8").splitlines())


def _mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and p.name not in ("report.json", "kgx.log", ".kgx.lock")}


def measure(new: Path, work: Path, share: float, seed: int, model: str | None
            ) -> dict[str, Any]:
    """One comparison (see the module docstring)."""
    from kgx.stages.pipeline import run
    from kgx.stages.update import update
    from kgx.update.run import UpdateOptions

    work.mkdir(parents=True, exist_ok=True)
    old, changes = work / "older.xml", work / "changes.xml"
    changed = older_dump(new, old, share, seed, changes)
    for d in ("old", "updated", "updated-changes", "fresh"):
        shutil.rmtree(work / d, ignore_errors=True)
    quiet = lambda m: None  # noqa: E731
    run(old, work / "old", _options(model), log=quiet)
    shutil.copytree(work / "old", work / "updated")
    shutil.copytree(work / "old", work / "updated-changes")
    t_update, rep = _timed(update, work / "updated", new, UpdateOptions(full=True), quiet)
    t_changes, _ = _timed(update, work / "updated-changes", changes, UpdateOptions(), quiet)
    t_fresh, _ = _timed(run, new, work / "fresh", _options(model), quiet)
    fresh = _sorted_lines(work / "fresh" / "graph.nq")
    same = fresh == _sorted_lines(work / "updated" / "graph.nq") == \
        _sorted_lines(work / "updated-changes" / "graph.nq")
    before = _mtimes(work / "fresh")
    t_noop, noop = _timed(update, work / "fresh", new, UpdateOptions(full=True), quiet)
    untouched = _mtimes(work / "fresh") == before
    return {"pages changed": changed, "update": rep["update"], "t_update": t_update,
            "t_changes": t_changes,
            "t_fresh": t_fresh, "t_noop": t_noop, "same graph": same,
            "nothing rewritten": untouched, "noop pages": noop["update"]["pages"],
            "stages": rep["pipeline"]["stages_seconds"]}


def report(name: str, m: dict[str, Any]) -> None:
    u = m["update"]
    print(f"\n{name}: {m['pages changed']:,} pages at an older revision; the update found "
          f"{u['pages']['changed']:,} changed, {u['pages']['unchanged']:,} unchanged, "
          f"{u['pages']['added']:,} added, {u['pages']['deleted']:,} deleted; "
          f"{u['resolved_again']:,} more resolved again")
    print(table(["run", "seconds", "of a fresh extract"], [
        ["fresh kgx extract", f"{m['t_fresh']:.2f}", "1"],
        ["kgx update --full, the whole newer dump", f"{m['t_update']:.2f}",
         f"{m['t_update'] / m['t_fresh']:.3f}"],
        ["kgx update, a dump of the changed pages alone", f"{m['t_changes']:.2f}",
         f"{m['t_changes'] / m['t_fresh']:.3f}"],
        ["kgx update, nothing changed", f"{m['t_noop']:.2f}",
         f"{m['t_noop'] / m['t_fresh']:.3f}"]]))
    print(f"both updated graphs = the fresh graph (sorted N-Quads): "
          f"{'yes' if m['same graph'] else 'NO'}; "
          f"nothing changed rewrote no file but the report and the log: "
          f"{'yes' if m['nothing rewritten'] else 'NO'}")
    print(f"the update's structure steps (s): {u['seconds']}; stages after it (s): "
          f"{m['stages']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dump", type=Path, default=REAL_797)
    ap.add_argument("--copies", type=int, default=0,
                    help="also a synthetic multistream dump of N copies of the sample "
                    "(benchmarks.common.build_dump), to see how the update scales")
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=36)
    ap.add_argument("--model", help="a trained reader: also measure the whole pipeline")
    ap.add_argument("--model-dump", type=Path, default=SAMPLE)
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "update")
    a = ap.parse_args()
    with printed_page(__file__, __doc__):
        report(f"structure pass, {a.dump.name}",
               measure(a.dump, a.work / "structure", a.share, a.seed, None))
        if a.copies:
            a.work.mkdir(parents=True, exist_ok=True)
            big = Path(build_dump(a.copies, a.work)["dump"])
            report(f"structure pass, {a.copies} copies of the sample (multistream)",
                   measure(big, a.work / f"structure-{a.copies}", a.share, a.seed, None))
        if a.model:
            report(f"whole pipeline, {a.model_dump.name}, reader {a.model}",
                   measure(a.model_dump, a.work / "model", a.share, a.seed, a.model))


if __name__ == "__main__":
    main()
