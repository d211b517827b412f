"""Fine-tuning: the draw, the loss, sources and their errors, the decoder and the temperature
chosen on dev."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import docred_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.corpus.datasets import DataError  # noqa: E402
from kgx.corpus.rows import read_split  # noqa: E402
from kgx.model.evaluate import evaluate  # noqa: E402
from kgx.model.predictor import Predictor  # noqa: E402
from kgx.model.train import TrainOptions, train  # noqa: E402


def test_the_training_draw_reads_only_what_it_trains_on(sample_corpus: Path,
                                                        monkeypatch) -> None:
    """A capped draw keeps every relation row first, caps the mention-free share, and reads
    only its own rows from the corpus (not a pass over all of it)."""
    import random

    import kgx.corpus.rows
    import kgx.model.train
    from kgx.corpus.rows import row_kind, training_offsets
    from kgx.model.sources import load_training_data, plan_sample

    counts = [len(a) for a in training_offsets(sample_corpus)]
    opened: list[int] = []

    def read_rows_at(path, offsets):
        rows = kgx.corpus.rows.read_rows_at(path, offsets)
        opened.append(len(rows))
        return rows

    def iter_split(path):
        assert path.name != "train.jsonl", "the draw streamed the whole training split"
        return kgx.corpus.rows.iter_split(path)

    import kgx.model.sources
    monkeypatch.setattr(kgx.model.sources, "read_rows_at", read_rows_at)
    monkeypatch.setattr(kgx.model.sources, "iter_split", iter_split)
    limit = counts[0] + 50
    train_rows, *_ = load_training_data(sample_corpus, limit=limit, max_empty_share=0.3,
                                        rng=random.Random(1), max_eval=10)
    assert opened == [limit] and len(train_rows) == limit
    kinds = [row_kind(r) for r in train_rows]
    assert kinds.count(0) == counts[0]  # every relation row
    assert kinds.count(2) == limit - max(counts[0], int(limit * 0.7))
    assert len({json.dumps(r, sort_keys=True) for r in train_rows}) == limit  # no repeats
    # uncapped: everything with mentions, and 30% of the result without
    plan = plan_sample([3, 5, 100], None, 0.3, random.Random(0))
    assert sorted(k for k, _ in plan) == [0] * 3 + [1] * 5 + [2] * 3
    assert len(set(plan)) == len(plan)


def test_training_lowers_the_loss_and_saves_hf_layout(tiny_model) -> None:
    out, res = tiny_model
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "kgx.json", "README.md"):
        assert (out / f).exists(), f
    meta = json.loads((out / "kgx.json").read_text())
    assert meta["ontology_version"] and meta["corpus_stats"]["sentences"]
    assert meta["relation_labels"][0] == "NA" and "dev" in meta and "test" in meta
    assert meta["relation_wikidata"].get("birthPlace") == "P19"
    # after the first epoch the tagger read the links to untyped pages (kgx.model.link_typing)
    typing = meta["training"]["link_typing"]
    assert typing["links"] > 0 and typing["targets"] > 0
    assert typing["mentions_added"] >= sum(typing["typed"].values())
    # transformers loads encoder + tagger from the directory as it is
    from transformers import AutoModelForTokenClassification

    hf = AutoModelForTokenClassification.from_pretrained(out)
    assert hf.config.id2label[0] == "O" and hf.num_labels == len(meta["entity_labels"]) * 2 + 1


def test_training_errors(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no train.jsonl"):
        train(tmp_path / "c", tmp_path / "m", TrainOptions(base_model=str(tiny_bert)))
    for s in ("train", "dev"):
        (tmp_path / "c" / f"{s}.jsonl").write_text(
            json.dumps({"text": "no entities here", "mentions": []}) + "\n")
    with pytest.raises(DataError, match="no labelled mentions"):
        train(tmp_path / "c", tmp_path / "m", TrainOptions(base_model=str(tiny_bert)))


def test_conll_training(tiny_bert: Path, tmp_path: Path) -> None:
    lines = []
    for i in range(30):
        lines += [f"Person{i} B-PER", "visited O", f"Town{i} B-LOC", ". O", ""]
    f = tmp_path / "train.conll"
    f.write_text("\n".join(lines), encoding="utf-8")
    res = train(f, tmp_path / "m", TrainOptions(base_model=str(tiny_bert), epochs=1),
                log=lambda m: None)
    assert res.train_sentences == 27
    meta = json.loads((tmp_path / "m" / "kgx.json").read_text())
    assert meta["entity_labels"] == ["LOC", "PER"] and meta["relation_labels"] == ["NA"]


@pytest.mark.slow
def test_real_encoder_loss_falls(sample_corpus: Path, tmp_path: Path) -> None:
    """Fine-tunes the packaged MiniLM for a few steps (slow: run with -m slow)."""
    res = train(sample_corpus, tmp_path / "m", TrainOptions(
        epochs=3, patience=10, max_train_sentences=96, max_eval_sentences=32, batch_size=16),
        log=lambda m: None)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]


def test_training_keeps_the_decoder_that_scores_better_on_dev(tiny_model) -> None:
    from kgx.model.calibration import PRIOR_WEIGHTS

    out, _ = tiny_model
    meta = json.loads((out / "kgx.json").read_text())
    f1 = meta["tag_decoder_dev_f1"]
    assert len(f1) == 1 + len(PRIOR_WEIGHTS) and "argmax" in f1
    assert f1[meta["tag_decoder"]] == max(f1.values())
    viterbi = meta["tag_decoder"] != "argmax"
    assert ("tag_transitions" in meta) == viterbi
    assert "Infinity" not in (out / "kgx.json").read_text()  # strict JSON
    assert meta["dev"]["entities"]["micro"]["f1"] == f1[meta["tag_decoder"]]
    p = Predictor.load(out, device="cpu")
    assert (p.transitions is not None) == viterbi
    if viterbi:  # BIO forbids an I- tag at the start: saved as null, loaded as -inf
        assert None in meta["tag_transitions"][0]
        assert float("-inf") in p.transitions[0].tolist()


def test_relation_scores_are_scaled_by_a_temperature_fitted_on_dev(tiny_model,
                                                                   sample_corpus: Path) -> None:
    from kgx.model.calibration import TEMPERATURES

    out, _ = tiny_model
    meta = json.loads((out / "kgx.json").read_text())
    t = meta["relation_temperature"]
    cal = meta["relation_calibration"]
    assert t in TEMPERATURES and 0 < cal["positives"] < cal["examples"]
    assert cal["log_loss_after"] <= cal["log_loss_before"]
    # the temperature changes the scores, never which side of 0.5 they fall on
    rows = [r for r in read_split(sample_corpus / "dev.jsonl") if len(r["mentions"]) > 1][:20]
    fitted = Predictor.load(out, device="cpu")
    plain = Predictor.load(out, device="cpu")
    plain.relation_temperature = 1.0
    fitted.relation_threshold = plain.relation_threshold = 0.0  # every label, with its score
    for r in rows:
        spans = [(m["start"], m["end"]) for m in r["mentions"]]
        pairs = [(0, 1), (1, 0)]
        a, b = fitted.classify_pairs(r["text"], spans, pairs), plain.classify_pairs(
            r["text"], spans, pairs)
        for x, y in zip(a, b, strict=True):
            assert [lab for lab, _ in sorted(x)] == [lab for lab, _ in sorted(y)]
            for (_, sx), (_, sy) in zip(sorted(x), sorted(y), strict=True):
                assert (sx >= 0.5) == (sy >= 0.5)
                if t != 1.0 and abs(sy - 0.5) > 1e-3:
                    assert sx != sy


def test_sources_are_mixed_by_weight_and_scored_each(tiny_bert: Path, sample_corpus: Path,
                                                     tmp_path: Path) -> None:
    conll = tmp_path / "gold.conll"
    lines = []
    for i in range(20):
        lines += [f"Person{i} B-PER", "founded O", f"Firm{i} B-CORP", ". O", ""]
    conll.write_text("\n".join(lines), encoding="utf-8")
    docred = docred_file(tmp_path / "redocred.json", 30)
    out = tmp_path / "m"
    res = train([sample_corpus, f"{conll}:2", f"{docred}:0.5"], out, TrainOptions(
        base_model=str(tiny_bert), epochs=1, max_train_sentences=40, max_eval_sentences=20),
        log=lambda m: None)
    meta = json.loads((out / "kgx.json").read_text())
    src = {s["name"]: s for s in meta["sources"]}
    assert [s["format"] for s in meta["sources"]] == ["corpus", "conll", "docred"]
    assert src["gold.conll"]["rows_per_epoch"] == 2 * src["gold.conll"]["rows_drawn"] == 36
    assert src["redocred.json"]["rows_per_epoch"] == round(src["redocred.json"]["rows_drawn"] / 2)
    assert src["redocred.json"]["stats"] == {"source": str(docred), "documents": 30,
                                             "relations": 120}
    assert res.train_sentences == sum(s["rows_per_epoch"] for s in meta["sources"])
    # the label set is the union; Wikidata ids mapped onto kgx, unaligned ones kept
    assert {"CORP", "PER", "LOC"} <= set(meta["entity_labels"])
    assert {"birthPlace", "P361"} <= set(meta["relation_labels"])
    assert meta["relation_wikidata"]["P361"] == "P361"
    assert set(meta["dev_by_source"]) == {sample_corpus.name, "gold.conll", "redocred.json"}
    assert all("entities" in s for s in meta["dev_by_source"].values())
    assert "relations" in meta["dev_by_source"]["redocred.json"]
    card = (out / "README.md").read_text()
    assert f"`{docred}` | docred | 0.5 |" in card and "dev of gold.conll" in card
    # kgx evaluate scores the bare id the gold set taught
    assert "P361" in evaluate(out, docred, limit=3)["covered_properties"]


def test_bad_sources_fail_before_training(tiny_bert: Path, sample_corpus: Path,
                                          tmp_path: Path) -> None:
    from kgx.corpus.datasets import parse_source

    conll = tmp_path / "gold.conll"
    conll.write_text("Paris B-LOC\nis O\n", encoding="utf-8")
    opts = TrainOptions(base_model=str(tiny_bert), epochs=1)
    for w in ("0", "-1", "abc", "nan", "inf"):
        with pytest.raises(DataError, match=rf"gold\.conll:{w}: the weight .* positive number"):
            train([sample_corpus, f"{conll}:{w}"], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()
    assert parse_source(f"{conll}:2.5").weight == 2.5 and parse_source(conll).weight == 1.0
    odd = tmp_path / "a:3"  # a path that exists as written is never split
    odd.write_text("x B-PER\n", encoding="utf-8")
    assert parse_source(str(odd)).path == odd and parse_source(str(odd)).weight == 1.0
    unlabelled = tmp_path / "plain.conll"
    unlabelled.write_text("Nothing O\nhere O\n\nStill O\nnothing O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"plain\.conll: the training set has no labelled"):
        train([sample_corpus, unlabelled], tmp_path / "m", opts)
    bad = tmp_path / "broken.conll"
    bad.write_text("Paris B-LOC\nis\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.conll:2: expected"):
        train([sample_corpus, bad], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()


def test_a_broken_link_context_is_named_before_training(tiny_bert: Path, sample_corpus: Path,
                                                        tmp_path: Path) -> None:
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(sample_corpus, corpus)
    with open(corpus / "train.links.jsonl", "a", encoding="utf-8") as f:
        f.write('{"text": "cut short\n')
    with pytest.raises(DataError, match=r"train\.links\.jsonl: the line .*cut short"):
        train(corpus, tmp_path / "model", TrainOptions(
            base_model=str(tiny_bert), epochs=2, max_train_sentences=50,
            max_eval_sentences=20, link_typing_rows=100000), log=lambda m: None)
    assert not (tmp_path / "model").exists()  # stopped before any training
