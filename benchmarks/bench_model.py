"""Quality and speed of the reader, next to baselines measured in the same run.

Quality, on the sample's held-out test pages (silver labels) and on Re-DocRED dev (gold
entities and relations, on the Wikidata properties kgx's ontology covers):

* kgx: MiniLM-L6 fine-tuned as ``kgx extract`` does by default;
* frozen encoder: the same heads trained on the same data with the encoder's layers frozen;
* gazetteer (entities only): every training mention string tagged wherever it occurs,
  longest first, with its most frequent type -- a non-neural tagger.

Speed, on 2 CPU cores (and a GPU when one is present): training sentences/s; inference
sentences/s and tokens/s of ``Predictor.predict``; and the bare encoder's forward pass on the
same padded batches, the ceiling kgx's inference can reach (target: at least 80% of it).

Usage: ``python benchmarks/bench_model.py [--work DIR] [--redocred-docs N]``.
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

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"
REDOCRED = ROOT.parent / "shared" / "data" / "redocred" / "dev_revised.json"


def corpus(work: Path) -> Path:
    from kgx.corpus import build_corpus
    from kgx.extract import ExtractOptions, extract

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
                s = r["text"][m["start"]:m["end"]]
                votes.setdefault(s, Counter())[m["label"]] += 1
        self.types = {s: c.most_common(1)[0][0] for s, c in votes.items() if len(s) > 1}
        names = sorted(self.types, key=len, reverse=True)
        self.pattern = re.compile("|".join(r"(?<!\w)" + re.escape(n) + r"(?!\w)"
                                           for n in names)) if names else None

    def predict(self, texts: list[str], relations: bool = False) -> list[Any]:
        from kgx.model import PredictedMention, Prediction

        out = []
        for t in texts:
            ms = [] if self.pattern is None else [
                PredictedMention(m.start(), m.end(), self.types[m.group()], 1.0, m.group())
                for m in self.pattern.finditer(t)]
            out.append(Prediction(tuple(ms), ()))
        return out

    relation_labels = ["NA"]


def scores_line(name: str, res: dict[str, Any]) -> dict[str, Any]:
    ent = res.get("entities", {}).get("micro", {})
    rel = res.get("relations", {}).get("micro", {})
    return {"system": name, "entity_p": ent.get("precision"), "entity_r": ent.get("recall"),
            "entity_f1": ent.get("f1"), "relation_p": rel.get("precision"),
            "relation_r": rel.get("recall"), "relation_f1": rel.get("f1")}


def speed(model_dir: Path, rows: list[dict[str, Any]], device: str | None) -> dict[str, float]:
    """kgx predict vs the bare encoder forward pass on the same batches."""
    from kgx.model import Predictor, pad_batch, tokenize

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
            p.model.encode(batch["input_ids"], batch["attention_mask"])
    if p.device.type == "cuda":
        torch.cuda.synchronize()
    bare_s = time.perf_counter() - t
    return {"sentences": len(texts), "tokens": n_tokens,
            "kgx_sentences_s": len(texts) / kgx_s, "kgx_tokens_s": n_tokens / kgx_s,
            "encoder_sentences_s": len(texts) / bare_s, "ratio": bare_s / kgx_s}


def main() -> None:
    from kgx.corpus import read_split
    from kgx.evaluate import evaluate, evaluate_docred, evaluate_rows
    from kgx.model import Predictor, pick_device
    from kgx.ontology import load_ontology
    from kgx.train import TrainOptions, train

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=ROOT / "bench-out" / "model")
    ap.add_argument("--train-sentences", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=2)
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

    systems = {}
    for name, freeze in (("kgx (MiniLM-L6 fine-tuned)", False), ("frozen encoder", True)):
        out = args.work / ("model-frozen" if freeze else "model")
        systems[name] = out
        if args.reuse and (out / "kgx.json").exists():
            tr = json.loads((out / "kgx.json").read_text())["training"]
        else:
            train(c, out, TrainOptions(epochs=args.epochs, max_eval_sentences=400,
                                       max_train_sentences=args.train_sentences,
                                       freeze_encoder=freeze, device=args.device),
                  log=lambda m: None)
            tr = json.loads((out / "kgx.json").read_text())["training"]
        results.setdefault("training", {})[name] = {
            "seconds": tr["seconds"], "sentences_per_second": tr["sentences_per_second"],
            "train_sentences": tr["train_sentences"], "epochs": tr["epochs_run"]}

    onto = load_ontology()
    wd = {local: p.wikidata for local, p in onto.properties.items() if p.wikidata}
    rows = []
    for name, out in systems.items():
        silver = evaluate(out, c / "test.jsonl", device=args.device)
        line = scores_line(name, silver)
        if REDOCRED.exists():
            gold = evaluate(out, REDOCRED, limit=args.redocred_docs, device=args.device)
            line.update({"redocred_entity_f1": gold["entities"]["micro"]["f1"],
                         "redocred_relation_p": gold["relations"]["micro"]["precision"],
                         "redocred_relation_r": gold["relations"]["micro"]["recall"],
                         "redocred_relation_f1": gold["relations"]["micro"]["f1"],
                         "redocred_covered": gold["gold_relations_covered"],
                         "redocred_total": gold["gold_relations"],
                         "redocred_recall_same_sentence":
                             gold["relations"]["recall_on_same_sentence_pairs"],
                         "redocred_per_label": gold["relations"]["per_label"]})
        rows.append(line)
    gaz = Gazetteer(train_rows)
    line = scores_line("gazetteer (non-neural)", evaluate_rows(gaz, test))
    if REDOCRED.exists():
        from kgx.datasets import read_docred

        docs = read_docred(REDOCRED)[: args.redocred_docs]
        line["redocred_entity_f1"] = evaluate_docred(gaz, docs, wd)["entities"]["micro"]["f1"]
    rows.append(line)
    results["quality"] = rows
    results["speed"] = speed(systems["kgx (MiniLM-L6 fine-tuned)"], test, args.device)
    p = Predictor.load(systems["kgx (MiniLM-L6 fine-tuned)"], device=args.device)
    results["relation_labels"] = p.relation_labels

    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"\n{'system':30} {'silver test: ent P':>18} {'R':>6} {'F1':>6} {'rel F1':>7} "
          f"{'Re-DocRED: ent F1':>18} {'rel P':>6} {'rel R':>6} {'rel F1':>7}")
    for r in rows:
        def f(x: Any) -> str:
            return "   -  " if x is None else f"{x:6.3f}"
        print(f"{r['system']:30} {f(r['entity_p']):>18} {f(r['entity_r'])} {f(r['entity_f1'])} "
              f"{f(r['relation_f1']):>7} {f(r.get('redocred_entity_f1')):>18} "
              f"{f(r.get('redocred_relation_p'))} {f(r.get('redocred_relation_r'))} "
              f"{f(r.get('redocred_relation_f1')):>7}")
    if rows and "redocred_covered" in rows[0]:
        print(f"\nRe-DocRED: {rows[0]['redocred_covered']:,} of {rows[0]['redocred_total']:,} "
              "gold relations carry a Wikidata property kgx's model has a label for; recall "
              f"on the pairs that share a sentence: {rows[0]['redocred_recall_same_sentence']}")
    for name, tr in results["training"].items():
        print(f"training {name}: {tr['train_sentences']:,} sentences x {tr['epochs']} epochs, "
              f"{tr['sentences_per_second']} sentences/s, {tr['seconds']} s")
    s = results["speed"]
    print(f"inference: {s['kgx_sentences_s']:.1f} sentences/s, {s['kgx_tokens_s']:.0f} tokens/s; "
          f"bare encoder {s['encoder_sentences_s']:.1f} sentences/s; kgx / encoder = "
          f"{s['ratio']:.2f} (target >= 0.80)")
    (args.work / "bench-model.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
