"""The entity vector index (FAISS): embedding every entity's label and abstract, exact or IVF,
and reading it back.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from kgx.linking.tables import LinkingIndexError, entity_text
from kgx.outdir import ALIASES_FILE
from kgx.outdir import ENTITY_INDEX_FILE as INDEX_FILE
from kgx.outdir import ENTITY_META_FILE as INDEX_META

EXACT_LIMIT = 100_000


# Above this many bytes of float32 vectors the index stores them as 8-bit scalars (4x smaller:
# the English Wikipedia's 7 million 384-d vectors take 2.7 GB instead of 10.8 GB). The recall
# this costs is measured by benchmarks/bench_faiss.py.
COMPRESS_ABOVE_BYTES = 2 << 30


# Index files above this size are memory-mapped, not read: processes share the page cache.
MMAP_ABOVE_BYTES = 256 << 20


ENTITY_CHUNK = 20_000  # entities embedded per chunk (and per committed chunk of the stage)


TRAIN_SAMPLE = 200_000  # vectors an inverted-file index trains its centroids on


def entity_chunks(n: int) -> list[tuple[int, int]]:
    """(first id, last id) of each chunk of :data:`ENTITY_CHUNK` entities, for ids 1..n."""
    return [(lo, min(n, lo + ENTITY_CHUNK - 1)) for lo in range(1, n + 1, ENTITY_CHUNK)]


def entity_count(out: Path) -> int:
    """Entities in ``out/aliases.sqlite``, whose ids run 1..n.

    Raises:
        LinkingIndexError: The ids are not contiguous (a table from a failed build).
    """
    db = sqlite3.connect(out / ALIASES_FILE)
    try:
        n, first, last = db.execute("SELECT count(*), min(id), max(id) FROM entities").fetchone()
    finally:
        db.close()
    if n and (first, last) != (1, n):
        raise LinkingIndexError(f"{out}: entity ids are not contiguous; rebuild the table")
    return n


def embed_entities(out: Path, encoder: Any, first: int, last: int,
                   batch_size: int = 256, on_batch: Any = None) -> np.ndarray:
    """Vectors of the entities with ids ``first`` to ``last`` (inclusive), in id order;
    ``on_batch(done)`` after each batch."""
    db = sqlite3.connect(f"file:{out / 'aliases.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT title, description FROM entities WHERE id BETWEEN ? AND ? "
                          "ORDER BY id", (first, last)).fetchall()
    finally:
        db.close()
    return encoder.encode([entity_text(t, d) for t, d in rows], batch_size=batch_size,
                          on_batch=on_batch)


def write_vector_index(out: Path, parts: Iterable[np.ndarray], n: int, dim: int,
                       encoder_name: str) -> dict[str, Any]:
    """Write ``entities.faiss`` and ``entities.json`` from the entity vectors, given in id
    order in parts (arrays, or memory-mapped files), holding only what the index trains on.
    """
    import faiss

    index = make_index(dim, n)
    pending: list[np.ndarray] = []  # parts held until the index has trained on them

    def train_and_add_pending() -> None:
        train_index(index, np.concatenate(pending)[:TRAIN_SAMPLE])
        for v in pending:
            index.add(np.ascontiguousarray(v))
        pending.clear()

    for vecs in parts:
        if index.is_trained:
            index.add(np.ascontiguousarray(vecs, dtype=np.float32))
            continue
        pending.append(np.asarray(vecs, dtype=np.float32))
        if sum(len(v) for v in pending) >= TRAIN_SAMPLE:
            train_and_add_pending()
    if pending:
        train_and_add_pending()
    if index.ntotal != n:
        raise LinkingIndexError(f"{out}: {index.ntotal:,} entity vectors for {n:,} entities")
    tmp = out / (INDEX_FILE + ".tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(out / INDEX_FILE)
    meta = {"entities": n, "dim": dim, "encoder": encoder_name,
            "index": type(index).__name__, "text": "label: first sentence of abstract"}
    (out / INDEX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def build_vector_index(out: Path, encoder: Any, batch_size: int = 256) -> dict[str, Any]:
    """Embed every entity in this process and write ``entities.faiss`` and ``entities.json``
    (``kgx extract`` does the same in chunks, in worker processes: kgx.stages.entities)."""
    n = entity_count(out)
    parts = (embed_entities(out, encoder, lo, hi, batch_size) for lo, hi in entity_chunks(n))
    return write_vector_index(out, parts, n, encoder.dim, encoder.name)


def make_index(dim: int, n: int, compress_above: int | None = None,
               exact_limit: int = EXACT_LIMIT) -> Any:
    """Exact inner product up to ``EXACT_LIMIT`` vectors; above, an inverted file (IVF), whose
    vectors are 8-bit scalar-quantised once they would take more than ``compress_above`` bytes
    as float32 (default :data:`COMPRESS_ABOVE_BYTES`).

    IVF rather than HNSW: on 2 CPU cores an HNSW graph of a million 384-d vectors took over
    ten minutes to build, where IVF trains its centroids on a sample and then only assigns
    each vector to its nearest centroid, in one streaming pass. ``nprobe`` = 32 lists are
    searched per query. The index must be trained (:func:`train_index`) before vectors are added.
    """
    import faiss

    if n <= exact_limit:
        return faiss.IndexFlatIP(dim)
    nlist = int(min(4 * math.sqrt(n), n / 39))
    limit = COMPRESS_ABOVE_BYTES if compress_above is None else compress_above
    if n * dim * 4 > limit:
        index: Any = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit,
                                              faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
    index.nprobe = 32
    # Entity vectors are read back by id (context scoring): keep the id -> list map.
    index.set_direct_map_type(faiss.DirectMap.Array)  # type: ignore[attr-defined]
    return index


def train_index(index: Any, sample: np.ndarray) -> None:
    """Train an IVF index's centroids on a sample of the vectors (no-op for exact search)."""
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, dtype=np.float32))


