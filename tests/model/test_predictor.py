"""The Predictor: saving, loading, windows, batches, decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.model.predictor import Predictor  # noqa: E402
from kgx.model.tokens import tokenize  # noqa: E402


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
    from kgx.model.decoding import PredictedMention

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


def test_a_model_with_tag_transitions_loads_and_decodes_by_them(tiny_model,
                                                                 tmp_path: Path) -> None:
    import math
    import shutil

    from kgx.model.decoding import tag_counts, tag_transitions

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
