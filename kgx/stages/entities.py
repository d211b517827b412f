"""The entities stage's shell: its key and its run (:mod:`kgx.linking.build`)."""

from __future__ import annotations

from typing import Any

from kgx.engines.journal import stage_key
from kgx.linking.build import ENCODER, build_entities
from kgx.outdir import ENTITY_INDEX_FILE, ENTITY_META_FILE
from kgx.stages.runner import Run, Stage


class EntitiesStage(Stage):
    name = "entities"
    inputs = ("structure",)

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.index)

    def outputs(self, run: Run) -> list[str]:
        return [ENTITY_INDEX_FILE, ENTITY_META_FILE]

    def key(self, run: Run) -> str:
        return stage_key(*run.upstream(self), ENCODER, "entities-5")

    def execute(self, run: Run) -> dict[str, Any]:
        return build_entities(run.out, run.work(self.name), run.keys[self.name], run.opts,
                              run.log)
