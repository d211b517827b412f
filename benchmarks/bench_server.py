"""Endpoint throughput and latency with 20 concurrent clients, against a local server.

Starts ``kgx serve`` on loopback over an output directory, then 20 client threads send a mix
of entity-centric SELECT queries for ``--seconds``. In the same run, the same queries run
in-process on the store (no HTTP, no worker processes): the ceiling the endpoint is compared
with. Usage: ``python -m benchmarks.bench_server OUT [--clients 20] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.common import printed_page


def main() -> None:
    from kgx.graph.knowledge_graph import KnowledgeGraph
    from kgx.linking.linker import rank_percentiles
    from kgx.serve import ServeOptions, make_server

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    kg = KnowledgeGraph.open(args.out)
    ents = [r["s"] for r in kg.sparql("SELECT DISTINCT ?s WHERE { ?s kgx:abstract ?a }")]
    templates = [
        "SELECT ?p ?o WHERE {{ <{e}> ?p ?o }} LIMIT 50",
        "SELECT ?l WHERE {{ <{e}> rdfs:label ?l }}",
        "SELECT ?o WHERE {{ <{e}> kgx:wikiLink ?o }} LIMIT 20",
        "SELECT ?s WHERE {{ ?s kgx:wikiLink <{e}> }} LIMIT 20",
    ]
    rng = random.Random(0)
    queries = [rng.choice(templates).format(e=rng.choice(ents)) for _ in range(2000)]
    prefix = "PREFIX kgx: <https://kgx.dev/ontology/> " \
             "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#> "
    t = time.perf_counter()
    for q in queries[:500]:
        kg.sparql(prefix + q)
    inproc = 500 / (time.perf_counter() - t)

    srv = make_server(args.out, ServeOptions(port=0, workers=args.workers, queue_wait=30))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/sparql?query="
    lat: list[float] = []
    errors = [0]
    stop = time.perf_counter() + args.seconds
    lock = threading.Lock()

    def client(seed: int) -> None:
        r = random.Random(seed)
        while time.perf_counter() < stop:
            q = urllib.parse.quote(prefix + r.choice(queries))
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url + q, timeout=60) as resp:
                    resp.read()
                ok = resp.status == 200
            except OSError:
                ok = False
            with lock:
                if ok:
                    lat.append((time.perf_counter() - t0) * 1000)
                else:
                    errors[0] += 1

    t = time.perf_counter()
    ts = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    wall = time.perf_counter() - t
    srv.shutdown()
    srv.pool.close()
    p50, p99 = rank_percentiles(lat, [50, 99])
    res = {"clients": args.clients, "workers": args.workers, "seconds": round(wall, 1),
           "queries": len(lat), "errors": errors[0], "throughput_qps": round(len(lat) / wall, 1),
           "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
           "in_process_qps_one_thread": round(inproc, 1)}
    print(f"{args.clients} clients, {args.workers} query workers, {wall:.0f} s: "
          f"{res['throughput_qps']} queries/s, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, "
          f"{errors[0]} errors; the same queries in-process, one thread: {inproc:.0f} queries/s "
          f"(endpoint / in-process = {res['throughput_qps'] / inproc:.2f})")
    (args.out.parent / "bench-server.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
