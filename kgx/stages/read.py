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
from typing import Any, NamedTuple

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
          "title TEXT, h0 INTEGER, h1 INTEGER, t0 INTEGER, t1 INTEGER, hl TEXT, tl TEXT, "
          "hs REAL, ts REAL)")
FACT_COLUMNS = 20
# Linked mentions by entity and NER label, summed a chunk at a time: the majority NER type
# of an entity the graph has no type for (kgx.assertion.NerTypes).
_NER = "CREATE TABLE IF NOT EXISTS ner (entity TEXT, label TEXT, n INTEGER)"
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
                         o.min_precision, "read-6")

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
        from kgx.entities import Signatures

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
        ner: Counter[tuple[str, str]] = Counter()
        # Linked in the predictor's batches, so a mention is linked alike on every engine.
        for i in range(0, len(rc.sentences), BATCH_SENTENCES):
            self._link(rc.docs, rc.sentences[i: i + BATCH_SENTENCES],
                       rc.predictions[i: i + BATCH_SENTENCES], cs, rows, lines, ner)
        part = self.work / "mentions" / f"{part_name(rc.chunk, rc.sub)}.nq"
        with open(part.with_suffix(".tmp"), "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(part.with_suffix(".tmp"), part)
        seconds = dict(rc.seconds, link=time.perf_counter() - t0)
        from kgx.progress import live_progress

        live_progress(0)  # handed back: counted as committed from here
        return {"chunk": rc.chunk, "stats": dict(cs), "rows": rows, "seconds": seconds,
                "ner": [(e, lab, n) for (e, lab), n in ner.items()]}

    def _link(self, docs: list[dict[str, Any]], sentences: list[tuple[int, int, int]],
              preds: list[Any], cs: Counter[str], rows: list[tuple[Any, ...]],
              lines: list[str], ner: Counter[tuple[str, str]]) -> None:
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
            if ent is not None:
                ner[ent[0], m.label] += 1
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
                             a + mh.start, a + mh.end, a + mt.start, a + mt.end,
                             mh.label, mt.label, mh.score, mt.score))


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
    facts_db.execute(_NER)
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
                           lambda db, r=info["rows"], m=info["ner"]: (db.executemany(
                               f"INSERT INTO f VALUES ({','.join('?' * FACT_COLUMNS)})", r),
                               db.executemany("INSERT INTO ner VALUES (?, ?, ?)", m)))
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
    result.update(write_model_facts(out, facts_db, ns, model_name, entities, meta,
                                    opts.min_precision, log))
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
        target = _wikilink_of(doc, s, e, m.text, alias_key)
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


LINK_SPAN_SHARE = 0.75  # of a link's text a mention inside it must cover (and conversely)


def _wikilink_of(doc: dict[str, Any], s: int, e: int, text: str,
                 alias_key: Callable[[str], str]) -> str | None:
    """The target of the page's link that names the mention ``[s, e)``: a link that holds it
    or lies inside it, where the shorter of the two spans covers most of the longer
    (:data:`LINK_SPAN_SHARE`), or the mention is the target's name without its qualifier.
    "Florida" inside ``[[Merritt Island, Florida]]`` or "United States" inside ``[[United
    States bankruptcy court]]`` is not that link's target: it goes to the linker."""
    link = _covering_span(doc, s, e)
    if link is None:
        return None
    ls, le, target = link
    short, long_ = sorted((e - s, le - ls))
    if short >= LINK_SPAN_SHARE * long_:
        return target
    name = target.split(" (")[0].split(", ")[0]
    return target if alias_key(text) == alias_key(name) else None


def _covering_span(doc: dict[str, Any], s: int, e: int) -> tuple[int, int, str] | None:
    """The page's link (start, end, target) that contains ``[s, e)`` or lies inside it.

    Links are sorted and never overlap, so a bisection finds the candidates.
    """
    links = doc["links"]
    starts = doc.get("_starts")
    if starts is None:
        starts = doc["_starts"] = [ln[0] for ln in links]
    i = bisect_right(starts, s)
    if i and links[i - 1][0] <= s and e <= links[i - 1][1]:
        return links[i - 1][0], links[i - 1][1], links[i - 1][2]
    i = bisect_left(starts, s)
    while i < len(links) and links[i][0] < e:
        if s <= links[i][0] and links[i][1] <= e:
            return links[i][0], links[i][1], links[i][2]
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


