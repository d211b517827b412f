"""The silver corpus: splits, labels, row offsets, distant supervision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.corpus.rows import read_split, split_of  # noqa: E402


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
    # for link typing (kgx.model.link_typing), and are no training rows
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

    from kgx.corpus.rows import KINDS, offsets_path, read_rows_at, row_kind, training_offsets

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
    from kgx.corpus.labelling import class_noun

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

    from kgx.corpus.labelling import _find_all, _Taken

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
