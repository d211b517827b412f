"""How much of the encoder learns: ``full`` (all of it), ``top:K`` (its top K layers; the rest
frozen) or ``lora[:R]`` (low-rank adapters of rank R on its attention and feed-forward
projections, through Hugging Face's ``peft``; the pre-trained weights stay as they are).
The heads always learn.

Parsing a ``--tuning`` needs no torch (the base install parses the command line too); the rest
imports it when called.

A LoRA model is saved as its adapter and heads only, and names the base encoder it needs;
it is loaded by rebuilding that encoder, putting the adapter back and merging it into the
weights (reading then costs what a fully fine-tuned model costs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_LORA_RANK = 8
# LoRA's adapters learn at this many times the encoder's learning rate: they start from zero
# and hold few weights, and LoRA recipes train them at 1e-4 to 1e-3 where full fine-tuning
# takes 2e-5 to 5e-5.
LORA_LR_FACTOR = 10.0
WAYS = ("full", "top:K", "lora[:R]")


class TuningError(ValueError):
    """A ``--tuning`` that cannot be done (told before any work starts)."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """One way to fine-tune (see the module's docstring)."""

    way: str = "full"  # full | top | lora
    layers: int = 0  # top: how many of the top layers learn
    rank: int = 0  # lora: the adapters' rank

    def __str__(self) -> str:
        return {"full": "full", "top": f"top:{self.layers}",
                "lora": f"lora:{self.rank}"}[self.way]

    def describe(self) -> str:
        """One line for the model card."""
        if self.way == "top":
            return (f"the top {self.layers} encoder layer(s) and the heads learned; the rest of "
                    "the encoder stayed as pre-trained")
        if self.way == "lora":
            return (f"LoRA adapters of rank {self.rank} on the encoder's attention and "
                    "feed-forward projections, and the heads, learned; the pre-trained "
                    "weights stayed as they are (this folder holds the adapter and the heads)")
        return "the whole encoder and the heads learned"


def parse_tuning(spec: str) -> Tuning:
    """``full``, ``top:K`` (K >= 1) or ``lora`` / ``lora:R`` (R >= 1)."""
    text = spec.strip().lower()
    way, _, arg = text.partition(":")
    if way == "full" and not arg:
        return Tuning()
    if way in ("top", "lora"):
        if way == "lora" and not arg:
            return Tuning("lora", rank=DEFAULT_LORA_RANK)
        try:
            n = int(arg)
        except ValueError:
            n = -1
        if n < 1:
            what = "layers" if way == "top" else "rank"
            raise TuningError(f"--tuning {spec}: the {what} must be a whole number of at least "
                              f"1 ({way}:{'K' if way == 'top' else 'R'})")
        return Tuning("top", layers=n) if way == "top" else Tuning("lora", rank=n)
    raise TuningError(f"--tuning {spec}: expected one of {', '.join(WAYS)}")


def encoder_layers(encoder: Any) -> Any:
    """The encoder's stack of transformer layers (the largest ``ModuleList`` in it)."""
    from torch import nn

    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise TuningError(f"{type(encoder).__name__}: no stack of layers found to tune")
    return max(lists, key=len)


def check_tuning(tuning: Tuning, layers: int, base: str) -> None:
    """Refuse ``top:K`` beyond the encoder's ``layers``, and LoRA without ``peft``."""
    if tuning.way == "top" and tuning.layers > layers:
        raise TuningError(f"--tuning {tuning}: {base} has {layers} layers; "
                          f"choose top:1 to top:{layers}")
    if tuning.way == "lora":
        try:
            import peft  # noqa: F401
        except ImportError as exc:
            raise TuningError("--tuning lora needs the package peft (kgx's 'model' extra: "
                              'pip install "kgx-wiki[model]", or pip install peft)') from exc


def lora_targets(encoder: Any) -> list[str]:
    """The names (last part) of the linear projections inside the encoder's layers: attention
    and feed-forward, e.g. BERT's query, key, value and dense."""
    from torch import nn

    names = {name.rsplit(".", 1)[-1] for name, m in encoder_layers(encoder).named_modules()
             if isinstance(m, nn.Linear)}
    return sorted(names)


def lora_config(rank: int, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.1, target_modules=targets)


def apply_tuning(model: Any, tuning: Tuning) -> list[Any]:
    """Freeze what ``tuning`` keeps as pre-trained (adding the LoRA adapters to
    ``model.encoder``); returns the encoder's parameters that learn."""
    enc = model.encoder
    if tuning.way == "full":
        return list(enc.parameters())
    for p in enc.parameters():
        p.requires_grad_(False)
    if tuning.way == "top":
        learn = [p for layer in list(encoder_layers(enc))[-tuning.layers:]
                 for p in layer.parameters()]
        for p in learn:
            p.requires_grad_(True)
        return learn
    from peft import inject_adapter_in_model

    targets = lora_targets(enc)
    inject_adapter_in_model(lora_config(tuning.rank, targets), enc)
    model.lora_targets = targets
    return [p for n, p in enc.named_parameters() if "lora_" in n]


def adapter_state(encoder: Any) -> dict[str, Any]:
    """The LoRA adapter's weights of ``encoder`` (what a LoRA model saves of it)."""
    from peft import get_peft_model_state_dict

    return dict(get_peft_model_state_dict(encoder))


def load_adapter(encoder: Any, rank: int, targets: list[str],
                 state: dict[str, Any]) -> None:
    """Put a saved adapter back into ``encoder`` (a fresh base encoder) and merge it into
    its weights for reading."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict
    from peft.tuners.lora import LoraLayer

    inject_adapter_in_model(lora_config(rank, targets), encoder)
    result = set_peft_model_state_dict(encoder, state)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise RuntimeError(f"the saved adapter lacks {missing[:3]}")
    for m in encoder.modules():
        if isinstance(m, LoraLayer):
            m.merge()
