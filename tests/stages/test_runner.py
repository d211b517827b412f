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
