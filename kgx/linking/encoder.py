"""A sentence encoder for entity and mention embeddings: MiniLM with mean pooling.

Takes texts; gives L2-normalised float32 vectors (384 dimensions for the default model), as
sentence-transformers' all-MiniLM-L6-v2 computes them, without needing that package.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np


class SentenceEncoder:
    """Mean-pooled, normalised embeddings from a local Hugging Face encoder.

    Args:
        model: ``"minilm"`` (the bundled all-MiniLM-L6-v2) or a local directory / hub id.
        device: ``cpu``/``cuda``; default: CUDA when present.
        max_length: Tokens per text.
    """

    def __init__(self, model: str = "minilm", device: str | None = None,
                 max_length: int = 64) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from kgx.model.network import pick_device, resolve_base_model
        from kgx.runtime.logs import quiet_transformers

        quiet_transformers()
        path = resolve_base_model(model)
        self.name = model
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path)
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 128,
               on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of ``texts``, shape (n, dim), rows of unit length; ``on_batch(done)``
        after each batch (texts done so far)."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for b in range(0, len(order), batch_size):
            idx = order[b: b + batch_size]
            enc = self.tokenizer([texts[i] or " " for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items()}
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vec = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            vec = torch.nn.functional.normalize(vec.float(), dim=-1)
            out[idx] = vec.cpu().numpy()
            if on_batch is not None:
                on_batch(b + len(idx))
        return out


@lru_cache(maxsize=2)
def shared_encoder(model: str = "minilm", device: str | None = None) -> SentenceEncoder:
    """One encoder per process (loading it takes a second)."""
    return SentenceEncoder(model, device or os.environ.get("KGX_DEVICE"))


