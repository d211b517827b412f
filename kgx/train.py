"""``kgx train``: fine-tune an encoder on the silver corpus and gold sets for NER + relations.

Takes one or more sources, each with a sampling weight: corpus directories
(``train/dev/test.jsonl`` from ``kgx corpus``), CoNLL files, DocRED / Re-DocRED JSON; gives
a model directory in Hugging Face layout (config with label maps, tokenizer, safetensors) plus
``kgx.json`` (ontology version, corpus statistics, settings, dev and test scores) and a model
card. The order is the proven one: tokenize -> align labels to sub-tokens -> train -> seqeval.
Seeds are fixed; the best epoch on dev is kept (early stopping); the GPU is used with bf16/fp16
when present, otherwise every CPU core.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import numpy
import torch

from kgx import __version__
from kgx.corpus import (
    KINDS,
    NA,
    iter_split,
    mention_entities,
    read_rows_at,
    row_kind,
    training_offsets,
)
from kgx.cpu import ThreadTuner
from kgx.datasets import (
    DataError,
    TrainingSource,
    docred_sentence_rows,
    held_out,
    parse_source,
    read_conll,
    read_docred,
    sniff_format,
)
from kgx.link_typing import draw_rows, type_links
from kgx.model import (
    DEFAULT_BASE,
    Predictor,
    Window,
    autocast_dtype,
    bio_labels,
    build_model,
    first_window,
    pad_batch,
    pick_device,
    tag_counts,
    tag_transitions,
    token_span,
    tokenize,
    windows_for,
    word_tag_sequence,
)

T = TypeVar("T")


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
    freeze_encoder: bool = False
    casing: bool = True  # the word-shape feature (kgx.model.SHAPES) beside the encoder
    max_eval_sentences: int | None = 2000
    # After the first epoch, the links of a silver corpus to pages of no known type are
    # typed by the tagger's reading of them (kgx.link_typing) in the training rows and in
    # this many more drawn from the corpus, and the later epochs learn from them. 0: off.
    link_typing_rows: int = 8000
    max_minutes: float | None = None
    device: str | None = None
    dev_path: str | None = None


@dataclass(slots=True)
class TrainResult:
    """What a training run did."""

    out: str
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


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass(slots=True)
class SourceData:
    """A training source read: its rows by split, its format and what it counted."""

    source: TrainingSource
    format: str
    train: list[dict]
    dev: list[dict]
    test: list[dict]
    stats: dict[str, Any]


def wikidata_relation_label(onto: Any | None = None) -> Callable[[str], str]:
    """Wikidata property id -> kgx's property for it (``P19`` -> ``birthPlace``); an id the
    ontology does not align stays as it is, its own label."""
    from kgx.ontology import load_ontology

    onto = onto or load_ontology()
    local = {p.wikidata: name for name, p in sorted(onto.properties.items()) if p.wikidata}
    return lambda pid: local.get(pid, pid)


def load_training_data(data: Path, dev_path: Path | None = None, *,
                       limit: int | None = None, max_empty_share: float = 0.3,
                       rng: random.Random | None = None, max_eval: int | None = None
                       ) -> tuple[list[dict], list[dict], list[dict], dict[str, Any]]:
    """(train, dev, test, stats) of one source: see :func:`load_source`."""
    d = load_source(TrainingSource(data), dev_path, limit=limit,
                    max_empty_share=max_empty_share, rng=rng, max_eval=max_eval)
    return d.train, d.dev, d.test, d.stats


def load_source(src: TrainingSource, dev_path: Path | None = None, *,
                limit: int | None = None, max_empty_share: float = 0.3,
                rng: random.Random | None = None, max_eval: int | None = None,
                relation_label: Callable[[str], str] | None = None) -> SourceData:
    """Rows of one training source: a corpus directory, a CoNLL file or a DocRED JSON file.

    Training rows are drawn by :func:`plan_sample` (at most ``limit``). From a corpus
    directory only the drawn rows are read, found through the corpus's row offsets
    (:func:`kgx.corpus.training_offsets`), so the cost and the memory follow ``limit``, not the
    corpus; dev and test stop at ``max_eval`` rows. A CoNLL file's dev set is ``dev_path``, else
    its last tenth; a DocRED file's is the tenth of its documents :func:`held_out` picks by
    title. DocRED documents become sentence rows (:func:`kgx.datasets.docred_sentence_rows`),
    their Wikidata relation ids mapped by ``relation_label``.

    Raises:
        DataError: Missing splits, an unreadable file (named with its line), or a source with
            no label kgx can learn.
    """
    rng = rng or random.Random(13)
    data = src.path
    if data.is_dir():
        for s in ("train", "dev"):
            if not (data / f"{s}.jsonl").exists():
                raise DataError(f"{data}: no {s}.jsonl; build a corpus with `kgx corpus`")
        try:
            offsets = training_offsets(data)
            plan = plan_sample([len(a) for a in offsets], limit, max_empty_share, rng)
            train = read_rows_at(data / "train.jsonl", (offsets[k][i] for k, i in plan))
            dev = list(islice(iter_split(data / "dev.jsonl"), max_eval))
            test = list(islice(iter_split(data / "test.jsonl"), max_eval)) \
                if (data / "test.jsonl").exists() else []
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        stats_path = data / "stats.json"
        stats = json.loads(stats_path.read_text("utf-8")) if stats_path.exists() else {}
        fmt = "corpus"
    else:
        if not data.exists():
            raise DataError(f"{data}: no such file or directory")
        fmt = sniff_format(data)
        stats = {"source": str(data)}
        if fmt == "conll":
            train = read_conll(data)
            dev = read_conll(dev_path) if dev_path else []
            if not dev:  # hold out a tenth, deterministically
                k = max(1, len(train) // 10)
                dev, train = train[-k:], train[:-k]
        elif fmt == "docred":
            docs = read_docred(data)
            keys = [d["title"] or str(i) for i, d in enumerate(docs)]
            label = relation_label or wikidata_relation_label()
            train = docred_sentence_rows(
                (d for d, k in zip(docs, keys, strict=True) if not held_out(k)), label)
            dev = docred_sentence_rows(
                (d for d, k in zip(docs, keys, strict=True) if held_out(k)), label)
            stats.update(documents=len(docs), relations=sum(len(d["labels"]) for d in docs))
        else:
            raise DataError(f"{data}: expected a corpus directory, a CoNLL file or a DocRED "
                            "JSON file")
        test = []
        train = sample_training_rows(train, limit, max_empty_share, rng)
        dev = dev[:max_eval]
    if not any(m.get("label") for r in train for m in r["mentions"]) and \
            not any(x["label"] != NA for r in train for x in r.get("relations", [])):
        raise DataError(f"{data}: the training set has no labelled mentions or relations; "
                        "nothing to learn")
    return SourceData(src, fmt, train, dev, test, stats)


def weighted(items: list[T], weight: float, rng: random.Random) -> list[T]:
    """``weight`` times ``items``: whole copies, then a random sample for the fraction."""
    whole, frac = divmod(weight, 1.0)
    return items * int(whole) + rng.sample(items, round(frac * len(items)))


def weighted_count(n: int, weight: float) -> int:
    """How many items :func:`weighted` gives for ``n``."""
    whole, frac = divmod(weight, 1.0)
    return n * int(whole) + round(frac * n)


def source_names(sources: Sequence[TrainingSource]) -> list[str]:
    """A short unique name per source (its file name, or its path where two share one)."""
    names = [s.path.name or str(s.path) for s in sources]
    return [n if names.count(n) == 1 else str(s.path) for n, s in zip(names, sources,
                                                                       strict=True)]


def plan_sample(counts: Sequence[int], limit: int | None, max_empty_share: float,
                rng: random.Random) -> list[tuple[int, int]]:
    """Which training rows to use, as (kind, index within the kind), in training order.

    ``counts`` are the rows of each kind (:data:`kgx.corpus.KINDS`: with a relation, with
    mentions only, with neither). Sentences with a relation come first, then with mentions,
    then a capped share without any: most silver sentences hold no entity at all, and trained
    on them as they come the tagger learns to say "O" everywhere. Capping the mention-free
    share (30% by default) keeps the negatives without letting them dominate. Each kind is
    drawn uniformly, so the plan costs ``limit``, whatever the counts.
    """
    def draw(kind: int) -> list[tuple[int, int]]:
        n = counts[kind]
        picked = list(range(n)) if limit is None or n <= limit else rng.sample(range(n), limit)
        rng.shuffle(picked)
        return [(kind, i) for i in picked]

    rel, ment, empty = draw(0), draw(1), draw(2)
    full = rel + ment
    n_full = counts[0] + counts[1]
    n_empty = int(n_full * max_empty_share / max(1e-9, 1 - max_empty_share))
    if limit is None or n_full + min(n_empty, counts[2]) <= limit:
        chosen = full + empty[:n_empty]
    else:
        keep_full = min(len(full), limit, max(len(rel), int(limit * (1 - max_empty_share))))
        chosen = full[:keep_full] + empty[: max(0, limit - keep_full)]
    rng.shuffle(chosen)
    return chosen


def sample_training_rows(rows: list[dict], limit: int | None, max_empty_share: float,
                         rng: random.Random) -> list[dict]:
    """:func:`plan_sample` over rows held in memory (a CoNLL file)."""
    by_kind: list[list[dict]] = [[] for _ in KINDS]
    for r in rows:
        by_kind[row_kind(r)].append(r)
    plan = plan_sample([len(b) for b in by_kind], limit, max_empty_share, rng)
    return [by_kind[k][i] for k, i in plan]


def label_sets(rows: list[dict]) -> tuple[list[str], list[str]]:
    """BIO labels and relation labels (NA first) seen in training rows."""
    types = sorted({m["label"] for r in rows for m in r["mentions"] if m.get("label")})
    ner = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]
    rels = sorted({x["label"] for r in rows for x in r.get("relations", [])} - {NA})
    return ner, [NA, *rels]


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
    spans, span_entity, pairs, targets = [], [], [], []
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
    from kgx.evaluate import evaluate_rows
    from kgx.ontology import is_wikidata_property, load_ontology
    from kgx.progress import Progress, set_phase

    opts = options or TrainOptions()
    specs = [data] if isinstance(data, (str, Path)) else list(data)
    if not specs:
        raise DataError("no training data given")
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
    dev_rows, test_rows = loaded[0].dev, loaded[0].test
    corpus_stats = loaded[0].stats
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
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    groups = [{"params": heads, "lr": opts.head_learning_rate}]
    if opts.freeze_encoder:  # a baseline: only the heads learn
        for p in enc_params:
            p.requires_grad_(False)
    else:
        groups.append({"params": enc_params, "lr": opts.learning_rate})
    optim = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
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
    result = TrainResult(out=str(out_p), train_sentences=n_sentences)
    best, best_state, bad = -1.0, None, 0
    t0 = time.monotonic()
    trained = 0
    deadline = t0 + opts.max_minutes * 60 if opts.max_minutes else None
    log(f"training on {n_sentences:,} rows per epoch ({n_windows:,} windows) from "
        f"{len(sources)} source(s), dev "
        f"{len(dev_rows):,}, entity labels {ner_labels[1:]}, relation labels "
        f"{len(rel_labels) - 1}, device {device}")
    for epoch in range(1, opts.epochs + 1):
        model.train()
        losses = []
        feats = [x for f, w in source_feats for x in weighted(f, w, rng)]
        groups = batches_by_length(feats, opts.batch_size, rng, opts.batch_tokens)
        bar = Progress(total=len(groups), unit="batches", enabled=progress,
                       desc=f"model, epoch {epoch}")
        stopped = False
        for g in groups:
            t_batch = time.perf_counter()
            batch = collate([feats[i] for i in g], tok, device, len(rel_labels))
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
            losses.append(loss.item())
            trained += len(g)
            tuner.step(time.perf_counter() - t_batch, len(g))
            bar.update(1, sentences=trained)
            if deadline and time.monotonic() > deadline:
                stopped = True
                break
        bar.close()
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
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad > opts.patience:
                log(f"early stop: dev score has not improved for {bad} epochs")
                break
        if stopped:
            log(f"stopped: time budget of {opts.max_minutes} minutes reached")
            break
        if link_typing and epoch == 1:
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
    result.seconds = round(time.monotonic() - t0, 1)
    result.sentences_per_second = round(trained / max(1e-9, result.seconds), 1)
    if best_state is not None:
        model.load_state_dict(best_state)
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
        from kgx.evaluate import relation_outcomes

        set_phase(f"scoring the relations of {len(gold_dev):,} gold dev rows")
        decoder["gold_dev_relations"] = relation_outcomes(
            Predictor(model, tok, decoder, max_length=opts.max_length), gold_dev)
    if test_rows:
        set_phase(f"scoring {len(test_rows):,} test rows")
        result.test = evaluate_rows(Predictor(model, tok, decoder, max_length=opts.max_length),
                                    test_rows)
    metadata = {
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
    set_phase("saving the model")
    model.save(out_p, tok, metadata)
    (out_p / "README.md").write_text(model_card(metadata), encoding="utf-8")
    return result


TEMPERATURES = tuple(round(2 ** (k / 4), 4) for k in range(-8, 13))  # 0.25 to 8


def fit_relation_temperature(reader: Predictor, dev_sets: dict[str, list[dict]],
                             log: Callable[[str], None]) -> dict[str, Any]:
    """The temperature T of the relation scores, ``sigmoid((logit - threshold logit) / T)``,
    that minimises their log loss on the dev sets' relation examples (temperature scaling,
    Guo et al. 2017). Dividing by T moves no score across 0.5, so the model's decisions at
    its threshold stay as trained; only what a score of 0.8 means changes.

    Returns:
        ``relation_temperature`` and ``relation_calibration`` (the pair-and-property scores
        it was fitted on, ``examples``, and the positive ones; the log loss and
        the expected calibration error of the scores at or above 0.5, those a fact can carry,
        before and after) for ``kgx.json``; nothing when the dev sets hold no relation
        example of both kinds or the model has no adaptive threshold.
    """
    from kgx.evaluate import reliability, row_pairs

    if not reader.model.adaptive_threshold or len(reader.relation_labels) < 2:
        return {}
    index = {lab: i for i, lab in enumerate(reader.relation_labels)}
    margins, targets = [], []
    for rows in dev_sets.values():
        for r in rows:
            if not r.get("relations"):
                continue
            span_entity, gold = row_pairs(r)
            pairs = sorted(gold)
            todo, logits = reader.pair_logits_of(
                r["text"], [(m["start"], m["end"]) for m in r["mentions"]], pairs, span_entity)
            if not todo:
                continue
            y = torch.zeros((len(todo), len(index) - 1))
            for row, k in enumerate(todo):
                for lab in gold[pairs[k]]:
                    if lab in index and lab != NA:
                        y[row, index[lab] - 1] = 1.0
            margins.append(logits[:, 1:] - logits[:, :1])
            targets.append(y)
    if not margins:
        return {}
    m, y = torch.cat(margins).flatten(), torch.cat(targets).flatten()
    if not 0 < float(y.sum()) < len(y):
        return {}

    def loss(t: float) -> float:
        return float(torch.nn.functional.binary_cross_entropy_with_logits(m / t, y))

    def ece(t: float) -> float:
        scores = torch.sigmoid(m / t)
        keep = scores >= 0.5  # the scores a fact can carry
        table = reliability(scores[keep].tolist(), (y[keep] > 0).tolist(), bins=5)
        n = sum(b["predictions"] for b in table)
        return sum(b["predictions"] * abs(b["precision"] - b["mean_score"])
                   for b in table if b["predictions"]) / n if n else 0.0

    best = min(TEMPERATURES, key=loss)
    out = {"examples": len(y), "positives": int(y.sum()), "log_loss_before": round(loss(1.0), 4),
           "log_loss_after": round(loss(best), 4), "ece_before": round(ece(1.0), 4),
           "ece_after": round(ece(best), 4)}
    log(f"relation scores: temperature {best} fitted on {out['examples']:,} dev scores (pairs x "
        f"properties, {out['positives']:,} positive); log loss {out['log_loss_before']} -> "
        f"{out['log_loss_after']}, calibration error {out['ece_before']} -> {out['ece_after']}")
    return {"relation_temperature": best, "relation_calibration": out}


PRIOR_WEIGHTS = (0.25, 0.5, 0.75, 1.0)  # the tag decodings tried on dev (see choose_decoder)


def choose_decoder(reader: Predictor, tag_sequences: list[tuple[list[int], float]],
                   dev_sets: dict[str, list[dict]], log: Callable[[str], None]
                   ) -> dict[str, Any]:
    """The tag decoding that gives the best mean entity F1 on the dev sets: word by word, or
    Viterbi over tag transitions counted on the training rows (see
    :func:`kgx.model.tag_transitions`), with each weight of :data:`PRIOR_WEIGHTS` on the
    tags' prior. One encoder pass serves every candidate.

    Returns:
        What goes into the model's ``kgx.json`` (``tag_transitions`` when Viterbi won, the
        choice, every candidate's dev F1) and, under ``dev_entities``, the chosen decoding's
        entity scores on each dev set.
    """
    from kgx.evaluate import entity_scores

    labels = reader.model.ner_labels
    counted = tag_counts(tag_sequences, len(labels))  # once, for every weight
    candidates: dict[str, Any] = {"argmax": None}
    for w in PRIOR_WEIGHTS:
        candidates[f"viterbi, prior weight {w}"] = tag_transitions(counted, labels,
                                                                   prior_weight=w)
    encoded = {n: reader.encode_texts([r["text"] for r in rows], keep_hidden=False)
               for n, rows in dev_sets.items() if rows}
    scores: dict[str, dict[str, Any]] = {}
    for name, trans in candidates.items():
        reader.transitions = None if trans is None else numpy.array(trans)
        scores[name] = {n: entity_scores(dev_sets[n], reader.decode_mentions(
            [r["text"] for r in dev_sets[n]], enc)) for n, enc in encoded.items()}
    reader.transitions = None

    def mean_f1(name: str) -> float:
        f1s = [v["micro"]["f1"] for v in scores[name].values()]
        return sum(f1s) / len(f1s) if f1s else 0.0

    best = max(candidates, key=mean_f1)  # the first of equals: word by word
    log("tag decoding on dev (entity F1): " + ", ".join(
        f"{n} {mean_f1(n):.4f}" for n in candidates) + f"; keeping {best}")
    out: dict[str, Any] = {"tag_decoder": best,
                           "tag_decoder_dev_f1": {n: mean_f1(n) for n in candidates},
                           "dev_entities": scores[best]}
    if candidates[best] is not None:  # strict JSON: a forbidden transition is null
        out["tag_transitions"] = [[None if math.isinf(v) else v for v in row]
                                  for row in candidates[best]]
    return out


def model_card(meta: dict[str, Any]) -> str:
    """A model card: what the model was trained on and how well it does."""

    def row(name: str, s: dict[str, Any]) -> str:
        ent = s.get("entities", {}).get("micro", {})
        rel = s.get("relations", {}).get("micro", {})
        return (f"| {name} | {s.get('sentences', 0):,} | {ent.get('precision', '-')} | "
                f"{ent.get('recall', '-')} | {ent.get('f1', '-')} | {rel.get('f1', '-')} |")

    st = meta.get("corpus_stats", {})
    tr = meta["training"]
    silver = meta.get("sources", [{"format": "corpus"}])[0]["format"] == "corpus"
    types: Counter[str] = Counter(st.get("mentions", {}))
    lines = [
        "---", "library_name: transformers", "pipeline_tag: token-classification",
        f"base_model: {meta['base_model']}", "tags: [kgx, ner, relation-extraction]", "---", "",
        "# kgx reader", "",
        f"A `{meta['base_model']}` encoder fine-tuned by kgx {meta['kgx_version']} for entity "
        "tagging (BIO over " + ", ".join(meta["entity_labels"]) + ") and relation "
        f"classification over {len(meta['relation_labels']) - 1} ontology properties "
        "(span pooling over a shared encoder).", "",
        "## Training data", "",
        (f"Silver labels the dump gives itself: `{meta['trained_on']}` "
         f"({tr['train_sentences']:,} training sentences per epoch). Mentions come from "
         "wikilinks typed through the linked page's class; relations from infobox facts whose "
         "subject and object share a sentence (distant supervision). Mentions per type in the "
         "corpus: " + (", ".join(f"{k} {v:,}" for k, v in types.most_common()) or "n/a") + "."
         + _link_typing_sentence(tr.get("link_typing") or {})
         if silver else
         f"Gold data: `{meta['trained_on']}` ({tr['train_sentences']:,} training sentences "
         "per epoch)."), "",
        *_sources_section(meta),
        "## Scores (silver labels)" if silver else "## Scores", "",
        "| split | sentences | entity P | entity R | entity F1 | relation F1 (gold mentions) |",
        "|---|---|---|---|---|---|",
        row("dev", meta.get("dev", {})), row("test", meta.get("test", {})),
        *(row(f"dev of {n}", s) for n, s in list(meta.get("dev_by_source", {}).items())[1:]),
        "",
        f"Best epoch {tr['best_epoch']} of {tr['epochs_run']}; {tr['seconds']} s of training "
        f"at {tr['sentences_per_second']} sentences/s. Scores against silver labels measure "
        "agreement with the dump's own links, not gold accuracy: see kgx's README for "
        "Re-DocRED figures and the limits of a small dump.", "",
        *_decoding_section(meta),
        "## Use", "", "```python",
        "from kgx.model import Predictor", "p = Predictor.load('THIS_DIRECTORY')",
        "p.predict(['Ayn Rand was born in Saint Petersburg.'])", "```", "",
        "`AutoModelForTokenClassification.from_pretrained` loads the encoder and the entity "
        "tagger; the relation head (`relation_head.*`) is read by kgx.",
    ]
    return "\n".join(lines) + "\n"


def _link_typing_sentence(lt: dict[str, Any]) -> str:
    if not lt:
        return ""
    return (f" After the first epoch the tagger read {lt['links']:,} links to "
            f"{lt['targets']:,} pages of no known type and typed those most of their links "
            "agreed on (" + (", ".join(f"{k} {v:,}" for k, v in lt["typed"].items()) or "none")
            + f"); the later epochs learned {lt['mentions_added']:,} more mentions from them.")


def _decoding_section(meta: dict[str, Any]) -> list[str]:
    """The model card's lines on how tags and relation scores are decoded."""
    lines = ["## Decoding", ""]
    dec = meta.get("tag_decoder")
    if dec:
        lines.append(f"Entity tags: {dec}, chosen on dev (entity F1: " + ", ".join(
            f"{k} {v:.4f}" for k, v in meta.get("tag_decoder_dev_f1", {}).items())
            + "). Viterbi uses the tag transitions counted on the training rows (`kgx.json`, "
            "`tag_transitions`).")
    cal = meta.get("relation_calibration")
    if cal:
        if dec:
            lines.append("")
        lines.append(f"Relation scores: `sigmoid((logit - threshold logit) / "
                     f"{meta['relation_temperature']})`, the temperature fitted on "
                     f"{cal['examples']:,} dev scores (pairs x properties, {cal['positives']:,} "
                     "positive): log loss "
                     f"{cal['log_loss_before']} -> {cal['log_loss_after']}, expected calibration "
                     f"error of the scores at or above 0.5 {cal['ece_before']} -> "
                     f"{cal['ece_after']}.")
    return [*lines, ""] if len(lines) > 2 else []


def _sources_section(meta: dict[str, Any]) -> list[str]:
    """The model card's table of training sources, when there is more than one."""
    sources = meta.get("sources", [])
    if len(sources) < 2:
        return []
    lines = ["Sources mixed in each epoch (weight: how many times its rows an epoch draws):", "",
             "| source | format | weight | rows drawn | rows per epoch | dev rows |",
             "|---|---|---|---|---|---|"]
    lines += [f"| `{s['path']}` | {s['format']} | {s['weight']:g} | {s['rows_drawn']:,} | "
              f"{s['rows_per_epoch']:,} | {s['dev_rows']:,} |" for s in sources]
    return [*lines, ""]
