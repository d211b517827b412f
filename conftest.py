"""Fixtures the README's examples need, for its doctests and for tests/test_readme.py."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent / "data" / "enwiki-2016-excerpt.xml.bz2"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the bundled MiniLM's tokenizer (no download)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from kgx.model.network import resolve_base_model

    d = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolve_base_model("minilm"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def readme_out(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """The whole pipeline over the sample into ``.../out`` (the README reads ``out/``).

    The reader is fine-tuned from a tiny random BERT on few sentences and reads a few hundred
    sentences, so that the suite stays fast: the machinery is the README's, the model's
    quality is not (benchmarks measure that).
    """
    from kgx.stages.pipeline import PipelineOptions, run
    from kgx.structure.extract import ExtractOptions

    out = tmp_path_factory.mktemp("readme") / "out"
    run(SAMPLE, out, PipelineOptions(
        extract=ExtractOptions(workers=2, progress=False), base_model=str(tiny_bert),
        train_sentences=200, train_epochs=1, read_sentences=300, progress=False),
        log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def real_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The graph the README's first command builds (``kgx extract SAMPLE -o out/`` with its
    defaults: the real reader, trained as a user's is): ``$KGX_README_OUT`` when set (CI
    builds it once, as the README says), else built here, which takes minutes. What the README
    prints is checked against this graph, so the docs show what a user gets."""
    import os
    import subprocess
    import sys

    given = os.environ.get("KGX_README_OUT")
    if given:
        out = Path(given).resolve()
        if not (out / "report.json").exists():
            raise RuntimeError(f"KGX_README_OUT={given}: no kgx output folder there")
        return out
    out = tmp_path_factory.mktemp("real") / "out"
    subprocess.run([sys.executable, "-m", "kgx", "extract", str(SAMPLE), "-o", str(out),
                    "--no-progress"], check=True, cwd=SAMPLE.parent.parent)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The examples of the README and the docs run against the real graph (:func:`real_out`):
    slow tests."""
    for item in items:
        if str(getattr(item, "fspath", "")).endswith(".md"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _readme_doctest_cwd(request: pytest.FixtureRequest) -> None:
    """The doctests of the README and the docs open ``out/``: run them where the README's
    graph is."""
    if request.node.__class__.__name__ == "DoctestItem" and \
            str(request.node.fspath).endswith(".md"):
        out = request.getfixturevalue("real_out")
        request.getfixturevalue("monkeypatch").chdir(out.parent)
