"""Links to untyped pages, typed by the tagger."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def test_link_typing_takes_the_type_most_links_to_a_page_are_read_as() -> None:
    from kgx.model.decoding import PredictedMention, Prediction
    from kgx.model.link_typing import relabel, type_links, vote_types

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

    from kgx.model.link_typing import sample_lines

    lines = [f'{{"n": {i}, "text": "{"x" * (i % 7)}"}}\n'.encode() for i in range(500)]
    p = tmp_path / "train.links.jsonl"
    p.write_bytes(b"".join(lines))
    whole = sample_lines(p, 50, random.Random(1))  # a small file: read whole, then sampled
    assert len(whole) == 50 and set(whole) <= set(lines)
    drawn = sample_lines(p, 50, random.Random(1), whole_below=100)  # read at random offsets
    assert 30 <= len(drawn) <= 50 and len(set(drawn)) == len(drawn)
    assert set(drawn) <= set(lines[1:])  # whole lines, never the first (no line precedes it)
    assert sample_lines(p, 1000, random.Random(1)) == lines  # n above the file: every line
