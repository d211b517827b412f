"""Loading N-Quads into the Oxigraph store: bulk loads in chunks, in threads, skipping (and
counting) the lines the store refuses.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LISTED = 1000  # skipped/lost pages listed by name in the report (all are counted)


# Oxigraph's bulk loader holds about 8x its input: loading a 170 MB graph.nq in 16 MB chunks
# peaked at 182 MB, in 64 MB chunks at 513 MB, and one load of a whole 384 MB file at 1.4 GB
# (benchmarks/bench_store_load.py; all on the 2-core development machine).
LOAD_CHUNK_BYTES = 16 << 20


LOAD_THREADS_MAX = 8  # chunks loaded at once (each holds about 8x its bytes while it loads)


@dataclass(slots=True)
class StoreLoad:
    """What loading N-Quads into a store refused: a count and the first reasons."""

    refused: int = 0
    examples: list[str] = field(default_factory=list)
    # Wall and CPU seconds (this process, its threads included) of the bulk loads, which run
    # one chunk per core at a time, and of the optimize after them (RocksDB's compaction).
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    def add(self, where: str, error: Exception) -> None:
        self.refused += 1
        if len(self.examples) < MAX_LISTED:
            self.examples.append(f"{where}: {error}")

    def extend(self, other: StoreLoad) -> None:
        """Count what ``other`` refused after what this one did."""
        self.refused += other.refused
        self.examples.extend(other.examples[: MAX_LISTED - len(self.examples)])


def load_store(graph: Path, store_dir: Path) -> StoreLoad:
    """Bulk-load ``graph`` into a fresh Oxigraph store at ``store_dir`` (replaced atomically).

    A line the store refuses (kgx mints valid IRIs, but a graph file may come from elsewhere)
    costs that line, never the load: a chunk that fails is loaded again line by line.

    Returns:
        What was refused, with the line numbers in ``graph``.
    """
    import pyoxigraph as ox

    tmp = store_dir.with_name(store_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        store = ox.Store(str(tmp))
        clock = (time.monotonic(), time.process_time())
        result = add_to_store(store, graph)
        loaded = (time.monotonic(), time.process_time())
        store.optimize()
        done = (time.monotonic(), time.process_time())
        del store
        for step, (a, b) in {"bulk_loads": (clock, loaded), "optimize": (loaded, done)}.items():
            result.seconds[step] = round(b[0] - a[0], 6)  # an optimize can take under 1 ms
            result.cpu_seconds[step] = round(b[1] - a[1], 3)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = store_dir.with_name(store_dir.name + ".old")
    if store_dir.exists():
        os.replace(store_dir, old)
    os.replace(tmp, store_dir)
    shutil.rmtree(old, ignore_errors=True)
    return result


def add_to_store(store: Any, path: Path, threads: int | None = None) -> StoreLoad:
    """Bulk-load the N-Quads file ``path`` into ``store`` in chunks, ``threads`` chunks at a
    time (default :func:`load_threads`).

    Each chunk gets a bulk loader of its own (Oxigraph releases the GIL while it loads, and
    the store is a set, so chunks may land in any order). A chunk the store refuses is loaded
    again line by line, so a bad line costs that line only; refused lines are reported in file
    order. At most two chunks per thread are read ahead, so memory follows the threads, not
    the file.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    threads = threads or load_threads()
    result = StoreLoad()

    first_line = 1
    with ThreadPoolExecutor(threads, thread_name_prefix="kgx-load") as pool, \
            open(path, "rb") as f:
        pending: deque[Any] = deque()
        while chunk := f.readlines(LOAD_CHUNK_BYTES):
            if len(pending) >= 2 * threads:
                result.extend(pending.popleft().result())
            pending.append(pool.submit(_load_chunk, store, chunk, first_line, path))
            first_line += len(chunk)
        while pending:
            result.extend(pending.popleft().result())
    return result


def load_threads() -> int:
    """Chunks loaded at once: one per core, at most :data:`LOAD_THREADS_MAX`."""
    from kgx.runtime.cpu import usable_cores

    return max(1, min(usable_cores(), LOAD_THREADS_MAX))


def _load_chunk(store: Any, chunk: list[bytes], first_line: int, path: Path) -> StoreLoad:
    import pyoxigraph as ox

    part = StoreLoad()
    try:
        store.bulk_load(input=b"".join(chunk), format=ox.RdfFormat.N_QUADS)
    except SyntaxError:
        _load_lines(store, chunk, first_line, path, part)
    return part


def _load_lines(store: Any, lines: list[bytes], first_line: int, graph: Path,
                result: StoreLoad) -> None:
    """Load a chunk line by line, skipping (and counting) the lines the store refuses."""
    import pyoxigraph as ox

    good: list[str] = []
    for k, line in enumerate(lines):
        try:
            good.extend(ox.parse(input=line, format=ox.RdfFormat.N_QUADS))
        except SyntaxError as exc:
            result.add(f"{graph.name} line {first_line + k}", exc)
    store.bulk_extend(good)
