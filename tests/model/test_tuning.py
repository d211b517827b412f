"""``--tuning``: full, top:K and LoRA fine-tuning, each saved, named and loaded; bad values
refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from kgx.cli import app
from kgx.model.network import ADAPTER, WEIGHTS, load_model
from kgx.model.predictor import Predictor
from kgx.model.train import TrainOptions, train
from kgx.model.tuning import Tuning, TuningError, parse_tuning
from tests.support import person_town_conll

SENTENCES = ["Person3 visited Town3 .", "Person7 visited Town12 ."]


def quick(base: Path, tuning: str) -> TrainOptions:
    return TrainOptions(base_model=str(base), tuning=tuning, epochs=2, patience=5,
                        learning_rate=1e-3, link_typing_rows=0)


@pytest.mark.parametrize(("spec", "want"), [
    ("full", Tuning()), ("top:2", Tuning("top", layers=2)), ("lora", Tuning("lora", rank=8)),
    ("LoRA:16", Tuning("lora", rank=16))])
def test_the_three_ways_parse(spec: str, want: Tuning) -> None:
    assert parse_tuning(spec) == want
    assert parse_tuning(str(want)) == want


@pytest.mark.parametrize(("spec", "says"), [
    ("top:0", "at least 1"), ("lora:0", "at least 1"), ("top:x", "whole number"),
    ("half", "expected one of full, top:K, lora[:R]"), ("full:3", "expected one of")])
def test_a_bad_tuning_is_refused(spec: str, says: str) -> None:
    with pytest.raises(TuningError, match=says.replace("[", r"\[").replace("]", r"\]")):
        parse_tuning(spec)


def test_a_bad_tuning_stops_kgx_train_before_any_work(tmp_path: Path, tiny_bert: Path) -> None:
    data = person_town_conll(tmp_path)
    res = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "m"),
                                   "--base-model", str(tiny_bert), "--tuning", "lora:0"])
    assert res.exit_code == 2 and "the rank must be a whole number" in res.output
    res = CliRunner().invoke(app, ["train", str(data), "-o", str(tmp_path / "m"),
                                   "--base-model", str(tiny_bert), "--tuning", "top:3"])
    assert res.exit_code == 2
    assert "has 2 layers; choose top:1 to top:2" in res.output
    assert not (tmp_path / "m").exists()


def test_top_k_trains_only_the_top_layers(tmp_path: Path, tiny_bert: Path) -> None:
    train(person_town_conll(tmp_path), tmp_path / "m", quick(tiny_bert, "top:1"),
          log=lambda m: None)
    before = load_file(str(tiny_bert / "model.safetensors"))
    after = load_file(str(tmp_path / "m" / WEIGHTS))
    changed = {k.split(".")[2] if k.startswith("encoder.layer.") else k.split(".")[0]
               for k, v in before.items() if f"bert.{k}" in after
               and not torch.equal(v, after[f"bert.{k}"])}
    assert changed == {"1"}, changed  # layer 1 of 0..1 learned; layer 0, embeddings did not
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["kgx_tuning"] == "top:1"
    card = (tmp_path / "m" / "README.md").read_text()
    assert "Fine-tuning `top:1`: the top 1 encoder layer(s) and the heads learned" in card


def test_lora_saves_the_adapter_and_heads_and_loads_merged(tmp_path: Path,
                                                           tiny_bert: Path) -> None:
    full = tmp_path / "full"
    train(person_town_conll(tmp_path), full, quick(tiny_bert, "full"), log=lambda m: None)
    lora = tmp_path / "lora"
    train(person_town_conll(tmp_path), lora, quick(tiny_bert, "lora:4"), log=lambda m: None)
    state = load_file(str(lora / WEIGHTS))
    adapter = [k for k in state if k.startswith(ADAPTER)]
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)
    assert not any(k.startswith("bert.") for k in state)  # no pre-trained weight saved
    assert (lora / WEIGHTS).stat().st_size < (full / WEIGHTS).stat().st_size / 2
    cfg = json.loads((lora / "config.json").read_text())
    assert cfg["kgx_tuning"] == "lora:4" and cfg["kgx_base_model"] == str(tiny_bert)
    assert not cfg.get("architectures")  # transformers alone cannot load it
    # loaded: the adapter merged into the base encoder, read like any model
    model, _, _ = load_model(lora, torch.device("cpu"))
    assert model.tuning == "lora:4"
    merged = model.encoder.state_dict()
    base = load_file(str(tiny_bert / "model.safetensors"))
    name = "encoder.layer.1.attention.self.query"
    a_ = state[f"{ADAPTER}{name}.lora_A.weight"]
    b_ = state[f"{ADAPTER}{name}.lora_B.weight"]
    assert b_.abs().sum() > 0  # the adapter learned
    # merged weight = pre-trained + B A * alpha / r (alpha = 2 r)
    assert torch.allclose(merged[f"{name}.base_layer.weight"],
                          base[f"{name}.weight"] + 2.0 * b_ @ a_, atol=1e-6)
    assert Predictor.load(lora, device="cpu").predict(SENTENCES)


def test_a_lora_model_without_its_base_encoder_says_what_is_missing(tmp_path: Path,
                                                                    tiny_bert: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(tiny_bert, base)
    train(person_town_conll(tmp_path), tmp_path / "lora", quick(base, "lora:2"),
          log=lambda m: None)
    shutil.rmtree(base)
    with pytest.raises(FileNotFoundError, match="needs its base encoder") as err:
        load_model(tmp_path / "lora", torch.device("cpu"))
    assert str(base) in str(err.value)
