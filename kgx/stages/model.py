"""The model stage: fine-tunes the reader on the silver corpus (:mod:`kgx.model.train`), or takes
the model the user gave (``--model``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kgx.engines.journal import stage_key
from kgx.outdir import CORPUS_DIR, MODEL_DIR, MODEL_WEIGHTS_FILE
from kgx.stages.runner import Run, Stage

# The default training budget (``--train-sentences`` and ``--train-minutes`` unset), by the
# device that trains. On a CPU: 1,500 sentences x 3 epochs, which keeps the README's first
# command on the bundled sample within 10 minutes on 2 cores. On a GPU: every training sentence
# the corpus offers, so the reader grows with the dump, with training stopped (the best epoch
# so far kept) after an hour.
CPU_TRAIN_SENTENCES = 1500
GPU_TRAIN_MINUTES = 60.0


def training_budget(device: str, sentences: int | None, minutes: float | None
                    ) -> tuple[int | None, float | None]:
    """(training sentences at most, training minutes at most; None: no bound) for a model
    trained on ``device`` (``cpu``, ``cuda``...), where the user set neither or one."""
    if sentences is not None or minutes is not None:
        return sentences, minutes
    if device == "cpu":
        return CPU_TRAIN_SENTENCES, None
    return None, GPU_TRAIN_MINUTES


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
        # (the tuning and a time bound join the key only when set: keys of earlier runs stay
        # valid)
        sentences, minutes = _budget(run)
        return stage_key(*run.upstream(self), o.base_model, sentences, o.train_epochs,
                         [_fingerprint(g) for g in o.gold], "train-3",
                         *([o.tuning] if o.tuning != "full" else []),
                         *([f"minutes {minutes:g}"] if minutes is not None else []))

    def execute(self, run: Run) -> dict[str, Any]:
        o = run.opts
        if o.model:
            run.log(f"[model] using {o.model}")
            return {"dir": str(Path(o.model))}
        from kgx.model.train import TrainOptions, train

        model_dir = run.out / MODEL_DIR
        sentences, minutes = _budget(run)
        run.log(f"[model] fine-tuning {o.base_model} ({o.tuning}) on "
                + (f"at most {sentences:,}" if sentences else "every one of the") + " sentences"
                + (" of the silver corpus and of each gold set (" + ", ".join(
                    Path(g).name for g in o.gold) + ")" if o.gold else "")
                + (f", for {minutes:g} minutes at most" if minutes else ""))
        res = train([run.out / CORPUS_DIR, *o.gold], model_dir, TrainOptions(
            base_model=o.base_model, tuning=o.tuning, epochs=o.train_epochs,
            max_train_sentences=sentences, max_minutes=minutes, max_eval_sentences=400,
            device=o.device),
            log=lambda m: run.log(f"[model] {m}"), progress=o.progress)
        return {"dir": str(model_dir), "sentences_per_second": res.sentences_per_second}


def _budget(run: Run) -> tuple[int | None, float | None]:
    o = run.opts
    if o.train_sentences is None and o.train_minutes is None:
        import torch  # the device that will train, without pick_device's thread setting

        device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return training_budget(torch.device(device).type, None, None)
    return o.train_sentences, o.train_minutes


def _fingerprint(spec: str) -> list[Any]:
    """A gold source as the key sees it: its spec, and its file's size and time."""
    from kgx.corpus.datasets import parse_source

    p = parse_source(spec).path
    try:
        st = p.stat()
        return [spec, st.st_size, st.st_mtime_ns]
    except OSError:
        return [spec, None, None]
