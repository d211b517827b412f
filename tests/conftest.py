"""Shared fixtures: the real dumps in ../shared/data and small dumps written on the fly."""

from __future__ import annotations

import contextlib
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"

SITEINFO = """  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>enwiki</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.27.0</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="6" case="first-letter">File</namespace>
      <namespace key="10" case="first-letter">Template</namespace>
      <namespace key="14" case="first-letter">Category</namespace>
    </namespaces>
  </siteinfo>
"""


def real_dump(name: str) -> Path:
    """A small real dump the repository carries (``tests/data/``, or the bundled sample)."""
    return SAMPLE if name == SAMPLE.name else TEST_DATA / name


@pytest.fixture(scope="session")
def multistream_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample in Wikimedia's multistream layout (3 streams of pages + index)."""
    from kgx.multistream import repack

    dump = tmp_path_factory.mktemp("multistream") / "enwiki-2016-excerpt-multistream.xml.bz2"
    repack(SAMPLE, dump)
    return dump


def page_xml(pid: int, title: str, text: str, ns: int = 0, redirect: str | None = None) -> str:
    red = f'    <redirect title="{escape(redirect, {chr(34): "&quot;"})}" />\n' if redirect else ""
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>{ns}</ns>\n"
            f"    <id>{pid}</id>\n{red}    <revision>\n      <id>{pid * 10}</id>\n"
            f"      <timestamp>2020-01-01T00:00:00Z</timestamp>\n"
            f'      <text xml:space="preserve">{escape(text)}</text>\n'
            f"    </revision>\n  </page>\n")


def dump_xml(pages: list[str]) -> str:
    return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" '
            'xml:lang="en">\n' + SITEINFO + "".join(pages) + "</mediawiki>\n")


@pytest.fixture
def write_dump(tmp_path: Path):
    """Write a small dump: ``write_dump([(title, text), ...], name='d.xml')``."""

    def write(pages: list[tuple[str, str] | tuple[str, str, dict]], name: str = "d.xml") -> Path:
        xml = []
        for i, p in enumerate(pages, 1):
            extra = p[2] if len(p) > 2 else {}
            xml.append(page_xml(i, p[0], p[1], **extra))
        path = tmp_path / name
        data = dump_xml(xml).encode("utf-8")
        if name.endswith(".bz2"):
            import bz2
            data = bz2.compress(data)
        elif name.endswith(".gz"):
            import gzip
            data = gzip.compress(data)
        path.write_bytes(data)
        return path

    return write



