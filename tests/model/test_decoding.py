"""Tag transitions and Viterbi decoding."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_tag_transitions_and_viterbi_join_a_name_the_tagger_split() -> None:
    from kgx.model.decoding import tag_counts, tag_transitions, viterbi, word_tag_sequence

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

    from kgx.model.decoding import viterbi_batch

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
