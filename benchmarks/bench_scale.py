"""Benchmark of ``kgx extract`` as the dump grows: every stage at 1x, 4x and 16x, a kill -9 in
every stage, and a projection to the full English Wikipedia from the measured costs.

**Synthetic dumps.** Copy k of the bundled sample gets fresh page ids and titles
(``Title (copy k)``); its links and redirects are rewritten to point inside copy k: a link to a
page of the sample goes to that page's copy, a link to a page the sample lacks goes to one of
the copy's articles (chosen by a hash of the target), with the original text kept as the
anchor. So the link graph, the alias table and the entity count grow with the dump as in a real
one, where nearly every link target is an article of the same dump. Categories stay shared, as
they are in a real wiki. Multistream bz2 (100 pages a stream) with its index.

**Per size and stage**: seconds, items per second, peak resident memory of the process tree
while the stage ran (sampled every 50 ms), disk used by the stage's outputs. The model and read
stages are capped to fixed sentence counts at every size (``--train-sentences``,
``--read-sentences``), with the alias table and entity index at full size. Goal: per-item cost
at 16x within 1.25x of 1x and peak RSS within 1.3x.

**Resume** (on the smallest size): each stage is killed with SIGKILL at about half its
uninterrupted time (structure and read: once half their chunks are committed), the same
command is run again, and the seconds lost are reported against the uninterrupted run. The
graph of every resumed run is compared with the uninterrupted one (an order-free digest of
the N-Quads lines and their count).

**Projection**: the per-item costs of the largest size times the English Wikipedia's counts.
The synthetic dump's pages are the sample's, 29.6 KB of XML a page, where the English dump has
4.6 KB (105 GB over 23 million pages), so the steps that follow the text rather than the page
count are also projected by page size: :func:`page_size_model` times every page of the sample
through the structure pass's page function and fits its cost and the quads it writes against
the page's size, and the English dump is then counted in sample-sized pages.

Usage: ``python -m benchmarks.bench_scale [--base-mb 207] [--sizes 1,4,16] [--work DIR]``.
Prints tables and writes ``bench-scale.json`` in the work directory.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import SAMPLE, PeakRSS, build_dump, printed_page
from kgx.engines.journal import count_committed

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("structure", "corpus", "model", "entities", "read", "merge")
# The English Wikipedia (pages-articles-multistream, 2024-2026): the figures.
ENWIKI = {"pages": 23_000_000, "redirects": 11_000_000, "xml_bytes": 105_000_000_000,
          "sentences": 150_000_000, "entities": 7_000_000}


# --------------------------------------------------------------------------- measuring


def extract_cmd(dump: str, out: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "kgx", "extract", dump, "-o", str(out), "--no-progress",
            "--workers", str(args.workers), "--train-sentences", str(args.train_sentences),
            "--train-epochs", "1", "--read-sentences", str(args.read_sentences),
            "--read-chunk-documents", str(args.read_chunk)]


def env() -> dict[str, str]:
    # Fixed thread counts: the same arithmetic in every run, so resumed graphs compare equal.
    return {**os.environ, "KGX_THREADS": "2", "KGX_PROGRESS_SECONDS": "30"}


def run_measured(dump: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    t = time.time()
    proc = subprocess.Popen(extract_cmd(dump, out, args), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    mon = PeakRSS(proc.pid)
    output, _ = proc.communicate()
    mon.stop()
    if proc.returncode != 0:
        raise SystemExit(f"kgx extract failed:\n{output[-3000:]}")
    stages = json.loads((out / "stages.json").read_text())
    report = json.loads((out / "report.json").read_text())
    ents = json.loads((out / "entities.json").read_text())["entities"]
    items = {"structure": (report["pages"]["read"], "pages"),
             "corpus": (sum(stages["corpus"]["sentences"].values()), "sentences"),
             "model": (args.train_sentences, "sentences"),
             "entities": (ents, "entities"),
             "read": (stages["read"]["sentences"], "sentences"),
             "merge": (report["triples_total"], "triples")}
    rows = {}
    for s in STAGES:
        rec = stages[s]
        n, unit = items[s]
        rows[s] = {"seconds": rec["seconds"], "items": n, "unit": unit,
                   "per_second": round(n / rec["seconds"], 2) if rec["seconds"] else None,
                   "us_per_item": round(1e6 * rec["seconds"] / n, 1) if n else None,
                   "peak_rss_mb": round(mon.peak_between(rec["started"], rec["started"]
                                                 + rec["seconds"]) / 2**20, 1),
                   "disk_mb": round(sum(rec.get("disk_bytes", {}).values()) / 2**20, 1)}
    rows["structure"]["parts"] = report["seconds"]  # pages / anchors / resolve / store
    rows["structure"]["store_steps"] = report.get("store_steps", {})  # bulk loads, optimize
    rows["structure"]["cpu_parts"] = report.get("cpu_seconds", {})  # the building process's
    # The entities stage's two steps: tables (they grow with pages and links), embeddings.
    rows["entities"]["parts"] = {"tables": stages["entities"]["seconds_tables"],
                                 "embedding": stages["entities"]["seconds_embedding"],
                                 "alias_keys": stages["entities"]["alias_keys"],
                                 "tables_cpu": stages["entities"].get("cpu_tables")}
    # The read stage once its model, linker and tables are loaded (a fixed cost at any size),
    # and by step: splitting and tokenising, the model, linking and writing.
    rows["read"]["us_per_item_running"] = round(
        1e6 * stages["read"]["seconds_reading"] / max(1, stages["read"]["sentences"]), 1)
    rows["read"]["seconds_by_step"] = stages["read"].get("seconds_by_step")
    return {"wall_seconds": round(time.time() - t, 1), "stages": rows,
            "read_chunks": stages["read"]["chunks"],
            "peak_rss_mb": round(mon.peak_between(0, 1e12) / 2**20, 1),
            "disk_mb": round(report["disk_bytes_total"] / 2**20, 1),
            "graph": digest(out / "graph.nq")}


def digest(path: Path) -> dict[str, Any]:
    """An order-free digest of an N-Quads file: line count and the sum of line hashes."""
    total = n = 0
    with open(path, "rb") as f:
        for line in f:
            total = (total + int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(),
                                            "big")) % (1 << 64)
            n += 1
    return {"lines": n, "sum": f"{total:016x}"}


# --------------------------------------------------------------------------- resume


def stage_started(out: Path, stage: str) -> bool:
    """Whether ``stage`` is running: the log says the stages before it are finished."""
    path = out / "stages.json"
    if not path.exists():
        return stage == "structure"
    done = json.loads(path.read_text())
    before = STAGES[:STAGES.index(stage)]
    return all(s in done for s in before) and stage not in done


def resume(dump: str, out: Path, args: argparse.Namespace, stage: str,
           clean: dict[str, Any], total_chunks: dict[str, int]) -> dict[str, Any]:
    """Kill -9 ``stage`` at about half way, run again; seconds lost against ``clean``."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = extract_cmd(dump, out, args)
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    journals = {"structure": out / ".work" / "structure" / "aliases.sqlite",
                "read": out / ".work" / "read" / "facts.sqlite"}
    half = clean["stages"][stage]["seconds"] / 2
    t_stage = None
    while proc.poll() is None:
        if t_stage is None and stage_started(out, stage):
            t_stage = time.time()
        if t_stage is not None:
            if stage in journals:
                if count_committed(journals[stage]) >= max(1, total_chunks[stage] // 2):
                    break
            elif time.time() - t_stage >= half:
                break
        time.sleep(0.02)
    if proc.poll() is not None:
        return {"error": "the run ended before the kill"}
    killed_at = time.time() - (t_stage or time.time())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = count_committed(journals[stage]) if stage in journals else None
    t = time.time()
    res = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stdout[-2000:] + res.stderr[-2000:]}
    stages = json.loads((out / "stages.json").read_text())
    rerun = stages[stage]["seconds"]
    lost = killed_at + rerun - clean["stages"][stage]["seconds"]
    return {"killed_after_s": round(killed_at, 1), "chunks_committed": committed,
            "chunks": total_chunks.get(stage), "rerun_stage_s": rerun,
            "rerun_total_s": round(time.time() - t, 1),
            "uninterrupted_stage_s": clean["stages"][stage]["seconds"],
            "lost_s": round(lost, 1), "same_graph": digest(out / "graph.nq") == clean["graph"]}


