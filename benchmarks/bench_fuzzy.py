"""Misspelt-name lookup at 0.1, 1 and 10 million aliases: kgx.linking.fuzzy against FTS5 trigrams.

For each size, builds a synthetic alias table (names of two or three words drawn from a few
thousand syllable-made words, with Zipf-like repeats of common words, as titles are), indexes
it with kgx's symmetric-delete index, and times ``--queries`` lookups of a random key with one
or two random edits (insertion, deletion, substitution, transposition): p50 and p99 latency
and recall (the true key among the first 10). The peer, measured in the same run on the same
keys and queries, is the FTS5 trigram search kgx used before (``--fts-max`` limits it to the
sizes where building it finishes in reasonable time). Usage:
``python -m benchmarks.bench_fuzzy [--sizes 100000 1000000 10000000] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from pathlib import Path

from benchmarks.common import ROOT, printed_page

SYLLABLES = ["ka", "lo", "mi", "ne", "ro", "ta", "vi", "zu", "an", "ber", "chi", "dor", "el",
             "fan", "gra", "hol", "is", "jun", "kor", "lin", "mar", "nor", "ost", "pet", "qui",
             "ran", "sel", "tor", "ul", "ven", "wes", "xan", "yor", "zel"]


def make_words(rng: random.Random, n: int = 20_000) -> list[str]:
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def make_keys(rng: random.Random, n: int, words: list[str]) -> list[str]:
    from itertools import accumulate

    # Zipf-like: some words are common (cumulative weights once, not per draw)
    cum = list(accumulate(1 / (i + 1) for i in range(len(words))))
    keys: set[str] = set()
    while len(keys) < n:
        k = rng.choice((2, 2, 3))
        keys.add(" ".join(rng.choices(words, cum_weights=cum, k=k)))
    return list(keys)


def misspell(rng: random.Random, key: str) -> str:
    s = list(key)
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(len(s))
        op = rng.choice("idst")
        c = rng.choice("abcdefghijklmnopqrstuvwxyz")
        if op == "i":
            s.insert(i, c)
        elif op == "d" and len(s) > 3:
            del s[i]
        elif op == "s":
            s[i] = c
        elif i + 1 < len(s):
            s[i], s[i + 1] = s[i + 1], s[i]
    return "".join(s)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def fts_build(db: sqlite3.Connection, keys: list[str]) -> None:
    db.execute("CREATE VIRTUAL TABLE alias_trigrams USING fts5(key, tokenize='trigram')")
    db.executemany("INSERT INTO alias_trigrams(key) VALUES (?)", ((k,) for k in keys))
    db.commit()


def fts_search(db: sqlite3.Connection, key: str, k: int = 10) -> list[str]:
    """kgx 0.1's method: OR of the query's trigrams, bm25 order, re-ranked by similarity."""
    import difflib

    grams = {key[i:i + 3] for i in range(len(key) - 2)}
    query = " OR ".join(f'"{g}"' for g in sorted(grams) if '"' not in g)
    if not query:
        return []
    got = [r[0] for r in db.execute("SELECT key FROM alias_trigrams WHERE alias_trigrams "
                                    "MATCH ? ORDER BY bm25(alias_trigrams) LIMIT ?",
                                    (query, k * 3))]
    return sorted(got, key=lambda a: -difflib.SequenceMatcher(None, key, a).ratio())[:k]


def measure(search, queries: list[tuple[str, str]]) -> dict[str, float]:  # noqa: ANN001
    """Latency percentiles, and recall@10 over all queries and by true edit distance."""
    from rapidfuzz.distance import Levenshtein

    times: list[float] = []
    hits: dict[int, list[bool]] = {}
    for true, q in queries:
        t = time.perf_counter()
        found = search(q)
        times.append((time.perf_counter() - t) * 1000)
        d = min(Levenshtein.distance(true, q), 3)
        hits.setdefault(d, []).append(true in found)
    every = [h for hs in hits.values() for h in hs]
    out = {"p50_ms": round(pct(times, 50), 2), "p99_ms": round(pct(times, 99), 2),
           "recall_at_10": round(sum(every) / len(every), 3)}
    for d, hs in sorted(hits.items()):
        out[f"recall_{d}_edit{'s+' if d == 3 else 's' if d > 1 else ''}"] = \
            round(sum(hs) / len(hs), 3)
    return out


def main() -> None:
    from kgx.linking import fuzzy

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--fts-max", type=int, default=1_000_000)
    ap.add_argument("--fts-queries", type=int, default=200,
                    help="queries for the (slow) trigram peer")
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "fuzzy")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    words = make_words(rng)
    results = []
    for n in args.sizes:
        keys = make_keys(random.Random(n), n, words)
        qrng = random.Random(1)
        queries = [(t, misspell(qrng, t)) for t in qrng.sample(keys, args.queries)]
        path = args.work / f"aliases-{n}.sqlite"
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
        t = time.monotonic()
        fuzzy.build(db, sorted(keys))  # in order, as kgx.linking.fuzzy.iter_keys gives them
        row = {"aliases": n, "kgx_build_s": round(time.monotonic() - t, 1),
               "kgx": measure(lambda q, db=db: [k for k, _ in fuzzy.search(db, q)], queries)}
        if n <= args.fts_max:
            t = time.monotonic()
            fts_build(db, keys)
            row["fts_build_s"] = round(time.monotonic() - t, 1)
            row["fts"] = measure(lambda q, db=db: fts_search(db, q),
                                 queries[: args.fts_queries])
        row["db_mb"] = round(path.stat().st_size / 1e6)
        db.close()
        path.unlink()
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'aliases':>10} | {'kgx p50 / p99 ms':>17} | {'recall@10 (1 edit, 2)':>22} | "
          f"{'trigram p50 / p99 ms':>21} | {'recall@10':>9} | {'p99 ratio':>9}")
    for r in results:
        k, f = r["kgx"], r.get("fts")
        fts = (f"{f['p50_ms']:>9} / {f['p99_ms']:<9} | {f['recall_at_10']:>9} | "
               f"{f['p99_ms'] / max(k['p99_ms'], 1e-9):>8.1f}x") if f else \
            f"{'not built':>21} | {'-':>9} | {'-':>9}"
        rec = f"{k['recall_at_10']} ({k.get('recall_1_edit')}, {k.get('recall_2_edits')})"
        print(f"{r['aliases']:>10,} | {k['p50_ms']:>7} / {k['p99_ms']:<7} | {rec:>22} | {fts}")
    (args.work / "bench-fuzzy.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
