"""What the reader trains on: corpus directories, CoNLL and DocRED files, each a weighted
source, sampled within a budget.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from kgx.corpus.datasets import (
    DataError,
    TrainingSource,
    docred_sentence_rows,
    held_out,
    read_conll,
    read_docred,
    sniff_format,
)
from kgx.corpus.rows import (
    KINDS,
    NA,
    STATS_FILE,
    iter_split,
    read_rows_at,
    row_kind,
    training_offsets,
)

T = TypeVar("T")


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
    (:func:`kgx.corpus.rows.training_offsets`), so the cost and the memory follow ``limit``, not the
    corpus; dev and test stop at ``max_eval`` rows. A CoNLL file's dev set is ``dev_path``, else
    its last tenth; a DocRED file's is the tenth of its documents :func:`held_out` picks by
    title. DocRED documents become sentence rows (:func:`kgx.corpus.datasets.docred_sentence_rows`),
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
        stats_path = data / STATS_FILE
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

    ``counts`` are the rows of each kind (:data:`kgx.corpus.rows.KINDS`: with a relation, with
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
