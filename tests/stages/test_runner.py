"""The runner: a stage's declared inputs give its key, and an order in which a stage would run
before a stage it reads is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kgx.stages.pipeline import PipelineOptions
from kgx.stages.runner import Run, Stage, run_stages


class Writes(Stage):
    name = "writes"

    def outputs(self, run: Run) -> list[str]:
        return ["a.txt"]

    def key(self, run: Run) -> str:
        return "k-writes"

    def execute(self, run: Run) -> dict[str, Any]:
        (run.out / "a.txt").write_text("a")
        return {}


class Reads(Writes):
    name = "reads"
    inputs = ("writes",)

    def outputs(self, run: Run) -> list[str]:
        return ["b.txt"]

    def key(self, run: Run) -> str:
        return "+".join(str(k) for k in run.upstream(self))

    def execute(self, run: Run) -> dict[str, Any]:
        (run.out / "b.txt").write_text((run.out / "a.txt").read_text() + "b")
        return {}


def run_of(tmp_path: Path) -> Run:
    return Run(tmp_path / "dump", tmp_path, PipelineOptions(), log=lambda m: None)


def test_a_stage_key_holds_the_keys_of_what_it_reads(tmp_path: Path) -> None:
    run = run_of(tmp_path)
    run_stages([Writes(), Reads()], run)
    assert run.keys == {"writes": "k-writes", "reads": "k-writes"}
    assert (tmp_path / "b.txt").read_text() == "ab"


def test_a_stage_before_one_it_reads_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="stage reads reads writes, which would run after it"):
        run_stages([Reads(), Writes()], run_of(tmp_path))
    assert not (tmp_path / "b.txt").exists()


def test_the_pipeline_declares_its_order() -> None:
    from kgx.stages.pipeline import STAGES

    names = [s.name for s in STAGES]
    for s in STAGES:
        assert all(names.index(i) < names.index(s.name) for i in s.inputs), s.name


def test_the_default_training_budget_follows_the_device(tmp_path: Path) -> None:
    from kgx.stages.model import (
        CPU_TRAIN_SENTENCES,
        GPU_TRAIN_MINUTES,
        ModelStage,
        training_budget,
    )

    assert training_budget("cpu", None, None) == (CPU_TRAIN_SENTENCES, None)
    assert training_budget("cuda", None, None) == (None, GPU_TRAIN_MINUTES)
    # Whatever the user sets is kept, the other bound left open.
    assert training_budget("cuda", 5000, None) == (5000, None)
    assert training_budget("cpu", None, 30.0) == (None, 30.0)

    def key(**opts: object) -> str:
        run = Run(tmp_path / "dump.xml", tmp_path, PipelineOptions(device="cpu", **opts),
                  lambda m: None, keys={"corpus": "c"})
        return ModelStage().key(run)

    # On a CPU the default is the budget earlier versions had: their models are reused.
    assert key() == key(train_sentences=CPU_TRAIN_SENTENCES)
    assert key() != key(train_sentences=CPU_TRAIN_SENTENCES, train_minutes=5.0)
