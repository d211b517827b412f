"""The merge stage's work: model facts and mentions appended to ``graph.nq`` and the store, and
the RDFS/OWL-RL entailments, chunk by chunk.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kgx.engines.journal import stage_key, write_atomic
from kgx.outdir import GRAPH_FILE, REPORT_FILE, STORE_DIR, WORK_DIR
from kgx.rdf.store import add_to_store, load_store

INFERRED_FILE = "inferred.nq"


TRANSITIVE_FILE = "transitive.nq"  # in the work folder: the transitive properties' chains


# Kept inside the store's folder: a store built afresh (by the structure stage, or rebuilt
# here) has none, which is exactly right, since it holds nothing merged. RocksDB leaves files
# it did not name alone.
STATE_FILE = "kgx-merge.json"


def merge(out: Path, parts: list[str], reasoning: bool, structure_bytes: int,
          key: str, keep_inferred: bool = False, work: Path | None = None, workers: int = 0,
          log: Callable[[str], None] = print, progress: bool = False) -> dict[str, int]:
    """Fold ``parts`` (files in ``out``) and, with ``reasoning``, the entailments into
    ``graph.nq`` and the store; returns the inferred triples and the quads the store refused.

    Args:
        structure_bytes: Where the structure stage's part of ``graph.nq`` ends.
        key: What is being merged; a state with another key is not continued.
        keep_inferred: Also write the entailments to ``inferred.nq``.
        work: The folder of the inference's chunks (default ``out/.work/merge``).
        workers: Processes that infer (0: this one).
        log, progress: Where lines go, and whether a progress bar is drawn.
    """
    import pyoxigraph as ox

    from kgx.rdf.reasoning import GroupRules, close_transitive, materialise, rules, tbox_closure

    work = work or out / WORK_DIR / "merge"
    state_path = out / STORE_DIR / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text("utf-8")) \
        if state_path.exists() else {}
    graph = out / GRAPH_FILE
    if state.get("key") != key:
        if state:  # the store holds an earlier merge: back to the structure graph alone
            _truncate(graph, structure_bytes)
            load_store(graph, out / STORE_DIR)
        state = {"key": key, "done": [], "bytes": structure_bytes, "inferred": 0}
        write_atomic(state_path, json.dumps(state))

    def step_done(name: str) -> None:
        state["done"].append(name)
        state["bytes"] = graph.stat().st_size
        write_atomic(state_path, json.dumps(state))

    # Whatever a killed step appended to graph.nq goes; the store keeps what it loaded, and
    # loading it again changes nothing (a store is a set of quads).
    _truncate(graph, state["bytes"])
    store: Any = ox.Store(str(out / STORE_DIR))
    refused = 0
    try:
        for p in parts:
            if p in state["done"]:
                continue
            loaded = add_to_store(store, out / p)
            refused += loaded.refused
            with open(graph, "ab") as g, open(out / p, "rb") as src:
                shutil.copyfileobj(src, g, 1 << 20)
            step_done(p)
        if reasoning and "inferred" not in state["done"]:
            report = json.loads((out / REPORT_FILE).read_text("utf-8"))
            ns = report.get("site", {}).get("namespace", "https://kgx.dev/wiki/")
            inferred = ns + "graph/inferred"
            group_rules = GroupRules.of(rules(tbox_closure()))
            if group_rules is None:  # rules that groups cannot take: the SPARQL fixpoint
                n = _append_lines(graph, materialise(store, inferred))
                _keep(out, [graph], keep_inferred, start=state["bytes"])
            else:
                groups, chains = work / INFERRED_FILE, work / TRANSITIVE_FILE
                if "inferred-groups" not in state["done"]:
                    store.flush()
                    store = None  # closed: the workers open it read-only
                    lost = infer_groups(out, work, state["bytes"], inferred, group_rules,
                                        workers, log, progress)
                    store = ox.Store(str(out / STORE_DIR))
                    add_to_store(store, groups)
                    _append_file(graph, groups)
                    state["lost_chunks"] = lost
                    state["inferred"] = _count_lines(groups)
                    step_done("inferred-groups")
                    chains.unlink(missing_ok=True)
                # A killed run's chains are in the file, maybe not all in the store.
                _truncate_to_line(chains)
                add_to_store(store, chains)
                with open(chains, "a", encoding="utf-8") as f:
                    close_transitive(store, inferred, group_rules, f)
                _append_file(graph, chains)
                n = int(state["inferred"]) + _count_lines(chains)
                _keep(out, [groups, chains], keep_inferred)
            state["inferred"] = n
            step_done("inferred")
            shutil.rmtree(work, ignore_errors=True)
        store.flush()
    finally:
        store = None  # closed
    return {"inferred_triples": int(state["inferred"]), "refused_quads": refused,
            "inference_chunks_lost": len(state.get("lost_chunks", []))}


def forget_inferred(out: Path, namespace: str) -> None:
    """Take the entailments out of the store and forget the merge, so that the next merge
    infers them again over the store as it is (:mod:`kgx.stages.update`, on a store it
    brought up to date), without loading it afresh. The entailments go first: killed
    between the two, the merge still finds its old state and loads the store afresh."""
    import pyoxigraph as ox

    store_dir = out / STORE_DIR
    if not store_dir.is_dir():
        return
    store = ox.Store(str(store_dir))
    store.remove_graph(ox.NamedNode(namespace + "graph/inferred"))
    store.flush()
    del store
    (store_dir / STATE_FILE).unlink(missing_ok=True)


def _append_lines(path: Path, lines: Any) -> int:
    n = 0
    with open(path, "a", encoding="utf-8") as f:
        for line in lines:
            f.write(line)
            n += 1
    return n


def _append_file(path: Path, src: Path) -> None:
    with open(path, "ab") as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def _truncate_to_line(path: Path) -> None:
    """Cut a partly written last line off ``path`` (made empty if missing)."""
    path.touch()
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - (1 << 20))
        f.seek(start)
        cut = f.read().rfind(b"\n") + 1  # 0: no line ends in the last MB
        if start + cut < size and (cut or not start):
            f.truncate(start + cut)


def _keep(out: Path, files: list[Path], keep: bool, start: int = 0) -> None:
    """With ``keep`` (``--keep-intermediate``), the entailments also go to ``out/inferred.nq``:
    the ``files`` joined, the first from byte ``start``."""
    if not keep:
        return
    with open(out / INFERRED_FILE, "wb") as f:
        for k, src in enumerate(files):
            with open(src, "rb") as s:
                s.seek(start if k == 0 else 0)
                shutil.copyfileobj(s, f, 1 << 20)


def _truncate(path: Path, size: int) -> None:
    if path.stat().st_size > size:
        with open(path, "r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())


INFER_CHUNK_BYTES = 32 << 20  # graph.nq read by one inference task


def infer_groups(out: Path, work: Path, stated_bytes: int, graph: str, group_rules: Any,
                 workers: int, log: Callable[[str], None], progress: bool) -> list[int]:
    """The group entailments (:func:`kgx.rdf.reasoning.infer_chunk`) of ``graph.nq``'s first
    ``stated_bytes``, chunk by chunk in ``workers`` processes, into ``work/inferred.nq``.

    Each chunk's entailments go to a part file, renamed into place, and the chunk is then
    recorded in the work folder's journal: a kill costs the chunks in flight. Returns the
    chunks lost (their worker died twice), which are logged.
    """
    from functools import partial

    import kgx.engines.local
    from kgx.engines.chunks import ChunkJob
    from kgx.engines.journal import concatenate
    from kgx.engines.local import Crashed
    from kgx.engines.pools import new_pool
    from kgx.runtime.progress import Progress

    size = INFER_CHUNK_BYTES
    job = ChunkJob(work, stage_key("infer", stated_bytes, size, graph)).open()
    parts, done = job.parts, job.done
    chunks = [(k, lo, min(lo + size, stated_bytes))
              for k, lo in enumerate(range(0, stated_bytes, size))]
    if job.resuming:
        log(f"[merge] resuming the entailments: {len(done):,} of {len(chunks):,} chunks "
            "committed before")
    workers = min(workers, len(chunks) - len(done))
    # Spawned (kgx.engines.local.STAGE_START_METHOD): in `kgx extract` this process still holds the
    # earlier stages' model and indexes, which each forked worker would map, with the store's
    # threads. Read and merge run again on bench_scale's 16x output: 2.2 GB resident in the
    # process tree at the peak, forked, against 1.1 GB spawned (workers 150 MB each, not 680).
    pool = new_pool(None, workers if workers > 1 else 0, window=2,
                    initializer=_init_reasoner,
                    initargs=(str(out / STORE_DIR), graph, group_rules),
                    start_method=kgx.engines.local.STAGE_START_METHOD)
    lost: list[int] = []
    tasks = ((k, str(out / GRAPH_FILE), lo, hi, str(parts)) for k, lo, hi in chunks)
    with Progress(total=stated_bytes, unit="B", enabled=progress,
                  desc="entailments") as bar:
        bar.update(sum(hi - lo for k, lo, hi in chunks if k in done))
        for _, (res,) in job.run(partial(pool.map, infer_part), tasks):
            if isinstance(res, Crashed):
                k, _, lo, hi, _ = res.task
                log(f"[merge] entailments of graph.nq bytes {lo:,}-{hi:,} lost: their "
                    "worker died twice")
                lost.append(k)
                continue
            job.commit(res["chunk"], res)
            bar.update(res["bytes"])
    job.close()
    concatenate(sorted(parts.iterdir()), work / INFERRED_FILE)
    return lost


_REASONER: Any = None  # a worker's (read-only store, inferred graph, rules)


def _init_reasoner(store: str, graph: str, group_rules: Any) -> None:
    import pyoxigraph as ox

    from kgx.engines.local import ignore_interrupts_in_worker

    global _REASONER
    ignore_interrupts_in_worker()
    _REASONER = (ox.Store.read_only(store), graph, group_rules)


def infer_part(chunk: int, path: str, start: int, end: int, parts: str) -> dict[str, Any]:
    """Worker task: the entailments of the groups whose least triple is in the lines of
    ``path`` that begin in bytes ``start``..``end``, into ``parts/<chunk>.nq``."""
    from kgx.rdf.reasoning import infer_chunk

    store, graph, group_rules = _REASONER
    with open(path, "rb") as f:
        data = _lines_from(f, start, end)
    dst = os.path.join(parts, f"{chunk:09d}.nq")
    n = 0
    with open(dst + ".tmp", "w", encoding="utf-8") as f:
        for line in infer_chunk(store, data, graph, group_rules):
            f.write(line)
            n += 1
    os.replace(dst + ".tmp", dst)
    return {"chunk": chunk, "bytes": end - start, "inferred": n}


def _lines_from(f: Any, start: int, end: int) -> bytes:
    """The lines of ``f`` that begin at a byte in ``start``..``end`` (exclusive)."""
    if start > 0:
        f.seek(start - 1)
        f.readline()  # the line in progress at ``start`` is the chunk before's
    begin = f.tell()
    if begin >= end:
        return b""
    data = f.read(end - begin)
    return data if data.endswith(b"\n") else data + f.readline()
