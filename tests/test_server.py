"""kgx serve, driven by a standard client (SPARQLWrapper) and raw HTTP, on loopback only."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from SPARQLWrapper import JSON, POST, SPARQLWrapper

from kgx.extract import ExtractOptions, extract
from kgx.server import ServeOptions, check_query, make_server, negotiate

from .conftest import SAMPLE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serve") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=2, progress=False))
    srv = make_server(out, ServeOptions(port=0, timeout=1.5, max_rows=5, workers=2,
                                        queue_wait=0.2))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.pool.close()
    srv.server_close()


def http(url: str, data: bytes | None = None, headers: dict | None = None,
         method: str | None = None) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def q(base: str, query: str, accept: str | None = None) -> tuple[int, dict, bytes]:
    return http(f"{base}/sparql?query={urllib.parse.quote(query)}",
                headers={"Accept": accept} if accept else {})


CAPITAL = ("PREFIX kgx: <https://kgx.dev/ontology/> SELECT ?c WHERE "
           "{ <https://kgx.dev/enwiki/resource/Afghanistan> kgx:capital ?c }")


def test_binds_to_loopback_by_default() -> None:
    assert ServeOptions().host == "127.0.0.1"


def test_sparqlwrapper_get_and_post(server) -> None:
    base, _ = server
    for method in ("GET", POST):
        s = SPARQLWrapper(f"{base}/sparql")
        s.setReturnFormat(JSON)
        s.setMethod(method)
        s.setQuery(CAPITAL)
        res = s.query().convert()
        assert res["results"]["bindings"] == [
            {"c": {"type": "uri", "value": "https://kgx.dev/enwiki/resource/Kabul"}}]


def test_content_negotiation(server) -> None:
    base, _ = server
    st, h, body = q(base, CAPITAL, "application/sparql-results+xml")
    assert st == 200 and b"<uri>https://kgx.dev/enwiki/resource/Kabul</uri>" in body
    st, h, body = q(base, CAPITAL, "text/csv")
    assert st == 200 and body.splitlines()[1] == b"https://kgx.dev/enwiki/resource/Kabul"
    st, h, body = q(base, CAPITAL, "text/tab-separated-values")
    assert body.splitlines()[1] == b"<https://kgx.dev/enwiki/resource/Kabul>"
    st, h, body = q(base, CAPITAL, "image/png")
    assert st == 406
    construct = CAPITAL.replace("SELECT ?c WHERE", "CONSTRUCT { ?x ?y ?c } WHERE").replace(
        "{ <https://kgx.dev/enwiki/resource/Afghanistan> kgx:capital ?c }",
        "{ ?x kgx:capital ?c FILTER(?c = <https://kgx.dev/enwiki/resource/Kabul>) "
        "BIND(kgx:capital AS ?y) }")
    st, h, body = q(base, construct, "text/turtle")
    assert st == 200 and h["Content-Type"].startswith("text/turtle") and b"Kabul" in body
    st, h, body = q(base, construct, "application/n-triples")
    assert b"<https://kgx.dev/enwiki/resource/Kabul> ." in body
    st, h, body = q(base, construct, "application/sparql-results+json")
    assert st == 406
    st, h, body = q(base, "ASK { ?s ?p ?o }")
    assert json.loads(body) == {"head": {}, "boolean": True}


def test_refusals(server) -> None:
    base, _ = server
    st, _, body = q(base, "SELEC ?x WHERE {}")
    assert st == 400 and b"SPARQL error" in body
    st, _, body = q(base, "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }")
    assert st == 403 and b"no outbound requests" in body
    st, _, body = q(base, "SELECT * FROM <http://example.org/g> WHERE { ?s ?p ?o }")
    assert st == 403
    st, _, _ = http(f"{base}/sparql", data=b"update=" + urllib.parse.quote(
        "INSERT DATA { <a:a> <a:b> <a:c> }").encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 403
    st, _, _ = http(f"{base}/sparql", data=b"LOAD <http://example.org/x>",
                    headers={"Content-Type": "application/sparql-update"})
    assert st == 403
    big = "SELECT * WHERE { ?s ?p ?o } # " + "x" * 70_000
    assert q(base, big)[0] == 414  # the HTTP layer refuses the URL itself
    st, _, _ = http(f"{base}/sparql", data=big.encode(),
                    headers={"Content-Type": "application/sparql-query"})
    assert st == 413
    st, _, body = http(f"{base}/sparql?query={urllib.parse.quote(CAPITAL)}&default-graph-uri="
                       + urllib.parse.quote("http://example.org/remote"))
    assert st == 403


def test_row_limit_is_flagged(server) -> None:
    base, _ = server
    st, h, body = q(base, "SELECT * WHERE { ?s ?p ?o }")
    data = json.loads(body)
    assert st == 200 and len(data["results"]["bindings"]) == 5
    assert h["X-KGX-Truncated"] == "true" and data["kgx"] == {"truncated": True}


def test_timeout_stops_the_query_and_the_server_keeps_serving(server) -> None:
    base, srv = server
    results: dict[str, int] = {}

    def slow() -> None:
        results["slow"] = q(base, "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . "
                                  "?g ?h ?i }")[0]

    t = threading.Thread(target=slow)
    t.start()
    st, _, _ = q(base, CAPITAL)  # the other worker answers meanwhile
    t.join(30)
    assert st == 200 and results["slow"] == 504
    assert srv.pool.timeouts >= 1
    assert q(base, CAPITAL)[0] == 200  # the killed worker was replaced


def test_saturation_gives_503(server) -> None:
    base, _ = server
    codes: list[int] = []
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    ts = [threading.Thread(target=lambda: codes.append(q(base, slow)[0])) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert 503 in codes and 504 in codes


def test_cors_only_when_asked(server) -> None:
    base, _ = server
    _, h, _ = q(base, CAPITAL)
    assert "Access-Control-Allow-Origin" not in h
    st, _, _ = http(f"{base}/sparql", method="OPTIONS")
    assert st == 405


def test_query_checks_unit() -> None:
    check_query('SELECT * WHERE { ?s ?p "SERVICE <x>" }', set(), 1000)  # in a string: fine
    with pytest.raises(Exception, match="SERVICE"):
        check_query("select * { service <http://x/> { ?s ?p ?o } }", set(), 1000)
    assert negotiate("text/csv;q=0.5, application/sparql-results+json", False) == "json"
    assert negotiate("*/*", True) == "turtle" and negotiate("image/png", False) is None
