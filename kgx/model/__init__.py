"""The model stage: the reader network, its training and scoring.

``from kgx.model import Predictor`` is what a saved model's card prints: it stays, loading
torch only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kgx.model.predictor import Predictor

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from kgx.model.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'kgx.model' has no attribute {name!r}")
