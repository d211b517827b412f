"""Words, shapes, windows and BIO labels of a text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.model.predictor import Predictor  # noqa: E402
from kgx.model.tokens import bio_labels, tokenize, windows_for  # noqa: E402


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


def test_pad_batch_frames_each_window_and_pads_to_the_longest() -> None:
    from kgx.model.tokens import Window, pad_batch

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


def test_word_shapes() -> None:
    from kgx.model.tokens import SHAPES, shape_of, word_shapes

    shapes = {w: SHAPES[shape_of(w)] for w in
              ("Paris", "paris", "USA", "I", "1990", ",", "iPhone", "Zoë", "東京", "Москва")}
    assert shapes == {"Paris": "Capitalised", "paris": "lower", "USA": "UPPER", "I": "X",
                      "1990": "digit", ",": "punct", "iPhone": "mIxed", "Zoë": "Capitalised",
                      "東京": "caseless", "Москва": "Capitalised"}
    # every piece of a word carries the word's shape; special tokens 0
    text = "Washingtonian ok"
    assert word_shapes(text, [(0, 10), (10, 13), (14, 16), (0, 0)], [0, 0, 1, None]) == \
        [SHAPES.index("Capitalised")] * 2 + [SHAPES.index("lower"), 0]


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


def test_word_bounds_join_a_words_pieces_and_skip_special_tokens(tiny_model) -> None:
    from kgx.model.tokens import word_bounds

    offsets = [(0, 0), (0, 3), (3, 6), (7, 9), (10, 12), (12, 13), (0, 0)]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    assert word_bounds(offsets, word_ids) == [(0, 6, 1), (7, 9, 3), (10, 13, 4)]
    out, _ = tiny_model
    text = "Schwarzenegger visited Ouagadougou."
    tk = tokenize(Predictor.load(out, device="cpu").tokenizer, [text])[0]
    assert [text[s:e] for s, e, _ in tk.words] == ["Schwarzenegger", "visited", "Ouagadougou",
                                                  "."]
    assert len(tk.ids) > len(tk.words)  # some words are several pieces
    from kgx.model.tokens import Tokenized

    bare = Tokenized(tk.ids, tk.offsets, tk.word_ids, tk.shapes)  # made without its words
    encoded = Predictor.load(out, device="cpu").encode_texts([text], [bare])
    assert encoded.toks[0].words == tk.words
