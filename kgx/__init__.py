"""kgx: a knowledge graph from an encyclopedia dump.

``import kgx`` stays light (no torch, no FAISS): heavy modules load when first used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kgx.version import DISTRIBUTION, __version__

# Biolink's Knowledge Graph Exchange (PyPI "kgx") installs a package of the same name: installed
# into one environment, the two overwrite each other's files. Its modules beside ours say so.
_OTHER_KGX = ("transformer.py", "prefix_manager.py")
if any((Path(__file__).parent / name).exists() for name in _OTHER_KGX):
    raise ImportError(
        f"{Path(__file__).parent} mixes kgx ({DISTRIBUTION}) with Biolink's KGX (PyPI 'kgx'): "
        "both install the package 'kgx' and cannot share an environment. Use separate "
        f"environments: pip uninstall kgx {DISTRIBUTION}, then pip install {DISTRIBUTION}")

if TYPE_CHECKING:
    from kgx.graph.knowledge_graph import KnowledgeGraph

__all__ = ["KnowledgeGraph", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "KnowledgeGraph":
        from kgx.graph.knowledge_graph import KnowledgeGraph

        return KnowledgeGraph
    raise AttributeError(f"module 'kgx' has no attribute {name!r}")
