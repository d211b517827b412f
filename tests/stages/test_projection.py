"""The dump-scale benchmark's projection by page size (``benchmarks/bench_scale.py``)."""

from __future__ import annotations

import importlib
import sys

import pytest

from tests.support import ROOT

BENCH = ROOT / "benchmarks"


@pytest.fixture()
def bench_scale(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.syspath_prepend(str(BENCH))
    yield importlib.import_module("bench_scale")
    sys.modules.pop("bench_scale", None)


def test_the_sample_counted_by_page_size_is_worth_itself(bench_scale, monkeypatch) -> None:
    """Fitted on the sample and applied to a 'dump' with the sample's own counts, the model
    must give back the sample: factors of 1 (least squares with an intercept leaves no total
    residual; the model counts every byte as an article's, so the 'dump' has the articles').
    A dump of twice every count is worth the same share, and one of the same pages at a
    tenth of the bytes is worth less in time and in quads."""
    from kgx.dump.reader import DumpReader

    pages = list(DumpReader(bench_scale.SAMPLE))
    redirects = sum(1 for p in pages if p.redirect is not None)
    text = sum(len((p.text or "").encode()) for p in pages if p.redirect is None)
    own = {"pages": len(pages), "redirects": redirects, "xml_bytes": text}
    monkeypatch.setattr(bench_scale, "ENWIKI", bench_scale.ENWIKI | own)
    size = bench_scale.page_size_model(repeats=1)
    assert size["time_factor"] == pytest.approx(1.0, rel=1e-6)
    assert size["quads_factor"] == pytest.approx(1.0, rel=1e-6)
    assert size["redirect_us"] < size["article_us"] + size["article_us_per_kb"]

    doubled = {k: 2 * v for k, v in own.items()}
    monkeypatch.setattr(bench_scale, "ENWIKI", bench_scale.ENWIKI | doubled)
    size = bench_scale.page_size_model(repeats=1)
    assert size["time_factor"] == pytest.approx(1.0, rel=1e-6)
    assert size["quads_factor"] == pytest.approx(1.0, rel=1e-6)

    thin = own | {"xml_bytes": text // 10}
    monkeypatch.setattr(bench_scale, "ENWIKI", bench_scale.ENWIKI | thin)
    size = bench_scale.page_size_model(repeats=1)
    assert size["time_factor"] < 0.5 and size["quads_factor"] < 0.5