def write_model_facts(out: Path, db: sqlite3.Connection, ns: str, model_name: str,
                      entities: Any, meta: dict[str, Any], min_precision: float,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """Decide and write the model facts (:mod:`kgx.assertion`): asserted ones in graphs of
    their own, candidates in ``graph/candidates``, NER types in ``graph/ner-types``.

    Two passes over the evidence rows, sorted on disk: the first scores the held-out
    subjects' facts (calibration and each property's bar), the second writes every fact.

    Returns:
        The counts and figures for the report (``assertion``: held-out precision, the
        reliability table, each property's bar, the refusals).
    """
    from kgx.assertion import (
        NER_CLASSES,
        ModelFact,
        NerTypes,
        TypeSystem,
        decide_bars,
        group_evidence,
        why_not_asserted,
    )
    from kgx.ontology import load_mappings, load_ontology
    from kgx.rdf import (
        candidate_lines,
        model_fact_lines,
        ner_type_lines,
        ner_types_provenance,
    )

    onto = load_ontology()
    iri = entity_iri(ns)
    ner = NerTypes(db.execute("SELECT entity, label, SUM(n) FROM ner GROUP BY entity, label"))

    def graph_type(title: str) -> str | None:
        info = entities.get(title)
        return info.fine if info else None

    lang = json.loads((out / "report.json").read_text("utf-8"))["site"].get("lang", "en")
    types = TypeSystem(onto, graph_type, ner, load_mappings().is_list_page(lang))
    held = held_out_rule(out, meta, entities)

    def facts() -> Iterator[ModelFact]:
        rows = db.execute(f"SELECT {FACT_SELECT} FROM f ORDER BY h, p, t, page, s0")
        for h, p, t, ev in group_evidence(rows):
            f = ModelFact(h, p, t, ev)
            types.check(f)
            yield f

    # Pass 1: what the reader says of the held-out subjects, judged by their infoboxes.
    scored: list[Scored] = []
    if held is not None:
        for f in facts():
            if f.refused is None and held.covers(f.subject):
                scored.append(Scored(f.subject, f.prop, f.features(), f.types_known,
                                     held.label(f)))
    gold_outcomes = meta.get("gold_dev_relations") or {}

    def typed(prop: str) -> bool:
        return prop in onto.properties

    calib, gates = decide_bars([(x.prop, x.features, bool(x.right)) for x in scored
                                if x.right is not None], {x.prop for x in scored},
                               gold_outcomes, min_precision, typed)
    report = _held_out_report(scored, min_precision, held is not None, gold_outcomes, typed)

    # Pass 2: every fact, decided and written.
    tmp = out / (MODEL_FACTS_FILE + ".tmp")
    counts: Counter[str] = Counter()
    refused: dict[str, Counter[str]] = {}
    asserted_by: Counter[str] = Counter()
    agree = n_triples = 0
    with open(tmp, "w", encoding="utf-8") as fout:
        for f in facts():
            if f.refused is not None:
                f.status = "refused"
                refused.setdefault(f.prop, Counter())[f.refused] += 1
                counts["refused"] += 1
                continue
            f.confidence = calib(f.features())
            why = why_not_asserted(gates.get(f.prop), min_precision, f.confidence,
                                   f.best_score, f.types_known)
            if why is None:
                f.status = "asserted"
            else:
                f.why = why
            predicate = relation_iri(f.prop)
            if f.status == "asserted":
                info = entities.get(f.subject)
                agrees = bool(info and (f.prop, f.object) in info.facts)
                agree += agrees
                lines = model_fact_lines(f, ns, predicate, model_name, agrees, iri)
                asserted_by[f.prop] += 1
            else:
                lines = candidate_lines(f, ns, predicate, model_name, iri)
            counts[f.status] += 1
            n_triples += len(lines)
            fout.writelines(lines)
        # Entities the graph had no type for, typed by their mentions' majority.
        typed = 0
        for title, (label, _mentions, _share) in sorted(ner.types.items()):
            if label in NER_CLASSES and graph_type(title) is None:
                lines = ner_type_lines(title, NER_CLASSES[label], ns, iri)
                fout.writelines(lines)
                n_triples += len(lines)
                typed += 1
        if typed:
            lines = ner_types_provenance(ns, model_name)
            fout.writelines(lines)
            n_triples += len(lines)
    os.replace(tmp, out / MODEL_FACTS_FILE)
    report.update({
        "min_precision": min_precision, "calibration": calib.to_json(),
        "gates": {p: {"source": g.source, "scored": g.scored,
                      "threshold": None if g.threshold is None else round(g.threshold, 4),
                      "precision": g.precision, "above": g.above,
                      "asserted": asserted_by.get(p, 0), "why": g.why}
                  for p, g in sorted(gates.items())},
        "refused": {p: dict(c) for p, c in sorted(refused.items())},
        "entities_typed_by_ner": typed})
    log(f"[read] model facts: {counts['asserted']:,} asserted, {counts['candidate']:,} kept as "
        f"candidates, {counts['refused']:,} refused by their types; {typed:,} entities typed "
        "by their mentions")
    ap = report.get("asserted_precision")
    if ap is not None:
        judged = (f"{ap['closed_world']} of the {ap['facts_judged']:,} their infobox can judge "
                  "(closed world)" if ap["facts_judged"] else
                  "none of them of a property their infobox states (closed world: no figure)")
        log(f"[read] held-out infobox facts: of the {ap['facts']:,} facts asserted about the "
            f"{report['held_out_subjects']:,} held-out subjects, right {judged}"
            + (f"; at least {ap['strict']} counting every fact the infobox does not state as "
               "wrong" if ap["facts"] else ""))
    log(f"[read] confidence calibrated on {calib.source} facts ({calib.examples:,})"
        if calib.fitted else "[read] confidence: too few held-out facts or gold dev relations "
        "to calibrate on; a fact's confidence is its best sentence score")
    return {"model_facts": counts["asserted"], "candidate_facts": counts["candidate"],
            "refused_facts": counts["refused"], "model_fact_triples": n_triples,
            "agreeing_with_infobox": agree, "assertion": report}


FACT_SELECT = "h, p, t, page, rev, s0, s1, e0, e1, sentence, conf, title, h0, h1, t0, t1, " \
              "hl, tl, hs, ts"


def held_out_rule(out: Path, meta: dict[str, Any], entities: Any) -> Any:
    """The held-out subjects of the corpus the model was trained on, when that corpus is
    this output's (a model trained elsewhere leaves nothing to score: None)."""
    from kgx.assertion import HeldOut
    from kgx.corpus import held_out_subject

    held = (meta.get("corpus_stats") or {}).get("held_out") or {}
    graph = (meta.get("corpus_stats") or {}).get("graph")
    if not held.get("share") or not graph or Path(graph).resolve() != out.resolve():
        return None
    share, salt = float(held["share"]), str(held["salt"])

    def facts_of(title: str) -> list[tuple[str, str]]:
        info = entities.get(title)
        return list(info.facts) if info else []

    return HeldOut(lambda t: held_out_subject(t, share, salt), facts_of)


class Scored(NamedTuple):
    """A fact about a held-out subject, as the held-out figures need it."""

    subject: str
    prop: str
    features: list[float]
    types_known: tuple[str, str]
    right: bool | None  # what the subject's infobox says of it (None: nothing)


def _held_out_report(scored: list[Scored], min_precision: float, have_held_out: bool,
                     gold_outcomes: dict[str, Any], typed: Callable[[str], bool]
                     ) -> dict[str, Any]:
    """Held-out figures, cross-fitted: each fold of subjects is decided with the calibration
    and bars fitted on the other fold (and the gold dev relations, which no held-out fact
    made), so no fact is judged by a rule fitted on itself."""
    from kgx.assertion import decide_bars, fold_of, precision_at, reliability, why_not_asserted

    if not have_held_out:
        return {"held_out": False, "note": "the model was not trained on this output's "
                "corpus (--model): no held-out facts to measure its precision on"}
    conf: list[float] = []
    strict: list[bool] = []
    closed: list[bool | None] = []
    asserted: list[bool] = []
    props = {x.prop for x in scored}
    for k in (0, 1):
        calib, gates = decide_bars([(x.prop, x.features, bool(x.right)) for x in scored
                                    if x.right is not None and fold_of(x.subject) != k],
                                   props, gold_outcomes, min_precision, typed)
        for x in scored:
            if fold_of(x.subject) != k:
                continue
            c = calib(x.features)
            conf.append(c)
            strict.append(bool(x.right))
            closed.append(x.right)
            best = 1.0 / (1.0 + math.exp(-x.features[0]))  # the fact's best sentence score
            asserted.append(why_not_asserted(gates.get(x.prop), min_precision, c, best,
                                             x.types_known) is None)
    judged_idx = [i for i, y in enumerate(closed) if y is not None]
    on = [i for i in range(len(conf)) if asserted[i]]
    on_judged = [i for i in on if closed[i] is not None]
    return {
        "held_out": True,
        "held_out_subjects": len({s for s, *_ in scored}),
        "held_out_facts": len(scored),
        "held_out_facts_judged": sum(x.right is not None for x in scored),
        "note": "precision of the reader's facts about held-out subjects: 'strict' counts "
                "every fact their infobox does not state as wrong (a lower bound); "
                "'closed_world' leaves out facts of a property the infobox does not state "
                "(cross-fitted over two folds of subjects)",
        "asserted_precision": {
            "facts": len(on), "facts_judged": len(on_judged),
            "strict": round(sum(strict[i] for i in on) / len(on), 3) if on else None,
            "closed_world": round(sum(bool(closed[i]) for i in on_judged) / len(on_judged), 3)
            if on_judged else None},
        "precision_at": {"strict": precision_at(conf, strict),
                         "closed_world": precision_at([conf[i] for i in judged_idx],
                                                      [bool(closed[i]) for i in judged_idx])},
        "reliability": reliability([conf[i] for i in judged_idx],
                                   [bool(closed[i]) for i in judged_idx])}
