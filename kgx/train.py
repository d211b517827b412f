"""``kgx train``: fine-tune an encoder on the silver corpus (or CoNLL gold) for NER + relations.

Takes a corpus directory (``train/dev/test.jsonl`` from ``kgx corpus``) or a CoNLL file; gives
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
from typing import Any

import torch

from kgx import __version__
from kgx.corpus import KINDS, NA, iter_split, read_rows_at, row_kind, training_offsets
from kgx.cpu import ThreadTuner
from kgx.datasets import DataError, read_conll, sniff_format
from kgx.model import (
    DEFAULT_BASE,
    Predictor,
    Window,
    autocast_dtype,
    bio_labels,
    build_model,
    pad_batch,
    pick_device,
    token_span,
    tokenize,
    windows_for,
)


@dataclass(slots=True)
class TrainOptions:
    """Training settings (all saved in the model's ``kgx.json``)."""

    base_model: str = DEFAULT_BASE
    epochs: int = 3
    batch_size: int = 16
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
    max_eval_sentences: int | None = 2000
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
    dev: dict[str, Any] = field(default_factory=dict)
    test: dict[str, Any] = field(default_factory=dict)


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def load_training_data(data: Path, dev_path: Path | None = None, *,
                       limit: int | None = None, max_empty_share: float = 0.3,
                       rng: random.Random | None = None, max_eval: int | None = None
                       ) -> tuple[list[dict], list[dict], list[dict], dict[str, Any]]:
    """(train, dev, test, corpus stats) from a corpus directory or a CoNLL file.

    Training rows are drawn by :func:`plan_sample`. From a corpus directory only the drawn
    rows are read, found through the corpus's row offsets (:func:`kgx.corpus.training_offsets`),
    so the cost and the memory follow ``limit``, not the corpus; dev and test stop at
    ``max_eval`` rows.

    Raises:
        DataError: Missing splits, or an empty training set.
    """
    rng = rng or random.Random(13)
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
    else:
        if not data.exists():
            raise DataError(f"{data}: no such file or directory")
        if sniff_format(data) != "conll":
            raise DataError(f"{data}: expected a corpus directory or a CoNLL file")
        train = read_conll(data)
        dev = read_conll(dev_path) if dev_path else []
        if not dev:  # hold out a tenth, deterministically
            k = max(1, len(train) // 10)
            dev, train = train[-k:], train[:-k]
        test, stats = [], {"source": str(data)}
        train = sample_training_rows(train, limit, max_empty_share, rng)
        dev, test = dev[:max_eval], test[:max_eval]
    if not train or not any(r["mentions"] for r in train):
        raise DataError(f"{data}: the training set has no labelled mentions; nothing to learn")
    return train, dev, test, stats


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
    window: Window
    spans: list[tuple[int, int]]  # token ranges within the window
    pairs: list[tuple[int, int, int]]  # head span, tail span, label id


def featurize(rows: list[dict], tokenizer: Any, ner_labels: list[str], rel_labels: list[str],
              max_length: int) -> list[_Feature]:
    """Tokenize, align labels to sub-tokens, cut into windows."""
    label2id = {lab: i for i, lab in enumerate(ner_labels)}
    rel2id = {lab: i for i, lab in enumerate(rel_labels)}
    feats = []
    toks = tokenize(tokenizer, [r["text"] for r in rows])
    for r, tk in zip(rows, toks, strict=True):
        labels = bio_labels(tk, r["mentions"], r.get("ignore", []), label2id)
        mspans = [token_span(tk, m["start"], m["end"]) for m in r["mentions"]]
        for a, b in windows_for(len(tk.ids), max_length - 2, 32):
            w = Window(0, a, tk.ids[a:b], labels[a:b])
            index: dict[int, int] = {}
            spans: list[tuple[int, int]] = []
            for mi, sp in enumerate(mspans):
                if sp is not None and a <= sp[0] and sp[1] <= b:
                    index[mi] = len(spans)
                    spans.append((sp[0] - a, sp[1] - a))
            pairs = [(index[x["head"]], index[x["tail"]], rel2id[x["label"]])
                     for x in r.get("relations", [])
                     if x["head"] in index and x["tail"] in index and x["label"] in rel2id]
            feats.append(_Feature(w, spans, pairs))
    return feats


def collate(feats: list[_Feature], tokenizer: Any, device: torch.device
            ) -> dict[str, torch.Tensor]:
    batch = pad_batch([f.window for f in feats], tokenizer.cls_token_id, tokenizer.sep_token_id,
                      tokenizer.pad_token_id, device)
    spans, pairs, plabels = [], [], []
    for bi, f in enumerate(feats):
        base = len(spans)
        # +1: position 0 of each row is [CLS]
        spans.extend([bi, s + 1, e + 1] for s, e in f.spans)
        for h, t, lab in f.pairs:
            pairs.append([base + h, base + t])
            plabels.append(lab)
    if pairs:
        batch["spans"] = torch.tensor(spans, device=device)
        batch["pairs"] = torch.tensor(pairs, device=device)
        batch["pair_labels"] = torch.tensor(plabels, device=device)
    return batch


def batches_by_length(feats: list[_Feature], size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (less padding), in shuffled order."""
    order = sorted(range(len(feats)), key=lambda i: (len(feats[i].window.input_ids), rng.random()))
    groups = [order[i: i + size] for i in range(0, len(order), size)]
    rng.shuffle(groups)
    return groups


def dev_score(scores: dict[str, Any]) -> float:
    """The number early stopping watches: mean of entity micro F1 and relation micro F1."""
    ner = scores.get("entities", {}).get("micro", {}).get("f1", 0.0)
    if "relations" in scores:
        return (ner + scores["relations"]["micro"]["f1"]) / 2
    return ner


def train(data: str | Path, out: str | Path, options: TrainOptions | None = None,
          log: Callable[[str], None] = print, progress: bool | None = None) -> TrainResult:
    """Fine-tune and save a model.

    Args:
        data: Corpus directory or CoNLL file.
        out: Model directory to write.
        options: Settings.
        log: Where per-epoch lines go.
        progress: Progress bar (default: on a terminal).

    Raises:
        DataError: Bad or empty training data.
    """
    from kgx.evaluate import evaluate_rows
    from kgx.ontology import load_ontology
    from kgx.progress import Progress

    opts = options or TrainOptions()
    data_p, out_p = Path(data), Path(out)
    set_seed(opts.seed)
    rng = random.Random(opts.seed)
    train_rows, dev_rows, test_rows, corpus_stats = load_training_data(
        data_p, Path(opts.dev_path) if opts.dev_path else None,
        limit=opts.max_train_sentences, max_empty_share=opts.max_empty_share, rng=rng,
        max_eval=opts.max_eval_sentences or None)
    ner_labels, rel_labels = label_sets(train_rows)
    device = pick_device(opts.device)
    tuner = ThreadTuner(enabled=device.type == "cpu")
    model, tok = build_model(opts.base_model, ner_labels, rel_labels)
    model.to(device)
    feats = featurize(train_rows, tok, ner_labels, rel_labels, opts.max_length)
    heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    enc_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    groups = [{"params": heads, "lr": opts.head_learning_rate}]
    if opts.freeze_encoder:  # a baseline: only the heads learn
        for p in enc_params:
            p.requires_grad_(False)
    else:
        groups.append({"params": enc_params, "lr": opts.learning_rate})
    optim = torch.optim.AdamW(groups, weight_decay=opts.weight_decay)
    steps_per_epoch = math.ceil(len(feats) / opts.batch_size)
    total = max(1, steps_per_epoch * opts.epochs)
    warm = int(total * opts.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: (s + 1) / max(1, warm) if s < warm else
        max(0.0, (total - s) / max(1, total - warm)))
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    result = TrainResult(out=str(out_p), train_sentences=len(train_rows))
    best, best_state, bad = -1.0, None, 0
    t0 = time.monotonic()
    trained = 0
    deadline = t0 + opts.max_minutes * 60 if opts.max_minutes else None
    log(f"training on {len(train_rows):,} sentences ({len(feats):,} windows), dev "
        f"{len(dev_rows):,}, entity labels {ner_labels[1:]}, relation labels "
        f"{len(rel_labels) - 1}, device {device}")
    for epoch in range(1, opts.epochs + 1):
        model.train()
        losses = []
        groups = batches_by_length(feats, opts.batch_size, rng)
        bar = Progress(total=len(groups), unit="batches", enabled=progress,
                       desc=f"model, epoch {epoch}")
        stopped = False
        for g in groups:
            t_batch = time.perf_counter()
            batch = collate([feats[i] for i in g], tok, device)
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
        scores = evaluate_rows(Predictor(model, tok, {}, max_length=opts.max_length), dev_rows) \
            if dev_rows else {}
        score = dev_score(scores)
        entry = {"epoch": epoch, "loss": round(sum(losses) / max(1, len(losses)), 4),
                 "dev_entity_f1": scores.get("entities", {}).get("micro", {}).get("f1"),
                 "dev_relation_f1": scores.get("relations", {}).get("micro", {}).get("f1"),
                 "dev_score": round(score, 4)}
        result.history.append(entry)
        log("epoch {epoch}: loss {loss}, dev entity F1 {dev_entity_f1}, dev relation F1 "
            "{dev_relation_f1}".format(**entry))
        result.epochs_run = epoch
        if score > best:
            best, bad, result.best_epoch, result.dev = score, 0, epoch, scores
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad > opts.patience:
                log(f"early stop: dev score has not improved for {bad} epochs")
                break
        if stopped:
            log(f"stopped: time budget of {opts.max_minutes} minutes reached")
            break
    result.seconds = round(time.monotonic() - t0, 1)
    result.sentences_per_second = round(trained / max(1e-9, result.seconds), 1)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if test_rows:
        result.test = evaluate_rows(Predictor(model, tok, {}, max_length=opts.max_length),
                                    test_rows)
    onto = load_ontology()
    metadata = {
        "kgx_version": __version__,
        "ontology_version": onto.version,
        "base_model": opts.base_model,
        "trained_on": str(data_p),
        "corpus_stats": corpus_stats,
        "settings": asdict(opts),
        "entity_labels": [lab[2:] for lab in ner_labels if lab.startswith("B-")],
        "relation_labels": rel_labels,
        "relation_wikidata": {lab: onto.properties[lab].wikidata for lab in rel_labels
                              if lab in onto.properties},
        "training": {k: v for k, v in asdict(result).items() if k not in ("dev", "test")},
        "dev": result.dev,
        "test": result.test,
    }
    model.save(out_p, tok, metadata)
    (out_p / "README.md").write_text(model_card(metadata), encoding="utf-8")
    return result


def model_card(meta: dict[str, Any]) -> str:
    """A model card: what the model was trained on and how well it does."""

    def row(name: str, s: dict[str, Any]) -> str:
        ent = s.get("entities", {}).get("micro", {})
        rel = s.get("relations", {}).get("micro", {})
        return (f"| {name} | {s.get('sentences', 0):,} | {ent.get('precision', '-')} | "
                f"{ent.get('recall', '-')} | {ent.get('f1', '-')} | {rel.get('f1', '-')} |")

    st = meta.get("corpus_stats", {})
    tr = meta["training"]
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
        f"Silver labels the dump gives itself: `{meta['trained_on']}` "
        f"({tr['train_sentences']:,} training sentences used). Mentions come from wikilinks "
        "typed through the linked page's class; relations from infobox facts whose subject and "
        "object share a sentence (distant supervision). Mentions per type in the corpus: "
        + (", ".join(f"{k} {v:,}" for k, v in types.most_common()) or "n/a") + ".", "",
        "## Scores (silver labels)", "",
        "| split | sentences | entity P | entity R | entity F1 | relation F1 (gold mentions) |",
        "|---|---|---|---|---|---|",
        row("dev", meta.get("dev", {})), row("test", meta.get("test", {})), "",
        f"Best epoch {tr['best_epoch']} of {tr['epochs_run']}; {tr['seconds']} s of training "
        f"at {tr['sentences_per_second']} sentences/s. Scores against silver labels measure "
        "agreement with the dump's own links, not gold accuracy: see kgx's README for "
        "Re-DocRED figures and the limits of a small dump.", "",
        "## Use", "", "```python",
        "from kgx.model import Predictor", "p = Predictor.load('THIS_DIRECTORY')",
        "p.predict(['Ayn Rand was born in Saint Petersburg.'])", "```", "",
        "`AutoModelForTokenClassification.from_pretrained` loads the encoder and the entity "
        "tagger; the relation head (`relation_head.*`) is read by kgx.",
    ]
    return "\n".join(lines) + "\n"
