"""The model stage: fine-tunes the reader on the silver corpus (:mod:`kgx.model.train`), or takes
the model the user gave (``--model``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgx.engines.journal import stage_key
from kgx.outdir import CORPUS_DIR, MODEL_DIR, MODEL_WEIGHTS_FILE
from kgx.stages.runner import Run, Stage


class ModelStage(Stage):
    name = "model"
    inputs = ("corpus",)

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.use_model)

    def outputs(self, run: Run) -> list[str]:
        return [] if run.opts.model else [f"{MODEL_DIR}/{MODEL_WEIGHTS_FILE}"]

    def key(self, run: Run) -> str:
        o = run.opts
        if o.model:
            weights = Path(o.model) / MODEL_WEIGHTS_FILE
            return stage_key(str(Path(o.model).resolve()),
                             weights.stat().st_mtime_ns if weights.exists() else 0)
        # "train-3": gold sources as sentence rows
        # (the tuning joins the key only when not full: keys of earlier runs stay valid)
        return stage_key(*run.upstream(self), o.base_model, o.train_sentences, o.train_epochs,
                         [_fingerprint(g) for g in o.gold], "train-3",
                         *([o.tuning] if o.tuning != "full" else []))

    def execute(self, run: Run) -> dict[str, Any]:
        o = run.opts
        if o.model:
            run.log(f"[model] using {o.model}")
            return {"dir": str(Path(o.model))}
        from kgx.model.train import TrainOptions, train

        model_dir = run.out / MODEL_DIR
        run.log(f"[model] fine-tuning {o.base_model} ({o.tuning}) on at most "
                f"{o.train_sentences:,} sentences"
                + (" of the silver corpus and of each gold set (" + ", ".join(
                    Path(g).name for g in o.gold) + ")" if o.gold else ""))
        res = train([run.out / CORPUS_DIR, *o.gold], model_dir, TrainOptions(
            base_model=o.base_model, tuning=o.tuning, epochs=o.train_epochs,
            max_train_sentences=o.train_sentences, max_eval_sentences=400, device=o.device),
            log=lambda m: run.log(f"[model] {m}"), progress=o.progress)
        return {"dir": str(model_dir), "sentences_per_second": res.sentences_per_second}


def _fingerprint(spec: str) -> list[Any]:
    """A gold source as the key sees it: its spec, and its file's size and time."""
    from kgx.corpus.datasets import parse_source

    p = parse_source(spec).path
    try:
        st = p.stat()
        return [spec, st.st_size, st.st_mtime_ns]
    except OSError:
        return [spec, None, None]
