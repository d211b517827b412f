"""The entities stage: the entity table, alias index and FAISS index that linking and
``kg.lookup`` use (:mod:`kgx.linking`)."""

from __future__ import annotations

from typing import Any

from kgx.stages.runner import Run, Stage, stage_key


class EntitiesStage(Stage):
    name = "entities"

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.index)

    def outputs(self, run: Run) -> list[str]:
        return ["entities.faiss", "entities.json"]

    def key(self, run: Run) -> str:
        return stage_key(run.keys["structure"], "entities-1")

    def execute(self, run: Run) -> dict[str, Any]:
        from kgx.encoder import shared_encoder
        from kgx.linking import build_entity_table, build_vector_index

        n = build_entity_table(run.out)
        run.log(f"[entities] {n:,} entities; embedding labels and abstracts")
        return build_vector_index(run.out, shared_encoder("minilm", run.opts.device))
