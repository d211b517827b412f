"""Fine-tuning the reader: AdamW with warm-up, fixed seeds, early stopping on dev, every core or
the GPU.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from kgx.corpus.datasets import (
    DataError,
    parse_source,
)
from kgx.model.batches import Feature, batches_by_length, collate, featurize
from kgx.model.calibration import choose_decoder, fit_relation_temperature
from kgx.model.card import model_card
from kgx.model.checkpoints import (
    CHECKPOINT_DIR,
    Checkpoints,
    data_fingerprint,
    rng_states,
    set_rng_states,
)
from kgx.model.link_typing import draw_rows, type_links
from kgx.model.network import (
    DEFAULT_BASE,
    autocast_dtype,
    build_model,
    pick_device,
    resolve_base_model,
)
from kgx.model.predictor import Predictor
from kgx.model.sources import (
    label_sets,
    load_source,
    sample_training_rows,
    source_names,
    weighted,
    weighted_count,
    wikidata_relation_label,
)
from kgx.model.tuning import LORA_LR_FACTOR, apply_tuning, check_tuning, parse_tuning
from kgx.runtime.cpu import ThreadTuner
from kgx.version import __version__


@dataclass(slots=True)
class TrainOptions:
    """Training settings (all saved in the model's ``kgx.json``)."""

    base_model: str = DEFAULT_BASE
    # Measured on Re-DocRED (393 training documents, benchmarks/bench_model.py's split): dev
    # relation F1 rose through 6 epochs (0.25, 0.31, 0.38, 0.42, 0.42, 0.43), where the
    # schedule of 3 stopped at 0.36. kgx extract asks for 3 (its 10-minute budget).
    epochs: int = 6
    batch_size: int = 16  # windows (a sentence is one, a document several)
    batch_tokens: int = 640  # tokens per batch at most (16 sentences, or 4-5 document windows)
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 128
    seed: int = 13
    patience: int = 1
    max_train_sentences: int | None = None
    max_empty_share: float = 0.3
    freeze_encoder: bool = False  # a baseline: the heads alone learn
    # How much of the encoder learns: full, top:K or lora[:R] (kgx.model.tuning)
    tuning: str = "full"
    casing: bool = True  # the word-shape feature (kgx.model.tokens.SHAPES) beside the encoder
    max_eval_sentences: int | None = 2000
    # After the first epoch, the links of a silver corpus to pages of no known type are
    # typed by the tagger's reading of them (kgx.model.link_typing) in the training rows and in
    # this many more drawn from the corpus, and the later epochs learn from them. 0: off.
    link_typing_rows: int = 8000
    max_minutes: float | None = None
    # A checkpoint every N optimiser steps within an epoch; None: whenever checkpoint_minutes
    # of training have passed (and always at an epoch's end). What a kill costs at most.
    checkpoint_steps: int | None = None
    checkpoint_minutes: float = 4.0
    device: str | None = None
    dev_path: str | None = None


@dataclass(slots=True)
class TrainResult:
    """What a training run did."""

    out: str
    tuning: str = "full"
    precision: str = "fp32"  # autocast: bfloat16 or float16 on a GPU that has it
    epochs_run: int = 0
    best_epoch: int = 0
    train_sentences: int = 0
    seconds: float = 0.0
    sentences_per_second: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    link_typing: dict[str, Any] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)  # the first source's
    dev_by_source: dict[str, dict[str, Any]] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)