# --------------------------------------------------------------------------- report


def table(results: dict[str, Any]) -> str:
    lines = ["| size | XML MB | stage | items | seconds | items/s | us/item | peak RSS MB | "
             "disk MB |", "|---|---|---|---|---|---|---|---|---|"]
    for size, r in results.items():
        for s in STAGES:
            row = r["stages"][s]
            lines.append(f"| {size}x | {r['xml_mb']} | {s} | {row['items']:,} {row['unit']} | "
                         f"{row['seconds']} | {row['per_second']} | {row['us_per_item']} | "
                         f"{row['peak_rss_mb']} | {row['disk_mb']} |")
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> str:
    """Largest size against the smallest (run sizes in one call, or merge their JSON)."""
    sizes = list(results)
    lo, hi = results[sizes[0]], results[sizes[-1]]
    lines = [f"| stage | us/item {sizes[-1]}x / {sizes[0]}x (goal <= 1.25) | "
             f"peak RSS {sizes[-1]}x / {sizes[0]}x (goal <= 1.3) |", "|---|---|---|"]
    for s in STAGES:
        a, b = lo["stages"][s], hi["stages"][s]
        cost = b["us_per_item"] / a["us_per_item"] if a["us_per_item"] else float("nan")
        rss = b["peak_rss_mb"] / a["peak_rss_mb"] if a["peak_rss_mb"] else float("nan")
        lines.append(f"| {s} | {cost:.2f} | {rss:.2f} |")
    a, b = lo["stages"]["read"], hi["stages"]["read"]
    lines.append(f"| read, once loaded | "
                 f"{b['us_per_item_running'] / a['us_per_item_running']:.2f} | |")
    return "\n".join(lines)


