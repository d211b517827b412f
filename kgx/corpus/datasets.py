"""Gold datasets kgx reads besides its own corpus: CoNLL NER files and DocRED / Re-DocRED JSON.

Takes a file; gives rows in the corpus format (``text``, ``mentions`` with character offsets,
``relations`` between mention indices), so that training and evaluation have one input shape.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# DocRED types onto kgx's coarse scheme; TIME and NUM are not entity types kgx tags.
DOCRED_TYPES = {"PER": "PER", "ORG": "ORG", "LOC": "LOC", "MISC": "MISC"}


class DataError(ValueError):
    """A dataset file that cannot be read; the message names the file and line."""


def _read_text(path: Path) -> str:
    """A data file's text; ``.bz2`` and ``.gz`` files are decompressed."""
    try:
        if path.suffix in (".bz2", ".gz"):
            import bz2
            import gzip

            opener = bz2.open if path.suffix == ".bz2" else gzip.open
            with opener(path, "rt", encoding="utf-8") as f:
                return f.read()
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); convert it "
                        "with e.g. `iconv -f LATIN1 -t UTF-8`") from exc
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
                        ) from exc


def sniff_format(path: Path) -> str:
    """``corpus`` (kgx JSONL), ``docred`` (JSON list) or ``conll``, from the file itself."""
    if path.is_dir():
        raise DataError(f"{path}: a directory; name a file (e.g. {path}/test.jsonl)")
    head = _read_text(path)[:2000].lstrip()
    if head.startswith("["):
        return "docred"
    if head.startswith("{"):
        return "corpus"
    return "conll"


def read_conll(path: Path) -> list[dict[str, Any]]:
    """Read a CoNLL NER file: one token per line, last column the IOB tag, blank lines
    between sentences, ``-DOCSTART-`` lines ignored. IOB1 and IOB2 are both accepted.

    Raises:
        DataError: A malformed line (named by number) or a tag that is not IOB.
    """
    rows: list[dict[str, Any]] = []
    tokens: list[tuple[str, str]] = []

    def flush() -> None:
        if tokens:
            rows.append(_conll_sentence(tokens))
            tokens.clear()

    for n, line in enumerate(_read_text(path).splitlines(), 1):
        line = line.strip()
        if not line:
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DataError(f"{path}:{n}: expected 'TOKEN ... TAG' (at least two columns), "
                            f"got {line[:60]!r}")
        tag = parts[-1]
        if not (tag == "O" or (len(tag) > 2 and tag[:2] in ("B-", "I-"))):
            raise DataError(f"{path}:{n}: tag {tag!r} is not IOB (O, B-TYPE or I-TYPE)")
        tokens.append((parts[0], tag))
    flush()
    if not rows:
        raise DataError(f"{path}: no sentences found")
    return rows


def _conll_sentence(tokens: list[tuple[str, str]]) -> dict[str, Any]:
    text_parts, mentions = [], []
    pos = 0
    cur: dict[str, Any] | None = None
    for word, tag in tokens:
        start = pos
        text_parts.append(word)
        pos += len(word) + 1
        if tag == "O":
            cur = None
            continue
        kind, label = tag.split("-", 1)
        if kind == "B" or cur is None or cur["label"] != label:
            cur = {"start": start, "end": start + len(word), "label": label}
            mentions.append(cur)
        else:
            cur["end"] = start + len(word)
    return {"text": " ".join(text_parts), "mentions": mentions, "relations": [], "ignore": []}


def read_docred(path: Path) -> list[dict[str, Any]]:
    """Read DocRED / Re-DocRED: one row per document with sentences joined by spaces.

    Each row has ``mentions`` (all entity mentions, with ``entity`` = index in ``vertexSet``
    and ``sent`` = sentence index), ``labels`` (``(head entity, tail entity, Wikidata id)``),
    ``sent_spans`` (character range of each sentence) and ``title``.

    Raises:
        DataError: Not a DocRED JSON list.
    """
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of DocRED documents")
    rows = []
    for d, doc in enumerate(data):
        try:
            sents = doc["sents"]
            vertex = doc["vertexSet"]
        except (KeyError, TypeError) as exc:
            raise DataError(f"{path}: document {d} lacks 'sents' or 'vertexSet'") from exc
        offsets: list[list[int]] = []
        sent_spans = []
        pos = 0
        for sent in sents:
            starts = []
            s0 = pos
            for tok in sent:
                starts.append(pos)
                pos += len(tok) + 1
            offsets.append(starts)
            sent_spans.append((s0, pos - 1))
        text = " ".join(" ".join(s) for s in sents)
        mentions = []
        for e, ent in enumerate(vertex):
            for m in ent:
                sid = m["sent_id"]
                a, b = m["pos"]
                start = offsets[sid][a]
                end = offsets[sid][b - 1] + len(sents[sid][b - 1])
                mentions.append({"start": start, "end": end, "entity": e, "sent": sid,
                                 "label": DOCRED_TYPES.get(m.get("type", ""))})
        labels = [(lab["h"], lab["t"], lab["r"]) for lab in doc.get("labels", [])]
        evidence = [tuple(lab.get("evidence") or ()) for lab in doc.get("labels", [])]
        rows.append({"title": doc.get("title", ""), "text": text, "mentions": mentions,
                     "labels": labels, "evidence": evidence, "sent_spans": sent_spans})
    return rows


