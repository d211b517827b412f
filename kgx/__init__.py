"""kgx: a knowledge graph from an encyclopedia dump.

``import kgx`` stays light (no torch, no FAISS): heavy modules load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kgx.version import __version__

if TYPE_CHECKING:
    from kgx.graph.knowledge_graph import KnowledgeGraph

__all__ = ["KnowledgeGraph", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "KnowledgeGraph":
        from kgx.graph.knowledge_graph import KnowledgeGraph

        return KnowledgeGraph
    raise AttributeError(f"module 'kgx' has no attribute {name!r}")