class ConnectionCounter:
    """A TCP listener on loopback that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sparql"

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def listener():
    """A :class:`ConnectionCounter`: what kgx must never connect to."""
    c = ConnectionCounter()
    yield c
    c.close()


def best_page_seconds(text: str, ctx, repeats: int = 3) -> float:  # noqa: ANN001
    """The fastest of ``repeats`` runs of one page through the worker's page function.

    For the tests that compare 1x with 8x of an input (linear time): the minimum is the
    least noisy figure on a shared machine.
    """
    import time

    from kgx.records import Page
    from kgx.workers import process_page

    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        process_page(Page(1, 0, "P", text, 1), ctx)
        best = min(best, time.perf_counter() - t)
    return best


@contextlib.contextmanager
def serving(out: Path, **options):  # noqa: ANN003
    """``kgx serve OUT`` on a free loopback port in this process; yields its base URL."""
    import threading

    from kgx.serve import ServeOptions, make_server

    srv = make_server(out, ServeOptions(port=0, **options))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    finally:
        srv.shutdown()
        srv.pool.close()
        srv.server_close()


# Titles that must round-trip through /entity/{Title}, and a label that must render as text.
HOSTILE_TITLES = ("AC/DC", "100% Pure", "Zürich", "東京", "What? Why#not", "C++", 'Say "hi"',
                  "A&B", "Ünïcode/slash 50%")
MARKUP_LABEL = ('<script>window.kgxPwned = 1</script><img src=x onerror="window.kgxPwned = 2">'
                "\"quoted\" & 'single' </p>")


def write_hostile_graph(out: Path) -> str:
    """A kgx output directory whose entities have awkward titles, one with a label made of
    markup, a model fact whose evidence sentence holds markup; returns its resource namespace."""
    import json

    import pyoxigraph as ox

    from kgx.ontology import KGX, ONTOLOGY_GRAPH, RDFS, XSD
    from kgx.rdf import literal
    from kgx.site import iri_escape

    ns = "http://x.test/"
    res = ns + "resource/"

    def iri(title: str) -> str:
        return f"<{res}{iri_escape(title.replace(' ', '_'))}>"

    pg = f"<{ns}graph/provenance>"
    lines = []
    for i, title in enumerate(HOSTILE_TITLES, 1):
        g = f"<{ns}graph/page/{i}/label>"
        lines += [f"{iri(title)} <{RDFS}label> {literal(title, lang='en')} {g} .",
                  f"{g} <{KGX}extractor> {literal('label')} {pg} ."]
    m, g = iri("Markup"), f"<{ns}graph/page/99/infobox>"
    sentence = "Markup <b>wrote</b> about AC/DC & friends."
    fact, ev = f"<{ns}graph/fact/1>", f"<{ns}graph/fact/1/evidence/1>"
    integer = XSD + "integer"
    lines += [
        f"{m} <{RDFS}label> {literal(MARKUP_LABEL, lang='en')} {g} .",
        f"{m} <{KGX}abstract> {literal('An abstract with <i>tags</i> & ' + MARKUP_LABEL)} {g} .",
        f"{m} <{KGX}birthName> {literal(MARKUP_LABEL)} {g} .",
        f"{m} <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{KGX}Writer> {g} .",
        f"{g} <{KGX}extractor> {literal('infobox')} {pg} .",
        f"{m} <{KGX}notableWork> {iri('AC/DC')} {fact} .",
        f"{fact} <{KGX}extractor> {literal('model')} {pg} .",
        f"{fact} <{KGX}confidence> {literal('0.75', XSD + 'double')} {pg} .",
        f"{fact} <{KGX}supportCount> {literal('1', integer)} {pg} .",
        f"{fact} <{KGX}agreesWithInfobox> {literal('false', XSD + 'boolean')} {pg} .",
        f"{fact} <{KGX}evidence> {ev} {pg} .",
        f"{ev} <{KGX}sentence> {literal(sentence)} {pg} .",
        f"{ev} <{KGX}sentenceStart> {literal('100', integer)} {pg} .",
        f"{ev} <{KGX}subjectStart> {literal('100', integer)} {pg} .",
        f"{ev} <{KGX}subjectEnd> {literal('106', integer)} {pg} .",
        f"{ev} <{KGX}objectStart> {literal('126', integer)} {pg} .",
        f"{ev} <{KGX}objectEnd> {literal('131', integer)} {pg} .",
        f"{ev} <{KGX}sourcePage> {iri('Markup')} {pg} .",
        f"{ev} <{KGX}revisionId> {literal('7', integer)} {pg} .",
        f"{iri('Old name')} <{KGX}redirectsTo> {m} <{ns}graph/page/98/redirect> .",
    ]
    out.mkdir(parents=True, exist_ok=True)
    store = ox.Store(str(out / "store"))
    store.load("\n".join(lines).encode("utf-8"), format=ox.RdfFormat.N_QUADS)
    store.load(path=str(Path(__file__).resolve().parent.parent / "ontologies" / "kgx.ttl"),
               format=ox.RdfFormat.TURTLE, to_graph=ox.NamedNode(ONTOLOGY_GRAPH))
    store.flush()
    del store
    (out / "report.json").write_text(json.dumps({"site": {
        "base": "https://wiki.test/wiki/Main_Page", "namespace": ns}}))
    return res


@pytest.fixture
def busy_core():
    """The other core busy, as on a loaded machine: the kill tests once failed only there."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()