class VectorIndex:
    """The FAISS index of entity embeddings, checked against its metadata on load."""

    def __init__(self, out: Path, n_entities: int) -> None:
        import faiss

        path, meta_path = out / INDEX_FILE, out / INDEX_META
        if not path.exists() or not meta_path.exists():
            raise LinkingIndexError(f"{path}: missing entity index; rebuild with "
                                    f"`kgx index {out}`")
        try:
            big = path.stat().st_size > MMAP_ABOVE_BYTES
            self.index: Any = faiss.read_index(str(path), faiss.IO_FLAG_MMAP |
                                          faiss.IO_FLAG_READ_ONLY) if big else \
                faiss.read_index(str(path))
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (RuntimeError, ValueError, OSError) as exc:
            raise LinkingIndexError(f"{path}: unreadable entity index ({exc}); rebuild with "
                                    f"`kgx index {out}`") from exc
        if self.index.ntotal != self.meta.get("entities") or self.index.ntotal != n_entities:
            raise LinkingIndexError(
                f"{path}: holds {self.index.ntotal} vectors but the entity table has "
                f"{n_entities}; rebuild with `kgx index {out}`")
        self.dim = self.index.d
        index: Any = self.index
        if hasattr(index, "make_direct_map") and index.direct_map.type == 0:
            index.make_direct_map()  # an IVF index written without its id map

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, entity ids) of the ``k`` nearest entities; ids are 1-based, 0 = none.

        Raises:
            ValueError: Wrong dimension, or NaN/inf in the query (FAISS would silently
                return id -1 for them).
        """
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"query vectors have shape {tuple(v.shape)}; the entity index "
                             f"expects (n, {self.dim})")
        if not np.isfinite(v).all():
            raise ValueError("query vector holds NaN or infinite values")
        if self.index.ntotal == 0:
            return np.zeros((len(v), 0), np.float32), np.zeros((len(v), 0), np.int64)
        scores, ids = self.index.search(v, min(k, self.index.ntotal))
        return scores, ids + 1  # faiss row i is entity id i + 1; -1 becomes 0
