"""The entities stage's work: the entity tables, the vectors chunk by chunk in worker processes,
and the linker's fitted scorer.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

from kgx.engines.chunks import ChunkJob
from kgx.outdir import ALIASES_FILE, DOCUMENTS_FILE

TABLES_STEP = -1  # the journal row of step 1; embedding chunks are 0, 1, ...


ENCODER = "minilm"


def build_entities(out: Path, work: Path, key: str, opts: Any, log: Any) -> dict[str, Any]:
    """Both steps, each skipped where the journal says it is done."""
    import numpy as np

    from kgx.engines.local import Crashed
    from kgx.engines.pools import new_pool
    from kgx.linking.tables import build_entity_table
    from kgx.linking.vectors import entity_chunks, write_vector_index
    from kgx.runtime.progress import LiveCount, Progress, set_phase

    job = ChunkJob(work, key, parts="vectors").open()
    parts, done = job.parts, set(job.done)
    infos = dict(job.infos())
    if job.resuming:
        log(f"[entities] resuming: tables {'built' if TABLES_STEP in done else 'not built'}, "
            f"{len(done - {TABLES_STEP}):,} chunks of vectors committed before")
    if TABLES_STEP not in done:
        set_phase("building the entity and alias tables")
        t = time.monotonic()
        phases: dict[str, float] = {}
        phases_cpu: dict[str, float] = {}
        n = build_entity_table(out, workers=opts.extract.workers, phases=phases,
                               phases_cpu=phases_cpu)
        alias_keys = _count(out, "alias_keys")
        infos[TABLES_STEP] = {"entities": n, "alias_keys": alias_keys,
                              "seconds": round(time.monotonic() - t, 2), "phases": phases,
                              "phases_cpu": phases_cpu}
        job.commit(TABLES_STEP, infos[TABLES_STEP])
    tables = infos[TABLES_STEP]
    n = tables["entities"]
    log(f"[entities] {n:,} entities, {tables['alias_keys']:,} alias keys; "
        "embedding labels and abstracts")
    chunks = [(k, lo, hi) for k, (lo, hi) in enumerate(entity_chunks(n))]
    n_workers = embed_workers(opts, len(chunks))
    threads = max(1, _cores() // n_workers) if n_workers > 1 else None
    live = LiveCount()
    pool = new_pool(None, n_workers, window=2, initializer=_init_embedder,
                    initargs=(opts.device, threads, live), start_method="spawn")
    t = time.monotonic()
    with Progress(total=n, unit="entities", enabled=opts.progress, desc="embed",
                  live=live) as bar:
        bar.update(sum(hi - lo + 1 for k, lo, hi in chunks if k in done))
        tasks = ((k, str(out), lo, hi, str(parts)) for k, lo, hi in chunks)
        for _, (res,) in job.run(partial(pool.map, embed_chunk), tasks):
            if isinstance(res, Crashed):  # died twice: its entities get no vector
                live.reset()
                k, _, lo, hi, _ = res.task
                _zeros(parts, k, hi - lo + 1, _dim(parts, [c for c in chunks if c[0] != k]))
                res = {"chunk": k, "entities": hi - lo + 1, "lost": True}
                log(f"[entities] entities {lo:,}..{hi:,} get no vector: the process "
                    "embedding them died on every try (the alias table still links them)")
            job.commit(res["chunk"], res)
            bar.update(res["entities"])
    seconds_embedding = time.monotonic() - t
    without_vector = sum(i["entities"] for k, i in job.infos()
                         if k != TABLES_STEP and i.get("lost"))
    set_phase("writing the vector index")
    meta = write_vector_index(
        out, (np.load(parts / f"{k:09d}.npy", mmap_mode="r") for k, _, _ in chunks), n,
        _dim(parts, chunks), ENCODER)
    job.close()
    fit = fit_scorer(out, log)
    shutil.rmtree(work, ignore_errors=True)
    return {**meta, "alias_keys": tables["alias_keys"], "seconds_tables": tables["seconds"],
            "seconds_tables_by_step": tables.get("phases", {}),
            # this process's CPU seconds: the part that more workers do not shorten
            "cpu_tables": round(sum(tables.get("phases_cpu", {}).values()), 2),
            "cpu_tables_by_step": tables.get("phases_cpu", {}),
            "entities_without_vector": without_vector,
            "seconds_embedding": round(seconds_embedding, 2), "embed_workers": max(1, n_workers),
            "chunks": len(chunks), "linker_scorer": fit}


def fit_scorer(out: Path, log: Any) -> dict[str, Any]:
    """Step 3: the linker's weights and NIL threshold, fitted on the dev pages' wikilinks
    (:mod:`kgx.linking.fit`); without ``documents.jsonl`` the hand-set weights stay."""
    from kgx.linking.fit import fit_linker
    from kgx.linking.linker import LINKER_FILE

    (out / LINKER_FILE).unlink(missing_ok=True)  # never one fitted on another index
    if not (out / DOCUMENTS_FILE).exists():
        log("[entities] no documents.jsonl: the linker keeps its hand-set weights")
        return {"fitted": False}
    t = time.monotonic()
    from kgx.runtime.progress import set_phase

    set_phase("fitting the linker's scorer and NIL thresholds on the dev pages' wikilinks")
    fit = fit_linker(out, "")
    fit["seconds"] = round(time.monotonic() - t, 2)
    if fit["fitted"]:
        log(f"[entities] linker scorer fitted on {fit['links']:,} wikilinks of dev pages: "
            f"accuracy {fit['accuracy']} (hand-set weights {fit['hand_weights_accuracy']})")
    else:
        log(f"[entities] {fit['links']} wikilinks of dev pages: too few to fit the linker; "
            "it keeps its hand-set weights")
    return fit


def embed_workers(opts: Any, chunks: int) -> int:
    """Embedding processes: as the read stage's (:func:`kgx.runtime.hardware.read_workers`), never
    more than the chunks; 0 (this process) for a single chunk."""
    from kgx.runtime.hardware import encoder_workers

    n = min(encoder_workers(opts), chunks)
    return n if n > 1 else 0


def _cores() -> int:
    from kgx.runtime.cpu import usable_cores

    return usable_cores()


def _count(out: Path, table: str) -> int:
    db = sqlite3.connect(out / ALIASES_FILE)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def _dim(parts: Path, chunks: list[tuple[int, int, int]]) -> int:
    """The vectors' size: a committed chunk's, else the encoder's."""
    import numpy as np

    for k, _, _ in chunks:
        if (parts / f"{k:09d}.npy").exists():
            return int(np.load(parts / f"{k:09d}.npy", mmap_mode="r").shape[1])
    from kgx.linking.encoder import shared_encoder

    return shared_encoder(ENCODER, None).dim


