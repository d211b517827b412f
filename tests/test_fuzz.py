"""The fuzz suite: generated wikitext, dump XML and SPARQL/HTTP requests against kgx.

Properties:

* no exception escapes (a page is processed or skipped with a reason; a query answers or is
  refused with a QueryError; the endpoint answers every request or closes it and stays up);
* every IRI kgx writes is one the store accepts (each page's N-Quads parse in Oxigraph);
* time stays linear in the input (8x the input costs far less than the 64x of a quadratic step);
* nothing makes an outbound connection (a local listener counts them, and must count none).

The default run is bounded (``KGX_FUZZ_PROFILE=default``, about a minute); ``python
benchmarks/bench_fuzz.py`` runs the same properties with many more examples.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgx.dump.reader import DumpReader
from kgx.ontology import load_mappings
from kgx.records import Page, SiteInfo
from kgx.structure.pages import Context, Limits, process_page
from kgx.text.site import Site
from tests.support import SAMPLE, SITEINFO, ConnectionCounter, best_page_seconds

settings.register_profile("default", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("long", max_examples=3000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("KGX_FUZZ_PROFILE", "default"))

CTX = Context(Site(SiteInfo(dbname="enwiki", base="https://en.wikipedia.org/wiki/Main_Page")),
              load_mappings(), Limits(page_timeout=0))
ODD = "\ufffd\ue000\x7f\x85\ufdd0\U0010fffd\u200f\u00a0%?#<>\"{}|\\^`"

# --------------------------------------------------------------------------- wikitext

MARKUP = ["[[", "]]", "{{", "}}", "|", "[http://x ", "[//y", "]", "<ref>", "</ref>", "<ref/>",
          "<nowiki>", "</nowiki>", "<pre>", "</pre>", "<!--", "-->", "{|", "|}", "|-", "'''",
          "''", "=", "==", "\n", "\n*", "\n#", "\n:", ";", "&amp;", "&#x41;", "__NOTOC__",
          "<br/>", "<div>", "</div>", "Category:", "File:", ":", "#", "(", ")", ",", " ",
          "Infobox person", "birth_date", "{{birth date|1900|1|1}}"]
WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
                max_size=8)
UNIT = st.one_of(st.sampled_from(MARKUP), WORDS, st.sampled_from(list(ODD)))
WIKITEXT = st.one_of(
    st.lists(UNIT, max_size=60).map("".join),
    # long runs of one unit: the shapes that make backtracking scanners quadratic
    st.tuples(st.lists(UNIT, min_size=1, max_size=4).map("".join),
              st.integers(1, 2000)).map(lambda t: t[0] * t[1]),
)


def _assert_page_ok(text: str, title: str = "Fuzz") -> None:
    import pyoxigraph as ox

    res = process_page(Page(1, 0, title, text, 1), CTX)  # raises if anything escapes
    assert res.kind in ("article", "disambiguation", "skipped", "redirect")
    if res.lines:
        # the store accepts every IRI and literal of the page (raises SyntaxError otherwise)
        list(ox.parse(input="".join(res.lines).encode("utf-8"), format=ox.RdfFormat.N_QUADS))


@given(WIKITEXT)
def test_generated_wikitext_is_processed_and_its_quads_load(text: str) -> None:
    _assert_page_ok(text)


@given(WIKITEXT)
def test_generated_spans_are_consistent(text: str) -> None:
    from kgx.text.wikitext import parse_page

    doc = parse_page(Page(1, 0, "P", text, 1), CTX.site)
    for ln in doc.links:
        assert 0 <= ln.start < ln.end <= len(doc.text)
        assert "\n" not in doc.text[ln.start:ln.end]
    for s in doc.sections:
        assert 0 <= s.start <= len(doc.text)


@settings(max_examples=12 if os.environ.get("KGX_FUZZ_PROFILE", "default") == "default"
          else 300)
@given(st.lists(UNIT, min_size=1, max_size=6).map("".join).filter(lambda u: len(u) >= 2))
def test_time_is_linear_in_the_input(unit: str) -> None:
    """8x the input within 24x the time (quadratic: 64x); absolute times are not asserted."""
    small = unit * max(1, 4_000 // len(unit))
    large = unit * (8 * max(1, 4_000 // len(unit)))
    t_small, t_large = best_page_seconds(small, CTX), best_page_seconds(large, CTX)
    assert t_large < 24 * max(t_small, 2e-3), (unit, t_small, t_large)


# --------------------------------------------------------------------------- dump XML

XML_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",),
                                          exclude_characters="\ufffe\uffff\r"
                                          + "".join(chr(c) for c in range(32) if c != 10)),
                   max_size=30)
FIELD = st.one_of(st.integers(-(1 << 64), 1 << 64).map(str), XML_TEXT,
                  st.sampled_from(["", " 7 ", "1e3", "0x10", "٣", "-0", str((1 << 63) - 1)]))


@st.composite
def dump_pages(draw: st.DrawFn) -> str:
    pages = []
    for _ in range(draw(st.integers(1, 5))):
        title, pid, ns, rev = draw(XML_TEXT), draw(FIELD), draw(FIELD), draw(FIELD)
        text = draw(st.one_of(WIKITEXT, XML_TEXT))
        text = "".join(c for c in text if c == "\n" or c == "\t" or (
            ord(c) >= 32 and c not in "\ufffe\uffff" and not 0xD800 <= ord(c) <= 0xDFFF))
        redirect = draw(st.one_of(st.none(), XML_TEXT))
        red = f'<redirect title="{escape(redirect, {chr(34): "&quot;"})}"/>' if redirect \
            is not None else ""
        pages.append(f"<page><title>{escape(title)}</title><ns>{escape(ns)}</ns>"
                     f"<id>{escape(pid)}</id>{red}<revision><id>{escape(rev)}</id>"
                     f"<text>{escape(text)}</text></revision></page>\n")
    return "".join(pages)


@given(dump_pages())
def test_generated_dumps_never_raise_and_their_quads_load(tmp_path_factory, xml: str) -> None:
    import pyoxigraph as ox

    path = tmp_path_factory.mktemp("fuzzdump") / "d.xml"
    path.write_text('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
                    'xml:lang="en">' + SITEINFO + xml + "</mediawiki>", encoding="utf-8")
    reader = DumpReader(path)
    ctx = Context(Site(reader.site), CTX.mappings, CTX.limits)
    for page in reader:
        res = process_page(page, ctx)
        if page.problem:
            assert res.kind == "skipped" and res.reason == page.problem
        if res.lines:
            list(ox.parse(input="".join(res.lines).encode(), format=ox.RdfFormat.N_QUADS))


@settings(max_examples=8 if os.environ.get("KGX_FUZZ_PROFILE", "default") == "default"
          else 100)
@given(dump_pages())
def test_generated_dumps_extract_to_a_loaded_store(tmp_path_factory, xml: str) -> None:
    import json

    from kgx.structure.extract import ExtractOptions, extract

    d = tmp_path_factory.mktemp("fuzzrun")
    path = d / "d.xml"
    path.write_text('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
                    'xml:lang="en">' + SITEINFO + xml + "</mediawiki>", encoding="utf-8")
    extract(path, d / "out", ExtractOptions(workers=0, progress=False))
    rep = json.loads((d / "out" / "report.json").read_text())
    assert rep["finished"] is True and rep["error"] is None and rep["refused_quads"] == 0
    assert (d / "out" / "store").is_dir() and not (d / "out" / ".work").exists()


# --------------------------------------------------------------------------- SPARQL / HTTP


@pytest.fixture(scope="module")
def counter():
    c = ConnectionCounter()
    yield c
    c.close()


@pytest.fixture(scope="module")
def graph(counter):
    import pyoxigraph as ox

    from kgx.graph.knowledge_graph import KnowledgeGraph

    store = ox.Store()
    store.add(ox.Quad(ox.NamedNode("http://x/a"), ox.NamedNode("http://x/p"), ox.Literal("1"),
                      ox.NamedNode("http://x/g")))
    return KnowledgeGraph(Path("."), store, {})


SEPARATORS = [" ", "\t", "\n", "\r", "\r\n", "#c\r", "#c\n", "#\r\n", " #x\r ", ""]
BEFORE = ["", "?s ?p ?o .", "FILTER(?a<?b)", 'BIND("#" AS ?x)', "BIND('''a\rb''' AS ?y)",
          "OPTIONAL { ?s ?p ?o }", "{ ?s ?p ?o }", "?s <http://x/p#> ?o .", "# comment\r",
          'FILTER(REGEX(?o, "SERVICE"))', "VALUES ?v { 1 }"]


@st.composite
def service_queries(draw: st.DrawFn, port: int) -> str:
    keyword = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in "service")
    sep = draw(st.sampled_from(SEPARATORS))
    silent = draw(st.sampled_from(["", "SILENT ", "silent\r"]))
    target = draw(st.sampled_from([f"<http://127.0.0.1:{port}/x>", ":x", "?svc"]))
    if target == ":x" and sep == "":
        target = "<http://127.0.0.1:1/x>"
    prefix = f"PREFIX : <http://127.0.0.1:{port}/>\n" if target == ":x" else ""
    bind = f"BIND(<http://127.0.0.1:{port}/x> AS ?svc) " if target == "?svc" else ""
    before = draw(st.sampled_from(BEFORE))
    lead = draw(st.sampled_from(SEPARATORS))
    return (f"{prefix}SELECT * WHERE {{ {bind}{before}{lead}{keyword}{sep or ' '}{silent}"
            f"{target} {{ ?s ?p ?o }} }}")


@given(st.data())
def test_generated_service_queries_never_connect(graph, counter, data) -> None:
    from kgx.graph.errors import QueryError

    query = data.draw(service_queries(counter.port))
    before = counter.count
    with pytest.raises(QueryError):
        list(graph.query(query))
    time.sleep(0.01)
    assert counter.count == before, query


@given(st.one_of(st.text(max_size=200), st.lists(st.sampled_from(
    ["SELECT", "*", "WHERE", "{", "}", "?s", "?p", "?o", ".", "SERVICE", "#", "\r", "\n",
     "<http://127.0.0.1:1/>", '"', "'''", "FROM", "NAMED", "GRAPH", "PREFIX", "x:", "\\u0053",
     "ASK", "(", ")", "FILTER", "<", ">", "a", " "]), max_size=40).map(" ".join)))
def test_generated_text_queries_answer_or_fail_cleanly(graph, counter, query: str) -> None:
    from kgx.graph.errors import QueryError

    before = counter.count
    try:
        res = graph.query(query)
        if hasattr(res, "__iter__"):
            list(res)
    except QueryError:
        pass
    assert counter.count == before


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, counter):
    from kgx.serve import ServeOptions, make_server
    from kgx.structure.extract import ExtractOptions, extract

    out = tmp_path_factory.mktemp("fuzzserve") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=0, progress=False, limit=30))
    srv = make_server(out, ServeOptions(port=0, timeout=2, workers=2, idle_timeout=0.5,
                                        queue_wait=2))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.pool.close()
    srv.server_close()


HEADER_VALUES = st.one_of(st.sampled_from(["-1", "abc", "0", "5", "99999999999", " 3",
                                           "1e3", ""]), st.integers(-10, 10 ** 12).map(str))


@st.composite
def http_requests(draw: st.DrawFn, port: int) -> bytes:
    method = draw(st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "G\x00T"]))
    path = draw(st.sampled_from(["/sparql", "/query", "/lookup", "/", "/update", "/../etc",
                                 "/sparql?query=ASK%7B%7D", "/sparql?query=%00",
                                 "/sparql?update=DROP%20ALL", "/lookup?q=&k=x"]))
    headers = [b"Host: " + draw(st.sampled_from([b"127.0.0.1", b"localhost", b"evil.example",
                                                 b"", b"127.0.0.1:1"]))]
    if draw(st.booleans()):
        headers.append(b"Content-Length: " + draw(HEADER_VALUES).encode())
    if draw(st.booleans()):
        headers.append(b"Content-Type: " + draw(st.sampled_from(
            [b"application/sparql-query", b"application/x-www-form-urlencoded",
             b"text/plain", b"application/sparql-update"])))
    if draw(st.booleans()):
        headers.append(b"Transfer-Encoding: chunked")
    query = draw(st.one_of(service_queries(port), st.text(max_size=50)))
    body = query.encode("utf-8", "replace")
    if draw(st.booleans()):
        body = b"query=" + body
    return (f"{method} {path} HTTP/1.1\r\n".encode("utf-8", "replace") + b"\r\n".join(headers)
            + b"\r\n\r\n" + body)


def _exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while c := s.recv(65536):
                chunks.append(c)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@settings(max_examples=40 if os.environ.get("KGX_FUZZ_PROFILE", "default") == "default"
          else 1000)
@given(st.data())
def test_generated_requests_are_answered_and_never_go_out(endpoint, counter, data) -> None:
    import urllib.request

    before = counter.count
    answer = _exchange(endpoint, data.draw(http_requests(counter.port)))
    assert answer == b"" or answer.startswith(b"HTTP/1."), answer[:100]
    time.sleep(0.01)
    assert counter.count == before
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoint}/sparql?query=ASK%7B%7D",
                                timeout=10) as r:  # the endpoint is still up
        assert r.status == 200
