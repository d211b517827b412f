"""Dump reading: real dumps in every supported layout, and every kind of broken input."""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path

import pytest

from kgx.dump.multistream import find_index, iter_stream_pages, read_index
from kgx.dump.reader import DumpReader
from kgx.dump.sources import DumpError
from tests.support import SAMPLE, corrupt_middle_stream, real_dump


@pytest.mark.parametrize("name,pages,dbname,lang,first", [
    ("enwiki-2016-excerpt.xml.bz2", 206, "enwiki", "en", "AccessibleComputing"),
    ("enwiki-tables-excerpt.xml.bz2", 5, "", "en", "Constructive vote of no confidence"),
    ("bgwiki-utf16-excerpt.xml.bz2", 3, "bgwiki", "bg", "Григориански календар"),
    ("tinywiki.xml", 8, "tmp-wp", "ltg", "Hello"),
])
def test_real_dumps(name: str, pages: int, dbname: str, lang: str, first: str) -> None:
    reader = DumpReader(real_dump(name))
    got = list(reader)
    assert len(got) == pages
    assert got[0].title == first
    assert reader.site.dbname == dbname
    assert reader.site.lang == lang
    assert all(p.revision_id for p in got)


def test_multistream_index_matches_stream_contents(multistream_sample: Path) -> None:
    path = multistream_sample
    streams = read_index(find_index(path))
    assert len(streams) == 3
    pages = [p for s in streams for p in iter_stream_pages(path, s)]
    assert [p.id for p in pages] == [i for s in streams for i in s.page_ids]
    sequential = list(DumpReader(SAMPLE))
    assert [(p.id, p.title, p.text) for p in pages] == \
        [(p.id, p.title, p.text) for p in sequential]


def test_gzip_dump(tmp_path: Path) -> None:
    data = bz2.decompress(SAMPLE.read_bytes())
    path = tmp_path / "d.xml.gz"
    path.write_bytes(gzip.compress(data))
    assert len(list(DumpReader(path))) == 206


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DumpError, match=r"nope\.xml.*no such file.*\.xml\.bz2"):
        DumpReader(tmp_path / "nope.xml")


def test_unknown_format(tmp_path: Path) -> None:
    p = tmp_path / "d.zip"
    p.write_bytes(b"PK\x03\x04 not a dump")
    with pytest.raises(DumpError, match=r"d\.zip.*unknown format.*known formats: \.xml"):
        DumpReader(p)


def test_not_mediawiki_xml(tmp_path: Path) -> None:
    p = tmp_path / "d.xml"
    p.write_text("<html><body/></html>")
    with pytest.raises(DumpError, match="expected <mediawiki>"):
        DumpReader(p)


def test_truncated_bz2(tmp_path: Path) -> None:
    data = SAMPLE.read_bytes()
    p = tmp_path / "t.xml.bz2"
    p.write_bytes(data[: len(data) // 2])
    reader = DumpReader(p)
    with pytest.raises(DumpError, match=r"t\.xml\.bz2 at byte .*truncated"):
        list(reader)
    assert reader.pages_read > 0


def test_truncated_gzip(tmp_path: Path) -> None:
    p = tmp_path / "t.xml.gz"
    p.write_bytes(gzip.compress(bz2.decompress(SAMPLE.read_bytes()))[:400_000])
    with pytest.raises(DumpError, match=r"t\.xml\.gz at byte"):
        list(DumpReader(p))




def test_corrupted_stream_is_not_a_silent_end(tmp_path: Path, multistream_sample: Path) -> None:
    """Python's bz2 module would stop quietly here; kgx names the offset."""
    src = multistream_sample
    dst, off = corrupt_middle_stream(src, tmp_path)
    reader = DumpReader(dst)
    with pytest.raises(DumpError, match=f"at byte {off:,}.*corrupted bz2 stream"):
        list(reader)
    # The first stream holds 100 pages; the XML parser may not have emitted the last one.
    assert 95 <= reader.pages_read <= 100


def test_xml_broken_mid_file(tmp_path: Path) -> None:
    xml = bz2.decompress(SAMPLE.read_bytes())
    cut = xml.index(b"<page>", len(xml) // 2)
    p = tmp_path / "b.xml"
    p.write_bytes(xml[:cut] + b"<page><title>Broken</ti></page>" + xml[cut:])
    reader = DumpReader(p)
    with pytest.raises(DumpError, match=r"after page .*broken XML: Opening and ending tag") as err:
        list(reader)
    assert err.value.last_page is not None
    assert reader.pages_read > 50


def test_dump_cut_before_end_tag(tmp_path: Path) -> None:
    xml = bz2.decompress(SAMPLE.read_bytes())
    p = tmp_path / "c.xml"
    p.write_bytes(xml[: xml.rindex(b"</page>") + 7])
    with pytest.raises(DumpError, match=r"page .Algorithm.*(Premature end|before </mediawiki>)"):
        list(DumpReader(p))


def test_bad_index_line(tmp_path: Path) -> None:
    p = tmp_path / "x-multistream-index.txt"
    p.write_text("638:10:A\nnot an index line\n")
    with pytest.raises(DumpError, match="line 2: expected 'offset:page_id:title'"):
        read_index(p)
