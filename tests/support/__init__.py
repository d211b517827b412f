"""What the tests share that is not a fixture: the sample, small dumps written on the fly, a
listener that counts connections, a server in a thread, a graph of hostile titles.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent.parent
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

# Titles that must round-trip through /entity/{Title}, and a label that must render as text.
HOSTILE_TITLES = ("AC/DC", "100% Pure", "Zürich", "東京", "What? Why#not", "C++", 'Say "hi"',
                  "A&B", "Ünïcode/slash 50%")
MARKUP_LABEL = ('<script>window.kgxPwned = 1</script><img src=x onerror="window.kgxPwned = 2">'
                "\"quoted\" & 'single' </p>")


def real_dump(name: str) -> Path:
    """A small real dump the repository carries (``tests/data/``, or the bundled sample)."""
    return SAMPLE if name == SAMPLE.name else TEST_DATA / name


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


def best_page_seconds(text: str, ctx, repeats: int = 3) -> float:  # noqa: ANN001
    """The fastest of ``repeats`` runs of one page through the worker's page function.

    For the tests that compare 1x with 8x of an input (linear time): the minimum is the
    least noisy figure on a shared machine.
    """
    import time

    from kgx.records import Page
    from kgx.structure.pages import process_page

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


def write_hostile_graph(out: Path) -> str:
    """A kgx output directory whose entities have awkward titles, one with a label made of
    markup, a model fact whose evidence sentence holds markup; returns its resource namespace."""
    import json

    import pyoxigraph as ox

    from kgx.ontology import KGX, ONTOLOGY_GRAPH, RDFS, XSD
    from kgx.rdf.quads import literal
    from kgx.text.site import iri_escape

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
    store.load(path=str(ROOT / "ontologies" / "kgx.ttl"),
               format=ox.RdfFormat.TURTLE, to_graph=ox.NamedNode(ONTOLOGY_GRAPH))
    store.flush()
    del store
    (out / "report.json").write_text(json.dumps({"site": {
        "base": "https://wiki.test/wiki/Main_Page", "namespace": ns}}))
    return res


def corrupt_middle_stream(src: Path, dst_dir: Path) -> tuple[Path, int]:
    """Copy a multistream dump (and its index) with the second page stream damaged."""
    from kgx.dump.multistream import find_index, read_index

    streams = read_index(find_index(src))
    data = bytearray(src.read_bytes())
    off = streams[1].offset
    for i in range(off + 200, off + 260):
        data[i] ^= 0xFF
    dst = dst_dir / src.name
    dst.write_bytes(bytes(data))
    idx = find_index(src)
    (dst_dir / idx.name).write_bytes(idx.read_bytes())
    return dst, off


def kill_when(cmd: list[str], journal: Path, chunks: int, timeout: float = 300) -> int:
    """Start ``cmd``, SIGKILL its whole process group once ``chunks`` are committed."""
    from kgx.engines.journal import count_committed

    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while count_committed(journal) < chunks:
            if proc.poll() is not None:
                raise AssertionError("the run ended before it could be killed: "
                                     + proc.stderr.read().decode()[-2000:])
            assert time.monotonic() - t0 < timeout, "no progress"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return count_committed(journal)


def sorted_quads(path: Path) -> list[str]:
    return sorted(path.read_text("utf-8").splitlines())


PIPELINE = """
import sys
from kgx.structure.extract import ExtractOptions
from kgx.stages.pipeline import PipelineOptions, run
run(sys.argv[1], sys.argv[2], PipelineOptions(
    extract=ExtractOptions(workers=1, progress=False), model=sys.argv[3],
    read_chunk_documents=2, progress=False), log=lambda m: None)