def _read_rows(read: dict[str, Any]) -> list[tuple[str, int, str, float, bool]]:
    """The read stage's projection rows: by step when the run timed its steps (each step's
    seconds, summed over the reading processes, per sentence: loading the model, linker and
    tables is left out, a fixed cost), else the reading loop's cost per sentence."""
    n = ENWIKI["sentences"]
    steps = read.get("seconds_by_step")
    if not steps or not sum(steps.values()):
        return [("read (on the CPU)", n, "sentences", read["us_per_item_running"], True)]
    names = {"split": "read: sentences cut and tokenised (CPU)",
             "predict": "read: the model (on the CPU)",
             "link": "read: mentions linked (an encoder for names the alias table lacks), "
                     "written (CPU)"}
    return [(names[k], n, "sentences", 1e6 * v / read["items"], True)
            for k, v in steps.items()]


def _store_rows(us: float, steps: dict[str, dict[str, float]], pages: int, n: int, unit: str
                ) -> list[tuple[str, int, str, float, bool]]:
    """The store load, by step when the run timed them: its bulk loads (one chunk per core
    at a time, with the cores they kept busy here) and the optimize after them. Both are
    counted as one process: how the loads scale past this machine's cores is not measured.
    The rest of the step (opening, replacing the old store) goes with the bulk loads."""
    sec, cpu = steps.get("seconds", {}), steps.get("cpu_seconds", {})
    if not sec:
        return [("structure: store load", n, unit, us, False)]
    opt = 1e6 * sec["optimize"] / pages
    busy = {k: cpu[k] / sec[k] if sec[k] else 0.0 for k in sec}
    return [(f"structure: store load: bulk loads ({busy['bulk_loads']:.2f} cores busy)",
             n, unit, us - opt, False),
            (f"structure: store load: optimize ({busy['optimize']:.2f} cores busy)",
             n, unit, opt, False)]