def docred_document_rows(docs: Iterable[dict[str, Any]], relation_label: Callable[[str], str]
                         ) -> list[dict[str, Any]]:
    """Corpus-format rows, one per document, from :func:`read_docred` documents.

    Every mention is kept with its ``entity`` (the index in ``vertexSet``), so that the model
    pools an entity's mentions across the document. TIME and NUM mentions (no kgx entity type)
    have ``label`` None: no tag is taught for them, but they take part in relations (a date of
    birth). Every ordered pair of two entities is an example, written between their first
    mentions: the gold relations between the two (``relation_label`` maps each Wikidata id onto
    kgx's labels), else NA -- Re-DocRED annotates every relation of a document, so an
    unlabelled pair is a true negative.
    """
    rows = []
    for doc in docs:
        mentions = [{"start": m["start"], "end": m["end"], "label": m["label"],
                     "entity": m["entity"]} for m in doc["mentions"]]
        first: dict[int, int] = {}
        for i, m in enumerate(mentions):
            first.setdefault(m["entity"], i)
        by_pair: dict[tuple[int, int], list[str]] = {}
        for h, t, r in doc["labels"]:
            by_pair.setdefault((h, t), []).append(relation_label(r))
        rels = [{"head": first[h], "tail": first[t], "label": lab}
                for h in first for t in first if h != t
                for lab in by_pair.get((h, t)) or ["NA"]]
        rows.append({"title": doc.get("title", ""), "text": doc["text"], "mentions": mentions,
                     "relations": rels, "ignore": []})
    return rows


def docred_sentence_rows(docs: Iterable[dict[str, Any]],
                         relation_label: Callable[[str], str]) -> list[dict[str, Any]]:
    """Corpus-format rows, one per sentence, from :func:`read_docred` documents: the unit kgx
    reads a dump in, and short (a batch holds many).

    A sentence's mentions keep their ``entity``. A relation is a positive example in the
    sentences its evidence names (every sentence that holds both entities, when it names
    none); in a sentence that holds both entities but is not its evidence it is no example at
    all (true, but not said there); every other pair of the sentence's entities is NA, a
    true negative (Re-DocRED annotates every relation of a document). Pairs with a TIME or
    NUM mention (no kgx entity type) are left out: a date is no entity a fact can link.
    """
    rows = []
    for doc in docs:
        by_pair: dict[tuple[int, int], list[tuple[str, tuple[int, ...]]]] = {}
        for (h, t, r), ev in zip(doc["labels"], doc.get("evidence") or
                                 [()] * len(doc["labels"]), strict=True):
            by_pair.setdefault((h, t), []).append((r, tuple(ev)))
        for si, (s0, s1) in enumerate(doc["sent_spans"]):
            ms = [m for m in doc["mentions"] if m["sent"] == si]
            mentions = [{"start": m["start"] - s0, "end": m["end"] - s0, "label": m["label"],
                         "entity": m["entity"]} for m in ms]
            first: dict[int, int] = {}
            for i, m in enumerate(mentions):
                if m["label"] is not None:
                    first.setdefault(m["entity"], i)
            rels = []
            for h in first:
                for t in first:
                    if h == t:
                        continue
                    known = by_pair.get((h, t), [])
                    here = [relation_label(r) for r, ev in known if not ev or si in ev]
                    if here:
                        rels += [{"head": first[h], "tail": first[t], "label": lab}
                                 for lab in dict.fromkeys(here)]
                    elif not known:
                        rels.append({"head": first[h], "tail": first[t], "label": "NA"})
            rows.append({"title": f"{doc.get('title', '')}#{si}", "text": doc["text"][s0:s1],
                         "mentions": mentions, "relations": rels, "ignore": []})
    return rows


def held_out(key: str, share: int = 10, salt: str = "kgx dev") -> bool:
    """Whether a document (by a stable key, e.g. its title) is in the held-out ``1/share``.

    The hash is salted, so that a file someone already split by an unsalted hash of the same
    key still gets a dev set.
    """
    h = hashlib.sha1(f"{salt}\t{key}".encode()).hexdigest()
    return int(h[:8], 16) % share == 0


@dataclass(frozen=True, slots=True)
class TrainingSource:
    """One training set and how much of it an epoch draws.

    ``weight`` is a sampling ratio: an epoch takes ``weight`` times the source's training
    rows (2: every row twice; 0.5: a random half), so a small gold set can count as much as a
    large silver corpus, as in the usual recipe that mixes encyclopedia and professional data.
    """

    path: Path
    weight: float = 1.0


def parse_source(spec: str | Path) -> TrainingSource:
    """``PATH`` or ``PATH:WEIGHT`` (a path that exists as written is never split).

    Raises:
        DataError: The weight is not a positive number.
    """
    text = str(spec)
    if isinstance(spec, Path) or ":" not in text or Path(text).exists():
        return TrainingSource(Path(text))
    path, _, w = text.rpartition(":")
    try:
        weight = float(w)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight > 0):
        raise DataError(f"{text}: the weight after the last ':' must be a positive number, "
                        f"got {w!r} (write PATH or PATH:WEIGHT, e.g. gold.conll:2)")
    return TrainingSource(Path(path), weight)
