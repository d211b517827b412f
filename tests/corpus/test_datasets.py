"""Gold datasets: CoNLL errors, DocRED documents as rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import docred_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from kgx.corpus.datasets import DataError, read_conll, read_docred  # noqa: E402
from kgx.model.tokens import bio_labels, tokenize  # noqa: E402


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


def test_docred_documents_become_document_rows(tmp_path: Path, tiny_bert: Path) -> None:
    from kgx.corpus.datasets import docred_document_rows
    from kgx.model.batches import featurize
    from kgx.model.sources import wikidata_relation_label

    docs = read_docred(docred_file(tmp_path / "d.json", 1))
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