def _split_rows(name: str, us: float, us_cpu: float, n: int = ENWIKI["pages"],
                unit: str = "pages") -> list[tuple[str, int, str, float, bool]]:
    """A step whose chunks run in workers while the building process numbers, copies and
    sorts: the building process's CPU seconds (its threads included) as one process, and the
    rest of the step's seconds, when it waited on the workers, spread over the cores. A run
    that did not record that CPU (-1) counts the whole step as one process."""
    if us_cpu < 0:
        return [(name, n, unit, us, False)]
    cpu = min(us, us_cpu)
    return [(f"{name}: the building process's CPU", n, unit, cpu, False),
            (f"{name}: the rest, waiting on the workers", n, unit, us - cpu, True)]


def page_size_model(repeats: int = 3) -> dict[str, Any]:
    """How the structure pass's cost per page and the quads a page gives follow its size,
    fitted on the sample's real pages, and the English Wikipedia counted in pages of the
    sample's mix.

    Each page of the sample goes through :func:`kgx.structure.pages.process_page` ``repeats`` times
    in this process (its fastest time is kept). Redirects cost what the sample's redirects
    cost on average; every other page costs ``a + b * bytes``, least squares over the
    sample's articles. The English dump is then its redirects at the redirect cost and its
    other pages (articles, and the other namespaces, counted as articles: an overestimate)
    at ``a`` each plus ``b`` times all of its 105 GB. ``time_factor`` is that cost over the
    cost of as many pages of the sample's mix; ``quads_factor`` the same for the quads, which
    the store load, the redirect resolution, the anchor sums and merge follow.
    """
    import numpy as np

    from kgx.dump.reader import DumpReader
    from kgx.ontology import load_mappings
    from kgx.structure.pages import Context, Limits, process_page
    from kgx.text.site import Site

    reader = DumpReader(SAMPLE)
    ctx = Context(Site(reader.site, 0), load_mappings(), Limits())
    rows = []
    for page in reader:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            res = process_page(page, ctx)
            best = min(best, time.perf_counter() - t)
        rows.append((page.redirect is not None, len((page.text or "").encode()), best,
                     len(res.lines)))
    red = np.array([r[0] for r in rows])
    size, sec, quads = (np.array([r[k] for r in rows], float) for k in (1, 2, 3))
    fit = np.c_[np.ones(int((~red).sum())), size[~red]]
    (a, b), *_ = np.linalg.lstsq(fit, sec[~red], rcond=None)
    (qa, qb), *_ = np.linalg.lstsq(fit, quads[~red], rcond=None)
    bands = []  # how well the fit follows pages of each size: measured and fitted us
    for lo, hi in ((0, 5e3), (5e3, 15e3), (15e3, 40e3), (40e3, 80e3), (80e3, float("inf"))):
        m = ~red & (size >= lo) & (size < hi)
        if m.any():
            bands.append((f"{lo / 1e3:g}-{hi / 1e3:g} KB", int(m.sum()),
                          round(1e6 * sec[m].mean()), round(1e6 * (a + b * size[m]).mean())))
    n, n_red = ENWIKI["pages"], ENWIKI["redirects"]
    en_sec = n_red * sec[red].mean() + (n - n_red) * a + ENWIKI["xml_bytes"] * b
    en_quads = n_red * quads[red].mean() + (n - n_red) * qa + ENWIKI["xml_bytes"] * qb
    return {"sample_pages": len(rows), "sample_bytes_per_page": round(size.mean()),
            "enwiki_bytes_per_page": round(ENWIKI["xml_bytes"] / n),
            "redirect_us": 1e6 * sec[red].mean(), "article_us": 1e6 * a,
            "article_us_per_kb": 1e9 * b, "redirect_quads": quads[red].mean(),
            "article_quads": qa, "article_quads_per_kb": 1e3 * qb,
            "bands": bands, "time_factor": en_sec / (n * sec.mean()),
            "quads_factor": en_quads / (n * quads.mean())}


