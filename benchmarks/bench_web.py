"""Benchmark of kgx serve's entity pages against a plain SPARQL DESCRIBE of the same entity.

For each output directory given, ``kgx serve`` is started as its own process (2 query
workers), and a client on one keep-alive connection asks, for each of N entities drawn at
random (seed 0) from those with a label, alternately for the HTML page (``GET /entity/T``,
``Accept: text/html``) and for ``DESCRIBE <iri>`` through ``/sparql`` as Turtle, each
``--repeats`` times after one warm-up pass. Both go through the same HTTP server, worker
pool and process hop, so the ratio is what the page adds. Goal: the page's median and p99
within 2x of the DESCRIBE's.

Usage: ``python -m benchmarks.bench_web OUT [OUT ...] [--entities 200] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks.common import printed_page

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(out: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "kgx", "serve", str(out), "--port", str(port),
                             "--workers", "2", "--timeout", "60"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    for line in proc.stdout:  # the banner says it answers
        if b"kgx: serving" in line:
            return proc
    raise RuntimeError(f"kgx serve {out} exited with {proc.wait()}")


def entities(out: Path, n: int) -> list[str]:
    import pyoxigraph as ox

    store = ox.Store.read_only(str(out / "store"))
    ns = json.loads((out / "report.json").read_text())["site"]["namespace"] + "resource/"
    labelled = sorted({sol["e"].value for sol in store.query(
        "SELECT ?e WHERE { ?e <http://www.w3.org/2000/01/rdf-schema#label> ?l }",
        use_default_graph_as_union=True) if sol["e"].value.startswith(ns)})
    random.Random(0).shuffle(labelled)
    return labelled[:n]


def timed(conn: http.client.HTTPConnection, path: str, accept: str) -> tuple[float, int, int]:
    t = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    r = conn.getresponse()
    body = r.read()
    return time.perf_counter() - t, r.status, len(body)


def p99(xs: list[float]) -> float:
    return sorted(xs)[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def bench(out: Path, n: int, repeats: int) -> dict[str, Any]:
    from kgx.serve.urls import entity_path, page_urls

    _, resource = page_urls(json.loads((out / "report.json").read_text()))
    iris = entities(out, n)
    port = free_port()
    proc = start_server(out, port)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        page_s: list[float] = []
        describe_s: list[float] = []
        sizes = {"page": 0, "describe": 0}
        for rnd in range(repeats + 1):  # the first pass warms caches and is not counted
            for iri in iris:
                path = entity_path(iri, resource)
                assert path is not None
                d_path = "/sparql?" + urllib.parse.urlencode({"query": f"DESCRIBE <{iri}>"})
                a = timed(conn, path, "text/html")
                b = timed(conn, d_path, "text/turtle")
                assert a[1] == 200 and b[1] == 200, (iri, a, b)
                if rnd:
                    page_s.append(a[0])
                    describe_s.append(b[0])
                    sizes["page"] += a[2]
                    sizes["describe"] += b[2]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    store_mb = sum(f.stat().st_size for f in (out / "store").iterdir()) / 1e6
    return {"out": str(out), "entities": len(iris), "requests_each": len(page_s),
            "store_mb": round(store_mb, 1),
            "page_median_ms": statistics.median(page_s) * 1e3, "page_p99_ms": p99(page_s) * 1e3,
            "describe_median_ms": statistics.median(describe_s) * 1e3,
            "describe_p99_ms": p99(describe_s) * 1e3,
            "page_kb": sizes["page"] / len(page_s) / 1e3,
            "describe_kb": sizes["describe"] / len(describe_s) / 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outs", nargs="+", type=Path)
    ap.add_argument("--entities", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; {args.entities} entities x {args.repeats} repeats each")
    print("| graph | store MB | page median / p99 ms | DESCRIBE median / p99 ms | "
          "ratio median / p99 | page KB | DESCRIBE KB |")
    print("|---|---|---|---|---|---|---|")
    for out in args.outs:
        r = bench(out, args.entities, args.repeats)
        print(f"| {out} | {r['store_mb']:,.0f} | {r['page_median_ms']:.1f} / "
              f"{r['page_p99_ms']:.1f} | {r['describe_median_ms']:.1f} / "
              f"{r['describe_p99_ms']:.1f} | "
              f"{r['page_median_ms'] / r['describe_median_ms']:.2f} / "
              f"{r['page_p99_ms'] / r['describe_p99_ms']:.2f} | {r['page_kb']:.1f} | "
              f"{r['describe_kb']:.1f} |", flush=True)


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
