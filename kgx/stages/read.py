"""The read stage's shell: its key and its run (:mod:`kgx.read`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgx.engines.journal import (
    stage_key,
)
from kgx.outdir import MENTIONS_FILE, MODEL_FACTS_FILE
from kgx.read.run import read_dump
from kgx.stages.runner import Run, Stage


class ReadStage(Stage):
    name = "read"
    inputs = ("structure", "model", "entities")

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.use_model)

    def outputs(self, run: Run) -> list[str]:
        return [MODEL_FACTS_FILE] + ([MENTIONS_FILE] if run.opts.mentions else [])

    def key(self, run: Run) -> str:
        o = run.opts
        return stage_key(*run.upstream(self), o.read_sentences, o.relation_threshold,
                         o.mentions, o.read_chunk_documents, o.min_precision, "read-6")

    def execute(self, run: Run) -> dict[str, Any]:
        return read_dump(run.out, run.work(self.name), Path(run.info["model"]["dir"]),
                         run.keys[self.name], run.opts, run.log)
