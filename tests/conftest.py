"""Shared fixtures: the real dumps in ../shared/data and small dumps written on the fly."""

from __future__ import annotations

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