def _zeros(parts: Path, chunk: int, n: int, dim: int) -> None:
    """A chunk of ``n`` zero vectors (entities with none), renamed into place."""
    import numpy as np

    dst = parts / f"{chunk:09d}.npy"
    with open(dst.with_suffix(".tmp"), "wb") as f:
        np.save(f, np.zeros((n, dim), dtype=np.float32))
    os.replace(dst.with_suffix(".tmp"), dst)


_ENCODER: Any = None  # a worker's sentence encoder


def _init_embedder(device: str | None, threads: int | None, live: Any = None) -> None:
    from kgx.engines.local import ignore_interrupts_in_worker
    from kgx.linking.encoder import shared_encoder
    from kgx.runtime.progress import attach_live

    global _ENCODER
    ignore_interrupts_in_worker()
    attach_live(live)
    _ENCODER = shared_encoder(ENCODER, device)
    if threads and _ENCODER.device.type == "cpu":  # several embedders share the cores
        import torch

        torch.set_num_threads(threads)


def embed_chunk(chunk: int, out: str, first: int, last: int, parts: str) -> dict[str, Any]:
    """Worker task: embed entities ``first``..``last`` into ``parts/<chunk>.npy`` (renamed
    into place when complete)."""
    import numpy as np

    from kgx.linking.vectors import embed_entities
    from kgx.runtime.progress import live_progress

    vecs = embed_entities(Path(out), _ENCODER, first, last, on_batch=live_progress)
    dst = os.path.join(parts, f"{chunk:09d}.npy")
    with open(dst + ".tmp", "wb") as f:
        np.save(f, vecs)
    os.replace(dst + ".tmp", dst)
    live_progress(0)  # handed back: counted as committed from here
    return {"chunk": chunk, "entities": last - first + 1}