def base_layers(base: str) -> int:
    """How many transformer layers the encoder ``base`` has (read from its config)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(resolve_base_model(base))
    return int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layers", 0))


def _decode_and_score(model: Any, tok: Any, opts: TrainOptions, result: TrainResult,
                      source_feats: list[Any], dev_sets: dict[str, list[dict]],
                      loaded: list[Any], names: list[str], log: Callable[[str], None]
                      ) -> dict[str, Any]:
    """The trained model's tag decoding and relation temperature, chosen on dev; its scores
    on dev (as the saved model tags), on gold dev relations and on test, into ``result``."""
    from kgx.model.evaluate import evaluate_rows
    from kgx.runtime.progress import set_phase

    test_rows = loaded[0].test
    model.eval()
    reader = Predictor(model, tok, {}, max_length=opts.max_length)
    # the tag sequences of what the last epochs trained on (relabelled by link typing)
    tag_sequences = [(x.word_tags, w) for f, w in source_feats for x in f]
    set_phase("choosing the tag decoding on dev")
    decoder = choose_decoder(reader, tag_sequences, dev_sets, log)
    set_phase("calibrating the relation scores on dev")
    decoder.update(fit_relation_temperature(reader, dev_sets, log))  # scores before T
    for name, ents in decoder.pop("dev_entities").items():  # as the saved model tags
        if name in result.dev_by_source:
            result.dev_by_source[name]["entities"] = ents
    result.dev = result.dev_by_source.get(names[0], result.dev)
    gold_dev = [r for n, d in zip(names, loaded, strict=True) if d.format == "docred"
                for r in d.dev]
    if gold_dev:
        from kgx.model.evaluate import relation_outcomes

        set_phase(f"scoring the relations of {len(gold_dev):,} gold dev rows")
        decoder["gold_dev_relations"] = relation_outcomes(
            Predictor(model, tok, decoder, max_length=opts.max_length), gold_dev)
    if test_rows:
        set_phase(f"scoring {len(test_rows):,} test rows")
        result.test = evaluate_rows(Predictor(model, tok, decoder, max_length=opts.max_length),
                                    test_rows)
    return decoder


def _metadata(opts: TrainOptions, onto: Any, sources: list[Any], loaded: list[Any],
              names: list[str], ner_labels: list[str], rel_labels: list[str],
              result: TrainResult, decoder: dict[str, Any]) -> dict[str, Any]:
    """The saved model's ``kgx.json``: how it was trained, on what, and how well it does."""
    from kgx.ontology import is_wikidata_property

    corpus_stats = loaded[0].stats
    return {
        "kgx_version": __version__,
        "ontology_version": onto.version,
        "base_model": opts.base_model,
        "trained_on": ", ".join(str(x.path) for x in sources),
        "sources": [{"name": n, "path": str(d.source.path), "format": d.format,
                     "weight": d.source.weight, "rows_drawn": len(d.train),
                     "rows_per_epoch": weighted_count(len(d.train), d.source.weight),
                     "dev_rows": len(d.dev), "stats": d.stats if d.format != "corpus" else {}}
                    for n, d in zip(names, loaded, strict=True)],
        "corpus_stats": corpus_stats,
        "settings": asdict(opts),
        "entity_labels": [lab[2:] for lab in ner_labels if lab.startswith("B-")],
        "relation_labels": rel_labels,
        "relation_wikidata": {lab: onto.properties[lab].wikidata if lab in onto.properties
                              else lab for lab in rel_labels
                              if lab in onto.properties or is_wikidata_property(lab)},
        "training": {k: v for k, v in asdict(result).items()
                     if k not in ("dev", "test", "dev_by_source")},
        "dev": result.dev,
        "dev_by_source": result.dev_by_source,
        "test": result.test,
        **decoder,
    }


