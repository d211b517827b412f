"""Hostile dumps: odd characters, fields of the wrong type, duplicate ids, quadratic shapes.

Each test here failed on kgx 0.1 (the hardening issue lists what was seen); none may stop a run.
"""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from kgx.graph.knowledge_graph import KnowledgeGraph
from kgx.ontology import load_mappings
from kgx.rdf.store import load_store
from kgx.records import Page, SiteInfo
from kgx.structure.extract import ExtractOptions, extract
from kgx.structure.pages import Context, Limits, process_page
from kgx.text.site import Site, iri_escape
from tests.support import SITEINFO, best_page_seconds

ODD = ["\ufffd", "\ue000", "\x7f", "\x85", "\ufdd0", "\U0010fffd", "\U0001fffe"]


def raw_dump(tmp_path: Path, pages: list[str], siteinfo: str = SITEINFO, lang: str = "en"
             ) -> Path:
    path = tmp_path / "hostile.xml"
    path.write_text('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" '
                    f'version="0.10" xml:lang="{lang}">\n' + siteinfo + "".join(pages)
                    + "</mediawiki>\n", encoding="utf-8")
    return path


def page(pid: str, title: str, text: str = "Text.", ns: str = "0", rev: str | None = None
         ) -> str:
    return (f"<page><title>{escape(title)}</title><ns>{ns}</ns><id>{pid}</id><revision>"
            f"<id>{rev if rev is not None else pid + '0'}</id>"
            f"<text>{escape(text)}</text></revision></page>\n")


def extract_report(dump: Path, out: Path) -> dict:
    extract(dump, out, ExtractOptions(workers=0, progress=False))
    assert not (out / ".work").exists() and not (out / "store.tmp").exists()
    return json.loads((out / "report.json").read_text())


def test_odd_characters_in_titles_links_and_parameters_cost_nothing(tmp_path: Path) -> None:
    text = "".join(f"[[Target {c}]] " for c in ODD)
    box = "{{Infobox person\n" + "".join(f"| para{c}meter = x{c}\n" for c in ODD) + "}}\n"
    pages = [page(str(10 + k), f"Title {c}", "Lead.") for k, c in enumerate(ODD)]
    dump = raw_dump(tmp_path, [page("1", "Main", box + "Main links " + text), *pages])
    rep = extract_report(dump, tmp_path / "out")
    assert rep["finished"] is True and rep["error"] is None and rep["refused_quads"] == 0
    # MediaWiki allows every non-ASCII character in a title, but not DEL: that page is skipped
    # and that link is text, as MediaWiki has it.
    legal = [c for c in ODD if c != "\x7f"]
    assert rep["pages"]["article"] == 1 + len(legal) and rep["pages"]["skipped"] == 1
    assert "not one MediaWiki allows" in rep["skipped"][0]["reason"]
    kg = KnowledgeGraph.open(tmp_path / "out")
    titles = {r["l"] for r in kg.sparql("SELECT ?l WHERE { ?e rdfs:label ?l }")}
    site = Site(SiteInfo())
    assert {site.normalize(f"Title {c}") for c in legal} <= titles
    targets = {t["t"] for t in kg.sparql("SELECT ?t WHERE { res:Main kgx:wikiLink ?t }")}
    # A noncharacter in wikitext reads as U+FFFD (the scanner uses them internally).
    assert targets == {kg.namespace + "resource/" + iri_escape(site.normalize(
        "Target " + ("\ufffd" if c == "\ufdd0" else c)).replace(" ", "_")) for c in legal}
    assert all(t.startswith(kg.namespace + "resource/Target") for t in targets)


def test_every_code_point_escapes_to_an_iri_the_store_accepts() -> None:
    import pyoxigraph as ox

    refused = []
    for cp in range(0x110000):
        try:
            ox.NamedNode("http://x/a" + iri_escape(chr(cp)))
        except ValueError:
            refused.append(hex(cp))
    assert refused == []


def test_a_line_the_store_refuses_costs_that_line(tmp_path: Path) -> None:
    graph = tmp_path / "graph.nq"
    graph.write_text('<http://x/a> <http://x/p> "1" <http://x/g> .\n'
                     '<http://x/b\ufffe> <http://x/p> "2" <http://x/g> .\n'
                     '<http://x/c> <http://x/p> "3" <http://x/g> .\n', encoding="utf-8")
    loaded = load_store(graph, tmp_path / "store")
    assert loaded.refused == 1 and "graph.nq line 2" in loaded.examples[0]
    import pyoxigraph as ox

    assert len(ox.Store.read_only(str(tmp_path / "store"))) == 2


