"""The merge stage's shell: its key and its run (:mod:`kgx.rdf.merge`)."""

from __future__ import annotations

from typing import Any

from kgx.engines.journal import stage_key
from kgx.outdir import GRAPH_FILE, STORE_DIR
from kgx.rdf.merge import merge
from kgx.stages.runner import Run, Stage


class MergeStage(Stage):
    name = "merge"
    inputs = ("structure", "read")

    def outputs(self, run: Run) -> list[str]:
        return [GRAPH_FILE, STORE_DIR]

    def key(self, run: Run) -> str:
        return stage_key(*run.upstream(self), run.opts.reasoning, "merge-2")

    def parts(self, run: Run) -> list[str]:
        from kgx.stages.read import ReadStage

        return ReadStage().outputs(run) if "read" in run.keys else []

    def consumes(self, run: Run) -> dict[str, list[str]]:
        parts = self.parts(run)
        return {"read": parts} if parts else {}

    def execute(self, run: Run) -> dict[str, Any]:
        what = (["model facts and mentions"] if self.parts(run) else []) + \
            (["RDFS/OWL-RL entailments"] if run.opts.reasoning else [])
        if what:
            run.log(f"[merge] {' and '.join(what)} into graph.nq and the store")
        return merge(run.out, self.parts(run), run.opts.reasoning,
                     run.info["structure"]["graph_bytes"], run.keys[self.name],
                     keep_inferred=bool(getattr(run.opts, "keep_intermediate", False)),
                     work=run.work(self.name), workers=run.opts.extract.workers, log=run.log,
                     progress=run.opts.progress)
