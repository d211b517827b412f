"""The read stage: the fine-tuned reader over every sentence of every article.

Takes ``documents.jsonl`` (plain text with the page's own link spans), the model, the entity
linker; gives ``mentions.nq`` (each linked mention with its span, type, how it was linked and a
confidence) and ``model.nq`` (one named graph per distinct fact, its confidence aggregated over
its evidence sentences, each sentence kept as evidence).

Work is done in **chunks** of ``read_chunk_documents`` documents (200 by default). A chunk
goes through three steps (:func:`read_steps`): :class:`SentenceSplitter` (sentences and tokens,
CPU), :class:`ChunkPredictor` (the model) and :class:`ChunkLinker` (linking, the mentions part
file and the fact rows, CPU). Locally, several processes (:func:`read_workers`) each run all
three on a chunk at a time; on Ray each step is a pool of its own, the model's on the GPUs
(:func:`kgx.workers.map_steps`). A chunk's mentions go to a part file, renamed into place, and
its fact rows go into ``.work/read/facts.sqlite`` in the transaction that records the chunk in
the journal, in whatever order chunks finish: after a kill, a re-run skips the committed
chunks' documents and redoes at most the chunks in flight. A chunk whose process dies twice is
read again document by document, and a document that kills its process again is reported as
lost. Facts are aggregated once every chunk is in, from SQLite, sorted on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sqlite3
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgx import __version__
from kgx.cpu import ThreadTuner, sort_threads
from kgx.ontology import KGX, XSD, relation_iri
from kgx.progress import LiveCount, Progress
from kgx.rdf import literal
from kgx.sentences import Sentencizer, paragraphs
from kgx.stages.runner import (
    Journal,
    Run,
    SplitChunks,
    Stage,
    concatenate,
    drop_uncommitted,
    prepare_work,
    stage_key,
)

MODEL_FACTS_FILE = "model.nq"
MENTIONS_FILE = "mentions.nq"
DOCUMENTS_FILE = "documents.jsonl"
BATCH_SENTENCES = 256  # sentences per model call
# One row per (fact, sentence): s0-s1 the sentence, e0-e1 the span of both mentions, h0-h1 and
# t0-t1 the subject's and the object's mention, all character offsets in the page's text.
_FACTS = ("CREATE TABLE IF NOT EXISTS f (h TEXT, p TEXT, t TEXT, page INTEGER, rev INTEGER, "
          "s0 INTEGER, s1 INTEGER, e0 INTEGER, e1 INTEGER, sentence TEXT, conf REAL, "
          "title TEXT, h0 INTEGER, h1 INTEGER, t0 INTEGER, t1 INTEGER)")
MAX_LOST_LISTED = 100
_STATS = ("documents", "lost_documents", "sentences", "mentions", "linked_mentions",
          "linked_by_wikilink", "linked_by_page", "linked_by_linker", "relations_predicted",
          "relations_between_linked", "relations_against_domain_or_range", "mention_triples")


class ReadStage(Stage):
    name = "read"

    def enabled(self, run: Run) -> bool:
        return bool(run.opts.use_model)

    def outputs(self, run: Run) -> list[str]:
        return [MODEL_FACTS_FILE] + ([MENTIONS_FILE] if run.opts.mentions else [])

    def key(self, run: Run) -> str:
        o = run.opts
        return stage_key(run.keys["structure"], run.keys["model"], run.keys.get("entities"),
                         o.read_sentences, o.relation_threshold, o.mentions, o.read_chunk_documents,
                         "read-4")

    def execute(self, run: Run) -> dict[str, Any]:
        return read_dump(run.out, run.work(self.name), Path(run.info["model"]["dir"]),
                         run.keys[self.name], run.opts, run.log)


def iter_sentences(sentencizer: Sentencizer, text: str) -> Iterator[tuple[int, int]]:
    """Sentence spans of a document, paragraph by paragraph."""
    for pos, line in paragraphs(text):
        for a, b in sentencizer.spans(line):
            if line[a:b].strip():
                yield pos + a, pos + b


@dataclass(slots=True)
class ReadChunk:
    """A chunk of documents on its way through the read steps: cut into sentences and
    tokenised (:class:`SentenceSplitter`), then predicted (:class:`ChunkPredictor`), with the
    seconds each step took on it."""

    chunk: int
    sub: int | None  # the document's index in its chunk, for a chunk retried document by document
    docs: list[dict[str, Any]]
    sentences: list[tuple[int, int, int]]  # (index in docs, start, end)
    toks: list[Any]  # kgx.model.Tokenized, one per sentence
    predictions: list[Any] | None = None  # kgx.model.Prediction, one per sentence
    seconds: dict[str, float] = field(default_factory=dict)  # by step: split, predict, link


class SentenceSplitter:
    """Read step 1 (CPU): a chunk's documents, cut into sentences and tokenised."""

    def __init__(self, out: Path, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        from kgx.logs import quiet_transformers

        report = json.loads((out / "report.json").read_text("utf-8"))
        lang = report["site"].get("lang", "en")
        self.sentencizer = Sentencizer(lang)
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def __call__(self, chunk: int, docs_path: str, offset: int, n: int, remaining: int | None,
                 sub: int | None = None) -> ReadChunk:
        """``n`` documents from byte ``offset`` of ``documents.jsonl``, at most ``remaining``
        sentences."""
        from kgx.corpus import read_documents
        from kgx.model import tokenize

        t0 = time.perf_counter()
        docs: list[dict[str, Any]] = []
        sentences: list[tuple[int, int, int]] = []
        for doc in read_documents(docs_path, offset, n):
            if remaining is not None and len(sentences) >= remaining:
                break
            docs.append(doc)
            for a, b in iter_sentences(self.sentencizer, doc["text"]):
                if remaining is not None and len(sentences) >= remaining:
                    break
                sentences.append((len(docs) - 1, a, b))
        toks = tokenize(self.tokenizer, [docs[d]["text"][a:b] for d, a, b in sentences])
        return ReadChunk(chunk, sub, docs, sentences, toks,
                         seconds={"split": time.perf_counter() - t0})


class ChunkPredictor:
    """Read step 2 (the model): mentions and relations of a chunk's sentences,
    :data:`BATCH_SENTENCES` at a time (the predictor batches their windows by tokens).

    Args:
        threads: Torch threads (on a GPU, those of the work around the encoder); None:
            torch's default, tuned while reading on a CPU.
    """

    def __init__(self, model_dir: Path, device: str | None, relation_threshold: float,
                 threads: int | None = None) -> None:
        from kgx.model import Predictor

        self.predictor = Predictor.load(model_dir, device=device,
                                        relation_threshold=relation_threshold)
        cpu = self.predictor.device.type == "cpu"
        # Several readers share the cores: each keeps its share (on a GPU too, for the work
        # on the CPU around the encoder).
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.tuner = ThreadTuner(enabled=cpu and not threads, period=16, trial=2)

    def __call__(self, rc: ReadChunk) -> ReadChunk:
        from kgx.progress import live_progress

        t0 = time.perf_counter()
        preds: list[Any] = []
        for i in range(0, len(rc.sentences), BATCH_SENTENCES):
            batch = rc.sentences[i: i + BATCH_SENTENCES]
            t = time.perf_counter()
            preds += self.predictor.predict([rc.docs[d]["text"][a:b] for d, a, b in batch],
                                            toks=rc.toks[i: i + BATCH_SENTENCES])
            self.tuner.step(time.perf_counter() - t, len(batch))
            # the documents whose every sentence is read (the last one's may go on)
            live_progress(batch[-1][0] if i + len(batch) < len(rc.sentences) else len(rc.docs))
        rc.predictions = preds
        rc.toks = []  # read: no need to carry them further
        rc.seconds["predict"] = time.perf_counter() - t0
        return rc


class ChunkLinker:
    """Read step 3 (CPU): links a predicted chunk's mentions, writes its mentions part file
    (renamed into place) and returns its stats and fact rows."""

    def __init__(self, out: Path, work: Path, mentions: bool) -> None:
        from kgx.linking import Linker

        report = json.loads((out / "report.json").read_text("utf-8"))
        self.ns = report["site"]["namespace"]
        self.linker = Linker(out, self.ns)
        self.signature = Signatures()
        self.work = work
        self.mentions = mentions
        self.iri = entity_iri(self.ns)

    def __call__(self, rc: ReadChunk) -> dict[str, Any]:
        from kgx.workers import part_name

        assert rc.predictions is not None, "a chunk must be predicted before it is linked"
        t0 = time.perf_counter()
        cs: Counter[str] = Counter(documents=len(rc.docs), sentences=len(rc.sentences))
        rows: list[tuple[Any, ...]] = []
        lines: list[str] = []
        # Linked in the predictor's batches, so a mention is linked alike on every engine.
        for i in range(0, len(rc.sentences), BATCH_SENTENCES):
            self._link(rc.docs, rc.sentences[i: i + BATCH_SENTENCES],
                       rc.predictions[i: i + BATCH_SENTENCES], cs, rows, lines)
        part = self.work / "mentions" / f"{part_name(rc.chunk, rc.sub)}.nq"
        with open(part.with_suffix(".tmp"), "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(part.with_suffix(".tmp"), part)
        seconds = dict(rc.seconds, link=time.perf_counter() - t0)
        from kgx.progress import live_progress

        live_progress(0)  # handed back: counted as committed from here
        return {"chunk": rc.chunk, "stats": dict(cs), "rows": rows, "seconds": seconds}

    def _link(self, docs: list[dict[str, Any]], sentences: list[tuple[int, int, int]],
              preds: list[Any], cs: Counter[str], rows: list[tuple[Any, ...]],
              lines: list[str]) -> None:
        from kgx.linking import alias_key

        linker = self.linker
        pending = []
        for (d, a, _), pred in zip(sentences, preds, strict=True):
            ctx = _page_context(linker, docs[d])
            for m in pred.mentions:
                pending.append((docs[d], a, m, ctx))
        linked = _link_mentions(linker, pending, cs, alias_key)
        by_sentence: dict[tuple[int, int], list[Any]] = {}
        for (doc, a, m, _), ent in zip(pending, linked, strict=True):
            by_sentence.setdefault((doc["page_id"], a), []).append(ent)
            if self.mentions and ent is not None:
                cs["mention_triples"] += _write_mention(lines, self.ns, doc, a, m, ent,
                                                        self.iri)
        for (d, a, b), pred in zip(sentences, preds, strict=True):
            doc = docs[d]
            ents = by_sentence.get((doc["page_id"], a), [])
            cs["relations_predicted"] += len(pred.relations)
            for r in pred.relations:
                h, tl = ents[r.head], ents[r.tail]
                if h is None or tl is None or h[0] == tl[0]:
                    continue
                cs["relations_between_linked"] += 1
                mh, mt = pred.mentions[r.head], pred.mentions[r.tail]
                if not self.signature.fits(r.label, mh.label, mt.label):
                    cs["relations_against_domain_or_range"] += 1
                    continue
                e0, e1 = a + min(mh.start, mt.start), a + max(mh.end, mt.end)
                rows.append((h[0], r.label, tl[0], doc["page_id"], doc.get("revision_id"),
                             a, b, e0, e1, doc["text"][a:b], r.score, doc["title"],
                             a + mh.start, a + mh.end, a + mt.start, a + mt.end))


def read_steps(out: Path, work: Path, model_dir: Path, opts: Any, threads: int | None
               ) -> list[Any]:
    """The read stage's steps, in order: split, predict, link (:class:`kgx.workers.Step`)."""
    from kgx.workers import Step

    return [Step(SentenceSplitter, (out, model_dir)),
            Step(ChunkPredictor, (model_dir, opts.device, opts.relation_threshold),
                 {"threads": threads}, model=True),
            Step(ChunkLinker, (out, work, opts.mentions))]


def entity_iri(ns: str) -> Callable[[str], str]:
    """Title -> ``<...resource/Title>`` N-Quads term under namespace ``ns``."""
    from kgx.site import iri_escape

    resource = ns + "resource/"
    return lambda title: f"<{resource}{iri_escape(title.replace(' ', '_'))}>"


def read_workers(opts: Any) -> int:
    """Read processes (:func:`encoder_workers`); 0, this process, when ``--read-sentences``
    caps the count, which must then be exact."""
    return 0 if opts.read_sentences is not None else encoder_workers(opts)


# GPU memory a reading process may take: its CUDA context (about half a GiB with torch's
# kernels and cuBLAS workspace, NVIDIA's and PyTorch's usual figure, not measured here), the
# encoder (90 MB for the default MiniLM in float32) and one predict call's activations (at
# most 256 sentences of 128 tokens: 32,768 tokens x the feed-forward's 1,536 floats, 0.2 GB
# a layer, freed layer by layer under inference mode).
READER_GPU_BYTES = 2 << 30


def encoder_workers(opts: Any) -> int:
    """Processes that run an encoder: every core busy, two torch threads each on a CPU. On a
    GPU, one a core, as many as its memory holds (:data:`READER_GPU_BYTES` each), sharing
    it: each process splits and links its own chunks on its core, and the GPU's part of a
    sentence is small (0.775 GFLOP: about 1 us at the dense bfloat16 rate of an H100's
    datasheet, not measured here), so the cores, not the GPU, bound the read stage."""
    from kgx.cpu import usable_cores

    n = min(opts.extract.workers or 1, usable_cores())
    gpu = opts.device not in (None, "cpu") or (opts.device is None and _cuda())
    if not gpu:
        return max(1, n // 2)
    return max(1, min(n, _gpu_bytes(opts.device) // READER_GPU_BYTES))


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _gpu_bytes(device: str | None) -> int:
    """The memory of the GPU ``device`` names (``cuda``, ``cuda:1``; None: the first)."""
    import torch

    dev = torch.device(device or "cuda")
    return int(torch.cuda.get_device_properties(dev.index or 0).total_memory)


def read_dump(out: Path, work: Path, model_dir: Path, key: str, opts: Any,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Predict, link and aggregate over every sentence of every article, chunk by chunk, in
    :func:`read_workers` processes (or, on Ray, a pipeline of the three steps)."""
    from kgx.corpus import document_chunks, document_offsets, load_entities
    from kgx.cpu import usable_cores
    from kgx.model import load_metadata
    from kgx.workers import Crashed, map_steps

    resumed = prepare_work(work, key)
    (work / "mentions").mkdir(exist_ok=True)
    facts_db = sort_threads(sqlite3.connect(work / "facts.sqlite"))
    facts_db.execute(_FACTS)
    journal = Journal(facts_db)
    stats: Counter[str] = Counter({k: 0 for k in _STATS})
    step_seconds: Counter[str] = Counter()  # summed over chunks (and processes)
    lost: list[dict[str, Any]] = []
    done = journal.done()
    for _, info in journal.infos():
        stats.update(info["stats"])
        step_seconds.update(info.get("seconds", {}))
        lost += info.get("lost", [])
    drop_uncommitted(work / "mentions", done)  # parts of chunks a killed run did not commit
    if resumed and done:
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
    t_loop = time.monotonic()

    def tasks() -> Iterator[tuple[Any, ...]]:
        for k, (off, n) in enumerate(chunks):
            if k in done:
                continue
            if limit is not None and stats["sentences"] >= limit:
                return  # (limit set: one process, so stats are up to date here)
            yield (k, str(docs_path), off, n,
                   None if limit is None else limit - stats["sentences"])

    def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """A chunk whose worker died, document by document: only the culprit is lost."""
        k, path, off, n, remaining = task[:5]
        for f in (work / "mentions").glob(f"{k:09d}*"):
            f.unlink()
        return [(k, path, o, 1, remaining, i) for i, o in enumerate(document_offsets(
            Path(path), off, n))]

    retried = SplitChunks(split)
    steps = read_steps(out, work, model_dir, opts, threads)
    live = LiveCount()
    with Progress(total=total_docs, unit="documents", enabled=opts.progress, desc="read",
                  live=live) as bar:
        bar.update(sum(n for k, (_, n) in enumerate(chunks) if k in done))
        for res in map_steps(steps, tasks(), n_workers, split=retried.split, live=live):
            if isinstance(res, Crashed):
                live.reset()  # the dead process's chunk counts from zero again
            k = res.task[0] if isinstance(res, Crashed) else res["chunk"]
            parts = retried.gather(k, res)
            if parts is None:
                continue
            info = _chunk_info(parts)
            journal.commit(k, {"stats": info["stats"], "lost": info["lost"],
                               "seconds": info["seconds"]},
                           lambda db, r=info["rows"]: db.executemany(
                               f"INSERT INTO f VALUES ({','.join('?' * 16)})", r))
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
    ns = json.loads((out / "report.json").read_text("utf-8"))["site"]["namespace"]
    result: dict[str, Any] = dict(stats)
    result["lost"] = lost[:MAX_LOST_LISTED]
    result.update(_write_model_facts(out, facts_db, ns, model_name, entities,
                                     entity_iri(ns)))
    result["chunks"] = len(journal.done())
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
    document for a chunk retried document by document; a :class:`kgx.workers.Crashed` part
    is documents lost."""
    from kgx.corpus import lost_documents
    from kgx.workers import Crashed

    stats: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    rows: list[tuple[Any, ...]] = []
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
    return {"stats": dict(stats), "rows": rows, "lost": lost, "seconds": dict(seconds)}


class Signatures:
    """Domain and range of each ontology property as coarse types (PER/ORG/LOC/MISC).

    A predicted relation whose head or tail mention has a coarse type other than the one its
    property's domain or range declares (a person as ``kgx:notableWork``) is not kept.
    """

    def __init__(self) -> None:
        from kgx.corpus import coarse_type
        from kgx.ontology import load_ontology

        onto = load_ontology()
        self.sig: dict[str, tuple[str | None, str | None]] = {}
        for local, p in onto.properties.items():
            dom = (onto.classes.get(p.domain[len(KGX):]) if p.domain and p.domain.startswith(KGX)
                   else None)
            rng = p.range if p.range and p.range.startswith(KGX) else None
            self.sig[local] = (coarse_type(onto, dom) if dom else None,
                               coarse_type(onto, rng) if rng and rng[len(KGX):] in onto.classes
                               else None)

    def fits(self, prop: str, head_type: str, tail_type: str) -> bool:
        dom, rng = self.sig.get(prop, (None, None))
        return (dom is None or dom == head_type) and (rng is None or rng == tail_type)


def _page_context(linker: Any, doc: dict[str, Any]) -> Any:
    eid = linker.aliases.entity_id(doc["title"])
    return linker.entity_vector(eid) if eid is not None else None


def _link_mentions(linker: Any, pending: list[Any], stats: dict[str, int],
                   alias_key: Callable[[str], str]) -> list[tuple[str, str, float] | None]:
    """(title, how, score) per mention: the page's own wikilink, the page itself, or the
    linker; None for NIL."""
    out: list[tuple[str, str, float] | None] = [None] * len(pending)
    todo = []
    for i, (doc, a, m, _ctx) in enumerate(pending):
        stats["mentions"] += 1
        s, e = a + m.start, a + m.end
        target = _covering_link(doc, s, e)
        if target is not None:
            out[i] = (target, "wikilink", 1.0)
            stats["linked_by_wikilink"] += 1
            continue
        names = {alias_key(doc["title"]), *(alias_key(x) for x in doc.get("aliases", []))}
        if alias_key(m.text) in names or (m.label == "PER" and alias_key(m.text) ==
                                          alias_key(doc["title"].split(" (")[0].split()[-1])):
            out[i] = (doc["title"], "page", 1.0)
            stats["linked_by_page"] += 1
            continue
        todo.append(i)
    if todo:
        res = linker.link_many([(pending[i][2].text, pending[i][2].label, pending[i][3])
                                for i in todo])
        for i, c in zip(todo, res, strict=True):
            if c is not None:
                out[i] = (c.title, "linker", c.score)
                stats["linked_by_linker"] += 1
    stats["linked_mentions"] += sum(1 for x in out if x is not None)
    return out


def _covering_link(doc: dict[str, Any], s: int, e: int) -> str | None:
    """The target of the page's link that contains ``[s, e)`` or lies inside it, if any.

    Links are sorted and never overlap, so a bisection finds the candidates.
    """
    links = doc["links"]
    starts = doc.get("_starts")
    if starts is None:
        starts = doc["_starts"] = [ln[0] for ln in links]
    i = bisect_right(starts, s)
    if i and links[i - 1][0] <= s and e <= links[i - 1][1]:
        return links[i - 1][2]
    i = bisect_left(starts, s)
    while i < len(links) and links[i][0] < e:
        if s <= links[i][0] and links[i][1] <= e:
            return links[i][2]
        i += 1
    return None


def _write_mention(out: list[str], ns: str, doc: dict[str, Any], a: int, m: Any,
                   ent: tuple[str, str, float], iri: Callable[[str], str]) -> int:
    pid = doc["page_id"]
    s, e = a + m.start, a + m.end
    node = f"<{ns}mention/{pid}/{s}-{e}>"
    g = f"<{ns}graph/page/{pid}/mentions>"
    lines = [
        f"{node} <{KGX}mentionOf> {iri(ent[0])} {g} .\n",
        f"{node} <{KGX}inPage> {iri(doc['title'])} {g} .\n",
        f"{node} <{KGX}anchor> {literal(m.text)} {g} .\n",
        f"{node} <{KGX}start> {literal(str(s), XSD + 'integer')} {g} .\n",
        f"{node} <{KGX}end> {literal(str(e), XSD + 'integer')} {g} .\n",
        f"{node} <{KGX}mentionType> {literal(m.label)} {g} .\n",
        f"{node} <{KGX}linkedBy> {literal(ent[1])} {g} .\n",
        f"{node} <{KGX}confidence> {literal(repr(round(ent[2] * m.score, 4)), XSD + 'double')}"
        f" {g} .\n",
    ]
    out.extend(lines)
    return len(lines)


def _write_model_facts(out: Path, db: sqlite3.Connection, ns: str, model_name: str,
                       entities: dict[str, Any], iri: Callable[[str], str]) -> dict[str, int]:
    """One named graph per distinct fact: confidence aggregated over its evidence sentences
    (noisy-or), support count, agreement with the infobox, and each evidence sentence."""
    tmp = out / (MODEL_FACTS_FILE + ".tmp")
    n_facts = n_triples = agree = 0
    pg = f"<{ns}graph/provenance>"
    rows = db.execute("SELECT h, p, t, page, rev, s0, s1, e0, e1, sentence, conf, title, h0, h1, "
                      "t0, t1 FROM f ORDER BY h, p, t, page, s0")
    with open(tmp, "w", encoding="utf-8") as f:
        cur: tuple[str, str, str] | None = None
        ev: list[tuple[Any, ...]] = []

        def emit() -> None:
            nonlocal n_facts, n_triples, agree
            if cur is None:
                return
            h, p, t = cur
            digest = hashlib.sha1(f"{h}\t{p}\t{t}".encode()).hexdigest()[:16]
            g = f"<{ns}graph/fact/{digest}>"
            conf = 1.0 - math.prod(1.0 - r[10] for r in ev)
            info = entities.get(h)
            agrees = bool(info and (p, t) in info.facts)
            agree += agrees
            lines = [f"{iri(h)} <{relation_iri(p)}> {iri(t)} {g} .\n",
                     f"{g} <{KGX}extractor> {literal('model')} {pg} .\n",
                     f"{g} <{KGX}extractorVersion> {literal(model_name)} {pg} .\n",
                     f"{g} <{KGX}confidence> {literal(repr(round(conf, 4)), XSD + 'double')} "
                     f"{pg} .\n",
                     f"{g} <{KGX}supportCount> {literal(str(len(ev)), XSD + 'integer')} {pg} .\n",
                     f"{g} <{KGX}agreesWithInfobox> "
                     f"{literal('true' if agrees else 'false', XSD + 'boolean')} {pg} .\n"]
            for i, r in enumerate(ev, 1):
                e = f"<{ns}graph/fact/{digest}/evidence/{i}>"
                lines += [
                    f"{g} <{KGX}evidence> {e} {pg} .\n",
                    f"{e} <{KGX}pageId> {literal(str(r[3]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}sentence> {literal(r[9])} {pg} .\n",
                    f"{e} <{KGX}sentenceStart> {literal(str(r[5]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}sentenceEnd> {literal(str(r[6]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}evidenceStart> {literal(str(r[7]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}evidenceEnd> {literal(str(r[8]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}sourcePage> {iri(r[11])} {pg} .\n",
                    f"{e} <{KGX}subjectStart> {literal(str(r[12]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}subjectEnd> {literal(str(r[13]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}objectStart> {literal(str(r[14]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}objectEnd> {literal(str(r[15]), XSD + 'integer')} {pg} .\n",
                    f"{e} <{KGX}confidence> {literal(repr(round(r[10], 4)), XSD + 'double')} "
                    f"{pg} .\n"]
                if r[4] is not None:
                    lines.append(f"{e} <{KGX}revisionId> {literal(str(r[4]), XSD + 'integer')} "
                                 f"{pg} .\n")
            f.writelines(lines)
            n_facts += 1
            n_triples += len(lines)

        for r in rows:
            key = (r[0], r[1], r[2])
            if key != cur:
                emit()
                cur, ev = key, []
            ev.append(r)
        emit()
    os.replace(tmp, out / MODEL_FACTS_FILE)
    return {"model_facts": n_facts, "model_fact_triples": n_triples,
            "agreeing_with_infobox": agree}