def test_chunks_loaded_in_parallel_make_the_same_store(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small chunks, three at a time, with bad lines in two of them: the store holds
    what one thread loads, and the refused lines are reported in file order."""
    import pyoxigraph as ox

    import kgx.structure.extract
    from kgx.rdf.store import add_to_store

    lines = [f'<http://x/s{i}> <http://x/p> "{i}" <http://x/g{i % 3}> .\n' for i in range(400)]
    lines[57] = '<http://x/bad\ufffe> <http://x/p> "x" <http://x/g> .\n'
    lines[311] = '<http://x/s311> <http://x/p> "unterminated <http://x/g> .\n'
    graph = tmp_path / "graph.nq"
    graph.write_text("".join(lines), encoding="utf-8")
    import kgx.rdf.store
    monkeypatch.setattr(kgx.rdf.store, "LOAD_CHUNK_BYTES", 600)  # about 10 lines a chunk
    stores = {}
    for threads in (1, 3):
        store = ox.Store(str(tmp_path / f"store{threads}"))
        loaded = add_to_store(store, graph, threads=threads)
        assert loaded.refused == 2
        assert ["line 58" in loaded.examples[0], "line 312" in loaded.examples[1]] == [True] * 2
        stores[threads] = sorted(map(str, store))
    assert len(stores[1]) == 398 and stores[1] == stores[3]


@pytest.mark.parametrize("bad, reason", [
    (page("abc", "A"), "page <id> is 'abc', expected an integer"),
    (page("5", "A", ns="main"), "<ns> is 'main', expected an integer"),
    (page("5", "A", rev="1.5"), "revision <id> is '1.5', expected an integer"),
    (page(str(1 << 63), "A"), f"page <id> {1 << 63} is out of range"),
    (page("-3", "A"), "page <id> -3 is out of range"),
    (page("5", "   "), "empty <title>"),
])
def test_fields_of_the_wrong_type_skip_their_page(tmp_path: Path, bad: str, reason: str) -> None:
    site = SITEINFO.replace('<namespace key="6"', '<namespace key="six"')
    dump = raw_dump(tmp_path, [page("1", "Before"), bad, page("2", "After")], site)
    rep = extract_report(dump, tmp_path / "out")
    assert rep["finished"] is True and rep["error"] is None
    assert rep["pages"]["article"] == 2 and rep["pages"]["skipped"] == 1
    skipped = rep["skipped"][0]["reason"]
    assert reason in skipped and "line " in skipped, skipped


def test_bad_fields_in_a_multistream_dump_name_the_stream(tmp_path: Path) -> None:
    import bz2

    from kgx.dump.multistream import Stream, iter_stream_pages

    data = bz2.compress(page("x1", "A").encode() + page("2", "B").encode())
    path = tmp_path / "d.xml.bz2"
    path.write_bytes(b"\0" * 10 + data)
    pages = iter_stream_pages(path, Stream(0, 10, None, (0, 2), ("A", "B")))
    assert "the bz2 stream at byte 10" in (pages[0].problem or "")
    assert pages[1].problem is None and pages[1].id == 2


def test_a_number_of_thousands_of_digits_keeps_its_article() -> None:
    ctx = Context(Site(SiteInfo()), load_mappings(), Limits(page_timeout=0))
    text = "{{Infobox country\n| population_estimate = " + "9" * 5000 + "\n| capital = [[X]]\n}}"
    res = process_page(Page(1, 0, "Land", text, 1), ctx)
    assert res.kind == "article" and res.reason is None
    assert not any("9" * 200 in line for line in res.lines)


def test_duplicate_page_ids_keep_the_later_revision(tmp_path: Path) -> None:
    dump = raw_dump(tmp_path, [page("7", "Newer", "New.", rev="900"),
                               page("8", "Other", "Other."),
                               page("7", "Older", "Old.", rev="100")])
    rep = extract_report(dump, tmp_path / "out")
    assert rep["pages"]["duplicate-id"] == 1
    assert rep["duplicates"] == [{"id": 7, "kept": {"title": "Newer", "revision": 900},
                                  "dropped": {"title": "Older", "revision": 100}}]
    kg = KnowledgeGraph.open(tmp_path / "out")
    labels = {r["l"] for r in kg.sparql(
        "SELECT ?l WHERE { GRAPH ?g { ?e rdfs:label ?l } ?g kgx:pageId 7 }")}
    assert labels == {"Newer"}
    assert kg.sparql("ASK { res:Other rdfs:label ?l }")


def test_an_invalid_namespace_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    dump = raw_dump(tmp_path, [page("1", "A")])
    with pytest.raises(ValueError, match="not an absolute http"):
        extract(dump, tmp_path / "out", ExtractOptions(workers=0, namespace="https://x/a b/"))
    assert not (tmp_path / "out").exists()


# Each shape made the scanner quadratic in kgx 0.1 (seconds at 1x, minutes at 8x).
SHAPES = {
    "unclosed external link": lambda n: "[http://x" + " " * n,
    "unclosed heading": lambda n: "=a" + " " * n + "b",
    "link target of spaces": lambda n: "[[" + " " * n + "a|]]",
    "link target of parentheses": lambda n: "[[" + "(" * n + "|]]",
    "one long word in an infobox": lambda n: "{{Infobox company\n| website = " + "x" * n
                                             + "\n| founded = " + "1" * n + "\n}}",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_scanner_time_is_linear_in_the_input(shape: str) -> None:
    """Benchmark-style: 8x the input must cost far less than the 64x a quadratic step costs.

    The bound (24x) is generous for noise; absolute times are not asserted.
    """
    ctx = Context(Site(SiteInfo()), load_mappings(), Limits(page_timeout=0))
    make = SHAPES[shape]
    small, large = best_page_seconds(make(5_000), ctx), best_page_seconds(make(40_000), ctx)
    assert large < 24 * max(small, 1e-4), (shape, small, large)


# --------------------------------------------------------------------------- round two: dumps


def history_page(pid: int, title: str, revisions: list[tuple[str, str]]) -> str:
    """A page of a pages-meta-history export: (timestamp, text) per revision, in file order."""
    revs = "".join(f"<revision><id>{pid * 1000 + k}</id><timestamp>{ts}</timestamp>"
                   f"<text>{escape(text)}</text></revision>"
                   for k, (ts, text) in enumerate(revisions))
    return f"<page><title>{escape(title)}</title><ns>0</ns><id>{pid}</id>{revs}</page>\n"


def test_a_history_dump_keeps_each_pages_newest_revision(tmp_path: Path) -> None:
    """By timestamp, not by place in the file: an export may list revisions newest first."""
    from kgx.dump.reader import DumpReader

    dump = raw_dump(tmp_path, [
        history_page(1, "Descending", [("2020-05-01T00:00:00Z", "Newest [[Kabul]]."),
                                       ("2019-01-01T00:00:00Z", "Older [[Paris]]."),
                                       ("2010-01-01T00:00:00Z", "Oldest [[Rome]].")]),
        history_page(2, "Ascending", [("2001-01-01T00:00:00Z", "First."),
                                      ("2002-01-01T00:00:00Z", "Last [[Ulm]].")]),
    ])
    pages = {p.title: p for p in DumpReader(dump)}
    assert pages["Descending"].text == "Newest [[Kabul]]." and \
        pages["Descending"].revisions_skipped == 2
    assert pages["Ascending"].text == "Last [[Ulm]]." and pages["Ascending"].revisions_skipped == 1
    assert pages["Descending"].revision_id == 1000
    rep = extract_report(dump, tmp_path / "out")
    assert rep["revisions_skipped"] == 3
    graph = (tmp_path / "out" / "graph.nq").read_text("utf-8")
    assert "/Kabul>" in graph and "/Paris>" not in graph and "/Rome>" not in graph


# The reader's own peak (VmHWM: ru_maxrss would carry the test process's peak across exec).
MEMORY = """
import re, sys
from kgx.dump.reader import DumpReader
n = sum(len(p.text) for p in DumpReader(sys.argv[1]))
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+)", status).group(1)) // 1024, n)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
def test_a_history_dump_is_read_in_memory_that_does_not_grow_with_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    text = "Revision text with a [[Link]]. " * 2000  # 62 KB a revision
    peaks = []
    for n in (150, 300):  # 9 and 19 MB of XML, one page
        dump = raw_dump(tmp_path, [history_page(1, "Long", [
            (f"20{k // 1000:02d}-01-01T00:{k // 60 % 60:02d}:{k % 60:02d}Z", text)
            for k in range(n)])])
        out = subprocess.run([sys.executable, "-c", MEMORY, str(dump)], capture_output=True,
                             text=True, check=True)
        peak, chars = map(int, out.stdout.split())
        assert chars == len(text)
        peaks.append(peak)
    assert peaks[1] - peaks[0] < 10, peaks  # MB: flat, not 10 MB per 10 MB of revisions


