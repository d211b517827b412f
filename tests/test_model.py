"""Corpus -> training -> save/load -> prediction, on CPU with a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from kgx.corpus import build_corpus, read_split, split_of  # noqa: E402
from kgx.datasets import DataError, read_conll, read_docred  # noqa: E402
from kgx.evaluate import evaluate  # noqa: E402
from kgx.extract import ExtractOptions, extract  # noqa: E402
from kgx.model import Predictor, bio_labels, tokenize, windows_for  # noqa: E402
from kgx.train import TrainOptions, train  # noqa: E402

from .conftest import SAMPLE  # noqa: E402


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    g = tmp_path_factory.mktemp("graph")
    extract(SAMPLE, g, ExtractOptions(workers=2, keep_documents=True, progress=False))
    out = tmp_path_factory.mktemp("corpus")
    build_corpus(g, out, held_out_share=0.0)  # every infobox fact labels: the labelling under test
    return out


def test_corpus_splits_and_labels(sample_corpus: Path) -> None:
    stats = json.loads((sample_corpus / "stats.json").read_text())
    splits = {s: read_split(sample_corpus / f"{s}.jsonl") for s in ("train", "dev", "test")}
    pages = {s: {r["page_id"] for r in rows} for s, rows in splits.items()}
    assert not (pages["train"] & pages["dev"]) and not (pages["train"] & pages["test"])
    assert all(split_of(p) == s for s, ps in pages.items() for p in ps)
    assert stats["sentences"]["train"] == len(splits["train"])
    n_rel = 0
    for rows in splits.values():
        for r in rows:
            for m in r["mentions"]:
                assert 0 <= m["start"] < m["end"] <= len(r["text"])
                assert m["label"] in ("PER", "ORG", "LOC", "MISC") or (
                    m["label"] is None and m["source"] == "pronoun"
                    and r["text"][m["start"]:m["end"]].lower() in ("he", "she")) or (
                    m["label"] is None and m["source"] == "description")
                assert r["text"][m["start"]:m["end"]].strip()
            for a, b in r["ignore"]:
                assert not any(m["start"] < b and a < m["end"] for m in r["mentions"])
            # a link to a page of no known type is masked, and kept with its target
            for a, b, target in r["untyped"]:
                assert [a, b] in r["ignore"] and target and r["text"][a].isupper()
            for x in r["relations"]:
                assert x["head"] != x["tail"]
            # a positive is counted once per sentence, entity pair and label
            ms = r["mentions"]
            n_rel += len({(ms[x["head"]]["entity"], ms[x["tail"]]["entity"], x["label"])
                          for x in r["relations"] if x["label"] != "NA"})
    assert n_rel == sum(v for k, v in stats["relations"].items() if k != "NA") > 20
    # sentences of training pages dropped for an unlabelled name keep their untyped links
    # for link typing (kgx.link_typing), and are no training rows
    lines = (sample_corpus / "train.links.jsonl").read_text("utf-8").splitlines()
    contexts = [json.loads(x) for x in lines]
    assert len(contexts) > 100 and all(split_of(r["page_id"]) == "train" and r["untyped"]
                                       and "mentions" not in r for r in contexts)
    assert all(r["text"][a:b] and r["text"][a].isupper() for r in contexts
               for a, b, _t in r["untyped"])
    # every step of the recipe is counted
    assert {"links_typed", "dropped_unlabelled_capitalised", "ignored_spans"} <= set(
        stats["steps"])


def test_training_offsets_find_every_row_of_its_kind(sample_corpus: Path, tmp_path: Path) -> None:
    """The offset files the corpus writes point at every training row, each under its kind,
    and a corpus without them (kgx 0.1's, or stale ones) gets the same offsets by a scan."""
    import shutil

    from kgx.corpus import KINDS, offsets_path, read_rows_at, row_kind, training_offsets

    rows = read_split(sample_corpus / "train.jsonl")
    offsets = training_offsets(sample_corpus)
    assert sum(len(a) for a in offsets) == len(rows)
    assert all(len(a) for a in offsets)  # the sample has rows of every kind
    for kind, a in enumerate(offsets):
        assert list(a) == sorted(a)
        assert {row_kind(r) for r in read_rows_at(sample_corpus / "train.jsonl", a)} == {kind}
    bare = tmp_path / "bare"
    shutil.copytree(sample_corpus, bare)
    for k in range(len(KINDS)):
        offsets_path(bare, k).unlink()
    assert training_offsets(bare) == offsets
    offsets_path(bare, 0).write_bytes((10**12).to_bytes(8, "little"))  # points past the end
    assert training_offsets(bare) == offsets
    shutil.copy(offsets_path(sample_corpus, 0), offsets_path(bare, 0))
    offsets_path(bare, 1).write_bytes(b"")  # a count that does not match stats.json
    offsets_path(bare, 2).write_bytes(b"")
    assert training_offsets(bare) == offsets


def test_the_training_draw_reads_only_what_it_trains_on(sample_corpus: Path,
                                                        monkeypatch) -> None:
    """A capped draw keeps every relation row first, caps the mention-free share, and reads
    only its own rows from the corpus (not a pass over all of it)."""
    import random

    import kgx.corpus
    import kgx.train
    from kgx.corpus import row_kind, training_offsets
    from kgx.train import load_training_data, plan_sample

    counts = [len(a) for a in training_offsets(sample_corpus)]
    opened: list[int] = []

    def read_rows_at(path, offsets):
        rows = kgx.corpus.read_rows_at(path, offsets)
        opened.append(len(rows))
        return rows

    def iter_split(path):
        assert path.name != "train.jsonl", "the draw streamed the whole training split"
        return kgx.corpus.iter_split(path)

    monkeypatch.setattr(kgx.train, "read_rows_at", read_rows_at)
    monkeypatch.setattr(kgx.train, "iter_split", iter_split)
    limit = counts[0] + 50
    train_rows, *_ = load_training_data(sample_corpus, limit=limit, max_empty_share=0.3,
                                        rng=random.Random(1), max_eval=10)
    assert opened == [limit] and len(train_rows) == limit
    kinds = [row_kind(r) for r in train_rows]
    assert kinds.count(0) == counts[0]  # every relation row
    assert kinds.count(2) == limit - max(counts[0], int(limit * 0.7))
    assert len({json.dumps(r, sort_keys=True) for r in train_rows}) == limit  # no repeats
    # uncapped: everything with mentions, and 30% of the result without
    plan = plan_sample([3, 5, 100], None, 0.3, random.Random(0))
    assert sorted(k for k, _ in plan) == [0] * 3 + [1] * 5 + [2] * 3
    assert len(set(plan)) == len(plan)


def test_distant_supervision_finds_a_known_fact(sample_corpus: Path) -> None:
    rows = [r for s in ("train", "dev", "test") for r in read_split(sample_corpus / f"{s}.jsonl")]
    hits = [(r["mentions"][x["head"]]["entity"], x["label"], r["mentions"][x["tail"]]["entity"])
            for r in rows for x in r["relations"] if x["label"] != "NA"]
    assert ("Albert Einstein", "birthPlace", "Ulm") in hits
    # a biography's "He" stands for its subject in relation examples
    by_pronoun = [(r["text"], r["mentions"][x["head"]]["entity"], x["label"])
                  for r in rows for x in r["relations"] if x["label"] != "NA"
                  and r["mentions"][x["head"]]["source"] == "pronoun"]
    assert by_pronoun and all(r["mentions"][x["head"]]["label"] is None for r in rows
                              for x in r["relations"]
                              if r["mentions"][x["head"]]["source"] == "pronoun")


def test_a_page_calls_its_subject_by_the_noun_its_lead_defines(sample_corpus: Path) -> None:
    from kgx.corpus import class_noun

    assert class_noun("Alabama () is a state located in the southeastern region of the "
                      "United States.") == "state"
    assert class_noun("Autism is a neurodevelopmental disorder characterized by impaired "
                      "social interaction.") == "disorder"
    assert class_noun("Animal Farm is an allegorical and dystopian novella by George "
                      "Orwell.") == "novella"
    assert class_noun("Alaska () is a U.S. state situated in the northwest.") is None
    assert class_noun("Ada may refer to: Ada (food), a delicacy.") is None
    rows = [r for s in ("train", "dev", "test") for r in read_split(sample_corpus / f"{s}.jsonl")]
    described = [(r["title"], r["text"][m["start"]:m["end"]], m) for r in rows
                 for m in r["mentions"] if m["source"] == "description"]
    assert described
    for title, text, m in described:
        assert m["label"] is None and m["entity"] == title  # a mention, not a name to tag
        assert text.lower().startswith("the ")
    stated = {(r["mentions"][x["head"]]["entity"], x["label"], r["mentions"][x["tail"]]["entity"])
              for r in rows for x in r["relations"] if x["label"] != "NA"
              and "description" in (r["mentions"][x["head"]]["source"],
                                    r["mentions"][x["tail"]]["source"])}
    assert stated


def test_whole_word_search_and_taken_ranges_agree_with_their_plain_forms() -> None:
    """The corpus's substring search finds what the regular expression it replaced finds,
    and its byte map of taken ranges answers as the pairwise test it replaced."""
    import random
    import re

    from kgx.corpus import _find_all, _Taken

    rng = random.Random(3)
    alphabet = "ab _.-éΩ1٢"
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        needle = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        expected = [m.start() for m in re.finditer(r"(?<!\w)" + re.escape(needle) + r"(?!\w)",
                                                   text)] if len(needle) >= 3 else []
        assert list(_find_all(text, needle)) == expected, (text, needle)
    assert list(_find_all("Lincoln, Lincolnshire and Lincoln", "Lincoln")) == [0, 26]
    for _ in range(2_000):
        n = rng.randint(1, 40)
        held = []
        taken = _Taken(n)
        for _ in range(rng.randint(0, 6)):
            a = rng.randrange(n)
            b = rng.randint(a, n)  # empty ranges too
            held.append((a, b))
            taken.add(a, b)
        for _ in range(20):
            a = rng.randrange(n)
            b = rng.randint(a + 1, n + 1)
            assert taken.overlaps(a, b) == any(x < b and a < y for x, y in held)


def test_label_alignment(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    text = "Lincoln visited Hodgenville yesterday"
    tk = tokenize(tok, [text])[0]
    labels = bio_labels(tk, [{"start": 0, "end": 7, "label": "PER"},
                             {"start": 16, "end": 27, "label": "LOC"}], [[28, 37]],
                        {"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4})
    by_piece = list(zip(tok.convert_ids_to_tokens(tk.ids), labels, strict=True))
    assert by_piece[0] == ("lincoln", 1)
    assert by_piece[1] == ("visited", 0)
    loc = [lab for t, lab in by_piece[2:-1]]
    assert loc[0] == 3 and all(lab == -100 for lab in loc[1:])  # continuation pieces
    assert by_piece[-1][1] == -100  # inside an ignore span


def test_windows_cover_everything() -> None:
    for n in (1, 126, 127, 500, 1000):
        ws = windows_for(n, 126, 32)
        covered = set()
        for a, b in ws:
            assert b - a <= 126
            covered.update(range(a, b))
        assert covered == set(range(n))


@pytest.fixture(scope="session")
def tiny_model(tiny_bert: Path, sample_corpus: Path, tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("model")
    res = train(sample_corpus, out, TrainOptions(
        base_model=str(tiny_bert), epochs=4, patience=10, max_train_sentences=300,
        max_eval_sentences=60, learning_rate=1e-3, batch_size=16, link_typing_rows=400),
        log=lambda m: None)
    return out, res


def test_training_lowers_the_loss_and_saves_hf_layout(tiny_model) -> None:
    out, res = tiny_model
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]
    for f in ("config.json", "model.safetensors", "tokenizer.json", "kgx.json", "README.md"):
        assert (out / f).exists(), f
    meta = json.loads((out / "kgx.json").read_text())
    assert meta["ontology_version"] and meta["corpus_stats"]["sentences"]
    assert meta["relation_labels"][0] == "NA" and "dev" in meta and "test" in meta
    assert meta["relation_wikidata"].get("birthPlace") == "P19"
    # after the first epoch the tagger read the links to untyped pages (kgx.link_typing)
    typing = meta["training"]["link_typing"]
    assert typing["links"] > 0 and typing["targets"] > 0
    assert typing["mentions_added"] >= sum(typing["typed"].values())
    # transformers loads encoder + tagger from the directory as it is
    from transformers import AutoModelForTokenClassification

    hf = AutoModelForTokenClassification.from_pretrained(out)
    assert hf.config.id2label[0] == "O" and hf.num_labels == len(meta["entity_labels"]) * 2 + 1


def test_save_load_round_trip_predicts_the_same(tiny_model) -> None:
    out, _ = tiny_model
    p1 = Predictor.load(out, device="cpu")
    p2 = Predictor.load(out, device="cpu")
    texts = ["Albert Einstein was born in Ulm.", "Ayn Rand wrote Atlas Shrugged in New York."]
    assert p1.predict(texts) == p2.predict(texts)
    hf_logits = p1.model.classifier.weight.detach().clone()
    assert torch.equal(hf_logits, p2.model.classifier.weight)


def test_predict_long_text_is_windowed_not_truncated(tiny_model) -> None:
    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", max_length=32)
    text = " ".join(["Lincoln was born in Kentucky ."] * 60)
    tk = tokenize(p.tokenizer, [text])[0]
    assert len(tk.ids) > 300
    seen = []
    real = p._word_probs

    def spy(encoded):
        (tok,), (wis,) = encoded.toks, encoded.by_text
        seen.append(len(wis))
        covered = set()
        for wi in wis:
            w = encoded.windows[wi]
            covered.update(range(w.tok_start, w.tok_start + encoded.window_logits(wi).shape[0]))
        assert covered == set(range(len(tok.ids)))  # every token was read
        return real(encoded)

    p._word_probs = spy
    pred = p.predict([text])[0]
    assert seen[0] > 10
    for m in pred.mentions:
        assert text[m.start:m.end] == m.text and 0 <= m.score <= 1
    for r in pred.relations:
        assert r.head != r.tail and r.label != "NA"


def test_predict_batch_order_and_empty(tiny_model) -> None:
    out, _ = tiny_model
    p = Predictor.load(out, device="cpu")
    texts = ["Short.", "A much longer sentence about Abraham Lincoln and Kentucky and more.", ""]
    batch = p.predict(texts)
    single = [p.predict([t])[0] for t in texts]
    assert batch == single
    assert p.predict([]) == []


def test_batches_follow_the_token_budget(tiny_model) -> None:
    """Short windows share a forward pass, long ones split it; predictions do not change."""
    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", token_budget=200, relation_threshold=0.0)
    texts = ["Ayn Rand was born in Saint Petersburg and moved to New York City."] * 3 + \
        ["Kentucky."] * 30 + [" ".join(["Abraham Lincoln met Mary Todd in Springfield."] * 9)]
    wins = p._windows(tokenize(p.tokenizer, texts))
    batches = list(p._batches(wins))
    assert sorted(i for b in batches for i in b) == list(range(len(wins)))
    for b in batches:
        width = max(len(wins[i].input_ids) for i in b) + 2
        assert len(b) == 1 or len(b) * width <= 200
        assert len(b) <= p.batch_size
    assert max(len(b) for b in batches) > 5 and min(len(b) for b in batches) == 1
    wide = Predictor.load(out, device="cpu", token_budget=1 << 20, relation_threshold=0.0)
    assert p.predict(texts) == wide.predict(texts)


def test_batches_pad_a_bounded_share_of_their_tokens(tiny_model) -> None:
    """Sentences of every length under a budget that holds them all: a batch closes before
    its padding passes ``max_padding`` of its tokens, where one batch padded the short
    sentences to the longest; predictions do not change."""
    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", relation_threshold=0.0)
    words = "Abraham Lincoln met Mary Todd in Springfield and Kentucky".split()
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i // len(words))) + "."
             for i in range(40)]
    wins = p._windows(tokenize(p.tokenizer, texts))
    batches = list(p._batches(wins))
    assert sorted(i for b in batches for i in b) == list(range(len(wins)))

    def padding(b: list[int]) -> float:
        widths = [len(wins[i].input_ids) + 2 for i in b]
        return len(b) * max(widths) / sum(widths) - 1

    assert len(batches) > 1 and all(padding(b) <= p.max_padding for b in batches)
    unbounded = Predictor.load(out, device="cpu", relation_threshold=0.0, max_padding=1e9)
    whole = list(unbounded._batches(wins))
    assert len(whole) == 1 and padding(whole[0]) > p.max_padding
    assert p.predict(texts) == unbounded.predict(texts)


def test_relations_scored_for_many_texts_at_once_are_those_of_each_text(tiny_model) -> None:
    """predict scores the pairs of all its texts together (one pooling an encoder batch,
    one relation head pass); each text's relations are what classify_pairs, which reads
    the text alone, gives for its mentions, pair by pair."""
    import math
    import re

    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", relation_threshold=0.0, token_budget=300)
    words = "Abraham Lincoln met Mary Todd in Springfield and Kentucky".split()
    texts = [" ".join(words[: 2 + i % 8] * (1 + i // 8)) + "." for i in range(24)]
    texts.append(" ".join(["Lincoln was born in Kentucky ."] * 40))  # several windows
    from kgx.model import PredictedMention

    def capitalised(texts, encoded):  # the random tagger finds next to nothing
        return [[PredictedMention(m.start(), m.end(), "PER", 1.0, m.group())
                 for m in re.finditer(r"[A-Z]\w+", t)] for t in texts]

    p.decode_mentions = capitalised
    preds = p.predict(texts)
    assert sum(len(pr.relations) for pr in preds) > 1000
    # the long text's pairs: only mentions that share a window (classify_pairs pools each
    # mention in its own first window instead, so it is left out below)
    *preds, long = preds
    tk = tokenize(p.tokenizer, [texts.pop()])[0]
    first = {i: tk.offsets.index(next(o for o in tk.offsets if o[0] == m.start))
             for i, m in enumerate(long.mentions)}
    assert long.relations and all(abs(first[r.head] - first[r.tail]) < p.max_tokens
                                  for r in long.relations)
    assert len({(r.head, r.tail) for r in long.relations}) < len(first) * (len(first) - 1)
    for text, pr in zip(texts, preds, strict=True):
        spans = [(m.start, m.end) for m in pr.mentions]
        pairs = [(h, t) for h in range(len(spans)) for t in range(len(spans)) if h != t]
        alone = p.classify_pairs(text, spans, pairs)
        expected = [(h, t, lab, sc) for (h, t), rels in zip(pairs, alone, strict=True)
                    for lab, sc in rels]
        got = [(r.head, r.tail, r.label, r.score) for r in pr.relations]
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        assert all(math.isclose(g[3], e[3], abs_tol=1e-5) for g, e in zip(got, expected,
                                                                            strict=True))


def test_mentions_decoded_for_many_texts_at_once_are_those_of_each_text(tiny_model) -> None:
    """predict gathers and decodes the word probabilities of all its texts together (one
    window, or several averaged): they are each window's own logits, and each text's
    mentions and scores are those it gets alone. The random tagger finds nothing, so its
    bias is tilted until it tags some of the words."""
    import math

    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", token_budget=300)
    labels = p.model.ner_labels
    words = "Abraham Lincoln met Mary Todd in Springfield and Kentucky".split()
    texts = [" ".join(words[: 1 + i % 9] * (1 + i // 9)) + "." for i in range(30)]
    texts += [" ".join(["Lincoln was born in Kentucky ."] * 40), ""]  # several windows; none
    with torch.no_grad():
        for _ in range(40):
            p.model.classifier.bias[labels.index("O")] -= 0.5
            found = sum(len(pr.mentions) for pr in p.predict(texts, relations=False))
            if found > 150:
                break
    encoded = p.encode_texts(texts, keep_hidden=False)
    for tk, wis, probs in zip(encoded.toks, encoded.by_text, p._word_probs(encoded),
                              strict=True):
        if not tk.words:
            assert probs is None
            continue
        total, count = torch.zeros((len(tk.ids), len(labels))), torch.zeros((len(tk.ids), 1))
        for wi in wis:  # each window's own rows, averaged where windows overlap
            w, lg = encoded.windows[wi], encoded.window_logits(wi)
            total[w.tok_start: w.tok_start + len(lg)] += lg
            count[w.tok_start: w.tok_start + len(lg)] += 1
        expected = (total / count).softmax(-1)[[first for _, _, first in tk.words]]
        assert torch.allclose(torch.from_numpy(probs), expected, atol=1e-6)
    together = p.predict(texts, relations=False)
    alone = [p.predict([t], relations=False)[0] for t in texts]
    assert sum(len(pr.mentions) for pr in together) > 150
    assert len({m.label for pr in together for m in pr.mentions}) > 1
    for a, b in zip(together, alone, strict=True):
        assert [(m.start, m.end, m.label) for m in a.mentions] == \
            [(m.start, m.end, m.label) for m in b.mentions]
        assert all(math.isclose(m.score, n.score, abs_tol=1e-5)
                   for m, n in zip(a.mentions, b.mentions, strict=True))


def test_decide_keeps_every_label_over_the_threshold_best_first(tiny_model) -> None:
    import math

    out, _ = tiny_model
    p = Predictor.load(out, device="cpu", relation_threshold=0.5)
    labels = p.relation_labels
    assert len(labels) >= 3
    logits = torch.full((3, len(labels)), -5.0)
    logits[:, 0] = 0.0  # the threshold class
    logits[0, 1], logits[0, 2] = 1.0, 3.0  # two over it: the higher first
    logits[2, 1] = -0.5  # under it
    p.relation_temperature = 2.0
    got = p.decide(logits)
    assert [[lab for lab, _ in rels] for rels in got] == [[labels[2], labels[1]], [], []]
    assert got[0][0][1] == pytest.approx(1 / (1 + math.exp(-1.5)))
    assert got[0][1][1] == pytest.approx(1 / (1 + math.exp(-0.5)))


def test_pad_batch_frames_each_window_and_pads_to_the_longest() -> None:
    from kgx.model import Window, pad_batch

    wins = [Window(0, 0, [11, 12, 13], labels=[1, -100, 2], shapes=[2, 1, 1]),
            Window(1, 0, [21]),
            Window(2, 4, [31, 32], labels=[0, 0])]
    b = pad_batch(wins, 101, 102, 0, torch.device("cpu"))
    assert b["input_ids"].tolist() == [[101, 11, 12, 13, 102], [101, 21, 102, 0, 0],
                                       [101, 31, 32, 102, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert b["labels"].tolist() == [[-100, 1, -100, 2, -100], [-100] * 5,
                                    [-100, 0, 0, -100, -100]]
    assert b["shape_ids"].tolist() == [[0, 2, 1, 1, 0], [0] * 5, [0] * 5]
    plain = pad_batch(wins[1:2], 101, 102, 0, torch.device("cpu"))
    assert set(plain) == {"input_ids", "attention_mask"}


def test_evaluate_on_corpus_conll_and_docred(tiny_model, sample_corpus: Path,
                                             tmp_path: Path) -> None:
    out, _ = tiny_model
    res = evaluate(out, sample_corpus / "test.jsonl", limit=40)
    assert res["format"] == "corpus" and "micro" in res["entities"]
    conll = tmp_path / "x.conll"
    conll.write_text("-DOCSTART- O\n\nAlbert B-PER\nEinstein I-PER\nwas O\nborn O\nin O\n"
                     "Ulm B-LOC\n. O\n\nIt O\nrained O\n. O\n", encoding="utf-8")
    res = evaluate(out, conll)
    assert res["format"] == "conll" and res["entities"]["micro"]["support"] == 2
    docred = SAMPLE.parent.parent.parent / "shared" / "data" / "redocred" / "dev_revised.json"
    if docred.exists():
        res = evaluate(out, docred, limit=3)
        assert res["format"] == "docred" and "P19" in res["covered_properties"]
        assert res["gold_relations"] >= res["gold_relations_covered"] > 0


def test_conll_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.conll"
    bad.write_text("Albert B-PER\nEinstein\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.conll:2: expected 'TOKEN \.\.\. TAG'"):
        read_conll(bad)
    bad.write_text("Albert B-PER\nEinstein X-PER\n", encoding="utf-8")
    with pytest.raises(DataError, match=r":2: tag 'X-PER' is not IOB"):
        read_conll(bad)
    bad.write_bytes("Zoë B-PER\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_conll(bad)
    empty = tmp_path / "empty.conll"
    empty.write_text("-DOCSTART- O\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentences"):
        read_conll(empty)
    with pytest.raises(DataError, match="not JSON"):
        p = tmp_path / "d.json"
        p.write_text("[{")
        read_docred(p)


def test_training_errors(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no train.jsonl"):
        train(tmp_path / "c", tmp_path / "m", TrainOptions(base_model=str(tiny_bert)))
    for s in ("train", "dev"):
        (tmp_path / "c" / f"{s}.jsonl").write_text(
            json.dumps({"text": "no entities here", "mentions": []}) + "\n")
    with pytest.raises(DataError, match="no labelled mentions"):
        train(tmp_path / "c", tmp_path / "m", TrainOptions(base_model=str(tiny_bert)))


def test_conll_training(tiny_bert: Path, tmp_path: Path) -> None:
    lines = []
    for i in range(30):
        lines += [f"Person{i} B-PER", "visited O", f"Town{i} B-LOC", ". O", ""]
    f = tmp_path / "train.conll"
    f.write_text("\n".join(lines), encoding="utf-8")
    res = train(f, tmp_path / "m", TrainOptions(base_model=str(tiny_bert), epochs=1),
                log=lambda m: None)
    assert res.train_sentences == 27
    meta = json.loads((tmp_path / "m" / "kgx.json").read_text())
    assert meta["entity_labels"] == ["LOC", "PER"] and meta["relation_labels"] == ["NA"]


def test_evaluate_unknown_gold_types_are_flagged(tiny_model, tmp_path: Path) -> None:
    out, _ = tiny_model
    f = tmp_path / "x.conll"
    f.write_text("Paris B-CITY\nis O\nbig O\n", encoding="utf-8")
    res = evaluate(out, f)
    assert res["unknown_gold_types"] == ["CITY"] and "not in the model's label set" in res["note"]


@pytest.mark.slow
def test_real_encoder_loss_falls(sample_corpus: Path, tmp_path: Path) -> None:
    """Fine-tunes the packaged MiniLM for a few steps (slow: run with -m slow)."""
    res = train(sample_corpus, tmp_path / "m", TrainOptions(
        epochs=3, patience=10, max_train_sentences=96, max_eval_sentences=32, batch_size=16),
        log=lambda m: None)
    losses = [h["loss"] for h in res.history]
    assert losses[-1] < losses[0]


def _docred_file(path: Path, n_docs: int = 12) -> Path:
    """A small DocRED file: a birth place (P19, aligned with kgx:birthPlace) and a part-of
    (P361, which kgx's ontology does not align) in one sentence, a date (TIME), and a relation
    across sentences."""
    docs = []
    for i in range(n_docs):
        docs.append({
            "title": f"Doc {i}",
            "sents": [["Anna", f"Berg{i}", "was", "born", "in", f"Town{i}", "in", "1901", "."],
                      [f"Town{i}", "is", "part", "of", f"Shire{i}", "."],
                      ["She", "worked", "for", f"Acme{i}", "."]],
            "vertexSet": [
                [{"name": f"Anna Berg{i}", "sent_id": 0, "pos": [0, 2], "type": "PER"}],
                [{"name": f"Town{i}", "sent_id": 0, "pos": [5, 6], "type": "LOC"},
                 {"name": f"Town{i}", "sent_id": 1, "pos": [0, 1], "type": "LOC"}],
                [{"name": "1901", "sent_id": 0, "pos": [7, 8], "type": "TIME"}],
                [{"name": f"Shire{i}", "sent_id": 1, "pos": [4, 5], "type": "LOC"}],
                [{"name": f"Acme{i}", "sent_id": 2, "pos": [3, 4], "type": "ORG"}]],
            "labels": [{"h": 0, "t": 1, "r": "P19", "evidence": [0]},
                       {"h": 0, "t": 2, "r": "P569", "evidence": [0]},
                       {"h": 1, "t": 3, "r": "P361", "evidence": [1]},
                       {"h": 0, "t": 4, "r": "P108", "evidence": [2]}]})
    path.write_text(json.dumps(docs), encoding="utf-8")
    return path


def test_docred_documents_become_document_rows(tmp_path: Path, tiny_bert: Path) -> None:
    from kgx.datasets import docred_document_rows
    from kgx.train import featurize, wikidata_relation_label

    docs = read_docred(_docred_file(tmp_path / "d.json", 1))
    (row,) = docred_document_rows(docs, wikidata_relation_label())
    assert row["text"] == ("Anna Berg0 was born in Town0 in 1901 . Town0 is part of Shire0 . "
                           "She worked for Acme0 .")
    names = [(row["text"][m["start"]:m["end"]], m["entity"], m["label"])
             for m in row["mentions"]]
    assert names == [("Anna Berg0", 0, "PER"), ("Town0", 1, "LOC"), ("Town0", 1, "LOC"),
                     ("1901", 2, None), ("Shire0", 3, "LOC"), ("Acme0", 4, "ORG")]
    first = {0: 0, 1: 1, 2: 3, 3: 4, 4: 5}
    rels = {(x["head"], x["tail"]): x["label"] for x in row["relations"]}
    assert len(rels) == len(row["relations"]) == 5 * 4  # every ordered pair of entities
    assert rels[(first[0], first[1])] == "birthPlace"  # mapped onto kgx
    assert rels[(first[0], first[2])] == "birthDate"
    assert rels[(first[1], first[3])] == "P361"  # not aligned: kept as its own label
    assert rels[(first[0], first[4])] == "employer"  # across sentences: taught too
    assert rels[(first[1], first[0])] == "NA"
    # the model sees entities: Town0's two mentions are one entity, in pairs of entities
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    ner = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"]
    (feat,) = featurize([row], tok, ner, ["NA", "birthPlace", "birthDate", "employer", "P361"],
                        128)
    assert len(feat.spans) == 6 and feat.span_entity == [0, 1, 1, 2, 3, 4]
    targets = dict(zip(feat.pairs, feat.targets, strict=True))
    assert len(targets) == 20 and targets[(0, 1)] == [1] and targets[(1, 0)] == []
    # a TIME mention has no tag: its words are "O", not a crash
    tk = tokenize(tok, [row["text"]])[0]
    ids = bio_labels(tk, row["mentions"], [], {lab: i for i, lab in enumerate(ner)})
    year = next(i for i, (s, _e) in enumerate(tk.offsets) if row["text"][s:s + 4] == "1901")
    assert ids[year] == 0


def test_tag_transitions_and_viterbi_join_a_name_the_tagger_split() -> None:
    from kgx.model import tag_counts, tag_transitions, viterbi, word_tag_sequence

    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    # training tags: a two-word place, single-word people, and a word of unknown label (-100)
    seqs = [([0, 1, 2, 0, 3, 0], 1.0), ([3, 0, 0, 1, 2, 2], 2.0), ([0, -100, 3, 0], 1.0)]
    t = tag_transitions(tag_counts(seqs, len(labels)), labels)
    assert len(t) == len(labels) + 1 and all(len(row) == len(labels) for row in t)
    inf = float("inf")
    # BIO forbids an I- tag at the start, after O, and after another type's tag
    assert t[0][2] == t[0][4] == t[1][2] == t[1 + 3][2] == -inf
    assert t[1 + 1][2] > -inf and t[1 + 2][2] > -inf
    # B-LOC -> I-LOC was seen three times (weights 1 + 2), B-LOC -> B-LOC never
    assert t[1 + 1][2] > t[1 + 1][1]
    # a tagger that calls "Salt" B-LOC and "Lake" B-LOC (I-LOC close behind) gives one place
    em = torch.tensor([[0.1, 0.8, 0.02, 0.05, 0.03],
                       [0.1, 0.5, 0.35, 0.03, 0.02],
                       [0.9, 0.03, 0.03, 0.02, 0.02]]).log()
    assert em.argmax(-1).tolist() == [1, 1, 0]
    assert viterbi(em, torch.tensor(t)) == [1, 2, 0]
    # a confident second mention is not swallowed
    em2 = torch.tensor([[0.05, 0.9, 0.01, 0.02, 0.02],
                        [0.02, 0.01, 0.01, 0.95, 0.01]]).log()
    assert viterbi(em2, torch.tensor(t)) == [1, 3]
    assert word_tag_sequence([-100, 1, -100, 0, -100], [None, 0, 0, 1, None]) == [1, 0]


def test_viterbi_of_many_sentences_at_once_is_each_ones_best_path() -> None:
    """Sentences of 1 to 4 words, decoded together: each gets the sequence that beats every
    other sequence of its length (all of them enumerated), forbidden transitions included."""
    import itertools

    import numpy

    from kgx.model import viterbi_batch

    rng = numpy.random.default_rng(7)
    tags = 3
    for _ in range(50):
        tr = rng.normal(size=(tags + 1, tags))
        tr[1 + rng.integers(tags), rng.integers(1, tags)] = -numpy.inf
        ems = [numpy.log(rng.dirichlet(numpy.ones(tags), size=n))
               for n in rng.integers(1, 5, size=rng.integers(1, 8))]

        def score(em, seq, tr=tr):
            return tr[0, seq[0]] + em[0, seq[0]] + sum(
                tr[1 + a, b] + em[i + 1, b] for i, (a, b) in enumerate(itertools.pairwise(seq)))

        best = [list(max(itertools.product(range(tags), repeat=len(em)),
                         key=lambda seq, em=em: score(em, seq))) for em in ems]
        assert viterbi_batch(ems, tr) == best
    assert viterbi_batch([], tr) == []


def test_training_keeps_the_decoder_that_scores_better_on_dev(tiny_model) -> None:
    from kgx.train import PRIOR_WEIGHTS

    out, _ = tiny_model
    meta = json.loads((out / "kgx.json").read_text())
    f1 = meta["tag_decoder_dev_f1"]
    assert len(f1) == 1 + len(PRIOR_WEIGHTS) and "argmax" in f1
    assert f1[meta["tag_decoder"]] == max(f1.values())
    viterbi = meta["tag_decoder"] != "argmax"
    assert ("tag_transitions" in meta) == viterbi
    assert "Infinity" not in (out / "kgx.json").read_text()  # strict JSON
    assert meta["dev"]["entities"]["micro"]["f1"] == f1[meta["tag_decoder"]]
    p = Predictor.load(out, device="cpu")
    assert (p.transitions is not None) == viterbi
    if viterbi:  # BIO forbids an I- tag at the start: saved as null, loaded as -inf
        assert None in meta["tag_transitions"][0]
        assert float("-inf") in p.transitions[0].tolist()


def test_relation_scores_are_scaled_by_a_temperature_fitted_on_dev(tiny_model,
                                                                   sample_corpus: Path) -> None:
    from kgx.train import TEMPERATURES

    out, _ = tiny_model
    meta = json.loads((out / "kgx.json").read_text())
    t = meta["relation_temperature"]
    cal = meta["relation_calibration"]
    assert t in TEMPERATURES and 0 < cal["positives"] < cal["examples"]
    assert cal["log_loss_after"] <= cal["log_loss_before"]
    # the temperature changes the scores, never which side of 0.5 they fall on
    rows = [r for r in read_split(sample_corpus / "dev.jsonl") if len(r["mentions"]) > 1][:20]
    fitted = Predictor.load(out, device="cpu")
    plain = Predictor.load(out, device="cpu")
    plain.relation_temperature = 1.0
    fitted.relation_threshold = plain.relation_threshold = 0.0  # every label, with its score
    for r in rows:
        spans = [(m["start"], m["end"]) for m in r["mentions"]]
        pairs = [(0, 1), (1, 0)]
        a, b = fitted.classify_pairs(r["text"], spans, pairs), plain.classify_pairs(
            r["text"], spans, pairs)
        for x, y in zip(a, b, strict=True):
            assert [lab for lab, _ in sorted(x)] == [lab for lab, _ in sorted(y)]
            for (_, sx), (_, sy) in zip(sorted(x), sorted(y), strict=True):
                assert (sx >= 0.5) == (sy >= 0.5)
                if t != 1.0 and abs(sy - 0.5) > 1e-3:
                    assert sx != sy


def test_a_model_with_tag_transitions_loads_and_decodes_by_them(tiny_model,
                                                                 tmp_path: Path) -> None:
    import math
    import shutil

    from kgx.model import tag_counts, tag_transitions

    out, _ = tiny_model
    model_dir = tmp_path / "model"
    shutil.copytree(out, model_dir)
    meta = json.loads((model_dir / "kgx.json").read_text())
    p = Predictor.load(model_dir, device="cpu")
    labels = p.model.ner_labels
    b_per, i_per = labels.index("B-PER"), labels.index("I-PER")
    # transitions that make a person's name two words long, as training rows would
    trans = tag_transitions(tag_counts([([b_per, i_per, 0], 1.0)] * 50, len(labels)), labels)
    meta["tag_transitions"] = [[None if math.isinf(v) else v for v in row] for row in trans]
    (model_dir / "kgx.json").write_text(json.dumps(meta, allow_nan=False))
    p = Predictor.load(model_dir, device="cpu")
    assert p.transitions is not None and float("-inf") in p.transitions[0].tolist()
    texts = ["Albert Einstein was born in Ulm.", "Ayn Rand wrote Atlas Shrugged in New York."]
    for pred in p.predict(texts):
        for m in pred.mentions:
            assert m.label in {lab[2:] for lab in labels if "-" in lab}


def test_entity_pooling_and_adaptive_threshold_loss() -> None:
    from kgx.model import adaptive_threshold_loss, pool_entities

    m = torch.tensor([[1.0, -2.0], [3.0, 0.5], [0.0, 0.0]])
    pooled = pool_entities(m, torch.tensor([1, 0, 1]))
    assert torch.allclose(pooled[0], m[1])
    assert torch.allclose(pooled[1], torch.logsumexp(m[[0, 2]], dim=0))
    # a pair whose gold relation beats the threshold (class 0), and an NA pair below it, cost
    # less than the same pairs the other way round
    good = torch.tensor([[0.0, 5.0, -5.0], [0.0, -5.0, -5.0]])
    bad = torch.tensor([[0.0, -5.0, -5.0], [0.0, 5.0, -5.0]])
    targets = torch.tensor([[0, 1, 0], [0, 0, 0]])
    assert adaptive_threshold_loss(good, targets) < 0.02 < 5 < adaptive_threshold_loss(bad,
                                                                                       targets)


def test_sources_are_mixed_by_weight_and_scored_each(tiny_bert: Path, sample_corpus: Path,
                                                     tmp_path: Path) -> None:
    conll = tmp_path / "gold.conll"
    lines = []
    for i in range(20):
        lines += [f"Person{i} B-PER", "founded O", f"Firm{i} B-CORP", ". O", ""]
    conll.write_text("\n".join(lines), encoding="utf-8")
    docred = _docred_file(tmp_path / "redocred.json", 30)
    out = tmp_path / "m"
    res = train([sample_corpus, f"{conll}:2", f"{docred}:0.5"], out, TrainOptions(
        base_model=str(tiny_bert), epochs=1, max_train_sentences=40, max_eval_sentences=20),
        log=lambda m: None)
    meta = json.loads((out / "kgx.json").read_text())
    src = {s["name"]: s for s in meta["sources"]}
    assert [s["format"] for s in meta["sources"]] == ["corpus", "conll", "docred"]
    assert src["gold.conll"]["rows_per_epoch"] == 2 * src["gold.conll"]["rows_drawn"] == 36
    assert src["redocred.json"]["rows_per_epoch"] == round(src["redocred.json"]["rows_drawn"] / 2)
    assert src["redocred.json"]["stats"] == {"source": str(docred), "documents": 30,
                                             "relations": 120}
    assert res.train_sentences == sum(s["rows_per_epoch"] for s in meta["sources"])
    # the label set is the union; Wikidata ids mapped onto kgx, unaligned ones kept
    assert {"CORP", "PER", "LOC"} <= set(meta["entity_labels"])
    assert {"birthPlace", "P361"} <= set(meta["relation_labels"])
    assert meta["relation_wikidata"]["P361"] == "P361"
    assert set(meta["dev_by_source"]) == {sample_corpus.name, "gold.conll", "redocred.json"}
    assert all("entities" in s for s in meta["dev_by_source"].values())
    assert "relations" in meta["dev_by_source"]["redocred.json"]
    card = (out / "README.md").read_text()
    assert f"`{docred}` | docred | 0.5 |" in card and "dev of gold.conll" in card
    # kgx evaluate scores the bare id the gold set taught
    assert "P361" in evaluate(out, docred, limit=3)["covered_properties"]


def test_bad_sources_fail_before_training(tiny_bert: Path, sample_corpus: Path,
                                          tmp_path: Path) -> None:
    from kgx.train import parse_source

    conll = tmp_path / "gold.conll"
    conll.write_text("Paris B-LOC\nis O\n", encoding="utf-8")
    opts = TrainOptions(base_model=str(tiny_bert), epochs=1)
    for w in ("0", "-1", "abc", "nan", "inf"):
        with pytest.raises(DataError, match=rf"gold\.conll:{w}: the weight .* positive number"):
            train([sample_corpus, f"{conll}:{w}"], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()
    assert parse_source(f"{conll}:2.5").weight == 2.5 and parse_source(conll).weight == 1.0
    odd = tmp_path / "a:3"  # a path that exists as written is never split
    odd.write_text("x B-PER\n", encoding="utf-8")
    assert parse_source(str(odd)).path == odd and parse_source(str(odd)).weight == 1.0
    unlabelled = tmp_path / "plain.conll"
    unlabelled.write_text("Nothing O\nhere O\n\nStill O\nnothing O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"plain\.conll: the training set has no labelled"):
        train([sample_corpus, unlabelled], tmp_path / "m", opts)
    bad = tmp_path / "broken.conll"
    bad.write_text("Paris B-LOC\nis\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.conll:2: expected"):
        train([sample_corpus, bad], tmp_path / "m", opts)
    assert not (tmp_path / "m").exists()


def test_a_fast_tokenizer_read_directly_gives_what_transformers_call_gives(
        tiny_bert: Path) -> None:
    """``tokenize`` reads a fast tokenizer's backend directly; through transformers' own call
    (the path of tokenizers with no backend) every text gets the same ids, offsets, words
    and shapes, never truncated."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    assert tok.is_fast

    class ThroughTransformers:  # no backend_tokenizer: the other path
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return tok(*args, **kwargs)

    texts = ["Lincoln visited Hodgenville yesterday.", "", " ", "Zoë’s façade, 東京 and Москва",
             "a\u0301b ﬁne x", "word " * 700, "iPhone 1990s USA-based e.g. U.S."]
    direct, called = tokenize(tok, texts), tokenize(ThroughTransformers(), texts)
    assert [(list(t.ids), [tuple(o) for o in t.offsets], list(t.word_ids), t.shapes)
            for t in direct] == \
        [(list(t.ids), [tuple(o) for o in t.offsets], list(t.word_ids), t.shapes)
         for t in called]
    assert len(direct[5].ids) >= 700  # longer than the encoder's 512 positions: whole


def test_word_shapes() -> None:
    from kgx.model import SHAPES, shape_of, word_shapes

    shapes = {w: SHAPES[shape_of(w)] for w in
              ("Paris", "paris", "USA", "I", "1990", ",", "iPhone", "Zoë", "東京", "Москва")}
    assert shapes == {"Paris": "Capitalised", "paris": "lower", "USA": "UPPER", "I": "X",
                      "1990": "digit", ",": "punct", "iPhone": "mIxed", "Zoë": "Capitalised",
                      "東京": "caseless", "Москва": "Capitalised"}
    # every piece of a word carries the word's shape; special tokens 0
    text = "Washingtonian ok"
    assert word_shapes(text, [(0, 10), (10, 13), (14, 16), (0, 0)], [0, 0, 1, None]) == \
        [SHAPES.index("Capitalised")] * 2 + [SHAPES.index("lower"), 0]


def test_casing_lets_an_uncased_encoder_tell_apple_from_apple(tiny_bert: Path,
                                                              tmp_path: Path) -> None:
    """The bundled encoder's vocabulary is uncased: "Apple" and "apple" are the same ids, so
    only the word-shape feature can tell the company from the fruit."""
    lines = []
    for _ in range(24):
        lines += ["they O", "like O", "Apple B-ORG", ". O", ""]
        lines += ["they O", "like O", "apple O", ". O", ""]
    f = tmp_path / "apple.conll"
    f.write_text("\n".join(lines), encoding="utf-8")
    texts = ["they like Apple .", "they like apple ."]
    found = {}
    for casing in (False, True):
        out = tmp_path / f"m{casing}"
        train(f, out, TrainOptions(base_model=str(tiny_bert), epochs=12, patience=12,
                                   learning_rate=1e-3, batch_size=8, casing=casing),
              log=lambda m: None)
        p = Predictor.load(out, device="cpu")
        assert p.model.casing is casing
        found[casing] = [[(m.start, m.end, m.label) for m in pr.mentions]
                         for pr in p.predict(texts)]
        # the feature survives saving: the config says so and the loaded model uses it
        assert json.loads((out / "config.json").read_text())["kgx_casing"] is casing
    assert found[False][0] == found[False][1]  # the same input ids, the same answer
    assert found[True] == [[(10, 15, "ORG")], []]


def test_reliability_table() -> None:
    from kgx.evaluate import reliability

    table = reliability([0.55, 0.62, 0.95, 1.0, 0.81], [True, False, True, True, False])
    assert [b["predictions"] for b in table] == [1, 1, 0, 1, 2]
    assert table[-1] == {"from": 0.9, "to": 1.0, "predictions": 2, "precision": 1.0,
                         "mean_score": 0.975}
    assert table[2]["precision"] is None and table[3]["precision"] == 0.0


def test_link_typing_takes_the_type_most_links_to_a_page_are_read_as() -> None:
    from kgx.link_typing import relabel, type_links, vote_types
    from kgx.model import PredictedMention, Prediction

    def row(start: int, text: str, untyped: list, mentions: list | None = None) -> dict:
        return {"page_id": 1, "start": start, "text": text, "mentions": mentions or [],
                "relations": [], "ignore": [[a, b] for a, b, _ in untyped], "untyped": untyped}

    class Reader:  # reads "Ulm" as a place twice and as a person once; "Bosch" as no name
        said = {"In Ulm he": ("LOC",), "Ulm again": ("LOC",), "A Ulm": ("PER",)}

        def predict(self, texts: list[str], relations: bool = False) -> list[Prediction]:
            out = []
            for t in texts:
                i = t.find("Ulm")
                out.append(Prediction(tuple(PredictedMention(i, i + 3, lab, 0.9, "Ulm")
                                            for lab in self.said.get(t, ())), ()))
            return out

    person = {"start": 6, "end": 8, "label": "PER", "fine": None, "entity": "He", "source": "x"}
    train_rows = [row(0, "In Ulm he", [[3, 6, "Ulm"]], [person]),
                  row(10, "Bosch", [[0, 5, "Bosch"]])]
    dropped = {"page_id": 1, "start": 20, "text": "Ulm again", "untyped": [[0, 3, "Ulm"]]}
    drawn = [dropped,  # a sentence of train.links.jsonl: its links are read, not trained on
             row(30, "A Ulm", [[2, 5, "Ulm"]]),
             row(0, "In Ulm he", [[3, 6, "Ulm"]])]  # already among the training rows
    rows, info = type_links(Reader(), train_rows, drawn)
    assert info.links == 4 and info.targets == 2 and info.typed == {"LOC": 1}
    assert [r["start"] for r in rows] == [0, 10, 30]  # each training sentence once
    first = rows[0]
    assert first["mentions"][0] == person  # relation examples keep their mention indices
    assert first["mentions"][1] == {"start": 3, "end": 6, "label": "LOC", "fine": None,
                                    "entity": "Ulm", "source": "context"}
    assert first["ignore"] == [] and first["untyped"] == []
    assert rows[1] == train_rows[1]  # "Bosch" was read as no name: still masked
    assert info.mentions_added == 2 and train_rows[0]["untyped"]  # the input is not changed
    # a target read as a place once and as no name twice stays untyped
    assert vote_types(Reader(), [row(0, "A Ulm", [[2, 5, "Ulm"]]),
                                 row(1, "Ulm", [[0, 3, "Ulm"]]),
                                 row(2, "Ulm", [[0, 3, "Ulm"]])]) == ({}, 3)
    assert relabel(rows, {"Ulm": "LOC"}) == (rows, 0)  # nothing left to relabel


def test_sample_lines_reads_whole_lines_of_a_large_file_at_random_offsets(tmp_path: Path
                                                                           ) -> None:
    import random

    from kgx.link_typing import sample_lines

    lines = [f'{{"n": {i}, "text": "{"x" * (i % 7)}"}}\n'.encode() for i in range(500)]
    p = tmp_path / "train.links.jsonl"
    p.write_bytes(b"".join(lines))
    whole = sample_lines(p, 50, random.Random(1))  # a small file: read whole, then sampled
    assert len(whole) == 50 and set(whole) <= set(lines)
    drawn = sample_lines(p, 50, random.Random(1), whole_below=100)  # read at random offsets
    assert 30 <= len(drawn) <= 50 and len(set(drawn)) == len(drawn)
    assert set(drawn) <= set(lines[1:])  # whole lines, never the first (no line precedes it)
    assert sample_lines(p, 1000, random.Random(1)) == lines  # n above the file: every line


def test_a_broken_link_context_is_named_before_training(tiny_bert: Path, sample_corpus: Path,
                                                        tmp_path: Path) -> None:
    import shutil

    corpus = tmp_path / "corpus"
    shutil.copytree(sample_corpus, corpus)
    with open(corpus / "train.links.jsonl", "a", encoding="utf-8") as f:
        f.write('{"text": "cut short\n')
    with pytest.raises(DataError, match=r"train\.links\.jsonl: the line .*cut short"):
        train(corpus, tmp_path / "model", TrainOptions(
            base_model=str(tiny_bert), epochs=2, max_train_sentences=50,
            max_eval_sentences=20, link_typing_rows=100000), log=lambda m: None)
    assert not (tmp_path / "model").exists()  # stopped before any training


def test_word_bounds_join_a_words_pieces_and_skip_special_tokens(tiny_model) -> None:
    from kgx.model import word_bounds

    offsets = [(0, 0), (0, 3), (3, 6), (7, 9), (10, 12), (12, 13), (0, 0)]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert word_bounds(offsets, word_ids) == [(0, 6, 1), (7, 9, 3), (10, 13, 4)]
    out, _ = tiny_model
    text = "Schwarzenegger visited Ouagadougou."
    tk = tokenize(Predictor.load(out, device="cpu").tokenizer, [text])[0]
    assert [text[s:e] for s, e, _ in tk.words] == ["Schwarzenegger", "visited", "Ouagadougou",
                                                  "."]
    assert len(tk.ids) > len(tk.words)  # some words are several pieces
    from kgx.model import Tokenized

    bare = Tokenized(tk.ids, tk.offsets, tk.word_ids, tk.shapes)  # made without its words
    encoded = Predictor.load(out, device="cpu").encode_texts([text], [bare])
    assert encoded.toks[0].words == tk.words
