"""Fixtures the README's examples need, for its doctests and for tests/test_readme.py."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent / "data" / "enwiki-2016-excerpt.xml.bz2"


@pytest.fixture(scope="session")
def readme_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample extracted into ``.../out`` (the README's examples read ``out/``)."""
    from kgx.extract import ExtractOptions, extract

    out = tmp_path_factory.mktemp("readme") / "out"
    extract(SAMPLE, out, ExtractOptions(workers=2, progress=False))
    return out


@pytest.fixture(autouse=True)
def _readme_doctest_cwd(request: pytest.FixtureRequest) -> None:
    """README doctests open ``out/``: run them where the sample graph is."""
    if request.node.__class__.__name__ == "DoctestItem" and \
            str(request.node.fspath).endswith("README.md"):
        out = request.getfixturevalue("readme_out")
        request.getfixturevalue("monkeypatch").chdir(out.parent)
