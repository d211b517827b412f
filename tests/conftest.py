"""Shared fixtures: the sample as a multistream dump, small dumps written on the fly, a listener
that counts connections, a busy core, the silver corpus and a tiny model trained on it, short
articles for the resume tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SAMPLE, ConnectionCounter, dump_xml, page_xml


@pytest.fixture(scope="session")
def multistream_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample in Wikimedia's multistream layout (3 streams of pages + index)."""
    from kgx.dump.repack import repack

    dump = tmp_path_factory.mktemp("multistream") / "enwiki-2016-excerpt-multistream.xml.bz2"
    repack(SAMPLE, dump)
    return dump


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


@pytest.fixture
def listener():
    """A :class:`ConnectionCounter`: what kgx must never connect to."""
    c = ConnectionCounter()
    yield c
    c.close()


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


@pytest.fixture(scope="module")
def short_articles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wiki of 40 short linked articles: many small chunks for the read stage."""
    from tests.support import dump_xml, page_xml

    bold = "'" * 3
    pages = []
    for i in range(40):
        text = (f"{bold}Town {i}{bold} is a town in [[Region {i % 5}]] founded by "
                f"[[Ada Person {i % 7}]] in {1800 + i}. Town {i} lies on the "
                f"[[River {i % 3}|river]]. The mayor of Town {i} is Bob Smith.\n\n"
                f"Ada Person {i % 7} was born in [[Region {(i + 1) % 5}]].")
        pages.append(page_xml(i + 1, f"Town {i}", text))
    for j in range(5):
        pages.append(page_xml(100 + j, f"Region {j}", f"{bold}Region {j}{bold} is a region."))
    dump = tmp_path_factory.mktemp("short") / "short.xml"
    dump.write_text(dump_xml(pages), encoding="utf-8")
    return dump


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kgx.corpus.build import build_corpus
    from kgx.structure.extract import ExtractOptions, extract

    g = tmp_path_factory.mktemp("graph")
    extract(SAMPLE, g, ExtractOptions(workers=2, keep_documents=True, progress=False))
    out = tmp_path_factory.mktemp("corpus")
    # every infobox fact labels: the labelling is under test, not the held-out share
    build_corpus(g, out, held_out_share=0.0)
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_bert: Path, sample_corpus: Path, tmp_path_factory) -> tuple[Path, object]:
    from kgx.model.train import TrainOptions, train

    out = tmp_path_factory.mktemp("model")
    res = train(sample_corpus, out, TrainOptions(
        base_model=str(tiny_bert), epochs=4, patience=10, max_train_sentences=300,
        max_eval_sentences=60, learning_rate=1e-3, batch_size=16, link_typing_rows=400),
        log=lambda m: None)
    return out, res
