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
                                        queue_wait=0.2, idle_timeout=1.0, max_connections=16,
                                        max_response_bytes=3000))
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
    assert st == 400 and b"SPARQL syntax error at line 1, column 1" in body and b"SELEC" in body
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
    def no_graph(iri: str) -> bool:
        return False

    check_query('SELECT * WHERE { ?s ?p "SERVICE <x>" }', {}, no_graph, 1000)  # a string: fine
    with pytest.raises(Exception, match="SERVICE"):
        check_query("select * { service <http://x/> { ?s ?p ?o } }", {}, no_graph, 1000)
    assert negotiate("text/csv;q=0.5, application/sparql-results+json", False) == "json"
    assert negotiate("*/*", True) == "turtle" and negotiate("image/png", False) is None


# --------------------------------------------------------------------------- hostile requests


def _service_queries(port: int) -> list[str]:
    """SERVICE spelt the ways that got past, or could get past, a text check."""
    target = f"<http://127.0.0.1:{port}/x>"
    return [
        f"SELECT * WHERE {{ #c\rSERVICE {target} {{ ?s ?p ?o }} }}",  # comment ended by CR
        f"SELECT * WHERE {{ sErViCe {target} {{ ?s ?p ?o }} }}",
        f"SELECT * WHERE {{ SERVICE SILENT {target} {{ ?s ?p ?o }} }}",
        f"PREFIX : <http://127.0.0.1:{port}/> SELECT * WHERE {{ SERVICE:x {{ ?s ?p ?o }} }}",
        f"SELECT * WHERE {{ ?a ?b ?c }} #x\r\nSERVICE {target} {{}}".replace("}} #", "#"),
        f'SELECT * WHERE {{ ?s ?p "x" . #"\rSERVICE {target} {{ ?s ?p ?o }} }}',
    ]


def test_service_is_refused_and_nothing_is_contacted(server, listener) -> None:
    base, _ = server
    for query in _service_queries(listener.port):
        st, _, body = q(base, query)
        assert st == 403, (query, st, body)
        st, _, _ = http(f"{base}/sparql", data=query.encode(),
                        headers={"Content-Type": "application/sparql-query"})
        assert st == 403
    assert listener.count == 0


def test_api_and_cli_refuse_service_unless_allowed(tmp_path, listener) -> None:
    from typer.testing import CliRunner

    from kgx.cli import app
    from kgx.graph import KnowledgeGraph, ServiceRefused

    out = tmp_path / "out"
    extract(SAMPLE, out, ExtractOptions(workers=0, progress=False, limit=20))
    kg = KnowledgeGraph.open(out)
    for query in _service_queries(listener.port):
        with pytest.raises(ServiceRefused):
            kg.query(query)
        res = CliRunner().invoke(app, ["query", str(out), query])
        assert res.exit_code == 2 and "SERVICE is refused" in res.output
    assert listener.count == 0
    # The listener does see what a query that is allowed to use SERVICE sends it.
    with pytest.raises(Exception):  # noqa: B017 - the listener answers nothing
        list(kg.query(_service_queries(listener.port)[0], allow_service=True))
    assert listener.count == 1


def test_from_and_protocol_graphs_select_the_dataset(server) -> None:
    base, _ = server
    label = "https://kgx.dev/enwiki/graph/page/12/label"
    count = "SELECT (COUNT(*) AS ?n) {} WHERE {{ ?s ?p ?o }}"
    st, _, body = q(base, count.format(f"FROM <{label}>"))
    n = int(json.loads(body)["results"]["bindings"][0]["n"]["value"])
    st2, _, body2 = q(base, f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH <{label}> {{ ?s ?p ?o }} }}")
    assert st == st2 == 200 and n == int(json.loads(body2)["results"]["bindings"][0]["n"]["value"])
    assert 0 < n < 10
    st, _, body = http(f"{base}/sparql?query={urllib.parse.quote(count.format(''))}"
                       f"&default-graph-uri={urllib.parse.quote(label)}")
    assert st == 200 and int(json.loads(body)["results"]["bindings"][0]["n"]["value"]) == n
    # FROM NAMED alone: an empty default graph, GRAPH ?g reaches only the named one.
    st, _, body = q(base, f"SELECT DISTINCT ?g FROM NAMED <{label}> WHERE {{ GRAPH ?g {{ ?s ?p ?o "
                          "} }")
    assert [b["g"]["value"] for b in json.loads(body)["results"]["bindings"]] == [label]
    for spelled in ("FROM<file:///etc/passwd>", "FROM NAMED<http://example.org/x>",
                    "PREFIX e: <http://example.org/> SELECT * FROM e:g"):
        query = spelled + " WHERE { ?s ?p ?o }" if spelled.startswith("PREFIX") else \
            f"SELECT * {spelled} WHERE {{ ?s ?p ?o }}"
        assert q(base, query)[0] == 403, query


