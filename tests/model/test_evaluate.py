"""Scores on corpus, CoNLL and DocRED rows."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.model.evaluate import evaluate  # noqa: E402
from tests.support import SAMPLE  # noqa: E402


def test_evaluate_on_corpus_conll_and_docred(tiny_model, sample_corpus: Path,
                                             tmp_path: Path) -> None:
    out, _ = tiny_model
    res = evaluate(out, sample_corpus / "test.jsonl", limit=40)
    assert res["format"] == "corpus" and "micro" in res["entities"]
    conll = tmp_path / "x.conll"
    conll.write_text("-DOCSTART- O\n\nAlbert B-PER\nEinstein I-PER\nwas O\nborn O\nin O\n"
                     "Ulm B-LOC\n. O\n\nIt O\nrained O\n. O\n", encoding="utf-8")
    res = evaluate(out, conll)
    assert res["format"] == "conll" and res["entities"]["micro"]["support"] == 2
    docred = SAMPLE.parent.parent.parent / "shared" / "data" / "redocred" / "dev_revised.json"
    if docred.exists():
        res = evaluate(out, docred, limit=3)
        assert res["format"] == "docred" and "P19" in res["covered_properties"]
        assert res["gold_relations"] >= res["gold_relations_covered"] > 0


def test_evaluate_unknown_gold_types_are_flagged(tiny_model, tmp_path: Path) -> None:
    out, _ = tiny_model
    f = tmp_path / "x.conll"
    f.write_text("Paris B-CITY\nis O\nbig O\n", encoding="utf-8")
    res = evaluate(out, f)
    assert res["unknown_gold_types"] == ["CITY"] and "not in the model's label set" in res["note"]


def test_reliability_table() -> None:
    from kgx.model.evaluate import reliability

    table = reliability([0.55, 0.62, 0.95, 1.0, 0.81], [True, False, True, True, False])
    assert [b["predictions"] for b in table] == [1, 1, 0, 1, 2]
    assert table[-1] == {"from": 0.9, "to": 1.0, "predictions": 2, "precision": 1.0,
                         "mean_score": 0.975}
    assert table[2]["precision"] is None and table[3]["precision"] == 0.0
