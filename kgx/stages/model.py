"""The model stage: fine-tunes the reader on the silver corpus (:mod:`kgx.train`), or takes
the model the user gave (``--model``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgx.stages.runner import Run, Stage, stage_key

MODEL_DIR = "model"


class ModelStage(Stage):
    name = "model"

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.use_model)

    def outputs(self, run: Run) -> list[str]:
        return [] if run.opts.model else [f"{MODEL_DIR}/model.safetensors"]

    def key(self, run: Run) -> str:
        o = run.opts
        if o.model:
            weights = Path(o.model) / "model.safetensors"
            return stage_key(str(Path(o.model).resolve()),
                             weights.stat().st_mtime_ns if weights.exists() else 0)
        # "train-2": casing feature, entity pooling and the adaptive threshold
        return stage_key(run.keys["corpus"], o.base_model, o.train_sentences, o.train_epochs,
                         "train-2")

    def execute(self, run: Run) -> dict[str, Any]:
        o = run.opts
        if o.model:
            run.log(f"[model] using {o.model}")
            return {"dir": str(Path(o.model))}
        from kgx.train import TrainOptions, train

        model_dir = run.out / MODEL_DIR
        run.log(f"[model] fine-tuning {o.base_model} on at most {o.train_sentences:,} sentences")
        res = train(run.out / "corpus", model_dir, TrainOptions(
            base_model=o.base_model, epochs=o.train_epochs,
            max_train_sentences=o.train_sentences, max_eval_sentences=400, device=o.device),
            log=lambda m: run.log(f"[model] {m}"), progress=o.progress)
        return {"dir": str(model_dir), "sentences_per_second": res.sentences_per_second}