def _learnt_state(model: Any) -> dict[str, Any]:
    """The weights training changes (those that learn, and the buffers): with top:K or LoRA,
    the frozen pre-trained weights are left out, since building the model gives them again.
    What a checkpoint and the best epoch keep."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def _optimiser_step(model: Any, batch: dict[str, Any], optim: Any, sched: Any, scaler: Any,
                    amp: torch.dtype | None) -> float:
    """One batch forward and backward, clipped, stepped (through the scaler on fp16); its
    loss."""
    device = batch["input_ids"].device
    with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
        loss = model(batch)["loss"]
    optim.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optim)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optim)
        scaler.update()
    else:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
    sched.step()
    return float(loss.item())


# Settings that do not change what is trained: a checkpoint resumes across them.
_NOT_FINGERPRINTED = ("max_minutes", "device", "checkpoint_steps", "checkpoint_minutes")


def _fingerprint(opts: TrainOptions, sources: Sequence[Any], ner_labels: list[str],
                 rel_labels: list[str]) -> dict[str, Any]:
    """What a training checkpoint must have been written for, to be resumed."""
    settings = {k: v for k, v in asdict(opts).items() if k not in _NOT_FINGERPRINTED}
    return {**settings, "data": data_fingerprint([Path(s.path) for s in sources]),
            "weights": [s.weight for s in sources], "ner_labels": ner_labels,
            "relation_labels": rel_labels, "kgx_version": __version__}


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def dev_score(scores: dict[str, Any]) -> float:
    """The number early stopping watches: mean of entity micro F1 and relation micro F1."""
    ner = scores.get("entities", {}).get("micro", {}).get("f1", 0.0)
    if "relations" in scores:
        return (ner + scores["relations"]["micro"]["f1"]) / 2
    return ner


def train(data: str | Path | Sequence[str | Path], out: str | Path,
          options: TrainOptions | None = None, log: Callable[[str], None] = print,
          progress: bool | None = None) -> TrainResult:
    """Fine-tune and save a model.

    Args:
        data: One source or several: corpus directories, CoNLL files, DocRED JSON files,
            each ``PATH`` or ``PATH:WEIGHT`` (see :class:`TrainingSource`). The label set is
            the union of theirs; DocRED's Wikidata ids are mapped onto kgx's properties
            (unaligned ids kept as their own labels). Each source is scored on its own dev
            set every epoch, and early stopping watches their mean.
        out: Model directory to write.
        options: Settings (``dev_path``: the dev file of the first source, a CoNLL file).
        log: Where per-epoch lines go.
        progress: Progress bar (default: on a terminal).

    Raises:
        DataError: Bad or empty training data, or a bad weight (before any training).
    """
    from kgx.runtime.progress import set_phase

    run = _Training(options or TrainOptions(), data, Path(out), log, progress)
    start_epoch, start_batch, finished = run.resume()
    run.log(f"training on {run.result.train_sentences:,} rows per epoch ({run.n_windows:,} "
            f"windows) from {len(run.sources)} source(s), dev {len(run.loaded[0].dev):,}, "
            f"entity labels {run.ner_labels[1:]}, relation labels {len(run.rel_labels) - 1}, "
            f"device {run.device}")
    for epoch in range(start_epoch, 0 if finished else run.opts.epochs + 1):
        stopped = run.batches(epoch, start_batch if epoch == start_epoch else 0)
        stopped = run.score(epoch) or stopped
        if stopped and run.deadline and time.monotonic() > run.deadline:
            log(f"stopped: time budget of {run.opts.max_minutes} minutes reached")
        if run.link_typing and epoch == 1 and not stopped:
            run.type_links()
        run.losses = []
        run.ckpt.save(run.snapshot(epoch + 1, 0, run.rng.getstate(), done=stopped),
                      run.sched.last_epoch)
        if stopped:
            break
    result = run.result
    result.seconds = round(time.monotonic() - run.t0, 1)
    result.sentences_per_second = round(run.trained / max(1e-9, result.seconds), 1)
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state, strict=False)
    decoder = _decode_and_score(run.model, run.tok, run.opts, result, run.source_feats,
                                run.dev_sets, run.loaded, run.names, log)
    metadata = _metadata(run.opts, run.onto, run.sources, run.loaded, run.names,
                         run.ner_labels, run.rel_labels, result, decoder)
    set_phase("saving the model")
    run.model.save(run.out, run.tok, metadata)
    (run.out / "README.md").write_text(model_card(metadata), encoding="utf-8")
    run.ckpt.clear()  # the model is saved: nothing to resume
    return result


class _Training:
    """One training run's state, from its data and model to its optimiser, best epoch and
    checkpoints; :func:`train` drives it epoch by epoch."""

    def __init__(self, opts: TrainOptions, data: str | Path | Sequence[str | Path], out: Path,
                 log: Callable[[str], None], progress: bool | None) -> None:
        from kgx.ontology import load_ontology
        from kgx.runtime.progress import set_phase

        self.opts, self.out, self.log, self.progress = opts, out, log, progress
        specs = [data] if isinstance(data, (str, Path)) else list(data)
        if not specs:
            raise DataError("no training data given")
        self.tuning = parse_tuning(opts.tuning)  # a bad --tuning is told before any reading
        if self.tuning.way != "full":
            check_tuning(self.tuning, base_layers(opts.base_model), opts.base_model)
        self.sources = [parse_source(x) for x in specs]  # every weight checked before reading
        set_seed(opts.seed)
        self.rng = random.Random(opts.seed)
        self.onto = load_ontology()
        dev_path = Path(opts.dev_path) if opts.dev_path else None  # the first source's
        set_phase("reading the training rows")
        self.loaded = [load_source(src, dev_path if i == 0 else None,
                                   limit=opts.max_train_sentences,
                                   max_empty_share=opts.max_empty_share, rng=self.rng,
                                   max_eval=opts.max_eval_sentences or None,
                                   relation_label=wikidata_relation_label(self.onto))
                       for i, src in enumerate(self.sources)]
        self.names = source_names(self.sources)
        self.dev_sets = {n: d.dev for n, d in zip(self.names, self.loaded, strict=True)
                         if d.dev}
        self.ner_labels, self.rel_labels = label_sets([r for d in self.loaded for r in d.train])
        self.link_typing = bool(opts.link_typing_rows) and opts.epochs > 1 and \
            self.loaded[0].format == "corpus"
        self.typing_rows = draw_rows(self.sources[0].path, opts.link_typing_rows,
                                     random.Random(opts.seed + 1)) if self.link_typing else []
        self.device = pick_device(opts.device)
        self.tuner = ThreadTuner(enabled=self.device.type == "cpu")
        set_phase(f"loading the encoder {opts.base_model}")
        self.model, self.tok = build_model(opts.base_model, self.ner_labels, self.rel_labels,
                                           casing=opts.casing)
        self.model.to(self.device)
        # Each source's windows, drawn anew every epoch by its weight.
        set_phase(f"tokenising {sum(len(d.train) for d in self.loaded):,} training rows")
        self.source_feats: list[tuple[list[Feature], float]] = [
            (self.featurize(d.train), d.source.weight) for d in self.loaded]
        self.n_windows = sum(weighted_count(sum(len(x.windows) for x in f), w)
                             for f, w in self.source_feats)
        self._optimiser()
        amp = self.amp = autocast_dtype(self.device)
        self.scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
        self.result = TrainResult(
            out=str(out), tuning=str(self.tuning),
            train_sentences=sum(weighted_count(len(d.train), d.source.weight)
                                for d in self.loaded),
            precision="fp32" if amp is None else str(amp).replace("torch.", ""))
        self.ckpt = Checkpoints(out / CHECKPOINT_DIR,
                                _fingerprint(opts, self.sources, self.ner_labels,
                                             self.rel_labels), log,
                                every_steps=opts.checkpoint_steps,
                                every_seconds=60 * opts.checkpoint_minutes)
        self.best, self.bad, self.trained = -1.0, 0, 0
        self.best_state: dict[str, Any] | None = None
        self.losses: list[float] = []
        self.t0 = time.monotonic()
        self.deadline: float | None = None

    def featurize(self, rows: list[dict]) -> list[Feature]:
        return featurize(rows, self.tok, self.ner_labels, self.rel_labels,
                         self.opts.max_length)

    def _optimiser(self) -> None:
        """AdamW over what learns (the heads at their own rate), with linear warm-up and
        decay over every epoch's steps."""
        opts, model = self.opts, self.model
        heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
        param_groups = [{"params": heads, "lr": opts.head_learning_rate}]
        if opts.freeze_encoder:  # a baseline: only the heads learn
            for p in model.encoder.parameters():
                p.requires_grad_(False)
        else:
            learn = apply_tuning(model, self.tuning)
            model.tuning, model.base_model = str(self.tuning), opts.base_model
            param_groups.append({"params": learn, "lr": opts.learning_rate * (
                LORA_LR_FACTOR if self.tuning.way == "lora" else 1.0)})
            self.log(f"tuning {self.tuning}: {sum(p.numel() for p in learn):,} of the "
                     f"encoder's {sum(p.numel() for p in model.encoder.parameters()):,} "
                     "parameters learn")
        self.optim = torch.optim.AdamW(param_groups, weight_decay=opts.weight_decay)
        steps_per_epoch = len(batches_by_length(
            [x for f, w in self.source_feats for x in weighted(f, w, random.Random(0))],
            opts.batch_size, random.Random(0), opts.batch_tokens))
        total = max(1, steps_per_epoch * opts.epochs)
        warm = int(total * opts.warmup)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.optim, lambda s: (s + 1) / max(1, warm) if s < warm else
            max(0.0, (total - s) / max(1, total - warm)))

    def resume(self) -> tuple[int, int, bool]:
        """Go on where a killed run stopped, as if it had not: (epoch, batch within it,
        whether training had ended). (1, 0, False) without a checkpoint."""
        saved = self.ckpt.latest()
        if saved is not None:
            self.model.load_state_dict(saved["model"], strict=False)  # the rest: as built
            self.optim.load_state_dict(saved["optim"])
            self.sched.load_state_dict(saved["sched"])
            if self.scaler is not None and saved.get("scaler"):
                self.scaler.load_state_dict(saved["scaler"])
            self.best, self.bad, self.trained = saved["best"], saved["bad"], saved["trained"]
            self.best_state = saved["best_state"]
            for k in ("history", "best_epoch", "dev", "dev_by_source", "link_typing",
                      "epochs_run"):
                setattr(self.result, k, saved["result"][k])
            self.t0 -= saved["seconds"]
            if saved["typed_rows"]:
                self.loaded[0].train = self.ckpt.read_rows()
                self.source_feats[0] = (self.featurize(self.loaded[0].train),
                                        self.loaded[0].source.weight)
                self.typing_rows = []
            self.losses = saved["losses"]
            self.rng.setstate(saved["rng"])
            set_rng_states(saved["torch_rng"])
            self.log(f"resuming training from {saved['path']}: epoch {saved['epoch']}, batch "
                     f"{saved['batch'] + 1}, optimiser step {self.sched.last_epoch:,}"
                     + (" (training had ended; choosing the decoder and saving)"
                        if saved["finished"] else ""))
            start = saved["epoch"], saved["batch"], saved["finished"]
            del saved
        else:
            start = 1, 0, False
        if self.opts.max_minutes:
            self.deadline = self.t0 + self.opts.max_minutes * 60
        return start

    def snapshot(self, epoch: int, batch: int, epoch_rng: Any, done: bool = False
                 ) -> dict[str, Any]:
        """What a checkpoint holds: the loop goes on from ``batch`` of ``epoch``, whose
        batches are drawn again from ``epoch_rng``."""
        return {"model": _learnt_state(self.model), "optim": self.optim.state_dict(),
                "sched": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "best": self.best, "bad": self.bad, "best_state": self.best_state,
                "trained": self.trained,
                "result": {k: getattr(self.result, k) for k in (
                    "history", "best_epoch", "dev", "dev_by_source", "link_typing",
                    "epochs_run")},
                "seconds": time.monotonic() - self.t0,
                "typed_rows": bool(self.result.link_typing),
                "epoch": epoch, "batch": batch, "losses": list(self.losses), "finished": done,
                "rng": epoch_rng, "torch_rng": rng_states()}

    def batches(self, epoch: int, skip: int) -> bool:
        """The optimiser steps of ``epoch`` from batch ``skip`` on, checkpointed as due;
        whether the time budget stopped it."""
        from kgx.runtime.progress import Progress

        self.model.train()
        epoch_rng = self.rng.getstate()  # the epoch's batches are drawn again from it on resume
        feats = [x for f, w in self.source_feats for x in weighted(f, w, self.rng)]
        groups = batches_by_length(feats, self.opts.batch_size, self.rng, self.opts.batch_tokens)
        if not skip:
            self.losses = []
        stopped = False
        with Progress(total=len(groups), unit="batches", enabled=self.progress,
                      desc=f"model, epoch {epoch}") as bar:  # closed on any error too
            bar.update(skip)
            for at, g in enumerate(groups[skip:], skip):
                t_batch = time.perf_counter()
                batch = collate([feats[i] for i in g], self.tok, self.device,
                                len(self.rel_labels))
                self.losses.append(_optimiser_step(self.model, batch, self.optim, self.sched,
                                                   self.scaler, self.amp))
                self.trained += len(g)
                self.tuner.step(time.perf_counter() - t_batch, len(g))
                bar.update(1, sentences=self.trained)
                if self.ckpt.due() and at + 1 < len(groups):
                    self.ckpt.save(self.snapshot(epoch, at + 1, epoch_rng),
                                   self.sched.last_epoch)
                if self.deadline and time.monotonic() > self.deadline:
                    stopped = True
                    break
        if not stopped and skip < len(groups):
            # the epoch's batches are done: a kill in the scoring and link typing that follow
            # costs those alone
            self.ckpt.save(self.snapshot(epoch, len(groups), epoch_rng), self.sched.last_epoch)
        return stopped

    def score(self, epoch: int) -> bool:
        """``epoch`` scored on every source's dev set and kept when best; whether early
        stopping ends training."""
        from kgx.model.evaluate import evaluate_rows
        from kgx.runtime.progress import set_phase

        self.model.eval()
        set_phase(f"scoring epoch {epoch} on {sum(map(len, self.dev_sets.values())):,} dev "
                  "rows")
        reader = Predictor(self.model, self.tok, {}, max_length=self.opts.max_length)
        by_source = {n: evaluate_rows(reader, rows) for n, rows in self.dev_sets.items()}
        scores = by_source.get(self.names[0], {})
        score = sum(map(dev_score, by_source.values())) / max(1, len(by_source))
        entry = {"epoch": epoch, "loss": round(sum(self.losses) / max(1, len(self.losses)), 4),
                 "dev_entity_f1": scores.get("entities", {}).get("micro", {}).get("f1"),
                 "dev_relation_f1": scores.get("relations", {}).get("micro", {}).get("f1"),
                 "dev_score": round(score, 4)}
        if len(self.sources) > 1:
            entry["dev_by_source"] = {n: round(dev_score(v), 4) for n, v in by_source.items()}
        self.result.history.append(entry)
        self.log("epoch {epoch}: loss {loss}, dev entity F1 {dev_entity_f1}, dev relation F1 "
                 "{dev_relation_f1}".format(**entry))
        self.result.epochs_run = epoch
        if score > self.best:
            self.best, self.bad, self.result.best_epoch = score, 0, epoch
            self.result.dev, self.result.dev_by_source = scores, by_source
            self.best_state = {k: v.detach().cpu().clone()
                               for k, v in _learnt_state(self.model).items()}
            return False
        self.bad += 1
        if self.bad > self.opts.patience:
            self.log(f"early stop: dev score has not improved for {self.bad} epochs")
            return True
        return False

    def type_links(self) -> None:
        """After the first epoch: the silver corpus's links to pages of no known type typed
        by the tagger's reading of them, and the rows the later epochs learn from drawn
        again."""
        from kgx.runtime.progress import set_phase

        set_phase(f"typing links to untyped pages in {len(self.typing_rows):,} rows")
        reader = Predictor(self.model, self.tok, {}, max_length=self.opts.max_length)
        rows, typing = type_links(reader, self.loaded[0].train, self.typing_rows)
        first = self.loaded[0]
        first.train = sample_training_rows(rows, self.opts.max_train_sentences,
                                           self.opts.max_empty_share, self.rng)
        self.source_feats[0] = (self.featurize(first.train), first.source.weight)
        self.result.link_typing = asdict(typing)
        self.log(f"link typing: {typing.links:,} links to {typing.targets:,} untyped pages "
                 f"read in {typing.seconds} s; typed {typing.typed or 'none'}; "
                 f"{typing.mentions_added:,} mentions added")
        self.typing_rows = []  # read: not kept through the later epochs
        self.ckpt.save_rows(first.train)