def _raw(base: str, request: bytes, read_timeout: float = 10.0) -> bytes:
    import socket

    host, port = base.rsplit(":", 1)
    with socket.create_connection(("127.0.0.1", int(port)), timeout=read_timeout) as s:
        s.sendall(request)
        chunks = []
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_bad_content_length_is_answered(server) -> None:
    base, _ = server
    head = (b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
            b"application/sparql-query\r\n")
    for value, status in ((b"-1", b"400"), (b"abc", b"400"), (b"99999999999", b"413")):
        answer = _raw(base, head + b"Content-Length: " + value + b"\r\n\r\nASK {}")
        assert answer.startswith(b"HTTP/1.1 " + status), (value, answer[:80])
    answer = _raw(base, head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nASK {\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411")


def test_idle_connections_are_closed_and_capped(server) -> None:
    import socket
    import time

    base, srv = server
    port = int(base.rsplit(":", 1)[1])
    t = time.monotonic()
    # A half-sent request: the server hangs up after its idle timeout (1 s here).
    assert _raw(base, b"GET /sparql?query=ASK", read_timeout=10) == b""
    assert time.monotonic() - t < 8
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        time.sleep(0.2)
        extra = _raw(base, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", read_timeout=5)
        assert extra.startswith(b"HTTP/1.1 503")
    finally:
        for s in held:
            s.close()
    time.sleep(1.5)
    assert q(base, CAPITAL)[0] == 200  # the slots came back


def test_host_header_must_name_this_server(server) -> None:
    base, _ = server
    answer = _raw(base, b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: attacker.example\r\n"
                        b"\r\n")
    assert answer.startswith(b"HTTP/1.1 403")
    for host in (b"localhost:7878", b"127.0.0.1", b"[::1]:80"):
        answer = _raw(base, b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: " + host
                      + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), host
    from kgx.server import host_allowed

    assert host_allowed("kg.example.org", "0.0.0.0", ())
    assert not host_allowed("other.example", "0.0.0.0", ("kg.example.org",))
    assert host_allowed("kg.example.org:80", "127.0.0.1", ("kg.example.org",))
    assert not host_allowed(None, "127.0.0.1", ())


def test_answers_stop_at_the_byte_cap(server) -> None:
    base, _ = server
    st, h, body = q(base, "PREFIX kgx: <https://kgx.dev/ontology/> SELECT ?a WHERE "
                          "{ ?s kgx:abstract ?a }")
    data = json.loads(body)
    assert st == 200 and h["X-KGX-Truncated"] == "true" and data["kgx"] == {"truncated": True}
    assert 1 <= len(data["results"]["bindings"]) < 5 and len(body) < 3000 + 200
    st, h, body = q(base, "PREFIX kgx: <https://kgx.dev/ontology/> CONSTRUCT WHERE "
                          "{ ?s kgx:abstract ?a }", "application/n-triples")
    assert st == 200 and h["X-KGX-Truncated"] == "true" and len(body) <= 3000


def test_lookup_inside_a_served_query(readme_out) -> None:
    srv = make_server(readme_out, ServeOptions(port=0, workers=1, timeout=30))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        base = f"http://127.0.0.1:{srv.server_address[1]}"
        st, _, body = q(base, 'SELECT ?place WHERE { BIND(kgx:lookup("Abraham Lincoln") AS ?e) '
                              "?e kgx:birthPlace ?place } LIMIT 3")
        assert st == 200, body
        assert [b["place"]["value"] for b in json.loads(body)["results"]["bindings"]] == [
            "https://kgx.dev/enwiki/resource/Hodgenville,_Kentucky"]
    finally:
        srv.shutdown()
        srv.pool.close()
        srv.server_close()