"""


def pipeline_options(model: Path) -> object:
    from kgx.stages.pipeline import PipelineOptions
    from kgx.structure.extract import ExtractOptions

    return PipelineOptions(extract=ExtractOptions(workers=1, progress=False), model=str(model),
                           read_chunk_documents=2, progress=False)


def docred_file(path: Path, n_docs: int = 12) -> Path:
    """A small DocRED file: a birth place (P19, aligned with kgx:birthPlace) and a part-of
    (P361, which kgx's ontology does not align) in one sentence, a date (TIME), and a relation
    across sentences."""
    docs = []
    for i in range(n_docs):
        docs.append({
            "title": f"Doc {i}",
            "sents": [["Anna", f"Berg{i}", "was", "born", "in", f"Town{i}", "in", "1901", "."],
                      [f"Town{i}", "is", "part", "of", f"Shire{i}", "."],
                      ["She", "worked", "for", f"Acme{i}", "."]],
            "vertexSet": [
                [{"name": f"Anna Berg{i}", "sent_id": 0, "pos": [0, 2], "type": "PER"}],
                [{"name": f"Town{i}", "sent_id": 0, "pos": [5, 6], "type": "LOC"},
                 {"name": f"Town{i}", "sent_id": 1, "pos": [0, 1], "type": "LOC"}],
                [{"name": "1901", "sent_id": 0, "pos": [7, 8], "type": "TIME"}],
                [{"name": f"Shire{i}", "sent_id": 1, "pos": [4, 5], "type": "LOC"}],
                [{"name": f"Acme{i}", "sent_id": 2, "pos": [3, 4], "type": "ORG"}]],
            "labels": [{"h": 0, "t": 1, "r": "P19", "evidence": [0]},
                       {"h": 0, "t": 2, "r": "P569", "evidence": [0]},
                       {"h": 1, "t": 3, "r": "P361", "evidence": [1]},
                       {"h": 0, "t": 4, "r": "P108", "evidence": [2]}]})
    path.write_text(json.dumps(docs), encoding="utf-8")
    return path


def person_town_conll(folder: Path) -> Path:
    """A CoNLL file of 30 sentences "PersonN visited TownN ." (PER and LOC) in ``folder``."""
    lines = []
    for i in range(30):
        lines += [f"Person{i} B-PER", "visited O", f"Town{i} B-LOC", ". O", ""]
    f = folder / "train.conll"
    f.write_text("\n".join(lines), encoding="utf-8")
    return f


SHARED_DUMPS = ROOT.parent / "shared" / "data" / "dumps"


def _dump_pages(path: Path) -> tuple[str, list[str]]:
    """A dump's text before its first page, and its pages (``<page>...</page>``)."""
    import bz2
    import re

    if path.suffix == ".bz2":
        with bz2.open(path, "rt", encoding="utf-8") as f:
            raw = f.read()
    else:
        raw = path.read_text("utf-8")
    return raw[: raw.index("<page>")], re.findall(r"<page>.*?</page>", raw, re.S)


def _page_id(page: str) -> int:
    import re

    m = re.search(r"<id>(\d+)</id>", page)
    assert m is not None
    return int(m.group(1))


def whole_dump(src: Path, dst: Path) -> Path:
    """``src``, a dump cut off after a page, closed as a whole dump is (``</mediawiki>``)."""
    head, pages = _dump_pages(src)
    dst.write_text(head + "".join(f"  {p}\n" for p in pages) + "</mediawiki>\n", "utf-8")
    return dst


def merged_dump(old: Path, new: Path, dst: Path) -> Path:
    """The wiki as ``new``, a dump of changed pages, leaves ``old``: its siteinfo, its pages,
    and the pages of ``old`` it does not have, by page id as Wikimedia's dumps are."""
    _, before = _dump_pages(old)
    head, after = _dump_pages(new)
    pages = {_page_id(p): p for p in before} | {_page_id(p): p for p in after}
    dst.write_text(head + "".join(f"  {pages[k]}\n" for k in sorted(pages)) + "</mediawiki>\n",
                   "utf-8")
    return dst
