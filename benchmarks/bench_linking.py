"""Entity linking quality and lookup latency, next to the alias-prior baseline, in one run.

Quality: the wikilinks of the sample's test pages (the corpus's page-hash split) are held out:
their anchor counts are removed from a copy of the alias table, then each anchor text is linked
in its sentence. Reported: accuracy@1 (NIL counts as wrong) and recall@10, for the alias prior
alone (argmax P(entity | anchor)) and for kgx's linker (prior + fuzzy + FAISS candidates,
scored with context, type and name similarity), with its hand-set weights and with the scorer
``kgx.linking.fit`` fits on the dev pages' links (fitted here on the same copy of the table).

Latency: ``KnowledgeGraph.lookup`` p50 / p99 over names drawn from the sample, and over a
synthetic index of ``--synthetic`` entities (random unit vectors in an IVF index, as
``make_index`` builds above 100,000 entities, and as many synthetic aliases), the query
embedding included.

Usage: ``python -m benchmarks.bench_linking OUT [--synthetic 1000000]`` where OUT is a
``kgx extract`` output directory (with ``documents.jsonl`` and the entity index).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import printed_page


def held_out_links(out: Path) -> list[dict[str, Any]]:
    """Every wikilink of the test pages, in document order."""
    from kgx.linking.fit import split_links

    return split_links(out / "documents.jsonl", 1 << 62, random.Random(0), split="test")


def remove_from_alias_table(db_path: Path, links: list[dict[str, Any]]) -> None:
    from kgx.linking.tables import alias_key
    from kgx.structure.aliases import AliasStore

    store = AliasStore(db_path)
    db = store.db
    for ln in links:
        target = store.resolve(ln["target"])
        row = db.execute("SELECT id FROM entities WHERE title = ?", (target,)).fetchone()
        if row:
            db.execute("UPDATE alias_index SET n = n - 1 WHERE key = ? AND entity = ?",
                       (alias_key(ln["anchor"]), row[0]))
    db.execute("DELETE FROM alias_index WHERE n <= 0")
    db.commit()
    store.close()


def linking_quality(out: Path, work: Path) -> dict[str, Any]:
    from kgx.linking.fit import fit_linker
    from kgx.linking.linker import Linker
    from kgx.structure.aliases import AliasStore

    links = held_out_links(out)
    ev = work / "linking-eval"
    shutil.rmtree(ev, ignore_errors=True)
    ev.mkdir(parents=True)
    for f in ("aliases.sqlite", "entities.faiss", "entities.json", "report.json",
              "documents.jsonl"):
        shutil.copy(out / f, ev / f)
    remove_from_alias_table(ev / "aliases.sqlite", links)
    ns = json.loads((out / "report.json").read_text())["site"]["namespace"]
    t = time.perf_counter()
    fit = fit_linker(ev, ns)  # on the dev pages' links, as `kgx extract` fits it
    fit["seconds"] = round(time.perf_counter() - t, 1)
    hand = Linker(ev, ns, fitted=False)
    fitted = Linker(ev, ns, encoder=hand.encoder)
    resolve = AliasStore(ev / "aliases.sqlite").resolve
    ctx = hand.encoder.encode([ln["context"] for ln in links])
    hits: dict[str, int] = {"alias_prior": 0, "kgx_hand": 0, "kgx": 0}
    recall = dict.fromkeys(hits, 0)
    for ln, c in zip(links, ctx, strict=True):
        gold = resolve(ln["target"])
        prior = hand.aliases.candidates(ln["anchor"], k=10)
        titles = [hand.aliases.entity(e)[0] for e, _ in prior]
        hits["alias_prior"] += bool(titles) and titles[0] == gold
        recall["alias_prior"] += gold in titles
        for name, linker in (("kgx_hand", hand), ("kgx", fitted)):
            ranked = linker.rank(ln["anchor"], c, None, k=10)
            hits[name] += bool(ranked) and ranked[0].score >= linker.nil_threshold and \
                ranked[0].title == gold
            recall[name] += gold in [r.title for r in ranked]
    n = max(1, len(links))
    return {"held_out_links": len(links), "fit": fit,
            **{k: {"accuracy@1": round(hits[k] / n, 4), "recall@10": round(recall[k] / n, 4)}
               for k in hits}}


def latency(fn: Any, queries: list[str]) -> dict[str, float]:
    from kgx.linking.linker import rank_percentiles

    fn(queries[0])
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1000)
    p50, p99 = rank_percentiles(times, [50, 99])
    return {"queries": len(queries), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}


def synthetic(n: int, work: Path, dim: int = 384) -> dict[str, Any]:
    """An entity table and IVF index of ``n`` synthetic entities; lookup latency over it."""
    import faiss

    from kgx.linking.linker import Linker
    from kgx.linking.vectors import INDEX_FILE, INDEX_META, make_index, train_index

    d = work / f"synthetic-{n}"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    db = sqlite3.connect(d / "aliases.sqlite")
    db.executescript("""
        CREATE TABLE titles (title TEXT PRIMARY KEY, page_id INTEGER, kind TEXT);
        CREATE TABLE redirects (source TEXT PRIMARY KEY, target TEXT NOT NULL);
        CREATE TABLE anchors (anchor TEXT, target TEXT, n INTEGER, PRIMARY KEY (anchor, target));
        CREATE TABLE entities (id INTEGER PRIMARY KEY, title TEXT UNIQUE NOT NULL,
                               coarse TEXT, fine TEXT, description TEXT);
        CREATE TABLE alias_index (key TEXT NOT NULL, entity INTEGER NOT NULL, n REAL NOT NULL,
                                  PRIMARY KEY (key, entity)) WITHOUT ROWID;""")
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "zo", "be", "do", "fa", "gu"]
    names = [" ".join("".join(rng.choice(syll, 3)) for _ in range(2)).title() for _ in range(n)]
    db.executemany("INSERT OR IGNORE INTO entities VALUES (?, ?, 'PER', NULL, '')",
                   ((i + 1, f"{nm} {i}") for i, nm in enumerate(names)))
    db.executemany("INSERT OR IGNORE INTO alias_index VALUES (?, ?, 1)",
                   ((nm.lower(), i + 1) for i, nm in enumerate(names)))
    db.commit()
    from kgx.linking import fuzzy

    fuzzy.build(db, fuzzy.iter_keys(db))  # the misspelt-name index kgx builds
    db.close()
    t = time.perf_counter()
    index = make_index(dim, n)
    for a in range(0, n, 200_000):
        v = rng.standard_normal((min(200_000, n - a), dim)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        if a == 0:
            train_index(index, v)
        index.add(v)
    build_s = time.perf_counter() - t
    faiss.write_index(index, str(d / INDEX_FILE))
    (d / INDEX_META).write_text(json.dumps({"entities": n, "dim": dim, "encoder": "minilm"}))
    linker = Linker(d, "https://kgx.dev/synthetic/")
    queries = [names[i] for i in rng.integers(0, n, 200)]
    typos = [q[:3] + q[4:] for q in queries[:100]]
    res = {"entities": n, "index": type(index).__name__, "build_seconds": round(build_s, 1),
           "lookup_known_name": latency(lambda q: linker.lookup(q, k=10), queries),
           "lookup_misspelt_name": latency(lambda q: linker.lookup(q, k=10), typos)}
    shutil.rmtree(d, ignore_errors=True)
    return res


def main() -> None:
    from kgx.graph.knowledge_graph import KnowledgeGraph

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--work", type=Path, default=Path("bench-out") / "linking")
    ap.add_argument("--synthetic", type=int, default=1_000_000)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"quality": linking_quality(args.out, args.work)}
    kg = KnowledgeGraph.open(args.out)
    rows = kg.sparql("SELECT ?l WHERE { ?s rdfs:label ?l } LIMIT 2000")
    names = [r["l"] for r in rows]
    random.Random(0).shuffle(names)
    res["sample_lookup"] = latency(lambda q: kg.lookup(q, k=10), names[:300])
    res["sample_lookup"]["entities"] = kg.linker.aliases.count()
    if args.synthetic:
        res["synthetic"] = synthetic(args.synthetic, args.work)
    q = res["quality"]
    print(f"linking, {q['held_out_links']:,} held-out wikilinks of the test pages:")
    print(f"  {'system':24} {'accuracy@1':>10} {'recall@10':>10}")
    names = {"alias_prior": "alias prior alone", "kgx_hand": "kgx, hand-set weights",
             "kgx": "kgx, fitted scorer"}
    for k, name in names.items():
        print(f"  {name:24} {q[k]['accuracy@1']:10.3f} {q[k]['recall@10']:10.3f}")
    f = q["fit"]
    if f.get("fitted"):
        print(f"  scorer fitted on {f['links']:,} dev-page links ({f['candidates']:,} candidates)"
              f" in {f['seconds']} s: weights {f['weights']}, bias {f['bias']:.3f}, NIL "
              f"threshold {f['nil_threshold']:.3f}")
    s = res["sample_lookup"]
    print(f"lookup on the sample ({s['entities']:,} entities): p50 {s['p50_ms']} ms, "
          f"p99 {s['p99_ms']} ms")
    if "synthetic" in res:
        y = res["synthetic"]
        print(f"lookup on {y['entities']:,} synthetic entities ({y['index']}, built in "
              f"{y['build_seconds']} s): known names p50 {y['lookup_known_name']['p50_ms']} ms "
              f"p99 {y['lookup_known_name']['p99_ms']} ms; misspelt names p50 "
              f"{y['lookup_misspelt_name']['p50_ms']} ms p99 {y['lookup_misspelt_name']['p99_ms']}"
              " ms")
    (args.work / "bench-linking.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
