"""Training resumes from its last checkpoint after a kill -9, to the same model; a damaged
checkpoint, changed options and a full disk are each handled and said."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import kgx.model.checkpoints as checkpoints
from kgx.model.checkpoints import CHECKPOINT_DIR
from kgx.model.network import WEIGHTS
from kgx.model.train import TrainOptions, train
from tests.support import person_town_conll

# Training in a child, each optimiser step slowed down (the arithmetic untouched), so that the
# test can kill it -9 half way.
CHILD = """
import sys, time, torch
from kgx.model.train import TrainOptions, train
_step = torch.optim.AdamW.step
def slow_step(self, *a, **k):
    time.sleep(0.15)
    return _step(self, *a, **k)
torch.optim.AdamW.step = slow_step
data, out, base, tuning = sys.argv[1:5]
train(data, out, TrainOptions(base_model=base, epochs=3, patience=5, learning_rate=1e-3,
      batch_size=4, link_typing_rows=0, checkpoint_steps=2, tuning=tuning), log=print)
"""


def options(base: Path, **kw) -> TrainOptions:
    return TrainOptions(base_model=str(base), epochs=3, patience=5, learning_rate=1e-3,
                        batch_size=4, link_typing_rows=0, checkpoint_steps=2, **kw)


def killed_half_way(corpus: Path, out: Path, base: Path, tuning: str = "full") -> None:
    """Start training in a child and kill it -9 once it has checkpointed step 10 or later."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(corpus), str(out), str(base),
                             tuning],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = out / CHECKPOINT_DIR
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(int(p.name[5:14]) >= 10 for p in folder.glob("ckpt-*.pt")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / WEIGHTS).exists()


def same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / WEIGHTS)), load_file(str(b / WEIGHTS))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


@pytest.fixture(scope="module")
def unkilled(tmp_path_factory, tiny_bert: Path) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("unkilled")
    corpus = person_town_conll(tmp)
    train(corpus, tmp / "m", options(tiny_bert), log=lambda m: None)
    assert not (tmp / "m" / CHECKPOINT_DIR).exists()  # cleared once the model is saved
    return corpus, tmp / "m"


def test_a_kill_costs_the_steps_since_the_checkpoint_and_changes_nothing(
        tmp_path: Path, tiny_bert: Path, unkilled: tuple[Path, Path]) -> None:
    corpus, reference = unkilled
    out = tmp_path / "m"
    killed_half_way(corpus, out, tiny_bert)
    kept = sorted((out / CHECKPOINT_DIR).glob("ckpt-*.pt"))
    assert 1 <= len(kept) <= 2  # the last two are kept
    lines: list[str] = []
    train(corpus, out, options(tiny_bert), log=lines.append)
    resumed = [m for m in lines if m.startswith("resuming training from")]
    assert resumed and "optimiser step" in resumed[0], lines
    same_weights(out, reference)


@pytest.mark.slow  # a second child killed half way (the first is in the default run)
def test_lora_resumes_too_and_its_checkpoints_leave_the_pretrained_weights_out(
        tmp_path: Path, tiny_bert: Path, unkilled: tuple[Path, Path]) -> None:
    corpus, _ = unkilled
    reference = tmp_path / "unkilled"
    train(corpus, reference, options(tiny_bert, tuning="lora:2"), log=lambda m: None)
    out = tmp_path / "m"
    killed_half_way(corpus, out, tiny_bert, "lora:2")
    ckpt = sorted((out / CHECKPOINT_DIR).glob("ckpt-*.pt"))[-1]
    weights = torch.load(ckpt, weights_only=True)["model"]
    assert any("lora_A" in k for k in weights)
    assert not any("base_layer" in k or "word_embeddings" in k for k in weights)
    lines: list[str] = []
    train(corpus, out, options(tiny_bert, tuning="lora:2"), log=lines.append)
    assert any(m.startswith("resuming training from") for m in lines), lines
    same_weights(out, reference)


def test_a_damaged_checkpoint_is_skipped_for_the_one_before(
        tmp_path: Path, tiny_bert: Path, unkilled: tuple[Path, Path]) -> None:
    corpus, reference = unkilled
    out = tmp_path / "m"
    killed_half_way(corpus, out, tiny_bert)
    kept = sorted((out / CHECKPOINT_DIR).glob("ckpt-*.pt"))
    if len(kept) < 2:
        pytest.skip("the kill came before a second checkpoint")
    newest = kept[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # half-written
    lines: list[str] = []
    train(corpus, out, options(tiny_bert), log=lines.append)
    assert any("cannot be read" in m and newest.name in m for m in lines), lines
    assert any(m.startswith(f"resuming training from {kept[0]}") for m in lines), lines
    same_weights(out, reference)


@pytest.mark.slow  # a second child killed half way (the first is in the default run)
def test_other_options_start_over_and_say_why(tmp_path: Path, tiny_bert: Path,
                                              unkilled: tuple[Path, Path]) -> None:
    corpus, _ = unkilled
    out = tmp_path / "m"
    killed_half_way(corpus, out, tiny_bert)
    lines: list[str] = []
    train(corpus, out, options(tiny_bert, seed=99), log=lines.append)
    assert any(m.startswith("starting training over") and "seed changed" in m for m in lines)
    assert not any(m.startswith("resuming") for m in lines)
    assert (out / WEIGHTS).exists()


def test_a_full_disk_keeps_the_checkpoint_before(tmp_path: Path, tiny_bert: Path,
                                                 monkeypatch, unkilled) -> None:
    corpus, _ = unkilled
    save = torch.save
    calls = []

    def full_on_the_third(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 3:
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoints.torch, "save", full_on_the_third)
    out = tmp_path / "m"
    with pytest.raises(OSError, match="no space left on the device while writing a training "
                                      "checkpoint") as err:
        train(corpus, out, options(tiny_bert), log=lambda m: None)
    assert str(out / CHECKPOINT_DIR) in str(err.value)
    left = sorted((out / CHECKPOINT_DIR).iterdir())
    assert [p.suffix for p in left] == [".pt", ".pt"]  # no temporary file left behind
    for p in left:
        assert "model" in torch.load(p, weights_only=True)
