"""The read stage's steps on a chunk of documents: split into sentences, predict, link, and the
fact rows they give.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kgx.linking.mentions import link_mentions, page_context
from kgx.outdir import REPORT_FILE
from kgx.rdf.quads import entity_iri, write_mention
from kgx.records import FactRow, LinkedMention, Sentence
from kgx.runtime.cpu import ThreadTuner
from kgx.text.sentences import Sentencizer, paragraphs

BATCH_SENTENCES = 256  # sentences per model call


# One row per (fact, sentence): s0-s1 the sentence, e0-e1 the span of both mentions, h0-h1 and
# t0-t1 the subject's and the object's mention, all character offsets in the page's text.
_FACTS = ("CREATE TABLE IF NOT EXISTS f (h TEXT, p TEXT, t TEXT, page INTEGER, rev INTEGER, "
          "s0 INTEGER, s1 INTEGER, e0 INTEGER, e1 INTEGER, sentence TEXT, conf REAL, "
          "title TEXT, h0 INTEGER, h1 INTEGER, t0 INTEGER, t1 INTEGER, hl TEXT, tl TEXT, "
          "hs REAL, ts REAL)")


FACT_COLUMNS = len(FactRow._fields)  # the facts table's columns, in FactRow's order


# Linked mentions by entity and NER label, summed a chunk at a time: the majority NER type
# of an entity the graph has no type for (kgx.read.assertion.NerTypes).
_NER = "CREATE TABLE IF NOT EXISTS ner (entity TEXT, label TEXT, n INTEGER)"


_STATS = ("documents", "lost_documents", "sentences", "mentions", "linked_mentions",
          "linked_by_wikilink", "linked_by_page", "linked_by_linker", "relations_predicted",
          "relations_between_linked", "relations_against_domain_or_range", "mention_triples")


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
    sentences: list[Sentence]
    toks: list[Any]  # kgx.model.tokens.Tokenized, one per sentence
    predictions: list[Any] | None = None  # kgx.model.decoding.Prediction, one per sentence
    seconds: dict[str, float] = field(default_factory=dict)  # by step: split, predict, link


class SentenceSplitter:
    """Read step 1 (CPU): a chunk's documents, cut into sentences and tokenised."""

    def __init__(self, out: Path, model_dir: Path) -> None:
        from transformers import AutoTokenizer

        from kgx.runtime.logs import quiet_transformers

        report = json.loads((out / REPORT_FILE).read_text("utf-8"))
        lang = report["site"].get("lang", "en")
        self.sentencizer = Sentencizer(lang)
        quiet_transformers()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def __call__(self, chunk: int, docs_path: str, offset: int, n: int, remaining: int | None,
                 sub: int | None = None) -> ReadChunk:
        """``n`` documents from byte ``offset`` of ``documents.jsonl``, at most ``remaining``
        sentences."""
        from kgx.corpus.documents import read_documents
        from kgx.model.tokens import tokenize

        t0 = time.perf_counter()
        docs: list[dict[str, Any]] = []
        sentences: list[Sentence] = []
        for doc in read_documents(docs_path, offset, n):
            if remaining is not None and len(sentences) >= remaining:
                break
            docs.append(doc)
            for a, b in iter_sentences(self.sentencizer, doc["text"]):
                if remaining is not None and len(sentences) >= remaining:
                    break
                sentences.append(Sentence(len(docs) - 1, a, b))
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
        from kgx.model.predictor import Predictor

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
        from kgx.runtime.progress import live_progress

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
        from kgx.linking.linker import Linker

        report = json.loads((out / REPORT_FILE).read_text("utf-8"))
        self.ns = report["site"]["namespace"]
        self.linker = Linker(out, self.ns)
        from kgx.structure.entity_types import Signatures

        self.signature = Signatures()
        self.work = work
        self.mentions = mentions
        self.iri = entity_iri(self.ns)

    def __call__(self, rc: ReadChunk) -> dict[str, Any]:
        from kgx.engines.journal import part_name

        assert rc.predictions is not None, "a chunk must be predicted before it is linked"
        t0 = time.perf_counter()
        cs: Counter[str] = Counter(documents=len(rc.docs), sentences=len(rc.sentences))
        rows: list[FactRow] = []
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
        from kgx.runtime.progress import live_progress

        live_progress(0)  # handed back: counted as committed from here
        return {"chunk": rc.chunk, "stats": dict(cs), "rows": rows, "seconds": seconds,
                "ner": [(e, lab, n) for (e, lab), n in ner.items()]}

    def _link(self, docs: list[dict[str, Any]], sentences: list[Sentence],
              preds: list[Any], cs: Counter[str], rows: list[FactRow],
              lines: list[str], ner: Counter[tuple[str, str]]) -> None:
        from kgx.linking.tables import alias_key

        linker = self.linker
        pending = []
        for (d, a, _), pred in zip(sentences, preds, strict=True):
            ctx = page_context(linker, docs[d])
            for m in pred.mentions:
                pending.append((docs[d], a, m, ctx))
        linked = link_mentions(linker, pending, cs, alias_key)
        by_sentence: dict[tuple[int, int], list[LinkedMention | None]] = {}
        for (doc, a, m, _), ent in zip(pending, linked, strict=True):
            by_sentence.setdefault((doc["page_id"], a), []).append(ent)
            if ent is not None:
                ner[ent.title, m.label] += 1
            if self.mentions and ent is not None:
                cs["mention_triples"] += write_mention(lines, self.ns, doc, a, m, ent,
                                                        self.iri)
        for (d, a, b), pred in zip(sentences, preds, strict=True):
            doc = docs[d]
            ents = by_sentence.get((doc["page_id"], a), [])
            cs["relations_predicted"] += len(pred.relations)
            for r in pred.relations:
                h, tl = ents[r.head], ents[r.tail]
                if h is None or tl is None or h.title == tl.title:
                    continue
                cs["relations_between_linked"] += 1
                mh, mt = pred.mentions[r.head], pred.mentions[r.tail]
                if not self.signature.fits(r.label, mh.label, mt.label):
                    cs["relations_against_domain_or_range"] += 1
                    continue
                e0, e1 = a + min(mh.start, mt.start), a + max(mh.end, mt.end)
                rows.append(FactRow(h.title, r.label, tl.title, doc["page_id"],
                                    doc.get("revision_id"), a, b, e0, e1, doc["text"][a:b],
                                    r.score, doc["title"], a + mh.start, a + mh.end,
                                    a + mt.start, a + mt.end, mh.label, mt.label, mh.score,
                                    mt.score))


def read_steps(out: Path, work: Path, model_dir: Path, opts: Any, threads: int | None
               ) -> list[Any]:
    """The read stage's steps, in order: split, predict, link (:class:`kgx.engines.pools.Step`)."""
    from kgx.engines.pools import Step

    return [Step(SentenceSplitter, (out, model_dir)),
            Step(ChunkPredictor, (model_dir, opts.device, opts.relation_threshold),
                 {"threads": threads}, model=True),
            Step(ChunkLinker, (out, work, opts.mentions))]
