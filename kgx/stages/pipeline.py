"""The whole run: dump -> structure graph -> corpus -> model -> read every sentence -> link ->
model facts -> reasoning -> one graph.

Each stage is a module of :mod:`kgx.stages` (see its table), run by
:func:`kgx.stages.runner.run_stages`: ``stages.json`` records each finished stage with a key
made of its inputs (the dump's path, size and modification time, settings, the keys of the
stages it reads); a stage whose key is unchanged and whose outputs exist is not run again, and
a stage that was killed continues from its last committed chunk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgx.engines.journal import disk_used, write_atomic
from kgx.outdir import REPORT_FILE, output_lock
from kgx.stages.corpus import CorpusStage
from kgx.stages.entities import EntitiesStage
from kgx.stages.merge import MergeStage
from kgx.stages.model import ModelStage
from kgx.stages.read import ReadStage
from kgx.stages.runner import Run, Stage, run_stages
from kgx.stages.structure import StructureStage
from kgx.structure.extract import ExtractOptions

# Re-DocRED's documents kgx ships (kgx/data/README.md): relations read from Wikipedia
# prose by people, every pair of a sentence's entities labelled, so the reader learns what a
# sentence says, not which entities share one.
DEFAULT_GOLD = Path(__file__).resolve().parent.parent / "data" / "redocred-train.json.bz2"

STAGES: tuple[type[Stage], ...] = (StructureStage, CorpusStage, ModelStage, EntitiesStage,
                                   ReadStage, MergeStage)


@dataclass(slots=True)
class PipelineOptions:
    """Settings of ``kgx extract`` beyond the structure pass.

    Attributes:
        extract: Structure-pass settings.
        use_model: Run the model stages (``--no-model`` turns them off).
        model: A trained model directory; without one, kgx trains on this dump's corpus.
        base_model: Encoder to fine-tune when training.
        tuning: How much of it learns: ``full``, ``top:K`` or ``lora[:R]``
            (:mod:`kgx.model.tuning`).
        train_sentences: Training sentences at most; with ``train_minutes`` None as well, the
            device decides (:func:`kgx.stages.model.training_budget`: 1,500 on a CPU, every
            one for an hour at most on a GPU).
        train_minutes: Training minutes at most (None: no bound).
        train_epochs: Epochs at most.
        read_sentences: Read at most this many sentences (default: all).
        relation_threshold: Lowest sentence score at which a relation is read at all.
        held_out_share: The share of subjects whose infobox facts are kept out of the
            relation labels to measure the reader on (:meth:`held_out`; None: by ``gold``).
        gold: Gold training sets mixed with the silver corpus (``PATH`` or
            ``PATH:WEIGHT``; by default the Re-DocRED documents kgx ships,
            :data:`DEFAULT_GOLD`); empty: the silver corpus alone.
        min_precision: The precision a property's model facts must reach on the held-out
            infobox facts to be asserted (:mod:`kgx.read.assertion`); below it they are kept as
            candidates. 0 asserts every fact its types allow.
        mentions: Write linked mentions into the graph.
        reasoning: Materialise the ontology's entailments into ``graph/inferred``.
        index: Build the alias table and the FAISS entity index (``kg.lookup``).
        device: ``cpu``/``cuda`` (default: CUDA when present).
        progress: Progress bars (default: on a terminal).
        read_chunk_documents: Documents per committed chunk of the read stage (what a kill
            costs at most).
        keep_intermediate: Keep ``model.nq`` and ``mentions.nq`` (and write ``inferred.nq``)
            once ``graph.nq`` holds them.
        engine: Where the stages' chunks run: ``local`` (this machine's processes) or
            ``ray`` (:mod:`kgx.engines.ray`).
        ray_address: The Ray cluster to join (``auto``: the running one); without it,
            ``--engine ray`` starts Ray on this machine.
    """

    extract: ExtractOptions = field(default_factory=ExtractOptions)
    use_model: bool = True
    model: str | None = None
    base_model: str = "minilm"
    tuning: str = "full"
    train_sentences: int | None = None
    train_minutes: float | None = None
    train_epochs: int = 3
    read_sentences: int | None = None
    relation_threshold: float = 0.5
    min_precision: float = 0.9
    gold: list[str] = field(default_factory=lambda: [str(DEFAULT_GOLD)])
    held_out_share: float | None = None

    def held_out(self) -> float:
        """The share of subjects whose infobox facts the corpus keeps out of the labels: all
        of them when gold data teaches the reader relations (the silver corpus then teaches
        entities, and every infobox is a yardstick of the facts read), a quarter without."""
        if self.held_out_share is not None:
            return self.held_out_share
        return 1.0 if self.gold else 0.25
    mentions: bool = True
    reasoning: bool = True
    index: bool = True
    device: str | None = None
    progress: bool | None = None
    read_chunk_documents: int = 200
    keep_intermediate: bool = False
    engine: str = "local"
    ray_address: str | None = None


def run(dump: str | os.PathLike[str], out: str | os.PathLike[str],
        opts: PipelineOptions | None = None, log: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """Run every stage that needs running; return the final report.

    Raises:
        DumpError: The dump cannot be opened at all.
        OutputInUse: Another kgx process is writing ``out``.
        DiskFull: The disk filled up (what was committed is kept).
    """
    # Absolute paths: a Ray worker on another node (or another folder) gets them as given.
    with output_lock(Path(out)):
        return _run(Path(dump).absolute(), Path(out).absolute(), opts or PipelineOptions(), log)


def _run(dump_p: Path, out_p: Path, opts: PipelineOptions, log: Callable[[str], None]
         ) -> dict[str, Any]:
    out_p.mkdir(parents=True, exist_ok=True)
    ex = opts.extract
    ex.keep_documents = ex.keep_documents or opts.use_model
    ex.progress = opts.progress
    r = Run(dump_p, out_p, opts, log)
    from kgx.engines.ray import use_engine
    from kgx.runtime.cpu import usable_cores

    with use_engine(opts.engine, opts.ray_address, ex.workers or usable_cores(), log) as engine:
        run_stages([cls() for cls in STAGES], r)
    return final_report(r, engine)


def final_report(r: Run, engine: dict[str, Any], update: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """``report.json`` with what the stages after the structure pass did (and, after
    ``kgx update``, its ``update`` section); returned."""
    out_p, opts = r.out, r.opts
    read_info = r.info.get("read", {})
    report = json.loads((out_p / REPORT_FILE).read_text("utf-8"))
    # What the structure pass found of the dump stands (a dump that broke off); a stop of an
    # earlier run in a later stage (mark_unfinished) is over now.
    structure = r.info.get("structure", {})
    report["finished"] = bool(structure.get("finished", report.get("finished")))
    report["error"] = structure.get("error")
    if update is not None:
        report["update"] = update
    report["pipeline"] = {
        "stages_seconds": {k: round(v, 2) for k, v in r.seconds.items()},
        "model": r.info.get("model", {}).get("dir"), "read": read_info,
        "inferred_triples": r.info["merge"].get("inferred_triples", 0),
        "settings": {k: v for k, v in asdict(opts).items() if k != "extract"},
        "engine": engine}
    report["triples"]["model"] = read_info.get("model_fact_triples", 0)
    report["triples"]["mentions"] = read_info.get("mention_triples", 0)
    report["triples"]["inferred"] = r.info["merge"].get("inferred_triples", 0)
    report["triples_total"] = sum(report["triples"].values())
    report["disk_bytes"] = {p.name: disk_used(p) for p in sorted(out_p.iterdir())
                            if not p.name.startswith(".")}
    report["disk_bytes_total"] = sum(report["disk_bytes"].values())
    write_atomic(out_p / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False))
    return report