def projection(r: dict[str, Any], workers: int, size: dict[str, Any] | None = None) -> str:
    """Full English Wikipedia from the largest size's per-item costs, as arithmetic.

    With ``size`` (:func:`page_size_model`), the page pass is counted in pages of the
    sample's mix by its time factor, and the steps that follow the quads by its quads
    factor. The entity tables and the fixed rest stay counted by pages.
    """
    st = r["stages"]
    pages_per_entity = ENWIKI["pages"] / ENWIKI["entities"]
    by_time = round(ENWIKI["pages"] * size["time_factor"]) if size else ENWIKI["pages"]
    by_quads = round(ENWIKI["pages"] * size["quads_factor"]) if size else ENWIKI["pages"]
    unit = "sample-sized pages" if size else "pages"
    parts = st["structure"]["parts"]
    per_page = {k: 1e6 * parts.get(k, 0) / r["pages"]
                for k in ("pages", "resolve", "store", "anchors")}
    rest = st["structure"]["us_per_item"] - sum(per_page.values())
    rows = [("structure: page pass", by_time, unit, per_page["pages"], True),
            ("structure: redirects resolved", by_quads, unit, per_page["resolve"], True),
            *_store_rows(per_page["store"], st["structure"].get("store_steps", {}),
                         r["pages"], by_quads, unit),
            *_split_rows("structure: anchors summed", per_page["anchors"],
                         1e6 * st["structure"].get("cpu_parts", {}).get("anchors", -1)
                         / r["pages"], by_quads, unit),
            ("structure: the rest (start-up, dump fingerprint, journal)", ENWIKI["pages"],
             "pages", max(0.0, rest), False),
            ("corpus", ENWIKI["sentences"], "sentences",
             st["corpus"]["us_per_item"], True),
            *_split_rows("entities: tables, misspelt-name index",
                         1e6 * st["entities"]["parts"]["tables"] / r["pages"],
                         1e6 * (st["entities"]["parts"].get("tables_cpu") or -1) / r["pages"]),
            ("entities: embeddings (on the CPU)", ENWIKI["entities"], "entities",
             1e6 * st["entities"]["parts"]["embedding"] / st["entities"]["items"], True),
            *_read_rows(st["read"]),
            ("merge (entailments in worker processes)",
             round(st["merge"]["items"] / r["pages"] * by_quads), "triples",
             st["merge"]["us_per_item"], True)]
    lines = [f"| stage | count | x cost measured on {workers} cores | = hours on {workers} cores |"
             " parallel over cores? | = hours on 16 cores |", "|---|---|---|---|---|---|"]
    tot2 = tot16 = 0.0
    for name, n, unit, us, parallel in rows:
        h = n * us / 1e6 / 3600
        h16 = h * workers / 16 if parallel else h
        tot2 += h
        tot16 += h16
        lines.append(f"| {name} | {n:,} {unit} | {us:,.1f} us | {h:,.1f} | "
                     f"{'yes' if parallel else 'no (one process)'} | {h16:,.1f} |")
    lines.append(f"| total (model stage excluded: it is capped) | | | {tot2:,.1f} | | "
                 f"{tot16:,.1f} |")
    lines.append(f"\n(pages per entity in enwiki: {pages_per_entity:.1f}; the synthetic dump "
                 "has one entity per article and link target)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-mb", type=float, default=207, help="XML MB of the 1x dump")
    ap.add_argument("--sizes", default="1,4,16")
    ap.add_argument("--work", type=Path, default=Path("/tmp/kgx-bench-scale"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--train-sentences", type=int, default=300)
    ap.add_argument("--read-sentences", type=int, default=600)
    ap.add_argument("--read-chunk", type=int, default=2, help="documents per read chunk")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--project", type=Path, metavar="JSON",
                    help="only print the projections of an earlier run's bench-scale.json")
    args = ap.parse_args()
    if args.project:
        earlier = json.loads(args.project.read_text())
        print_projections(earlier["sizes"][list(earlier["sizes"])[-1]],
                          earlier["args"]["workers"])
        return
    args.work.mkdir(parents=True, exist_ok=True)
    sample_mb = len(bz2.decompress(SAMPLE.read_bytes())) / 1e6
    copies1 = max(1, round(args.base_mb / sample_mb))
    results: dict[str, Any] = {}
    for size in (int(x) for x in args.sizes.split(",")):
        meta = build_dump(copies1 * size, args.work)
        print(f"[{size}x] {meta['pages']:,} pages, {meta['xml_bytes'] / 1e6:,.0f} MB XML",
              file=sys.stderr)
        r = run_measured(meta["dump"], args.work / f"out{size}", args)
        r.update(xml_mb=round(meta["xml_bytes"] / 1e6, 1), pages=meta["pages"])
        results[str(size)] = r
        print(table({str(size): r}), file=sys.stderr)
    out: dict[str, Any] = {"machine": f"{os.cpu_count()} cores", "args": vars(args) | {
        "work": str(args.work)}, "sizes": results}
    print(table(results))
    print()
    print(ratios(results))
    if not args.no_resume:
        first = next(iter(results))
        meta = build_dump(copies1 * int(first), args.work)
        from kgx.dump.multistream import read_index

        chunks = {"structure": len(read_index(meta["dump"].replace(
            "-multistream.xml.bz2", "-multistream-index.txt.bz2"))),
            "read": results[first]["read_chunks"]}
        out["resume"] = {s: resume(meta["dump"], args.work / "resume", args, s,
                                   results[first], chunks) for s in STAGES}
        print()
        print("| stage killed | after s | chunks committed | re-run of the stage s | "
              "uninterrupted s | seconds lost | same graph |")
        print("|---|---|---|---|---|---|---|")
        for s, v in out["resume"].items():
            if "error" in v:
                print(f"| {s} | error: {v['error'][:200]} | | | | | |")
                continue
            print(f"| {s} | {v['killed_after_s']} | {v['chunks_committed']} of "
                  f"{v['chunks']} | {v['rerun_stage_s']} | {v['uninterrupted_stage_s']} | "
                  f"{v['lost_s']} | {v['same_graph']} |")
    print()
    out["page_size_model"] = print_projections(results[list(results)[-1]], args.workers)
    (args.work / "bench-scale.json").write_text(json.dumps(out, indent=2))


def print_projections(last: dict[str, Any], workers: int) -> dict[str, Any]:
    """The projection counted in pages, then by page size; returns the page-size model."""
    print("Counted in pages:\n")
    print(projection(last, workers))
    size = page_size_model()
    print(f"\nCounted by page size (the sample: {size['sample_bytes_per_page']:,} bytes of "
          f"wikitext a page; the English dump: {size['enwiki_bytes_per_page']:,} of XML, all "
          f"counted as articles' text). Fitted on the sample's "
          f"{size['sample_pages']} pages: a redirect {size['redirect_us']:,.0f} us and "
          f"{size['redirect_quads']:.1f} quads; another page {size['article_us']:,.0f} us + "
          f"{size['article_us_per_kb']:,.1f} us a KB and {size['article_quads']:.1f} quads + "
          f"{size['article_quads_per_kb']:.2f} a KB. So the English dump is worth "
          f"{size['time_factor']:.3f} of {ENWIKI['pages'] / 1e6:g} M sample pages in time and "
          f"{size['quads_factor']:.3f} in quads. Articles by size (pages, us measured, "
          "us fitted): " + "; ".join(f"{b[0]} {b[1]}, {b[2]:,}, {b[3]:,}"
                                     for b in size["bands"]) + "\n")
    print(projection(last, workers, size))
    return size


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