JA_SITEINFO = """<siteinfo><sitename>ウィキペディア</sitename><dbname>jawiki</dbname>
<base>https://ja.wikipedia.org/wiki/メインページ</base><case>first-letter</case>
<namespaces><namespace key="0" case="first-letter" />
<namespace key="6" case="first-letter">ファイル</namespace>
<namespace key="10" case="first-letter">Template</namespace>
<namespace key="14" case="first-letter">Category</namespace></namespaces></siteinfo>
"""


def test_a_japanese_wiki_s_own_markers_and_aliases(tmp_path: Path) -> None:
    """{{aimai}} and the wiki's disambiguation category mark a disambiguation page; 画像: and
    分類: are the file and category namespaces, not articles."""
    dump = raw_dump(tmp_path, [
        page("1", "メルクリウス",
             "'''メルクリウス'''\n* [[水星]]\n* [[メルクリウス (神)]]\n{{aimai}}"),
        page("2", "マーキュリー", "* [[水星]]\n[[Category:曖昧さ回避]]"),
        page("3", "水星", "'''水星'''は惑星。[[画像:Mercury.jpg|thumb]] [[分類:惑星]] [[東京]]"),
    ], JA_SITEINFO, lang="ja")
    rep = extract_report(dump, tmp_path / "out")
    assert rep["pages"]["disambiguation"] == 2 and rep["pages"]["article"] == 1
    graph = (tmp_path / "out" / "graph.nq").read_text("utf-8")
    assert "画像" not in graph and "分類" not in graph
    assert "/resource/Category:惑星>" in graph and "/resource/東京>" in graph


