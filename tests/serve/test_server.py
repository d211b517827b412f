"""kgx serve, driven by a standard client (SPARQLWrapper) and raw HTTP, on loopback only."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from SPARQLWrapper import JSON, POST, SPARQLWrapper

from kgx.serve import ServeOptions, check_query, make_server, negotiate
from kgx.structure.extract import ExtractOptions, extract
from tests.support import SAMPLE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("serve") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=2, progress=False))
    srv = make_server(out, ServeOptions(port=0, timeout=1.5, max_rows=5, workers=2,
                                        queue_wait=0.2, idle_timeout=1.0, request_timeout=1.0,
                                        max_connections=16,
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
    from kgx.graph.errors import ServiceRefused
    from kgx.graph.knowledge_graph import KnowledgeGraph

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
    # A half-sent request: the server hangs up at its request deadline (1 s here).
    assert _raw(base, b"GET /sparql?query=ASK", read_timeout=10) == b""
    assert time.monotonic() - t < 8
    # Connections that only wait fill the cap (16 here): a newcomer takes the place of the
    # one that waited longest, instead of being shut out.
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        time.sleep(0.2)
        extra = _raw(base, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", read_timeout=5)
        assert extra.startswith(b"HTTP/1.1 200")
        held[0].settimeout(5)
        assert held[0].recv(10) == b""  # the oldest waiting connection was closed
    finally:
        for s in held:
            s.close()
    time.sleep(1.5)
    assert q(base, CAPITAL)[0] == 200  # the slots came back


def test_slow_headers_cannot_hold_the_server(server) -> None:
    """One header byte a second: the request deadline (1 s here) covers the request as a
    whole, not the time between two bytes."""
    import socket
    import time

    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t = time.monotonic()
        ended_after = None
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40:
            try:
                s.sendall(bytes([byte]))
                s.settimeout(0.25)
                s.recv(100)  # b"" or an error answer: the server ended the request
                ended_after = time.monotonic() - t
                break
            except TimeoutError:
                continue  # still open: the next byte
            except OSError:
                ended_after = time.monotonic() - t
                break
    assert ended_after is not None and ended_after < 4, ended_after


def test_a_full_house_of_answered_connections_is_503() -> None:
    import socket

    from kgx.serve.protocol import ConnectionTable

    table = ConnectionTable(2)
    a, b, c = (socket.socket() for _ in range(3))
    try:
        assert table.admit(a) and table.admit(b)
        table.set_state(a, "busy")
        table.set_state(b, "busy")
        assert not table.admit(c, wait=0.1)  # nobody only waits: nobody is closed
        table.remove(a)
        assert table.admit(c)
    finally:
        for s in (a, b, c):
            s.close()


def test_host_header_must_name_this_server(server) -> None:
    base, _ = server
    answer = _raw(base, b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: attacker.example\r\n"
                        b"\r\n")
    assert answer.startswith(b"HTTP/1.1 403")
    for host in (b"localhost:7878", b"127.0.0.1", b"[::1]:80"):
        answer = _raw(base, b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: " + host
                      + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200"), host
    from kgx.serve import host_allowed

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


# --------------------------------------------------------------------------- hardening, round two


def test_a_name_that_looks_like_an_address_is_not_loopback() -> None:
    from kgx.serve import host_allowed

    for bad in ("127.attacker.example:7878", "127.0.0.1.nip.io", "localhost.attacker.example",
                "::1", "[::1", "127.0.0.1:80:80", "0x7f.1"):
        assert not host_allowed(bad, "127.0.0.1", ()), bad
    for good in ("127.0.0.1:7878", "127.1.2.3", "localhost", "LOCALHOST:1", "[::1]:7878"):
        assert host_allowed(good, "127.0.0.1", ()), good
    assert host_allowed("[::1]", "::1", ()) and not host_allowed("127.evil", "::1", ())


def test_requests_are_framed_strictly(server) -> None:
    base, _ = server
    ask = b"ASK {}"
    cases = {
        "two lengths": b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/"
                       b"sparql-query\r\nContent-Length: 6\r\nContent-Length: 7\r\n\r\n" + ask,
        "space before colon": b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                              b"application/sparql-query\r\nTransfer-Encoding : chunked\r\n"
                              b"Content-Length: 6\r\n\r\n" + ask,
        "length and chunked": b"POST /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6"
                              b"\r\nTransfer-Encoding: chunked\r\n\r\n" + ask,
        "GET with a body": b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Length: 29\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "folded header": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n 2\r\n\r\n",
        "two hosts": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
        "NUL in the path": b"GET /entity/A\x00B HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "HTTP/0.9": b"GET /\r\n\r\n",
    }
    for name, request in cases.items():
        answer = _raw(base, request, read_timeout=5)
        assert answer.startswith(b"HTTP/1.1 400"), (name, answer[:60])
        assert answer.count(b"HTTP/1.1 ") == 1, name  # one request, one answer
    flood = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
        b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(300)) + b"\r\n"
    assert _raw(base, flood, read_timeout=5).startswith(b"HTTP/1.1 431")
    answer = _raw(base, b"GET /entity/A%00B HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close"
                        b"\r\n\r\n", read_timeout=5)
    assert answer.startswith(b"HTTP/1.1 "), answer[:60]  # an answer, never a dropped line


def test_head_is_get_without_a_body(server) -> None:
    base, _ = server
    answer = _raw(base, b"HEAD /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Connection: close\r\n\r\n", read_timeout=5)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: " in head and body == b""


def test_xml_results_are_well_formed_for_any_literal(server, tmp_path) -> None:
    import xml.etree.ElementTree as ET

    base, _ = server
    query = 'SELECT ?x WHERE { BIND("a\\b\\fb\\u0001" AS ?x) }'
    st, _, body = q(base, query, "application/sparql-results+xml")
    assert st == 200
    ET.fromstring(body)  # raises on a character XML 1.0 cannot hold
    from kgx.graph.results import take_triples

    class T(str):
        pass

    _, cut = take_triples([T("<a> <b> \"" + "日本" * 100 + "\"")] * 10, 100, 1000)
    assert cut  # 1,000 bytes hold fewer than 10 triples of 600 bytes each


def test_a_cross_site_form_post_is_refused(server) -> None:
    base, _ = server
    form = b"query=" + urllib.parse.quote(CAPITAL).encode()
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    for hostile in ({"Origin": "https://attacker.example"}, {"Sec-Fetch-Site": "cross-site"}):
        assert http(f"{base}/sparql", data=form, headers={**ctype, **hostile})[0] == 403
    same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    assert http(f"{base}/sparql", data=form, headers={**ctype, **same})[0] == 200


def test_a_browser_asking_sparql_for_nothing_is_sent_to_the_query_page(server) -> None:
    base, _ = server
    answer = _raw(base, b"GET /sparql HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\n"
                        b"Connection: close\r\n\r\n", read_timeout=5)
    assert answer.startswith(b"HTTP/1.1 303") and b"Location: /query" in answer
    st, _, body = http(f"{base}/sparql")
    assert st == 400 and b"/query" in body


def test_settings_that_cannot_work_are_refused_before_the_start() -> None:
    for bad in (dict(workers=0), dict(workers=-1), dict(memory_mb=40), dict(timeout=0),
                dict(timeout=float("nan")), dict(port=70000)):
        with pytest.raises(ValueError):
            ServeOptions(**bad).check()


def test_a_busy_port_is_said_at_once(server) -> None:
    import time

    base, srv = server
    port = srv.server_address[1]
    t = time.monotonic()
    with pytest.raises(OSError, match="--port"):
        make_server(srv.app.out, ServeOptions(port=port))
    assert time.monotonic() - t < 5


def test_a_light_query_is_not_queued_behind_slow_ones(tmp_path_factory) -> None:
    """One long-lane worker holds a slow query; light queries take the light lane at once,
    and a second slow query there is stopped at the light lane's limit (503), not queued."""
    import time

    out = tmp_path_factory.mktemp("lanes") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=2, progress=False))
    srv = make_server(out, ServeOptions(port=0, workers=1, timeout=4, light_timeout=0.5,
                                        queue_wait=2))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    try:
        codes: dict[str, int] = {}
        first = threading.Thread(target=lambda: codes.__setitem__("slow", q(base, slow)[0]))
        first.start()
        time.sleep(0.5)  # the slow query holds the long lane
        light = []
        for _ in range(5):
            t = time.monotonic()
            light.append((q(base, CAPITAL)[0], time.monotonic() - t))
        assert all(st == 200 and dt < 1.0 for st, dt in light), light
        assert q(base, slow)[0] == 503  # the light lane stops a slow query at 0.5 s
        # Known slow now (the same text, laid out anew): it waits for the long lane only,
        # and the light lane stays free for light queries.
        again: list[int] = []
        t2 = threading.Thread(target=lambda: again.append(q(base, "  " + slow.replace(
            " . ", " .\n "))[0]))
        t2.start()
        time.sleep(0.2)
        t = time.monotonic()
        assert q(base, CAPITAL)[0] == 200 and time.monotonic() - t < 1.0
        assert srv.pool.running("light") == 0
        t2.join(30)
        assert again == [503]
        first.join(30)
        assert codes["slow"] == 504
        # A replacement's start-up is nobody's query: the next query answers at once.
        t = time.monotonic()
        assert q(base, CAPITAL)[0] == 200 and time.monotonic() - t < 1.0
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_server_serves_one_version_until_a_run_finishes(tmp_path_factory) -> None:
    import shutil
    import time

    import pyoxigraph as ox

    from kgx.outdir import output_lock

    out = tmp_path_factory.mktemp("version") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=2, progress=False))
    srv = make_server(out, ServeOptions(port=0, workers=1, timeout=1.5, queue_wait=5))
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    marker = "ASK { <urn:x:new> <urn:x:version> 2 }"
    try:
        assert json.loads(q(base, CAPITAL)[2])["results"]["bindings"]
        with output_lock(out):  # a run rewrites the store, as the merge stage does
            shutil.rmtree(out / "store")
            store = ox.Store(str(out / "store"))
            store.add(ox.Quad(ox.NamedNode("urn:x:new"), ox.NamedNode("urn:x:version"),
                              ox.Literal("2", datatype=ox.NamedNode(
                                  "http://www.w3.org/2001/XMLSchema#integer"))))
            store.flush()
            del store
            # a killed worker is replaced while the run goes on: still the old version
            assert q(base, "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
                     )[0] == 504
            for _ in range(3):
                time.sleep(1)
                assert json.loads(q(base, marker)[2])["boolean"] is False
                assert json.loads(q(base, CAPITAL)[2])["results"]["bindings"]
        deadline = time.monotonic() + 30  # the run ended: the server moves to the new version
        while json.loads(q(base, marker)[2]).get("boolean") is not True:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert not json.loads(q(base, CAPITAL)[2])["results"]["bindings"]
    finally:
        srv.shutdown()
        srv.server_close()
    assert not (out / ".serve").exists()  # the pinned copies are gone with the server
