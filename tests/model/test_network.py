"""The reader network: entity pooling, the adaptive threshold, the casing feature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.model.predictor import Predictor  # noqa: E402
from kgx.model.train import TrainOptions, train  # noqa: E402


def test_entity_pooling_and_adaptive_threshold_loss() -> None:
    from kgx.model.network import adaptive_threshold_loss, pool_entities

    m = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 0.0]])
    pooled = pool_entities(m, torch.tensor([1, 0, 1]))
    assert torch.allclose(pooled[0], m[1])
    assert torch.allclose(pooled[1], torch.logsumexp(m[[0, 2]], dim=0))
    # a pair whose gold relation beats the threshold (class 0), and an NA pair below it, cost
    # less than the same pairs the other way round
    good = torch.tensor([[0.0, 5.0, -5.0], [0.0, -5.0, -5.0]])
    bad = torch.tensor([[0.0, -5.0, -5.0], [0.0, 5.0, -5.0]])
    targets = torch.tensor([[0, 1, 0], [0, 0, 0]])
    assert adaptive_threshold_loss(good, targets) < 0.02 < 5 < adaptive_threshold_loss(bad,
                                                                                       targets)


def test_casing_lets_an_uncased_encoder_tell_apple_from_apple(tiny_bert: Path,
                                                              tmp_path: Path) -> None:
    """The bundled encoder's vocabulary is uncased: "Apple" and "apple" are the same ids, so
    only the word-shape feature can tell the company from the fruit."""
    lines = []
    for _ in range(24):
        lines += ["they O", "like O", "Apple B-ORG", ". O", ""]
        lines += ["they O", "like O", "apple O", ". O", ""]
    f = tmp_path / "apple.conll"
    f.write_text("\n".join(lines), encoding="utf-8")
    texts = ["they like Apple .", "they like apple ."]
    found = {}
    for casing in (False, True):
        out = tmp_path / f"m{casing}"
        train(f, out, TrainOptions(base_model=str(tiny_bert), epochs=12, patience=12,
                                   learning_rate=1e-3, batch_size=8, casing=casing),
              log=lambda m: None)
        p = Predictor.load(out, device="cpu")
        assert p.model.casing is casing
        found[casing] = [[(m.start, m.end, m.label) for m in pr.mentions]
                         for pr in p.predict(texts)]
        # the feature survives saving: the config says so and the loaded model uses it
        assert json.loads((out / "config.json").read_text())["kgx_casing"] is casing
    assert found[False][0] == found[False][1]  # the same input ids, the same answer
    assert found[True] == [[(10, 15, "ORG")], []]
