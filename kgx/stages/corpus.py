"""The corpus stage: the silver training corpus the dump labels itself (:mod:`kgx.corpus`)."""

from __future__ import annotations

from typing import Any

from kgx.engines.journal import stage_key
from kgx.outdir import CORPUS_DIR
from kgx.stages.runner import Run, Stage


class CorpusStage(Stage):
    name = "corpus"
    inputs = ("structure",)

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.use_model and not run.opts.model)

    def outputs(self, run: Run) -> list[str]:
        from kgx.corpus.rows import KINDS, LINKS, SPLITS, STATS_FILE

        return [*(f"{CORPUS_DIR}/{name}.jsonl" for name in (*SPLITS, LINKS)),
                f"{CORPUS_DIR}/{STATS_FILE}",
                *(f"{CORPUS_DIR}/train.{k}.offsets" for k in KINDS)]

    def key(self, run: Run) -> str:
        from kgx.corpus.build import CORPUS_VERSION

        return stage_key(*run.upstream(self), CORPUS_VERSION, run.opts.held_out())

    def execute(self, run: Run) -> dict[str, Any]:
        from kgx.corpus.build import build_corpus

        run.log("[corpus] labelling sentences from links and infoboxes")
        st = build_corpus(run.out, run.out / CORPUS_DIR, workers=run.opts.extract.workers,
                          held_out_share=run.opts.held_out())
        run.log(f"[corpus] sentences {st['sentences']}, mentions {st['mentions']}")
        return {"sentences": st["sentences"]}
