"""The whole run: dump -> structure graph -> corpus -> model -> read every sentence -> link ->
model facts -> reasoning -> one graph.

Stages and what they leave in OUT:

======== ================================================== ==============================
stage    does                                               leaves
======== ================================================== ==============================
structure the structure pass (:mod:`kgx.extract`)            ``structure.nq``, documents
corpus   the silver corpus (:mod:`kgx.corpus`)              ``corpus/``
model    fine-tunes the reader, unless ``--model`` is given ``model/``
entities alias table + FAISS index (:mod:`kgx.linking`)     ``entities.faiss``
read     predicts mentions and relations in every sentence, ``model.nq``, ``mentions.nq``
         links mentions, aggregates facts
merge    one ``graph.nq`` + store, reasoning into its graph ``graph.nq``, ``store/``
======== ================================================== ==============================

``stages.json`` records each finished stage with a key made of its inputs (the dump's path,
size and modification time, settings, the keys of the stages it reads); a stage whose key is
unchanged and whose outputs exist is not run again.
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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgx import __version__
from kgx.cpu import ThreadTuner
from kgx.extract import GRAPH_FILE, REPORT_FILE, ExtractOptions, load_store, write_atomic
from kgx.ontology import KGX, XSD
from kgx.progress import Progress, stage
from kgx.rdf import literal

STAGES_FILE = "stages.json"
STRUCTURE_FILE = "structure.nq"
MODEL_FACTS_FILE = "model.nq"
MENTIONS_FILE = "mentions.nq"
INFERRED_FILE = "inferred.nq"


@dataclass(slots=True)
class PipelineOptions:
    """Settings of ``kgx extract`` beyond the structure pass.

    Attributes:
        extract: Structure-pass settings.
        use_model: Run the model stages (``--no-model`` turns them off).
        model: A trained model directory; without one, kgx trains on this dump's corpus.
        base_model: Encoder to fine-tune when training.
        train_sentences: Training sentences (the default fits the sample into 10 minutes on
            2 CPU cores; raise it for a real dump on a GPU).
        train_epochs: Epochs at most.
        read_sentences: Read at most this many sentences (default: all).
        relation_threshold: Lowest confidence of a model fact.
        mentions: Write linked mentions into the graph.
        reasoning: Materialise the ontology's entailments into ``graph/inferred``.
        index: Build the alias table and the FAISS entity index (``kg.lookup``).
        device: ``cpu``/``cuda`` (default: CUDA when present).
        progress: Progress bars (default: on a terminal).
    """

    extract: ExtractOptions = field(default_factory=ExtractOptions)
    use_model: bool = True
    model: str | None = None
    base_model: str = "minilm"
    train_sentences: int = 1500
    train_epochs: int = 2
    read_sentences: int | None = None
    relation_threshold: float = 0.5
    mentions: bool = True
    reasoning: bool = True
    index: bool = True
    device: str | None = None
    progress: bool | None = None


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dump_fingerprint(dump: Path) -> dict[str, Any]:
    st = dump.stat()
    return {"path": str(dump.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Stages:
    """The stage manifest: which stages are done, with which key, how long they took."""

    def __init__(self, out: Path, log: Callable[[str], None]) -> None:
        self.path = out / STAGES_FILE
        self.out = out
        self.log = log
        self.data: dict[str, Any] = json.loads(self.path.read_text("utf-8")) \
            if self.path.exists() else {}

    def done(self, name: str, key: str, outputs: list[str]) -> bool:
        rec = self.data.get(name)
        ok = bool(rec and rec.get("key") == key and all((self.out / o).exists()
                                                         for o in outputs))
        if ok:
            self.log(f"[{name}] unchanged inputs: reusing {', '.join(outputs)}")
        return ok

    def finish(self, name: str, key: str, seconds: float, **info: Any) -> None:
        self.data[name] = {"key": key, "seconds": round(seconds, 2), **info}
        write_atomic(self.path, json.dumps(self.data, indent=2))


def run(dump: str | os.PathLike[str], out: str | os.PathLike[str],
        opts: PipelineOptions | None = None, log: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """Run every stage that needs running; return the final report.

    Raises:
        DumpError: The dump cannot be opened at all.
        OutputInUse: Another kgx process is writing ``out``.
    """
    from kgx.extract import output_lock

    with output_lock(Path(out)):
        return _run(Path(dump), Path(out), opts or PipelineOptions(), log)


def _run(dump_p: Path, out_p: Path, opts: PipelineOptions, log: Callable[[str], None]
         ) -> dict[str, Any]:
    from kgx.extract import extract

    out_p.mkdir(parents=True, exist_ok=True)
    stages = Stages(out_p, log)
    ex = opts.extract
    ex.keep_documents = True
    ex.progress = opts.progress
    k_struct = _key(__version__, dump_fingerprint(dump_p) if dump_p.exists() else str(dump_p),
                    ex.limit, ex.namespace, asdict(ex.limits))
    times: dict[str, float] = {}

    t = time.monotonic()
    if not stages.done("structure", k_struct, [STRUCTURE_FILE, "documents.jsonl",
                                               "aliases.sqlite", REPORT_FILE]):
        log("[structure] reading the dump")
        with stage("structure", opts.progress):
            rep = extract(dump_p, out_p, ex)
        log(rep.summary())
        os.replace(out_p / GRAPH_FILE, out_p / STRUCTURE_FILE)
        if not rep.finished:
            # A broken dump still gives its graph; later stages work on what was read.
            log("[structure] the dump broke off: later stages use the pages read before it")
        stages.finish("structure", k_struct, time.monotonic() - t, finished=rep.finished)
    times["structure"] = time.monotonic() - t

    model_dir: Path | None = None
    k_model = "none"
    if opts.use_model:
        t = time.monotonic()
        k_corpus = _key(k_struct)
        if not stages.done("corpus", k_corpus, ["corpus/train.jsonl", "corpus/stats.json"]):
            from kgx.corpus import build_corpus

            log("[corpus] labelling sentences from links and infoboxes")
            with stage("corpus", opts.progress):
                st = build_corpus(out_p, out_p / "corpus")
            log(f"[corpus] sentences {st['sentences']}, mentions {st['mentions']}")
            stages.finish("corpus", k_corpus, time.monotonic() - t)
        times["corpus"] = time.monotonic() - t

        t = time.monotonic()
        if opts.model:
            model_dir = Path(opts.model)
            k_model = _key(str(model_dir.resolve()), (model_dir / "model.safetensors").stat()
                           .st_mtime_ns if (model_dir / "model.safetensors").exists() else 0)
            log(f"[model] using {model_dir}")
        else:
            model_dir = out_p / "model"
            k_model = _key(k_corpus, opts.base_model, opts.train_sentences, opts.train_epochs)
            if not stages.done("model", k_model, ["model/model.safetensors"]):
                from kgx.train import TrainOptions, train

                log(f"[model] fine-tuning {opts.base_model} on at most "
                    f"{opts.train_sentences:,} sentences")
                with stage("model", opts.progress):
                    res = train(out_p / "corpus", model_dir, TrainOptions(
                        base_model=opts.base_model, epochs=opts.train_epochs,
                        max_train_sentences=opts.train_sentences, max_eval_sentences=400,
                        device=opts.device), log=lambda m: log(f"[model] {m}"),
                        progress=opts.progress)
                stages.finish("model", k_model, time.monotonic() - t,
                              sentences_per_second=res.sentences_per_second)
        times["model"] = time.monotonic() - t

    t = time.monotonic()
    k_ent = _key(k_struct, "entities-1")
    if opts.index and not stages.done("entities", k_ent, ["entities.faiss", "entities.json"]):
        # The alias table and the index only need the structure graph in a store.
        _ensure_store(out_p, [STRUCTURE_FILE])
        from kgx.encoder import shared_encoder
        from kgx.linking import build_entity_table, build_vector_index

        with stage("entities", opts.progress):
            n = build_entity_table(out_p)
            log(f"[entities] {n:,} entities; embedding labels and abstracts")
            meta = build_vector_index(out_p, shared_encoder("minilm", opts.device))
        stages.finish("entities", k_ent, time.monotonic() - t, **meta)
    times["entities"] = time.monotonic() - t

    parts = [STRUCTURE_FILE]
    read_info: dict[str, Any] = {}
    if opts.use_model and model_dir is not None:
        t = time.monotonic()
        k_read = _key(k_struct, k_model, k_ent, opts.read_sentences, opts.relation_threshold,
                      opts.mentions, "read-2")
        outputs = [MODEL_FACTS_FILE] + ([MENTIONS_FILE] if opts.mentions else [])
        if not stages.done("read", k_read, outputs):
            _ensure_store(out_p, [STRUCTURE_FILE])
            with stage("read", opts.progress):
                read_info = read_dump(out_p, model_dir, opts, log)
            stages.finish("read", k_read, time.monotonic() - t, **read_info)
        else:
            read_info = {k: v for k, v in stages.data["read"].items()
                         if k not in ("key", "seconds")}
        times["read"] = time.monotonic() - t
        parts += outputs

    t = time.monotonic()
    log("[merge] one graph.nq and store" + (", RDFS/OWL-RL entailments" if opts.reasoning
                                             else ""))
    with stage("merge", opts.progress):
        inferred = merge(out_p, parts, opts.reasoning)
    times["merge"] = time.monotonic() - t
    report = json.loads((out_p / REPORT_FILE).read_text("utf-8"))
    report["pipeline"] = {"stages_seconds": {k: round(v, 2) for k, v in times.items()},
                          "model": str(model_dir) if model_dir else None,
                          "read": read_info, "inferred_triples": inferred,
                          "settings": {k: v for k, v in asdict(opts).items() if k != "extract"}}
    report["triples"]["model"] = read_info.get("model_fact_triples", 0)
    report["triples"]["mentions"] = read_info.get("mention_triples", 0)
    report["triples"]["inferred"] = inferred
    report["triples_total"] = sum(report["triples"].values())
    write_atomic(out_p / REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _ensure_store(out: Path, parts: list[str]) -> None:
    if not (out / "store").is_dir():
        tmp = out / "graph.for-store.nq"
        _concat(out, parts, tmp)
        load_store(tmp, out / "store")
        tmp.unlink()


def _concat(out: Path, parts: list[str], dst: Path) -> None:
    with open(dst, "wb") as f:
        for p in parts:
            with open(out / p, "rb") as src:
                shutil.copyfileobj(src, f)


def merge(out: Path, parts: list[str], reasoning: bool) -> int:
    """graph.nq = the parts (+ inferred quads); the store is rebuilt from it."""
    import pyoxigraph as ox

    from kgx.reasoning import materialise

    tmp = out / (GRAPH_FILE + ".tmp")
    _concat(out, parts, tmp)
    load_store(tmp, out / "store")
    n = 0
    if reasoning:
        report = json.loads((out / REPORT_FILE).read_text("utf-8"))
        ns = report.get("site", {}).get("namespace", "https://kgx.dev/wiki/")
        store = ox.Store(str(out / "store"))
        with open(out / INFERRED_FILE, "w", encoding="utf-8") as f, open(tmp, "a",
                                                                          encoding="utf-8") as g:
            for line in materialise(store, ns + "graph/inferred"):
                f.write(line)
                g.write(line)
                n += 1
        store.flush()
        del store
    os.replace(tmp, out / GRAPH_FILE)
    return n


# --------------------------------------------------------------------------- read stage


def iter_sentences(nlp: Any, text: str) -> Iterator[tuple[int, int]]:
    """Sentence spans of a document, paragraph by paragraph."""
    pos = 0
    for line in text.split("\n"):
        if line.strip():
            for s in nlp(line).sents:
                if s.text.strip():
                    yield pos + s.start_char, pos + s.end_char
        pos += len(line) + 1


def read_dump(out: Path, model_dir: Path, opts: PipelineOptions,
              log: Callable[[str], None]) -> dict[str, Any]:
    """Predict, link and aggregate over every sentence of every article."""
    import spacy

    from kgx.corpus import iter_documents, load_entities
    from kgx.linking import Linker, alias_key
    from kgx.model import Predictor
    from kgx.site import iri_escape

    report = json.loads((out / REPORT_FILE).read_text("utf-8"))
    ns = report["site"]["namespace"]
    lang = report["site"].get("lang", "en")
    try:
        nlp = spacy.blank(lang)
    except (ImportError, KeyError):
        nlp = spacy.blank("xx")
    nlp.add_pipe("sentencizer")
    predictor = Predictor.load(model_dir, device=opts.device,
                               relation_threshold=opts.relation_threshold)
    tuner = ThreadTuner(enabled=predictor.device.type == "cpu", period=16, trial=2)
    linker = Linker(out, ns)
    entities = load_entities(out)
    model_name = f"kgx-reader {predictor.metadata.get('kgx_version', __version__)} " \
                 f"({predictor.metadata.get('base_model', 'unknown')}, {model_dir.name})"
    resource = ns + "resource/"

    def iri(title: str) -> str:
        return f"<{resource}{iri_escape(title.replace(' ', '_'))}>"

    facts_db = sqlite3.connect(out / ".read-facts.sqlite")
    facts_db.executescript("DROP TABLE IF EXISTS f; CREATE TABLE f (h TEXT, p TEXT, t TEXT, "
                           "page INTEGER, rev INTEGER, s0 INTEGER, s1 INTEGER, e0 INTEGER, "
                           "e1 INTEGER, sentence TEXT, conf REAL);")
    mentions_tmp = out / (MENTIONS_FILE + ".tmp")
    mf = open(mentions_tmp, "w", encoding="utf-8") if opts.mentions else None  # noqa: SIM115
    stats = {"documents": 0, "sentences": 0, "mentions": 0, "linked_mentions": 0,
             "linked_by_wikilink": 0, "linked_by_page": 0, "linked_by_linker": 0,
             "relations_predicted": 0, "relations_between_linked": 0,
             "relations_against_domain_or_range": 0, "mention_triples": 0}
    signature = Signatures()
    docs_path = out / "documents.jsonl"
    with open(docs_path, encoding="utf-8") as f:
        total_docs = sum(1 for _ in f)
    batch: list[tuple[dict[str, Any], int, int]] = []

    def flush() -> None:
        if not batch:
            return
        t_batch = time.perf_counter()
        preds = predictor.predict([d["text"][a:b] for d, a, b in batch])
        tuner.step(time.perf_counter() - t_batch, len(batch))
        pending = []
        for (doc, a, _), pred in zip(batch, preds, strict=True):
            ctx = _page_context(linker, doc)
            for m in pred.mentions:
                pending.append((doc, a, m, ctx))
        linked = _link_mentions(linker, pending, stats, alias_key)
        by_sentence: dict[tuple[int, int], list[Any]] = {}
        for (doc, a, m, _), ent in zip(pending, linked, strict=True):
            by_sentence.setdefault((doc["page_id"], a), []).append(ent)
            if mf is not None and ent is not None:
                stats["mention_triples"] += _write_mention(mf, ns, doc, a, m, ent, iri)
        for (doc, a, b), pred in zip(batch, preds, strict=True):
            ents = by_sentence.get((doc["page_id"], a), [])
            stats["relations_predicted"] += len(pred.relations)
            for r in pred.relations:
                h, tl = ents[r.head], ents[r.tail]
                if h is None or tl is None or h[0] == tl[0]:
                    continue
                stats["relations_between_linked"] += 1
                mh, mt = pred.mentions[r.head], pred.mentions[r.tail]
                if not signature.fits(r.label, mh.label, mt.label):
                    stats["relations_against_domain_or_range"] += 1
                    continue
                e0, e1 = a + min(mh.start, mt.start), a + max(mh.end, mt.end)
                facts_db.execute("INSERT INTO f VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                 (h[0], r.label, tl[0], doc["page_id"], doc.get("revision_id"),
                                  a, b, e0, e1, doc["text"][a:b], r.score))
        batch.clear()

    limit = opts.read_sentences
    with Progress(total=total_docs, unit="documents", enabled=opts.progress, desc="read") as bar:
        for doc in iter_documents(docs_path):
            stats["documents"] += 1
            for a, b in iter_sentences(nlp, doc["text"]):
                if limit is not None and stats["sentences"] >= limit:
                    break
                batch.append((doc, a, b))
                stats["sentences"] += 1
                if len(batch) >= 256:
                    flush()
            bar.update(1, sentences=stats["sentences"], mentions=stats["mentions"])
            if limit is not None and stats["sentences"] >= limit:
                break
        flush()
    if mf is not None:
        mf.close()
        os.replace(mentions_tmp, out / MENTIONS_FILE)
    facts_db.commit()
    stats.update(_write_model_facts(out, facts_db, ns, model_name, entities, iri))
    facts_db.close()
    (out / ".read-facts.sqlite").unlink(missing_ok=True)
    log(f"[read] {stats['sentences']:,} sentences, {stats['mentions']:,} mentions "
        f"({stats['linked_mentions']:,} linked), {stats['model_facts']:,} model facts "
        f"({stats['agreeing_with_infobox']:,} restate an infobox fact)")
    return stats


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


def _write_mention(f: Any, ns: str, doc: dict[str, Any], a: int, m: Any,
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
    f.writelines(lines)
    return len(lines)


def _write_model_facts(out: Path, db: sqlite3.Connection, ns: str, model_name: str,
                       entities: dict[str, Any], iri: Callable[[str], str]) -> dict[str, int]:
    """One named graph per distinct fact: confidence aggregated over its evidence sentences
    (noisy-or), support count, agreement with the infobox, and each evidence sentence."""
    tmp = out / (MODEL_FACTS_FILE + ".tmp")
    n_facts = n_triples = agree = 0
    pg = f"<{ns}graph/provenance>"
    rows = db.execute("SELECT h, p, t, page, rev, s0, s1, e0, e1, sentence, conf FROM f "
                      "ORDER BY h, p, t, page, s0")
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
            lines = [f"{iri(h)} <{KGX}{p}> {iri(t)} {g} .\n",
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
