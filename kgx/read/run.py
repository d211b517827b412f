"""The read stage: every chunk of documents through the steps, committed one by one, then the
model facts decided and written.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kgx.engines.chunks import ChunkJob
from kgx.engines.journal import concatenate
from kgx.outdir import DOCUMENTS_FILE, MENTIONS_FILE, REPORT_FILE
from kgx.read.facts import write_model_facts
from kgx.read.steps import _FACTS, _NER, _STATS, FACT_COLUMNS, read_steps
from kgx.runtime.cpu import sort_threads
from kgx.runtime.hardware import read_workers
from kgx.runtime.progress import LiveCount, Progress
from kgx.version import __version__

MAX_LOST_LISTED = 100


def read_dump(out: Path, work: Path, model_dir: Path, key: str, opts: Any,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Predict, link and aggregate over every sentence of every article, chunk by chunk, in
    :func:`read_workers` processes (or, on Ray, a pipeline of the three steps)."""
    from kgx.corpus.documents import document_chunks, document_offsets
    from kgx.engines.local import Crashed
    from kgx.engines.pools import map_steps
    from kgx.model.network import load_metadata
    from kgx.runtime.cpu import usable_cores
    from kgx.structure.entity_types import load_entities

    def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A chunk whose worker died, document by document: only the culprit is lost."""
        k, path, off, n, remaining = task[:5]
        return [(k, path, o, 1, remaining, i) for i, o in enumerate(document_offsets(
            Path(path), off, n))]

    job = ChunkJob(work, key, parts="mentions")
    facts_db = sort_threads(sqlite3.connect(work / "facts.sqlite"))
    facts_db.execute(_FACTS)
    facts_db.execute(_NER)
    job.open(facts_db)  # a chunk's rows commit with it
    stats: Counter[str] = Counter({k: 0 for k in _STATS})
    step_seconds: Counter[str] = Counter()  # summed over chunks (and processes)
    lost: list[dict[str, Any]] = []
    done = job.done
    for _, info in job.infos():
        stats.update(info["stats"])
        step_seconds.update(info.get("seconds", {}))
        lost += info.get("lost", [])
    if job.resuming:
        log(f"[read] resuming: {len(done):,} chunks committed before "
            f"({stats['documents']:,} documents, {stats['sentences']:,} sentences)")
    entities = load_entities(out)  # built before the workers read it
    docs_path = out / DOCUMENTS_FILE
    chunks = list(document_chunks(docs_path, opts.read_chunk_documents))
    total_docs = sum(n for _, n in chunks)
    n_workers = read_workers(opts)
    threads = max(1, usable_cores() // n_workers) if n_workers > 1 else None
    limit = opts.read_sentences
    log(f"[read] {total_docs:,} documents in {len(chunks):,} chunks, "
        f"{max(1, n_workers)} reading process(es)")
    if opts.model:  # else the corpus stage said it
        from kgx.text.sentences import fallback_note

        note = fallback_note(json.loads((out / REPORT_FILE).read_text("utf-8"))["site"]
                             .get("lang", "en"))
        if note:
            log(f"[read] {note}")
    t_loop = time.monotonic()

    def tasks() -> Iterator[tuple[Any, ...]]:
        for k, (off, n) in enumerate(chunks):
            if limit is not None and stats["sentences"] >= limit:
                return  # (limit set: one process, so stats are up to date here)
            yield (k, str(docs_path), off, n,
                   None if limit is None else limit - stats["sentences"])

    steps = read_steps(out, work, model_dir, opts, threads)
    live = LiveCount()
    with Progress(total=total_docs, unit="documents", enabled=opts.progress, desc="read",
                  live=live) as bar:
        bar.update(sum(n for k, (_, n) in enumerate(chunks) if k in done))

        def engine_map(todo: Iterator[tuple[Any, ...]], split: Any) -> Iterator[Any]:
            for res in map_steps(steps, todo, n_workers, split=split, live=live):
                if isinstance(res, Crashed):
                    live.reset()  # the dead process's chunk counts from zero again
                yield res

        for k, parts in job.run(engine_map, tasks(), split):
            info = _chunk_info(parts)
            def write(db: sqlite3.Connection, rows: list[Any] = info["rows"],
                      ner: list[Any] = info["ner"]) -> None:
                db.executemany(f"INSERT INTO f VALUES ({','.join('?' * FACT_COLUMNS)})", rows)
                db.executemany("INSERT INTO ner VALUES (?, ?, ?)", ner)

            job.commit(k, {"stats": info["stats"], "lost": info["lost"],
                           "seconds": info["seconds"]}, write)
            stats.update(info["stats"])
            step_seconds.update(info["seconds"])
            lost += info["lost"]
            for x in info["lost"]:
                log(f"[read] lost {x['documents']:,} document(s) from {x['title']!r} "
                    f"(page {x['page_id']}): {x['reason']}")
            bar.update(chunks[k][1], sentences=stats["sentences"], mentions=stats["mentions"])
    seconds_reading = time.monotonic() - t_loop
    if opts.mentions:
        concatenate(sorted((work / "mentions").glob("*.nq")), out / MENTIONS_FILE)
    meta = load_metadata(model_dir)
    model_name = (f"kgx-reader {meta.get('kgx_version', __version__)} "
                  f"({meta.get('base_model', 'unknown')}, {model_dir.name})")
    ns = json.loads((out / REPORT_FILE).read_text("utf-8"))["site"]["namespace"]
    result: dict[str, Any] = dict(stats)
    result["lost"] = lost[:MAX_LOST_LISTED]
    result.update(write_model_facts(out, facts_db, ns, model_name, entities, meta,
                                    opts.min_precision, log))
    result["chunks"] = len(job.done)
    # Without loading the model, linker and tables: what a sentence costs once running.
    result["seconds_reading"] = round(seconds_reading, 2)
    result["reading_processes"] = max(1, n_workers)
    # Each step's seconds, summed over its processes: what the CPU steps would still cost
    # with the model on a GPU.
    result["seconds_by_step"] = {k: round(step_seconds[k], 2) for k in ("split", "predict",
                                                                         "link")}
    facts_db.close()
    shutil.rmtree(work, ignore_errors=True)
    log(f"[read] {stats['sentences']:,} sentences, {stats['mentions']:,} mentions "
        f"({stats['linked_mentions']:,} linked), {result['model_facts']:,} model facts "
        f"({result['agreeing_with_infobox']:,} restate an infobox fact)"
        + (f"; {stats['lost_documents']:,} document(s) lost" if stats["lost_documents"] else ""))
    return result


def _chunk_info(parts: list[Any]) -> dict[str, Any]:
    """One chunk's stats, fact rows and lost documents from its results: one, or one per
    document for a chunk retried document by document; a :class:`kgx.engines.local.Crashed` part
    is documents lost."""
    from kgx.corpus.documents import lost_documents
    from kgx.engines.local import Crashed

    stats: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    rows: list[tuple[Any, ...]] = []
    ner: list[tuple[str, str, int]] = []
    lost: list[dict[str, Any]] = []
    for res in parts:
        if isinstance(res, Crashed):
            _, path, off, n = res.task[:4]
            lost.append(lost_documents(Path(path), off, n))
            stats["lost_documents"] += n
        else:
            stats.update(res["stats"])
            seconds.update(res.get("seconds", {}))
            rows += res["rows"]
            ner += res.get("ner", [])
    return {"stats": dict(stats), "rows": rows, "ner": ner, "lost": lost,
            "seconds": dict(seconds)}
