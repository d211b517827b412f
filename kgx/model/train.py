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
from kgx.corpus.rows import (
    NA,
    mention_entities,
)
from kgx.model.calibration import choose_decoder, fit_relation_temperature
from kgx.model.card import model_card
from kgx.model.checkpoints import (
    CHECKPOINT_DIR,
    Checkpoints,
    data_fingerprint,
    rng_states,
    set_rng_states,
)
from kgx.model.decoding import word_tag_sequence
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
from kgx.model.tokens import (
    Window,
    bio_labels,
    first_window,
    pad_batch,
    token_span,
    tokenize,
    windows_for,
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


@dataclass(slots=True)
class _Feature:
    """One training row: its windows, its mentions grouped into entities, its entity pairs."""

    windows: list[Window]
    spans: list[tuple[int, int, int]]  # (window of this row, first token, end token)
    span_entity: list[int]  # the entity (index within the row) of each span
    pairs: list[tuple[int, int]]  # (head entity, tail entity)
    targets: list[list[int]]  # relation label ids of each pair (empty: NA)
    word_tags: list[int]  # the row's tag of each word (-100: unknown), for the transitions


def featurize(rows: list[dict], tokenizer: Any, ner_labels: list[str], rel_labels: list[str],
              max_length: int) -> list[_Feature]:
    """Tokenize, align labels to sub-tokens, cut into windows, group mentions into entities.

    A row's relations (between mention indices) become pairs of entities: the mentions of one
    entity are pooled by the model wherever they are in the row, so a document row teaches
    relations across sentences and windows.
    """
    label2id = {lab: i for i, lab in enumerate(ner_labels)}
    rel2id = {lab: i for i, lab in enumerate(rel_labels)}
    feats = []
    toks = tokenize(tokenizer, [r["text"] for r in rows])
    for r, tk in zip(rows, toks, strict=True):
        labels = bio_labels(tk, r["mentions"], r.get("ignore", []), label2id)
        bounds = windows_for(len(tk.ids), max_length - 2, 32)
        windows = [Window(0, a, tk.ids[a:b], labels[a:b], tk.shapes[a:b]) for a, b in bounds]
        keys = mention_entities(r)
        entity_of: dict[Any, int] = {}
        spans, span_entity = [], []
        for m, key in zip(r["mentions"], keys, strict=True):
            sp = token_span(tk, m["start"], m["end"])
            wi = None if sp is None else first_window(windows, sp)
            if sp is not None and wi is not None:
                a = windows[wi].tok_start
                spans.append((wi, sp[0] - a, sp[1] - a))
                span_entity.append(entity_of.setdefault(key, len(entity_of)))
        by_pair: dict[tuple[int, int], set[int]] = {}
        for x in r.get("relations", []):
            h, t = keys[x["head"]], keys[x["tail"]]
            if h in entity_of and t in entity_of and h != t and x["label"] in rel2id:
                got = by_pair.setdefault((entity_of[h], entity_of[t]), set())
                if x["label"] != NA:
                    got.add(rel2id[x["label"]])
        feats.append(_Feature(windows, spans, span_entity, list(by_pair),
                              [sorted(v) for v in by_pair.values()],
                              word_tag_sequence(labels, tk.word_ids)))
    return feats


def collate(feats: list[_Feature], tokenizer: Any, device: torch.device, n_labels: int
            ) -> dict[str, torch.Tensor]:
    windows = [w for f in feats for w in f.windows]
    batch = pad_batch(windows, tokenizer.cls_token_id, tokenizer.sep_token_id,
                      tokenizer.pad_token_id, device)
    spans: list[list[int]] = []
    span_entity: list[int] = []
    pairs: list[list[int]] = []
    targets: list[Any] = []
    row = n_entities = 0
    for f in feats:
        # +1: position 0 of each window is [CLS]
        spans.extend([row + w, a + 1, b + 1] for w, a, b in f.spans)
        span_entity.extend(n_entities + e for e in f.span_entity)
        for (h, t), labs in zip(f.pairs, f.targets, strict=True):
            pairs.append([n_entities + h, n_entities + t])
            hot = [0.0] * n_labels
            for j in labs:
                hot[j] = 1.0
            targets.append(hot)
        row += len(f.windows)
        n_entities += max(f.span_entity, default=-1) + 1
    if pairs:
        batch["spans"] = torch.tensor(spans, device=device)
        batch["span_entity"] = torch.tensor(span_entity, device=device)
        batch["pairs"] = torch.tensor(pairs, device=device)
        batch["pair_targets"] = torch.tensor(targets, device=device)
    return batch


def batches_by_length(feats: list[_Feature], size: int, rng: random.Random,
                      tokens: int | None = None) -> list[list[int]]:
    """Batches of rows of similar length (less padding), in shuffled order: at most ``size``
    windows (a sentence is one, a document several) and ``tokens`` tokens each, so that a batch
    of short sentences and one of documents take about the same step."""
    lengths = [sum(len(w.input_ids) for w in f.windows) for f in feats]
    order = sorted(range(len(feats)), key=lambda i: (lengths[i], rng.random()))
    groups: list[list[int]] = []
    cur: list[int] = []
    n = t = 0
    for i in order:
        k = len(feats[i].windows)
        if cur and (n + k > size or (tokens is not None and t + lengths[i] > tokens)):
            groups.append(cur)
            cur, n, t = [], 0, 0
        cur.append(i)
        n += k
        t += lengths[i]
    if cur:
        groups.append(cur)
    rng.shuffle(groups)
    return groups


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
    from kgx.model.evaluate import evaluate_rows
    from kgx.ontology import load_ontology
    from kgx.runtime.progress import Progress, set_phase

    opts = options or TrainOptions()
    specs = [data] if isinstance(data, (str, Path)) else list(data)
    if not specs:
        raise DataError("no training data given")
    tuning = parse_tuning(opts.tuning)  # a bad --tuning is told before any reading
    if tuning.way != "full":
        check_tuning(tuning, base_layers(opts.base_model), opts.base_model)
    sources = [parse_source(x) for x in specs]  # every weight checked before any reading
    out_p = Path(out)
    set_seed(opts.seed)
    rng = random.Random(opts.seed)
    onto = load_ontology()
    relation_label = wikidata_relation_label(onto)
    dev_path = Path(opts.dev_path) if opts.dev_path else None  # the first source's
    set_phase("reading the training rows")
    loaded = [load_source(src, dev_path if i == 0 else None,
                          limit=opts.max_train_sentences, max_empty_share=opts.max_empty_share,
                          rng=rng, max_eval=opts.max_eval_sentences or None,
                          relation_label=relation_label) for i, src in enumerate(sources)]
    names = source_names(sources)
    dev_sets = {n: d.dev for n, d in zip(names, loaded, strict=True) if d.dev}
    dev_rows = loaded[0].dev
    ner_labels, rel_labels = label_sets([r for d in loaded for r in d.train])
    link_typing = bool(opts.link_typing_rows) and opts.epochs > 1 and \
        loaded[0].format == "corpus"
    typing_rows = draw_rows(sources[0].path, opts.link_typing_rows,
                            random.Random(opts.seed + 1)) if link_typing else []
    device = pick_device(opts.device)
    tuner = ThreadTuner(enabled=device.type == "cpu")
    set_phase(f"loading the encoder {opts.base_model}")
    model, tok = build_model(opts.base_model, ner_labels, rel_labels, casing=opts.casing)
    model.to(device)
    # Each source's windows, drawn anew every epoch by its weight.
    set_phase(f"tokenising {sum(len(d.train) for d in loaded):,} training rows")
    source_feats = [(featurize(d.train, tok, ner_labels, rel_labels, opts.max_length),
                     d.source.weight) for d in loaded]
    n_windows = sum(weighted_count(sum(len(x.windows) for x in f), w) for f, w in source_feats)
    n_sentences = sum(weighted_count(len(d.train), d.source.weight) for d in loaded)
    heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    param_groups = [{"params": heads, "lr": opts.head_learning_rate}]
    if opts.freeze_encoder:  # a baseline: only the heads learn
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    else:
        learn = apply_tuning(model, tuning)
        model.tuning, model.base_model = str(tuning), opts.base_model
        param_groups.append({"params": learn, "lr": opts.learning_rate * (
            LORA_LR_FACTOR if tuning.way == "lora" else 1.0)})
        log(f"tuning {tuning}: {sum(p.numel() for p in learn):,} of the encoder's "
            f"{sum(p.numel() for p in model.encoder.parameters()):,} parameters learn")
    optim = torch.optim.AdamW(param_groups, weight_decay=opts.weight_decay)
    steps_per_epoch = len(batches_by_length(
        [x for f, w in source_feats for x in weighted(f, w, random.Random(0))],
        opts.batch_size, random.Random(0), opts.batch_tokens))
    total = max(1, steps_per_epoch * opts.epochs)
    warm = int(total * opts.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warm) if s < warm else
        max(0.0, (total - s) / max(1, total - warm)))
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    result = TrainResult(out=str(out_p), train_sentences=n_sentences, tuning=str(tuning),
                         precision="fp32" if amp is None else str(amp).replace("torch.", ""))
    ckpt = Checkpoints(out_p / CHECKPOINT_DIR, _fingerprint(opts, sources, ner_labels,
                                                            rel_labels), log,
                       every_steps=opts.checkpoint_steps,
                       every_seconds=60 * opts.checkpoint_minutes)
    best, best_state, bad = -1.0, None, 0
    t0 = time.monotonic()
    trained = 0
    start_epoch, start_batch, losses, finished = 1, 0, [], False
    saved = ckpt.latest()
    if saved is not None:  # go on where a killed run stopped, as if it had not
        model.load_state_dict(saved["model"], strict=False)  # the rest: as built
        optim.load_state_dict(saved["optim"])
        sched.load_state_dict(saved["sched"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        best, bad, trained = saved["best"], saved["bad"], saved["trained"]
        best_state = saved["best_state"]
        for k in ("history", "best_epoch", "dev", "dev_by_source", "link_typing"):
            setattr(result, k, saved["result"][k])
        result.epochs_run = saved["result"]["epochs_run"]
        t0 -= saved["seconds"]
        if saved["typed_rows"]:
            loaded[0].train = ckpt.read_rows()
            source_feats[0] = (featurize(loaded[0].train, tok, ner_labels, rel_labels,
                                         opts.max_length), loaded[0].source.weight)
            typing_rows = []
        start_epoch, start_batch, losses = saved["epoch"], saved["batch"], saved["losses"]
        finished = saved["finished"]
        rng.setstate(saved["rng"])
        set_rng_states(saved["torch_rng"])
        log(f"resuming training from {saved['path']}: epoch {start_epoch}, batch "
            f"{start_batch + 1}, optimiser step {sched.last_epoch:,}"
            + (" (training had ended; choosing the decoder and saving)" if finished else ""))
        del saved

    def snapshot(epoch: int, batch: int, epoch_rng: Any, done: bool = False
                 ) -> dict[str, Any]:
        """What a checkpoint holds: the loop goes on from ``batch`` of ``epoch``, whose
        batches are drawn again from ``epoch_rng``."""
        return {"model": _learnt_state(model), "optim": optim.state_dict(),
                "sched": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "best": best, "bad": bad, "best_state": best_state, "trained": trained,
                "result": {k: getattr(result, k) for k in (
                    "history", "best_epoch", "dev", "dev_by_source", "link_typing",
                    "epochs_run")},
                "seconds": time.monotonic() - t0, "typed_rows": bool(result.link_typing),
                "epoch": epoch, "batch": batch, "losses": list(losses), "finished": done,
                "rng": epoch_rng, "torch_rng": rng_states()}

    deadline = t0 + opts.max_minutes * 60 if opts.max_minutes else None
    log(f"training on {n_sentences:,} rows per epoch ({n_windows:,} windows) from "
        f"{len(sources)} source(s), dev "
        f"{len(dev_rows):,}, entity labels {ner_labels[1:]}, relation labels "
        f"{len(rel_labels) - 1}, device {device}")
    for epoch in range(start_epoch, 0 if finished else opts.epochs + 1):
        model.train()
        epoch_rng = rng.getstate()  # the epoch's batches are drawn again from it on resume
        feats = [x for f, w in source_feats for x in weighted(f, w, rng)]
        groups = batches_by_length(feats, opts.batch_size, rng, opts.batch_tokens)
        skip = start_batch if epoch == start_epoch else 0
        if not skip:
            losses = []
        stopped = False
        with Progress(total=len(groups), unit="batches", enabled=progress,
                      desc=f"model, epoch {epoch}") as bar:  # closed on any error too
            bar.update(skip)
            for at, g in enumerate(groups[skip:], skip):
                t_batch = time.perf_counter()
                batch = collate([feats[i] for i in g], tok, device, len(rel_labels))
                losses.append(_optimiser_step(model, batch, optim, sched, scaler, amp))
                trained += len(g)
                tuner.step(time.perf_counter() - t_batch, len(g))
                bar.update(1, sentences=trained)
                if ckpt.due() and at + 1 < len(groups):
                    ckpt.save(snapshot(epoch, at + 1, epoch_rng), sched.last_epoch)
                if deadline and time.monotonic() > deadline:
                    stopped = True
                    break
        if not stopped and skip < len(groups):
            # the epoch's batches are done: a kill in the scoring and link typing that follow
            # costs those alone
            ckpt.save(snapshot(epoch, len(groups), epoch_rng), sched.last_epoch)
        model.eval()
        set_phase(f"scoring epoch {epoch} on {sum(map(len, dev_sets.values())):,} dev rows")
        reader = Predictor(model, tok, {}, max_length=opts.max_length)
        by_source = {n: evaluate_rows(reader, rows) for n, rows in dev_sets.items()}
        scores = by_source.get(names[0], {})
        score = sum(map(dev_score, by_source.values())) / max(1, len(by_source))
        entry = {"epoch": epoch, "loss": round(sum(losses) / max(1, len(losses)), 4),
                 "dev_entity_f1": scores.get("entities", {}).get("micro", {}).get("f1"),
                 "dev_relation_f1": scores.get("relations", {}).get("micro", {}).get("f1"),
                 "dev_score": round(score, 4)}
        if len(sources) > 1:
            entry["dev_by_source"] = {n: round(dev_score(v), 4) for n, v in by_source.items()}
        result.history.append(entry)
        log("epoch {epoch}: loss {loss}, dev entity F1 {dev_entity_f1}, dev relation F1 "
            "{dev_relation_f1}".format(**entry))
        result.epochs_run = epoch
        if score > best:
            best, bad, result.best_epoch, result.dev = score, 0, epoch, scores
            result.dev_by_source = by_source
            best_state = {k: v.detach().cpu().clone() for k, v in _learnt_state(model).items()}
        else:
            bad += 1
            if bad > opts.patience:
                log(f"early stop: dev score has not improved for {bad} epochs")
                stopped = True
        if stopped and deadline and time.monotonic() > deadline:
            log(f"stopped: time budget of {opts.max_minutes} minutes reached")
        if link_typing and epoch == 1 and not stopped:
            set_phase(f"typing links to untyped pages in {len(typing_rows):,} rows")
            rows, typing = type_links(reader, loaded[0].train, typing_rows)
            loaded[0].train = sample_training_rows(rows, opts.max_train_sentences,
                                                   opts.max_empty_share, rng)
            source_feats[0] = (featurize(loaded[0].train, tok, ner_labels, rel_labels,
                                         opts.max_length), loaded[0].source.weight)
            result.link_typing = asdict(typing)
            log(f"link typing: {typing.links:,} links to {typing.targets:,} untyped pages read "
                f"in {typing.seconds} s; typed {typing.typed or 'none'}; "
                f"{typing.mentions_added:,} mentions added")
            typing_rows = []  # read: not kept through the later epochs
            ckpt.save_rows(loaded[0].train)
        losses = []
        ckpt.save(snapshot(epoch + 1, 0, rng.getstate(), done=stopped), sched.last_epoch)
        if stopped:
            break
    result.seconds = round(time.monotonic() - t0, 1)
    result.sentences_per_second = round(trained / max(1e-9, result.seconds), 1)
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    decoder = _decode_and_score(model, tok, opts, result, source_feats, dev_sets, loaded,
                                names, log)
    metadata = _metadata(opts, onto, sources, loaded, names, ner_labels, rel_labels, result,
                         decoder)
    set_phase("saving the model")
    model.save(out_p, tok, metadata)
    (out_p / "README.md").write_text(model_card(metadata), encoding="utf-8")
    ckpt.clear()  # the model is saved: nothing to resume
    return result
