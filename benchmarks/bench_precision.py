"""How far a user can trust the reader's facts: precision measured on the graph it writes.

On a graph ``kgx extract`` wrote with its defaults (OUT; by default the README's first command
is run on the bundled sample first), this reports:

* the held-out infobox facts: the precision of the model facts the graph asserts about the
  held-out subjects (cross-fitted; strict: a fact the infobox does not state counts as wrong,
  a lower bound; closed world: only the properties the infobox states), precision at N, and
  the reliability table (mean confidence against observed precision per band);
* Re-DocRED: relation precision and recall of the model ``kgx extract`` trained, on the fifth
  of Re-DocRED dev it never trains on (sentence by sentence, with gold mentions, as kgx reads
  a dump), at several score thresholds;
* the graph: model facts asserted and kept as candidates, those no infobox states, facts
  refused by their types, and asserted facts whose object's type lies outside the property's
  range (a check of the check, by SPARQL over the stored graph).

The peer, in the same run, is the silver-only reader (``--no-gold``) when ``--baseline``
is given: the same figures for the reader trained as kgx did before it mixed gold data in.

``--sheet`` scores a hand-judged sheet of the graph's asserted model facts (drawn uniformly
at random and judged as ``../shared/design/judging-facts.md`` says: RS right and stated by
the evidence, RU right, unstated, W wrong): precision with its 95% Wilson interval, the
share stated, and the reliability table. Only the rows whose fact the graph still asserts
count; the page says how many were left out.

``--dump`` measures another dump's graph (OUT built from it with the defaults), and writes
its own page (``bench_precision_NAME.md``, ``--page NAME``).

Usage: ``python -m benchmarks.bench_precision [--out OUT] [--baseline] [--sheet TSV]
[--dump DUMP --page NAME]``
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, about, table, write_page

SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"
REDOCRED = ROOT.parent / "shared" / "data" / "redocred" / "dev_revised.json"


def build(out: Path, *extra: str, dump: Path = SAMPLE) -> None:
    if (out / "report.json").exists() and json.loads((out / "report.json").read_text()).get(
            "pipeline"):
        return
    subprocess.run([sys.executable, "-m", "kgx", "extract", str(dump), "-o", str(out),
                    "--no-progress", *extra], cwd=ROOT, check=True)


def redocred_rows() -> list[dict[str, Any]]:
    """The held-out fifth of Re-DocRED dev as sentence rows with gold mentions (the docs
    kgx's shipped gold set leaves out)."""
    from kgx.corpus.datasets import docred_sentence_rows, held_out, read_docred
    from kgx.model.sources import wikidata_relation_label

    if not REDOCRED.exists():
        return []
    docs = [d for d in read_docred(REDOCRED) if held_out(d["title"], 5, "bench")]
    return docred_sentence_rows(docs, wikidata_relation_label())


def redocred_figures(model: Path, gates: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """Relation P/R on the held-out fifth of Re-DocRED dev (sentence rows, gold mentions): at
    fixed score thresholds, and at the graph's bars (each property's own threshold on the best
    sentence score, where the graph asserts it on gold dev figures; every other property
    asserts nothing, as in the graph)."""
    from kgx.model.evaluate import evaluate_rows, relation_outcomes
    from kgx.model.predictor import Predictor

    rows = redocred_rows()
    if not rows:
        return {}
    fixed = []
    for threshold in (0.5, 0.7, 0.9):
        p = Predictor.load(model, relation_threshold=threshold)
        rel = evaluate_rows(p, rows).get("relations", {}).get("micro", {})
        fixed.append([threshold, rel.get("precision"), rel.get("recall"), rel.get("f1")])
    predictor = Predictor.load(model)
    outcomes = relation_outcomes(predictor, rows, cap=10**9)
    gold = [x["label"] for r in rows for x in r.get("relations", []) if x["label"] != "NA"]
    bars = {p: g["threshold"] for p, g in gates.items()
            if g.get("threshold") is not None and g.get("source") == "gold dev"}
    per: list[list[Any]] = []
    right = asserted = 0
    for prop, bar in sorted(bars.items()):
        hits = [ok for score, ok in outcomes.get(prop, []) if score >= bar]
        n_gold = sum(g == prop for g in gold)
        right += sum(hits)
        asserted += len(hits)
        per.append([prop, bar, len(hits), round(sum(hits) / len(hits), 3) if hits else None,
                    n_gold, round(sum(hits) / n_gold, 3) if n_gold else None])
    covered = [g for g in gold if g in predictor.relation_labels]
    total = [["all asserted properties", "", asserted,
              round(right / asserted, 3) if asserted else None, len(covered),
              round(right / len(covered), 3) if covered else None]]
    return {"fixed": fixed, "bars": per + total}


def graph_figures(out: Path) -> dict[str, Any]:
    from kgx.graph.knowledge_graph import KnowledgeGraph

    rep = json.loads((out / "report.json").read_text())
    read = rep["pipeline"]["read"]
    kg = KnowledgeGraph.open(out)
    not_in_infobox = kg.sparql("""SELECT (COUNT(*) AS ?n) WHERE {
        GRAPH ?g { ?s ?p ?o } ?g kgx:extractor "model" ; kgx:agreesWithInfobox false }""")
    # Asserted facts whose object is typed (in any graph) outside the property's range.
    violations = kg.sparql("""SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE {
        GRAPH ?g { ?s ?p ?o } ?g kgx:extractor "model" .
        ?p rdfs:range ?r . ?o a ?t . FILTER(STRSTARTS(STR(?t), STR(kgx:)))
        FILTER NOT EXISTS { ?t rdfs:subClassOf* ?r }
        FILTER NOT EXISTS { ?r rdfs:subClassOf* ?t }
        FILTER NOT EXISTS { ?o a ?r } }""")
    return {"report": read, "not_in_infobox": not_in_infobox[0]["n"],
            "violations": violations[0]["n"]}


def section(name: str, out: Path) -> list[str]:
    g = graph_figures(out)
    read = g["report"]
    a = read.get("assertion", {})
    ap = a.get("asserted_precision") or {}
    lines = [f"## {name}", "",
             table(["figure", "value"], [
                 ["model facts asserted", read.get("model_facts")],
                 ["... of which no infobox states", g["not_in_infobox"]],
                 ["kept as candidates", read.get("candidate_facts")],
                 ["refused by their types", read.get("refused_facts")],
                 ["asserted facts whose object's type is outside the range", g["violations"]],
                 ["held-out subjects / their facts the reader read",
                  f"{a.get('held_out_subjects', 0)} / {a.get('held_out_facts', 0)}"],
                 ["held-out: asserted facts right, closed world (cross-fitted)",
                  f"{ap.get('closed_world')} of {ap.get('facts_judged')}"],
                 ["held-out: asserted facts right, strict lower bound",
                  f"{ap.get('strict')} of {ap.get('facts')}"],
             ])]
    rel = [r for r in a.get("reliability", []) if r["facts"]]
    if rel:
        lines += ["", "Reliability of the confidence on held-out facts (closed world, "
                      "cross-fitted):", "",
                  table(["band", "facts", "mean confidence", "precision"],
                        [[f"{r['from']:.2f}-{r['to']:.2f}", r["facts"], r["mean_confidence"],
                          r["precision"]] for r in rel])]
        gaps = [abs(r["mean_confidence"] - r["precision"]) for r in rel if r["facts"] >= 30]
        lines += ["", "Largest gap between mean confidence and precision in a band of 30 "
                  f"facts or more: {max(gaps):.3f}." if gaps else
                  "No band holds 30 held-out facts or more."]
    gates = {p: v for p, v in a.get("gates", {}).items() if v.get("scored")}
    if gates:
        lines += ["", "Each property's bar (held-out facts the infobox could judge):", "",
                  table(["property", "scored", "threshold", "precision at it", "asserted",
                         "why nothing is asserted"],
                        [[p, v["scored"], v["threshold"], v["precision"], v["asserted"],
                          v["why"]] for p, v in gates.items()])]
    model = Path(read.get("model_dir") or out / "model")
    red = redocred_figures(model if model.exists() else out / "model", a.get("gates", {}))
    if red:
        lines += ["", "Re-DocRED dev, the fifth kgx never trains on (sentence rows, gold "
                      "mentions), at the graph's bars (recall over every gold relation of a "
                      "property the reader knows, in the last row):", "",
                  table(["property", "bar", "relations read", "precision", "gold relations",
                         "recall"], red["bars"]),
                  "", "The same at fixed score thresholds, every property:", "",
                  table(["score threshold", "relation P", "relation R", "relation F1"],
                        red["fixed"])]
    return lines


def wilson(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if not n:
        return (0.0, 0.0)
    p = right / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (mid - half, mid + half)


def judged_section(sheet: Path, out: Path) -> list[str]:
    """Precision, stated share and reliability of a judged sheet, on the facts ``out`` still
    asserts."""
    from kgx.graph.knowledge_graph import KnowledgeGraph

    kg = KnowledgeGraph.open(out)
    asserted = {r["g"] for r in kg.sparql(
        'SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } ?g kgx:extractor "model" }')}
    lines = sheet.read_text("utf-8").splitlines()
    head = lines[0].split("\t")
    rows = [dict(zip(head, ln.split("\t"), strict=False)) for ln in lines[1:]
            if ln and not ln.startswith("#")]
    kept = [r for r in rows if r.get("fact_graph") in asserted and r.get("verdict")]
    n = len(kept)
    right = sum(r["verdict"] in ("RS", "RU") for r in kept)
    stated = sum(r["verdict"] == "RS" for r in kept)
    lo, hi = wilson(right, n)
    bands = []
    for a, b in ((0.9, 1.01), (0.7, 0.9), (0.5, 0.7), (0.0, 0.5)):
        inb = [r for r in kept if a <= float(r["confidence"]) < b]
        if inb:
            bands.append([f"{a:.1f}-{min(b, 1.0):.1f}", len(inb),
                          round(sum(float(r["confidence"]) for r in inb) / len(inb), 3),
                          round(sum(r["verdict"] in ("RS", "RU") for r in inb) / len(inb), 3)])
    ece = sum(x[1] * abs(x[2] - x[3]) for x in bands) / n if n else 0.0
    return ["## Hand-judged facts", "",
            f"`{sheet.relative_to(ROOT) if sheet.is_relative_to(ROOT) else sheet}`: "
            f"{len(rows)} facts drawn uniformly from the asserted model facts and judged by "
            f"hand; {n} of them still asserted by this graph "
            f"({len(rows) - n} left out).", "",
            table(["figure", "value"], [
                ["right (RS + RU)", f"{right} of {n} = {right / n:.3f} "
                                    f"(95% interval {lo:.3f}-{hi:.3f})" if n else "-"],
                ["right and stated by the evidence (RS)",
                 f"{stated} of {n} = {stated / n:.3f}" if n else "-"],
                ["expected calibration error", f"{ece:.3f}"]]),
            "", table(["confidence band", "facts", "mean confidence", "right"], bands)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "precision" / "out")
    ap.add_argument("--baseline", action="store_true",
                    help="also the silver-only reader (--no-gold), in bench-out")
    ap.add_argument("--sheet", type=Path, help="a hand-judged fact sheet (TSV) of OUT's facts")
    ap.add_argument("--dump", type=Path, default=SAMPLE, help="the dump OUT is built from")
    ap.add_argument("--page", help="the page's name: bench_precision_PAGE.md")
    args = ap.parse_args()
    build(args.out, dump=args.dump)
    what = "the sample" if args.dump == SAMPLE else f"`{args.dump.name}`"
    sections = section(f"The default graph (`kgx extract` on {what})", args.out)
    if args.sheet:
        sections += [""] + judged_section(args.sheet.resolve(), args.out)
    if args.baseline:
        base = args.out.parent / "out-silver"
        build(base, "--no-gold", dump=args.dump)
        sections += [""] + section("The silver-only reader (`--no-gold`)", base)
    print("\n".join(sections))
    write_page("bench_precision" + (f"_{args.page}" if args.page else ""),
               "How far the reader's facts can be trusted" + (f": {what}" if args.page else ""),
               [about(__doc__), "\n".join(sections)], script="bench_precision")


if __name__ == "__main__":
    main()
