"""The table that benchmarks comparing ways of doing one job print: each way's seconds,
throughput, cost per item, cores busy (CPU seconds of its process tree over wall seconds),
peak memory and speed against the first way, then whether every way made the same output."""

from __future__ import annotations

from typing import Any


def print_ways(rows: dict[str, dict[str, Any]], items: int, unit: str, same: str) -> None:
    """``rows``: way -> {"seconds", "cpu", "rss_mb", "digest"}; ``items`` of ``unit`` (a
    singular noun) each; ``same`` names the output compared by digest."""
    base = next(iter(rows.values()))["seconds"]
    print(f"| way | seconds | {unit}s/s | us per {unit} | cores busy | peak RSS MB | speed |")
    print("|---|---|---|---|---|---|---|")
    for way, r in rows.items():
        print(f"| {way} | {r['seconds']:.1f} | {items / r['seconds']:,.0f} | "
              f"{1e6 * r['seconds'] / items:,.1f} | {r['cpu'] / r['seconds']:.2f} | "
              f"{r['rss_mb']:,.0f} | {base / r['seconds']:.2f}x |")
    digests = {r["digest"] for r in rows.values()}
    print(f"same {same}: {len(digests) == 1} ({', '.join(sorted(digests))})")