def test_category_pages_give_the_category_tree(tmp_path: Path) -> None:
    dump = raw_dump(tmp_path, [
        page("1", "Category:Physicists", "Physicists. [[Category:Scientists]] "
             "[[Category:People by occupation]]", ns="14"),
        page("2", "Category:Scientists", "[[Category:People by occupation]]", ns="14"),
        page("3", "Albert Einstein", "'''Einstein''' was a physicist. [[Category:Physicists]]"),
    ])
    rep = extract_report(dump, tmp_path / "out")
    assert rep["pages"]["category"] == 2 and rep["triples"]["category"] > 0
    kg = KnowledgeGraph.open(tmp_path / "out")
    broader = kg.sparql("SELECT ?a ?b WHERE { ?a skos:broader ?b } ORDER BY ?a ?b")
    tail = [(r["a"].rsplit("/", 1)[1], r["b"].rsplit("/", 1)[1]) for r in broader]
    assert tail == [("Category:Physicists", "Category:People_by_occupation"),
                    ("Category:Physicists", "Category:Scientists"),
                    ("Category:Scientists", "Category:People_by_occupation")]
    assert kg.sparql("ASK { res:Category:Physicists a kgx:Category ; rdfs:label 'Physicists'@en }")


def test_a_dump_without_dbname_gets_the_wikis_namespace(tmp_path: Path) -> None:
    from kgx.dump.reader import dbname_from_base

    assert dbname_from_base("http://en.wikipedia.org/wiki/Main_Page") == "enwiki"
    assert dbname_from_base("https://zh-min-nan.wikipedia.org/wiki/") == "zh_min_nanwiki"
    assert dbname_from_base("https://commons.wikimedia.org/wiki/Main_Page") == "commonswiki"
    assert dbname_from_base("https://en.m.wikipedia.org/wiki/X") == "enwiki"
    assert dbname_from_base("https://wiki.example.org/wiki/Main") == ""
    old = SITEINFO.replace("<dbname>enwiki</dbname>", "")
    assert old != SITEINFO
    rep = extract_report(raw_dump(tmp_path, [page("1", "A", "[[B]]")], old), tmp_path / "out")
    assert rep["site"]["namespace"] == "https://kgx.dev/enwiki/"
