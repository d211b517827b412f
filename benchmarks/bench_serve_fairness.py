"""Light queries while other clients hold slow ones: latency and refusals of the endpoint.

``kgx serve`` runs in its own process over the bundled sample's structure graph (built first,
``kgx extract --no-model``, unless OUT is given), with its defaults (2 query workers, a 10 s
timeout). Background clients each send a slow query (a three-way cross product, stopped at
the timeout) again and again; one client sends light queries (an entity's facts) one after
another and times them. The peer is the same light client with no background load, in the
same run. Goals: p99 under 1 s, and no 503 for a light query while a worker is free.

Usage: ``python -m benchmarks.bench_serve_fairness [OUT] [--seconds 30] [--loads 0,2,40]``
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from benchmarks.common import ROOT, about, table, write_page

SLOW = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
LIGHT = "SELECT ?p ?o WHERE {{ <https://kgx.dev/enwiki/resource/{e}> ?p ?o }} LIMIT 50"
ENTITIES = ("Afghanistan", "Abraham_Lincoln", "Ayn_Rand", "Albert_Einstein", "Aristotle")


def get(base: str, query: str, timeout: float = 60) -> int:
    url = f"{base}/sparql?query={urllib.parse.quote(query)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))] if s else float("nan")


def run_load(base: str, slow_clients: int, seconds: float) -> dict[str, object]:
    stop = threading.Event()
    slow_codes: list[int] = []

    def slow() -> None:
        while not stop.is_set():
            slow_codes.append(get(base, SLOW))

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(slow_clients)]
    for t in threads:
        t.start()
    time.sleep(1.0 if slow_clients else 0)  # the slow queries hold the workers
    lat: list[float] = []
    codes: list[int] = []
    end = time.monotonic() + seconds
    k = 0
    while time.monotonic() < end:
        t0 = time.monotonic()
        codes.append(get(base, LIGHT.format(e=ENTITIES[k % len(ENTITIES)])))
        lat.append(time.monotonic() - t0)
        k += 1
    stop.set()
    for t in threads:
        t.join(30)
    ok = [x for x, c in zip(lat, codes, strict=True) if c == 200]
    return {"light": len(codes), "ok": len(ok), "503": codes.count(503),
            "other": len(codes) - len(ok) - codes.count(503),
            "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "slow answered": len(slow_codes),
            "slow 504/503": f"{slow_codes.count(504)}/{slow_codes.count(503)}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--loads", default="0,2,40")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = args.out
        if out is None:
            out = Path(d) / "out"
            subprocess.run([sys.executable, "-m", "kgx", "extract",
                            str(ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"), "-o", str(out),
                            "--no-model", "--no-progress"], cwd=ROOT, check=True,
                           capture_output=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "kgx", "serve", str(out), "--port",
                                   str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while get(base, "ASK {}", 5) != 200:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(server.stderr.read()[-2000:] if server.stderr else "")
                time.sleep(0.5)
            rows = []
            for n in (int(x) for x in args.loads.split(",")):
                r = run_load(base, n, args.seconds)
                rows.append([n, r["light"], r["ok"], r["503"], r["other"],
                             round(r["p50"] * 1000, 1), round(r["p99"] * 1000, 1),
                             r["slow answered"], r["slow 504/503"]])
                print(rows[-1], flush=True)
        finally:
            server.terminate()
            server.wait(30)
    headers = ["clients holding slow queries", "light queries", "200", "503", "other",
               "p50 (ms)", "p99 (ms)", "slow queries answered", "slow: 504 / 503"]
    base_p99 = rows[0][6] if rows and rows[0][0] == 0 else None
    notes = [f"With {r[0]} clients holding slow queries: light p99 {r[6]} ms"
             + (f" ({r[6] / base_p99:.1f}x the unloaded p99)" if base_p99 else "")
             + f", {r[3]} light queries answered 503." for r in rows if r[0]]
    write_page("bench_serve_fairness", "Light queries beside slow ones",
               [about(__doc__), table(headers, rows), "\n".join(notes)])


if __name__ == "__main__":
    main()
