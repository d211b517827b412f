"""The corpus stage: ``documents.jsonl`` labelled chunk by chunk in worker processes into
``train/dev/test.jsonl``, row offsets and ``stats.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from array import array
from collections import Counter
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from kgx.corpus.documents import (
    _COUNTED,
    DOCS_PER_CHUNK,
    document_chunks,
    document_offsets,
    lost_documents,
    read_documents,
)
from kgx.corpus.labelling import HELD_OUT_SALT, HELD_OUT_SHARE, CorpusBuilder, held_out_subject
from kgx.corpus.rows import KINDS, LINKS, SPLITS, STATS_FILE, offsets_path, row_kind, split_of
from kgx.outdir import DOCUMENTS_FILE, REPORT_FILE, WORK_DIR
from kgx.structure.entity_types import (
    load_entities,
)

# What the labelling does; a change makes old corpora re-run (6: held-out subjects, typed
# negatives).
CORPUS_VERSION = "corpus-6"


def build_corpus(graph_dir: Path, out: Path, *, lang: str | None = None,
                 drop_unlabelled_caps: bool = True,
                 documents: Iterable[dict[str, Any]] | None = None,
                 workers: int = 0, held_out_share: float = HELD_OUT_SHARE) -> dict[str, Any]:
    """Write ``train/dev/test.jsonl`` and ``stats.json`` into ``out``.

    The documents are cut into chunks of :data:`DOCS_PER_CHUNK`, labelled in ``workers``
    processes, each chunk written to part files and committed to a journal
    (``out/.work``): a killed run continues with the chunks it had not committed. The parts are
    joined in document order, so the output does not depend on the number of workers.

    Args:
        graph_dir: A structure-pass output written with ``keep_documents``.
        out: Corpus directory.
        lang: Language for sentence splitting (default: the wiki's).
        drop_unlabelled_caps: Apply the WikiNER sentence filter.
        documents: Documents to use instead of ``graph_dir/documents.jsonl`` (labelled in
            this process, as one chunk).
        workers: Worker processes (0: this process).
        held_out_share: The share of subjects whose infobox facts are kept back from the
            relation labels (:func:`held_out_subject`), for the read stage to measure the
            reader's precision on; 0: none.

    Returns:
        The statistics written to ``stats.json``.
    """
    import kgx.engines.local
    from kgx.engines.chunks import ChunkJob
    from kgx.engines.journal import concatenate, stage_key, write_atomic
    from kgx.engines.pools import new_pool
    from kgx.runtime.logs import info
    from kgx.text.sentences import fallback_note

    out.mkdir(parents=True, exist_ok=True)
    report = json.loads((graph_dir / REPORT_FILE).read_text(encoding="utf-8"))
    lang = lang or report.get("site", {}).get("lang", "en")
    note = fallback_note(lang)
    if note:
        info(f"[corpus] {note}")
    docs_path = graph_dir / DOCUMENTS_FILE
    if documents is None and not docs_path.exists():
        raise FileNotFoundError(f"{docs_path}: missing; run the structure pass with "
                                "documents (kgx extract --documents)")
    load_entities(graph_dir).close()  # built here, once, before workers read it
    work = out / WORK_DIR
    parts = work / "parts"
    setup = (str(graph_dir), lang, drop_unlabelled_caps, str(parts), held_out_share)
    if documents is not None:
        shutil.rmtree(work, ignore_errors=True)  # an iterable cannot be resumed
        parts.mkdir(parents=True)
        _init_corpus_worker(*setup)
        deltas = [_label_chunk(0, documents)]
    else:
        st_docs = docs_path.stat()

        def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            """A chunk whose worker died, document by document: only the culprit is lost."""
            k, path, off, n = task
            return [(k, path, o, 1, i) for i, o in enumerate(document_offsets(Path(path), off,
                                                                               n))]

        job = ChunkJob(work, stage_key(str(docs_path.resolve()), st_docs.st_size,
                                       st_docs.st_mtime_ns, lang, drop_unlabelled_caps,
                                       DOCS_PER_CHUNK, CORPUS_VERSION, held_out_share)
                       ).open()
        if job.resuming:
            info(f"[corpus] resuming: {len(job.done):,} chunks committed before")
        tasks = ((k, str(docs_path), off, n)
                 for k, (off, n) in enumerate(document_chunks(docs_path)))
        pool = new_pool(None, workers, initializer=_init_corpus_worker, initargs=setup,
                        start_method=kgx.engines.local.STAGE_START_METHOD)
        for k, got in job.run(partial(pool.map, label_chunk), tasks, split):
            delta = _chunk_delta(k, got)
            job.commit(k, delta)
            for x in delta["lost"]:
                info(f"[corpus] lost {x['documents']:,} document(s) from {x['title']!r} "
                     f"(page {x['page_id']}): {x['reason']}")
        deltas = [d for _, d in job.infos()]
        job.close()
    total: dict[str, Counter[str]] = {k: Counter() for k in _COUNTED}
    for d in deltas:
        for name in _COUNTED:
            total[name].update(d[name])
    for name in (*SPLITS, LINKS):
        concatenate(sorted(parts.glob(f"*.{name}.jsonl")), out / f"{name}.jsonl")
    _join_offsets(parts, out)
    shutil.rmtree(work, ignore_errors=True)
    st = total["steps"]
    kept = st["sentences_kept"]
    caps_unlabelled = st["dropped_unlabelled_capitalised"]
    stats = {
        "graph": str(graph_dir), "lang": lang,
        "sentences": dict(total["sentences"]), "pages": dict(total["pages"]),
        "steps": dict(st),
        "mentions": dict(total["mentions"]), "mention_sources": dict(total["mention_sources"]),
        "relations": dict(total["relations"]),
        "label_noise_estimate": {
            "note": "share of seen sentences with an unlabelled capitalised word (dropped) or "
                    "an entity of unknown type (kept, masked); the rest of the noise (lower-case "
                    "entity names, wrong distant-supervision labels) needs gold to measure",
            "ner_sentences_with_missing_labels": round(
                (caps_unlabelled + st["sentences_with_ignored_spans"])
                / max(1, st["sentences_seen"]), 3),
        },
        "kept_share": round(kept / max(1, st["sentences_seen"]), 3),
        "held_out": {"share": held_out_share, "salt": HELD_OUT_SALT,
                     "relation_heads_skipped": st.get("relation_heads_held_out", 0)},
        "lost_documents": [x for d in deltas for x in d.get("lost", [])],
    }
    write_atomic(out / STATS_FILE, json.dumps(stats, indent=2, ensure_ascii=False))
    return stats


def _join_offsets(parts: Path, out: Path) -> None:
    """Each kind's training-row offsets of every part, shifted by the parts before it: the
    offsets in the joined ``train.jsonl``."""
    trains = sorted(parts.glob("*.train.jsonl"))
    for kind in range(len(KINDS)):
        dst = offsets_path(out, kind)
        tmp = dst.with_name(dst.name + ".tmp")
        base = 0
        with open(tmp, "wb") as f:
            for part in trains:
                a = array("Q")
                src = part.with_name(part.name.replace(".train.jsonl", f".{KINDS[kind]}.offsets"))
                if src.exists():
                    a.frombytes(src.read_bytes())
                    f.write(array("Q", (x + base for x in a)).tobytes())
                base += part.stat().st_size
        os.replace(tmp, dst)


_BUILDER: tuple[CorpusBuilder, str] | None = None  # a worker's builder and its parts folder


def _init_corpus_worker(graph_dir: str, lang: str, drop_caps: bool, parts: str,
                        held_out_share: float = 0.0) -> None:
    from kgx.engines.local import ignore_interrupts_in_worker

    global _BUILDER
    ignore_interrupts_in_worker()
    held = (lambda t: held_out_subject(t, held_out_share)) if held_out_share else None
    _BUILDER = (CorpusBuilder(load_entities(Path(graph_dir)), lang, drop_caps,
                              held_out=held), parts)


def label_chunk(chunk: int, docs_path: str, offset: int, n: int, sub: int | None = None
                ) -> dict[str, Any]:
    """Worker task: label ``n`` documents from byte ``offset`` of ``documents.jsonl`` (``sub``:
    the one document of a chunk retried document by document)."""
    return _label_chunk(chunk, read_documents(docs_path, offset, n), sub)


def _chunk_delta(chunk: int, results: list[Any]) -> dict[str, Any]:
    """One chunk's counts from its results (several for a chunk retried document by
    document); a :class:`kgx.engines.local.Crashed` part is a document lost."""
    from kgx.engines.local import Crashed

    delta: dict[str, Any] = {"chunk": chunk, "lost": []}
    for k in _COUNTED:
        delta[k] = Counter()
    for res in results:
        if isinstance(res, Crashed):
            _, path, off, n = res.task[:4]
            delta["lost"].append(lost_documents(Path(path), off, n))
            continue
        for k in _COUNTED:
            delta[k].update(res[k])
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in delta.items()}


def _label_chunk(chunk: int, documents: Iterable[dict[str, Any]], sub: int | None = None
                 ) -> dict[str, Any]:
    """Label documents into this chunk's part files; return what it counted."""
    from kgx.engines.journal import part_name

    assert _BUILDER is not None, "corpus worker not initialised"
    builder, parts = _BUILDER
    stem = part_name(chunk, sub)
    for k in ("stats", "mentions", "mention_sources", "relations"):
        setattr(builder, k, Counter())
    files = {s: open(os.path.join(parts, f"{stem}.{s}.jsonl"), "wb")  # noqa: SIM115
             for s in (*SPLITS, LINKS)}
    offsets = [array("Q") for _ in KINDS]  # of this part's training rows, by kind
    counts: Counter[str] = Counter()
    pages: Counter[str] = Counter()
    try:
        for doc in documents:
            split = split_of(doc["page_id"])
            pages[split] += 1
            for ex in builder.sentences(doc):
                if split == "train":
                    offsets[row_kind(ex)].append(files[split].tell())
                files[split].write((json.dumps(ex, ensure_ascii=False) + "\n").encode("utf-8"))
                counts[split] += 1
            if split == "train":
                for ex in builder.link_contexts:
                    files[LINKS].write((json.dumps(ex, ensure_ascii=False) + "\n").encode())
            builder.link_contexts.clear()
    finally:
        for f in files.values():
            f.close()
    for kind, a in enumerate(offsets):
        with open(os.path.join(parts, f"{stem}.{KINDS[kind]}.offsets"), "wb") as f:
            f.write(a.tobytes())
    return {"chunk": chunk, "sentences": dict(counts), "pages": dict(pages),
            "steps": dict(builder.stats), "mentions": dict(builder.mentions),
            "mention_sources": dict(builder.mention_sources),
            "relations": dict(builder.relations)}
