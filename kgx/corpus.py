"""The silver corpus: sentences labelled by the dump itself.

Takes the output of the structure pass (``documents.jsonl``: text with link spans; the graph:
entity types and infobox facts); gives ``train/dev/test.jsonl`` of sentences with entity
mentions and relation examples, and ``stats.json``.

* **Mentions** come from wikilinks, typed from the linked entity's class in the graph (infobox
  class, else category rules), mapped onto PER / ORG / LOC / MISC with the finer ontology class
  kept. Unlinked mentions of entities linked in the same page are labelled too: the page's own
  title and aliases, and every linked entity's anchor texts and, for people, surnames. In an
  English biography the subject pronoun (he or she) is a mention of the page's subject with no
  type: no tag is taught for it, but relation examples use it. On other English pages so is
  "the <noun>", the noun the lead defines the subject with ("Alabama is a state ..."). The
  objects of the page's infobox facts are mentions wherever the prose names them.
* **Sentences are dropped** where an unlabelled capitalised word would teach the model a wrong
  negative (the WikiNER recipe), unless the sentence states a known fact: then its unlabelled
  names are masked instead. A link whose target has no known type is an entity of unknown
  type: its span is kept as ``ignore`` (masked out of the loss and the scores) rather than
  dropping the sentence or teaching "not an entity", and listed with its target in
  ``untyped``, for the trainer to type from context (:mod:`kgx.link_typing`).
* **Relations** (distant supervision): a sentence that mentions both the subject and the object
  of an infobox fact is a positive example for the fact's Wikidata-aligned property; the other
  mention pairs of that sentence are NA examples. ``stats.json`` counts each once per
  sentence and entity pair.
* **Splits** are by page (a hash of the page id), so no page is in two splits. A training
  page's sentences dropped for an unlabelled name that hold links of unknown type go to
  ``train.links.jsonl``: not training rows, but contexts the trainer reads those links in.

Every step is counted in ``stats.json``, so what each one does to the labels is measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kgx.entities import EntityInfo, EntityTypes, Signatures, coarse_type, load_entities
from kgx.ontology import KGX, load_ontology
from kgx.sentences import Sentencizer, paragraphs

__all__ = ["CorpusBuilder", "EntityInfo", "build_corpus", "coarse_type", "iter_split",
           "mention_entities", "read_rows_at", "row_kind", "training_offsets", "words"]

COARSE = ("PER", "ORG", "LOC", "MISC")
NA = "NA"
_CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*")
_WORD = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]", re.U)
_PRONOUN = re.compile(r"\b(?:[Hh]e|[Ss]he)\b")
# Capitalised words that are not names (English); other languages rely on the link rule alone.
_NOT_NAMES = frozenset((
    "I A An The This That These Those He She It They We You His Her Its Their Our Your My In On "
    "At Of For From By With As To And But Or Nor If When While After Before Since Although "
    "Though Because During Between Among Under Over About Into Through Also However Many Some "
    "Most Other Such One Two Three Four Five Six Seven Eight Nine Ten First Second Third There "
    "Here Who What Which Where Why How All Both Each Every No Not Yet So Then Thus Later Early "
    "Late January February March April May June July August September October November December "
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mr Mrs Ms Dr St Sir Lord Lady"
).split())


@dataclass(slots=True)
class _Span:
    start: int
    end: int
    label: str | None  # None: a pronoun, a relation argument with no entity type
    fine: str | None
    entity: str | None
    source: str  # link | self | alias | surname | pronoun | description | fact


HELD_OUT_SHARE = 0.25  # of the subjects with infobox facts, kept back from the labels
HELD_OUT_SALT = "kgx held-out facts 1"


def held_out_subject(title: str, share: float = HELD_OUT_SHARE, salt: str = HELD_OUT_SALT
                     ) -> bool:
    """Whether an entity's infobox facts are held out (by a seeded hash of its title, so the
    corpus and the read stage agree): the distant-supervision practice of keeping part of the
    knowledge base to measure a reader's precision on (Mintz et al. 2009)."""
    h = int(hashlib.blake2b(f"{salt}\t{title}".encode(), digest_size=8).hexdigest(), 16)
    return h % 10_000 < share * 10_000


def split_of(page_id: int) -> str:
    """train / dev / test by a hash of the page id (80 / 10 / 10)."""
    h = int(hashlib.sha1(str(page_id).encode()).hexdigest()[:8], 16) % 10
    return "test" if h == 0 else "dev" if h == 1 else "train"


def _strip_qualifier(title: str) -> str:
    return re.sub(r"\s*\(.*\)$", "", title).split(",")[0].strip()


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"  # what a regular expression's \w matches


def _find_all(text: str, needle: str) -> Iterator[int]:
    r"""Where ``needle`` (3 characters or more) stands in ``text`` as a whole word, left to
    right, never overlapping: as ``(?<!\w)needle(?!\w)`` finds it, by substring search."""
    if len(needle) < 3:
        return
    n = len(text)
    i = text.find(needle)
    while i >= 0:
        end = i + len(needle)
        if (i == 0 or not _is_word(text[i - 1])) and (end == n or not _is_word(text[end])):
            yield i
            i = text.find(needle, end)
        else:
            i = text.find(needle, i + 1)


class _Taken:
    """The character ranges of a document that spans hold, for overlap tests at C speed: a
    byte per character, and the empty ranges (which the bytes cannot show) apart."""

    def __init__(self, n: int) -> None:
        self.mask = bytearray(n)
        self.empty: list[int] = []

    def add(self, a: int, b: int) -> None:
        if a >= b:
            self.empty.append(a)
            return
        if b > len(self.mask):
            self.mask.extend(bytes(b - len(self.mask)))
        self.mask[a:b] = b"\x01" * (b - a)

    def overlaps(self, a: int, b: int) -> bool:
        """Whether the range [a, b) (not empty) meets a range held: some held [x, y) with
        x < b and a < y."""
        return self.mask.find(1, a, b) >= 0 or any(a < x < b for x in self.empty)


class CorpusBuilder:
    """Builds labelled sentences from documents and the entity table.

    Args:
        entities: :func:`load_entities` output.
        lang: Wiki language (spaCy's sentencizer for it, or the multilingual one).
        drop_unlabelled_caps: Apply the WikiNER rule (English-like capitalisation).
        max_na_per_sentence: Cap on NA relation examples per sentence.
        held_out: Whether an entity's infobox facts are kept back from the labels (see
            :func:`held_out_subject`): no relation example has it as its subject, so the
            read stage can score what the reader says of it against them.
        typed_negatives: NA examples only between mentions whose types some property could
            join (a person and a city, not a city and a date): negatives that teach.
    """

    def __init__(self, entities: EntityTypes | Mapping[str, EntityInfo], lang: str = "en",
                 drop_unlabelled_caps: bool = True, max_na_per_sentence: int = 4,
                 held_out: Callable[[str], bool] | None = None,
                 typed_negatives: bool = True) -> None:
        self.entities = entities
        self.held_out = held_out or (lambda title: False)
        self.onto = load_ontology()
        self.signatures = Signatures(self.onto) if typed_negatives else None
        self.sentencizer = Sentencizer(lang)
        self.lang = lang
        self.drop_caps = drop_unlabelled_caps
        self.max_na = max_na_per_sentence
        self.stats: Counter[str] = Counter()
        self.mentions: Counter[str] = Counter()
        self.mention_sources: Counter[str] = Counter()
        self.relations: Counter[str] = Counter()
        # Sentences dropped for an unlabelled name that hold links to untyped pages: not
        # training rows, but contexts the trainer reads those links in (kgx.link_typing).
        self.link_contexts: list[dict[str, Any]] = []

    def _coarse_of(self, fine: str | None) -> str | None:
        """PER/ORG/LOC/MISC of a fine class (a pronoun's or a description's, which has no
        tag of its own)."""
        return None if fine is None else coarse_type(self.onto, fine)

    def _type(self, title: str) -> tuple[str | None, str | None]:
        info = self.entities.get(title)
        return (info.coarse, info.fine) if info else (None, None)

    def document_spans(self, doc: dict[str, Any]
                       ) -> tuple[list[_Span], list[tuple[int, int, str]]]:
        """Labelled spans of a document, and the links to untyped targets (start, end,
        target)."""
        text = doc["text"]
        spans: list[_Span] = []
        unknown: list[tuple[int, int, str]] = []
        surface: dict[str, tuple[str, str, str | None, str]] = {}
        for s, e, target in doc["links"]:
            coarse, fine = self._type(target)
            self.stats["links"] += 1
            if coarse is None:
                if text[s:s + 1].isupper():
                    unknown.append((s, e, target))
                    self.stats["links_untyped_capitalised"] += 1
                else:
                    self.stats["links_untyped_lowercase"] += 1
                continue
            self.stats["links_typed"] += 1
            spans.append(_Span(s, e, coarse, fine, target, "link"))
            anchor = text[s:e]
            surface.setdefault(anchor, (target, coarse, fine, "alias"))
            if coarse == "PER":
                last = _strip_qualifier(target).split()[-1:]
                if last and last[0] != anchor:
                    surface.setdefault(last[0], (target, coarse, fine, "surname"))
        me = doc["title"]
        coarse, fine = self._type(me)
        if coarse is not None:
            names = [me, _strip_qualifier(me)] + list(doc.get("aliases", []))
            for n in names:
                surface[n] = (me, coarse, fine, "self")
            if coarse == "PER":  # on a biography its surname is its subject, not a relative's
                surface[_strip_qualifier(me).split()[-1]] = (me, coarse, fine, "self")
        info = self.entities.get(me)
        for _prop, obj in info.facts if info else ():
            # the page's infobox names its facts' objects, linked in the prose or not
            oc, of = self._type(obj)
            if oc is not None:
                for n in (obj, _strip_qualifier(obj)):
                    surface.setdefault(n, (obj, oc, of, "fact"))
        taken = _Taken(len(text))
        for sp in spans:
            taken.add(sp.start, sp.end)
        if coarse == "PER" and self.lang == "en":
            self._pronoun_spans(text, me, fine, spans, taken)
        elif coarse is not None and self.lang == "en":
            self._description_spans(text, me, fine, spans, taken)
        # Longest names first, so "Abraham Lincoln" wins over "Lincoln".
        for name in sorted(surface, key=len, reverse=True):
            if not name or not name[0].isupper():
                continue
            target, c, f, source = surface[name]
            for st in _find_all(text, name):
                en = st + len(name)
                if taken.overlaps(st, en):
                    continue
                taken.add(st, en)
                spans.append(_Span(st, en, c, f, target, source))
        spans.sort(key=lambda sp: sp.start)
        return spans, unknown

    def _pronoun_spans(self, text: str, title: str, fine: str | None, spans: list[_Span],
                       taken: _Taken) -> None:
        """A biography's subject pronoun (he or she, whichever the page uses at least twice
        and twice as often as the other) refers to the page's subject: a mention with no
        entity type (no tag is taught for a pronoun) that relation examples can use, so that
        "He was born in [[Ulm]]" states the page's infobox birth place."""
        found = list(_PRONOUN.finditer(text))
        counts = Counter(m.group().lower() for m in found)
        he, she = counts["he"], counts["she"]
        word = "he" if he >= 2 and he >= 2 * she else "she" if she >= 2 and she >= 2 * he \
            else None
        if word is None:
            return
        for m in found:
            if m.group().lower() == word:
                spans.append(_Span(m.start(), m.end(), None, fine, title, "pronoun"))
                taken.add(m.start(), m.end())

    def _description_spans(self, text: str, title: str, fine: str | None, spans: list[_Span],
                           taken: _Taken) -> None:
        """A page that is not a biography calls its subject by the noun its first sentence
        defines it with: "Alabama is a state in ..." makes "the state" a mention of Alabama
        (with no entity type: "the state" is not a name, no tag is taught for it), so that
        "The state's capital is [[Montgomery]]" states the infobox's capital. The noun
        comes from the page itself, not from a list: the head of the first "is a ..." phrase
        of the lead."""
        noun = class_noun(text)
        if noun is None:
            return
        for m in re.finditer(r"\b[Tt]he " + re.escape(noun) + r"\b", text):
            if taken.overlaps(m.start(), m.end()):
                continue
            spans.append(_Span(m.start(), m.end(), None, fine, title, "description"))
            taken.add(m.start(), m.end())

    def sentences(self, doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Labelled sentences of one document (dropped ones are only counted)."""
        text = doc["text"]
        spans, unknown = self.document_spans(doc)
        starts = [sp.start for sp in spans]  # sorted: a sentence's spans are found by bisection
        # the links to untyped pages too, when they come in text order (they do from kgx's
        # structure pass; else each sentence looks through all of them)
        ustarts = [a for a, _b, _t in unknown]
        in_order = all(x <= y for x, y in zip(ustarts, ustarts[1:], strict=False))
        pid = doc["page_id"]
        for para_start, para in paragraphs(text):
            for start, end in self.sentencizer.spans(para):
                s0 = para_start + start
                s1 = para_start + end
                stext = text[s0:s1]
                if len(stext.split()) < 4:
                    continue
                self.stats["sentences_seen"] += 1
                inside = [sp for sp in spans[bisect_left(starts, s0):bisect_right(starts, s1)]
                          if sp.end <= s1]
                near = unknown[bisect_left(ustarts, s0):bisect_right(ustarts, s1)] \
                    if in_order else unknown
                untyped = [(a, b, t) for a, b, t in near if a >= s0 and b <= s1
                           and not any(sp.start < b and a < sp.end for sp in inside)]
                ignore = [(a, b) for a, b, _t in untyped]
                unlabelled = self._unlabelled_caps(stext, s0, inside, ignore) \
                    if self.drop_caps else []
                if unlabelled:
                    if not self._states_a_fact(inside) or any(
                            sp.start < b and a < sp.end for a, b in unlabelled for sp in inside):
                        # (a name that runs into a mention, "Jean-Paul" around "Paul",
                        # cannot be masked without masking the mention)
                        self.stats["dropped_unlabelled_capitalised"] += 1
                        if untyped:
                            self.link_contexts.append({
                                "page_id": pid, "start": s0, "text": stext,
                                "untyped": [[a - s0, b - s0, t] for a, b, t in untyped]})
                        continue
                    # a sentence that states a known fact is kept for it, its unlabelled
                    # names masked out of the tagger's loss like links of unknown type
                    self.stats["kept_for_a_fact_names_masked"] += 1
                    ignore = sorted(ignore + unlabelled)
                if ignore:
                    self.stats["sentences_with_ignored_spans"] += 1
                    self.stats["ignored_spans"] += len(ignore)
                yield self._example(pid, doc["title"], s0, stext, inside, ignore, untyped)

    def _unlabelled_caps(self, stext: str, s0: int, inside: list[_Span],
                         ignore: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """The capitalised words of a sentence (not its first word) that no mention or
        ignored span covers: names the labels miss."""
        first = True
        found = []
        for m in _CAPITALISED.finditer(stext):
            w = m.group()
            start = m.start()
            if first and stext[:start].strip(" \"'“(") == "":
                first = False
                continue
            first = False
            if w in _NOT_NAMES or w.isupper() and len(w) == 1:
                continue
            a = s0 + start
            if not any(sp.start <= a < sp.end for sp in inside) and \
                    not any(x <= a < y for x, y in ignore):
                found.append((a, s0 + m.end()))
        return found

    def _states_a_fact(self, inside: list[_Span]) -> bool:
        """Whether two mentions of the sentence are the subject and object of a known fact."""
        entities = {sp.entity for sp in inside if sp.entity}
        for e in entities:
            info = None if self.held_out(e) else self.entities.get(e)
            if info and any(o in entities and o != e for _p, o in info.facts):
                return True
        return False

    def _example(self, pid: int, title: str, s0: int, stext: str, inside: list[_Span],
                 ignore: list[tuple[int, int]], untyped: list[tuple[int, int, str]]
                 ) -> dict[str, Any]:
        mentions = []
        for sp in inside:
            mentions.append({"start": sp.start - s0, "end": sp.end - s0, "label": sp.label,
                             "fine": sp.fine[len(KGX):] if sp.fine else None,
                             "entity": sp.entity, "source": sp.source})
            if sp.label:
                self.mentions[sp.label] += 1
            self.mention_sources[sp.source] += 1
        rels = []
        na: set[tuple[str, str]] = set()
        counted: set[tuple[str, str, str]] = set()  # one example per entity pair and label
        coarse = [m["label"] or self._coarse_of(sp.fine) for m, sp in zip(mentions, inside,
                                                                           strict=True)]
        for i, h in enumerate(mentions):
            if h["entity"] and self.held_out(h["entity"]):
                self.stats["relation_heads_held_out"] += 1
                continue  # its facts are the read stage's yardstick, not a label
            facts = self.entities.get(h["entity"]) if h["entity"] else None
            for j, t in enumerate(mentions):
                if i == j or h["entity"] == t["entity"]:
                    continue
                labels = [p for p, o in (facts.facts if facts else []) if o == t["entity"]]
                pair = (h["entity"], t["entity"])
                if not labels and self.signatures is not None and \
                        not self.signatures.any_fits(coarse[i], coarse[j]):
                    continue  # no property joins these types: nothing to teach
                if labels:
                    for lab in dict.fromkeys(labels):
                        rels.append({"head": i, "tail": j, "label": lab})
                        if (*pair, lab) not in counted:
                            counted.add((*pair, lab))
                            self.relations[lab] += 1
                elif pair in na or len(na) < self.max_na:
                    rels.append({"head": i, "tail": j, "label": NA})
                    if pair not in na:
                        na.add(pair)
                        self.relations[NA] += 1
        self.stats["sentences_kept"] += 1
        return {"page_id": pid, "title": title, "start": s0, "text": stext,
                "mentions": mentions, "relations": rels,
                "ignore": [[a - s0, b - s0] for a, b in ignore],
                "untyped": [[a - s0, b - s0, t] for a, b, t in untyped]}


_DEFINITION = re.compile(r"\b(?:is|was|are|were)\s+(?:a|an|the|one of the)\s+"
                         r"((?:[\w-]+\s+){0,4}?)([a-z][a-z-]{2,})(?<!ed)(?<!ing)(?=\s*(?:[,.;:(]|"
                         r"\s(?:in|of|on|at|for|from|that|which|who|whose|with|by|where|to|"
                         r"[a-z]+ed)\b))")


def class_noun(text: str) -> str | None:
    """The noun an English lead defines its subject with ("Alabama is a state in the
    southeastern region ..." -> "state"), from the first 300 characters, or None."""
    m = _DEFINITION.search(text[:300])
    if m is None or not all(w.islower() for w in m.group(1).split()):
        return None
    return m.group(2)


def iter_documents(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


DOCS_PER_CHUNK = 200  # documents per committed chunk of the corpus stage
# What the labelling does; a change makes old corpora re-run (6: held-out subjects, typed
# negatives).
CORPUS_VERSION = "corpus-6"
SPLITS = ("train", "dev", "test")
# ``train.links.jsonl``: training pages' sentences dropped for an unlabelled name that hold
# links to untyped pages (page_id, start, text, untyped), read by kgx.link_typing only.
LINKS = "train.links"
# Kinds of training row, in the order the trainer takes them (see kgx.train.plan_sample).
KINDS = ("relation", "mentions", "empty")


def mention_entities(row: dict[str, Any]) -> list[Any]:
    """The entity each mention of a row refers to: its ``entity`` field, else the mention
    itself. Mentions with the same key are one entity to the relation head."""
    return [("mention", i) if m.get("entity") is None else ("entity", m["entity"])
            for i, m in enumerate(row["mentions"])]


def row_kind(row: dict[str, Any]) -> int:
    """0: a sentence with a relation example; 1: with typed mentions only; 2: with neither
    (a pronoun alone is no entity to tag)."""
    if any(x["label"] != NA for x in row.get("relations", [])):
        return 0
    return 1 if any(m.get("label") for m in row["mentions"]) else 2


def offsets_path(corpus: Path, kind: int) -> Path:
    """``train.<kind>.offsets``: the byte offset in ``train.jsonl`` of every training row of
    one kind, as little-endian uint64, so a sample of rows costs its size, not the corpus's."""
    return corpus / f"train.{KINDS[kind]}.offsets"


def training_offsets(corpus: Path) -> list[array]:
    """The byte offsets of the training rows of each kind (see :data:`KINDS`).

    Read from the ``train.<kind>.offsets`` files the corpus stage writes; for a corpus without
    them (written by hand or by kgx 0.1), or whose files do not match ``train.jsonl`` and the
    row count in ``stats.json``, found by one pass over ``train.jsonl`` that keeps 8 bytes a
    row.

    Raises:
        ValueError: A line of ``train.jsonl`` is not a corpus row (named by line number).
    """
    train = corpus / "train.jsonl"
    paths = [offsets_path(corpus, k) for k in range(len(KINDS))]
    if all(p.exists() for p in paths):
        size = train.stat().st_size
        out = []
        for p in paths:
            a = array("Q")
            a.frombytes(p.read_bytes())
            out.append(a)
        stats = corpus / "stats.json"
        rows = json.loads(stats.read_text("utf-8")).get("sentences", {}).get("train") \
            if stats.exists() else None
        if all(not a or a[-1] < size for a in out) and rows == sum(len(a) for a in out):
            return out
    out = [array("Q") for _ in KINDS]
    with open(train, "rb") as f:
        pos = 0
        for n, line in enumerate(f, 1):
            if line.strip():
                out[row_kind(_parse_row(line, train, f"line {n}"))].append(pos)
            pos += len(line)
    return out


def _parse_row(line: bytes | str, path: Path, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: {where}: not JSON ({exc.msg})") from exc
    if not isinstance(row, dict) or "text" not in row or "mentions" not in row:
        raise ValueError(f"{path}: {where}: expected an object with 'text' and 'mentions'")
    return row


def read_rows_at(path: Path, offsets: Iterable[int]) -> list[dict[str, Any]]:
    """The rows of a corpus split that start at ``offsets``, in that order (read in file
    order)."""
    want = list(offsets)
    rows: dict[int, dict[str, Any]] = {}
    with open(path, "rb") as f:
        for off in sorted(set(want)):
            f.seek(off)
            rows[off] = _parse_row(f.readline(), path, f"byte {off}")
    return [rows[o] for o in want]


def build_corpus(graph_dir: Path, out: Path, *, lang: str | None = None,
                 drop_unlabelled_caps: bool = True,
                 documents: Iterable[dict[str, Any]] | None = None,
                 workers: int = 0, held_out_share: float = HELD_OUT_SHARE) -> dict[str, Any]:
    """Write ``train/dev/test.jsonl`` and ``stats.json`` into ``out``.

    The documents are cut into chunks of :data:`DOCS_PER_CHUNK`, labelled in ``workers``
    processes, each chunk written to part files and committed to a journal
    (``out/.work``): a killed run continues with the chunks it had not committed. The parts are
    joined in document order, so the output does not depend on the number of workers.

    Args:
        graph_dir: A structure-pass output written with ``keep_documents``.
        out: Corpus directory.
        lang: Language for sentence splitting (default: the wiki's).
        drop_unlabelled_caps: Apply the WikiNER sentence filter.
        documents: Documents to use instead of ``graph_dir/documents.jsonl`` (labelled in
            this process, as one chunk).
        workers: Worker processes (0: this process).
        held_out_share: The share of subjects whose infobox facts are kept back from the
            relation labels (:func:`held_out_subject`), for the read stage to measure the
            reader's precision on; 0: none.

    Returns:
        The statistics written to ``stats.json``.
    """
    import kgx.workers
    from kgx.logs import info
    from kgx.stages.runner import (
        Journal,
        SplitChunks,
        concatenate,
        drop_uncommitted,
        prepare_work,
        stage_key,
        write_atomic,
    )
    from kgx.workers import Crashed, new_pool

    out.mkdir(parents=True, exist_ok=True)
    report = json.loads((graph_dir / "report.json").read_text(encoding="utf-8"))
    lang = lang or report.get("site", {}).get("lang", "en")
    docs_path = graph_dir / "documents.jsonl"
    if documents is None and not docs_path.exists():
        raise FileNotFoundError(f"{docs_path}: missing; run the structure pass with "
                                "documents (kgx extract --documents)")
    load_entities(graph_dir).close()  # built here, once, before workers read it
    work = out / ".work"
    parts = work / "parts"
    setup = (str(graph_dir), lang, drop_unlabelled_caps, str(parts), held_out_share)
    if documents is not None:
        shutil.rmtree(work, ignore_errors=True)  # an iterable cannot be resumed
        parts.mkdir(parents=True)
        _init_corpus_worker(*setup)
        deltas = [_label_chunk(0, documents)]
    else:
        st_docs = docs_path.stat()
        resumed = prepare_work(work, stage_key(str(docs_path.resolve()), st_docs.st_size,
                                               st_docs.st_mtime_ns, lang, drop_unlabelled_caps,
                                               DOCS_PER_CHUNK, CORPUS_VERSION,
                                               held_out_share))
        parts.mkdir(exist_ok=True)
        journal = Journal(sqlite3.connect(work / "journal.sqlite"))
        done = journal.done()
        drop_uncommitted(parts, done)
        if resumed and done:
            info(f"[corpus] resuming: {len(done):,} chunks committed before")
        tasks = ((k, str(docs_path), off, n)
                 for k, (off, n) in enumerate(document_chunks(docs_path)) if k not in done)

        def split(task: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            """A chunk whose worker died, document by document: only the culprit is lost."""
            k, path, off, n = task
            for f in parts.glob(f"{k:09d}*"):
                f.unlink()
            return [(k, path, o, 1, i) for i, o in enumerate(document_offsets(Path(path), off,
                                                                               n))]

        retried = SplitChunks(split)
        pool = new_pool(None, workers, initializer=_init_corpus_worker, initargs=setup,
                        start_method=kgx.workers.STAGE_START_METHOD)
        for res in pool.map(label_chunk, tasks, split=retried.split):
            k = res.task[0] if isinstance(res, Crashed) else res["chunk"]
            got = retried.gather(k, res)
            if got is not None:
                delta = _chunk_delta(k, got)
                journal.commit(k, delta)
                for x in delta["lost"]:
                    info(f"[corpus] lost {x['documents']:,} document(s) from {x['title']!r} "
                         f"(page {x['page_id']}): {x['reason']}")
        deltas = [d for _, d in journal.infos()]
        journal.db.close()
    total: dict[str, Counter[str]] = {k: Counter() for k in _COUNTED}
    for d in deltas:
        for k in _COUNTED:
            total[k].update(d[k])
    for split in (*SPLITS, LINKS):
        concatenate(sorted(parts.glob(f"*.{split}.jsonl")), out / f"{split}.jsonl")
    _join_offsets(parts, out)
    shutil.rmtree(work, ignore_errors=True)
    st = total["steps"]
    kept = st["sentences_kept"]
    caps_unlabelled = st["dropped_unlabelled_capitalised"]
    stats = {
        "graph": str(graph_dir), "lang": lang,
        "sentences": dict(total["sentences"]), "pages": dict(total["pages"]),
        "steps": dict(st),
        "mentions": dict(total["mentions"]), "mention_sources": dict(total["mention_sources"]),
        "relations": dict(total["relations"]),
        "label_noise_estimate": {
            "note": "share of seen sentences with an unlabelled capitalised word (dropped) or "
                    "an entity of unknown type (kept, masked); the rest of the noise (lower-case "
                    "entity names, wrong distant-supervision labels) needs gold to measure",
            "ner_sentences_with_missing_labels": round(
                (caps_unlabelled + st["sentences_with_ignored_spans"])
                / max(1, st["sentences_seen"]), 3),
        },
        "kept_share": round(kept / max(1, st["sentences_seen"]), 3),
        "held_out": {"share": held_out_share, "salt": HELD_OUT_SALT,
                     "relation_heads_skipped": st.get("relation_heads_held_out", 0)},
        "lost_documents": [x for d in deltas for x in d.get("lost", [])],
    }
    write_atomic(out / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False))
    return stats


_COUNTED = ("sentences", "pages", "steps", "mentions", "mention_sources", "relations")


def document_chunks(docs_path: Path, size: int | None = None) -> Iterator[tuple[int, int]]:
    """(byte offset, documents) of each chunk of ``size`` documents (default
    :data:`DOCS_PER_CHUNK`) of ``documents.jsonl``."""
    size = size or DOCS_PER_CHUNK
    with open(docs_path, "rb") as f:
        start, n, pos = 0, 0, 0
        for line in f:
            pos += len(line)
            n += 1
            if n == size:
                yield start, n
                start, n = pos, 0
        if n:
            yield start, n


def document_offsets(docs_path: Path, offset: int, n: int) -> list[int]:
    """Byte offsets of the ``n`` documents from ``offset`` of ``documents.jsonl``."""
    offsets = []
    with open(docs_path, "rb") as f:
        f.seek(offset)
        for _ in range(n):
            offsets.append(offset)
            offset += len(f.readline())
    return offsets


def lost_documents(docs_path: Path, offset: int, n: int) -> dict[str, Any]:
    """What the report says of ``n`` documents of ``documents.jsonl`` whose reading killed its
    process on every try: the first one's page, and why."""
    with open(docs_path, "rb") as f:
        f.seek(offset)
        line = f.readline()
    try:
        doc = json.loads(line)
        page_id, title = doc.get("page_id"), doc.get("title")
    except ValueError:
        page_id = title = None
    return {"page_id": page_id, "title": title, "documents": n, "offset": offset,
            "reason": "the process reading it died on every try"}


def _join_offsets(parts: Path, out: Path) -> None:
    """Each kind's training-row offsets of every part, shifted by the parts before it: the
    offsets in the joined ``train.jsonl``."""
    trains = sorted(parts.glob("*.train.jsonl"))
    for kind in range(len(KINDS)):
        dst = offsets_path(out, kind)
        tmp = dst.with_name(dst.name + ".tmp")
        base = 0
        with open(tmp, "wb") as f:
            for part in trains:
                a = array("Q")
                src = part.with_name(part.name.replace(".train.jsonl", f".{KINDS[kind]}.offsets"))
                if src.exists():
                    a.frombytes(src.read_bytes())
                    f.write(array("Q", (x + base for x in a)).tobytes())
                base += part.stat().st_size
        os.replace(tmp, dst)


_BUILDER: tuple[CorpusBuilder, str] | None = None  # a worker's builder and its parts folder


def _init_corpus_worker(graph_dir: str, lang: str, drop_caps: bool, parts: str,
                        held_out_share: float = 0.0) -> None:
    from kgx.workers import ignore_interrupts_in_worker

    global _BUILDER
    ignore_interrupts_in_worker()
    held = (lambda t: held_out_subject(t, held_out_share)) if held_out_share else None
    _BUILDER = (CorpusBuilder(load_entities(Path(graph_dir)), lang, drop_caps,
                              held_out=held), parts)


def read_documents(docs_path: str | Path, offset: int, n: int) -> Iterator[dict[str, Any]]:
    """``n`` documents from byte ``offset`` of ``documents.jsonl`` (a chunk's)."""
    with open(docs_path, "rb") as f:
        f.seek(offset)
        for _ in range(n):
            yield json.loads(f.readline())


def label_chunk(chunk: int, docs_path: str, offset: int, n: int, sub: int | None = None
                ) -> dict[str, Any]:
    """Worker task: label ``n`` documents from byte ``offset`` of ``documents.jsonl`` (``sub``:
    the one document of a chunk retried document by document)."""
    return _label_chunk(chunk, read_documents(docs_path, offset, n), sub)


def _chunk_delta(chunk: int, results: list[Any]) -> dict[str, Any]:
    """One chunk's counts from its results (several for a chunk retried document by
    document); a :class:`kgx.workers.Crashed` part is a document lost."""
    from kgx.workers import Crashed

    delta: dict[str, Any] = {"chunk": chunk, "lost": []}
    for k in _COUNTED:
        delta[k] = Counter()
    for res in results:
        if isinstance(res, Crashed):
            _, path, off, n = res.task[:4]
            delta["lost"].append(lost_documents(Path(path), off, n))
            continue
        for k in _COUNTED:
            delta[k].update(res[k])
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in delta.items()}


def _label_chunk(chunk: int, documents: Iterable[dict[str, Any]], sub: int | None = None
                 ) -> dict[str, Any]:
    """Label documents into this chunk's part files; return what it counted."""
    from kgx.workers import part_name

    assert _BUILDER is not None, "corpus worker not initialised"
    builder, parts = _BUILDER
    stem = part_name(chunk, sub)
    for k in ("stats", "mentions", "mention_sources", "relations"):
        setattr(builder, k, Counter())
    files = {s: open(os.path.join(parts, f"{stem}.{s}.jsonl"), "wb")  # noqa: SIM115
             for s in (*SPLITS, LINKS)}
    offsets = [array("Q") for _ in KINDS]  # of this part's training rows, by kind
    counts: Counter[str] = Counter()
    pages: Counter[str] = Counter()
    try:
        for doc in documents:
            split = split_of(doc["page_id"])
            pages[split] += 1
            for ex in builder.sentences(doc):
                if split == "train":
                    offsets[row_kind(ex)].append(files[split].tell())
                files[split].write((json.dumps(ex, ensure_ascii=False) + "\n").encode("utf-8"))
                counts[split] += 1
            if split == "train":
                for ex in builder.link_contexts:
                    files[LINKS].write((json.dumps(ex, ensure_ascii=False) + "\n").encode())
            builder.link_contexts.clear()
    finally:
        for f in files.values():
            f.close()
    for kind, a in enumerate(offsets):
        with open(os.path.join(parts, f"{stem}.{KINDS[kind]}.offsets"), "wb") as f:
            f.write(a.tobytes())
    return {"chunk": chunk, "sentences": dict(counts), "pages": dict(pages),
            "steps": dict(builder.stats), "mentions": dict(builder.mentions),
            "mention_sources": dict(builder.mention_sources),
            "relations": dict(builder.relations)}


def read_split(path: Path) -> list[dict[str, Any]]:
    """Read a corpus split whole (see :func:`iter_split` to stream one).

    Raises:
        ValueError: A line is not a JSON object with ``text`` and ``mentions``.
    """
    return list(iter_split(path))


def iter_split(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the rows of a corpus split, one JSON object a line.

    Raises:
        ValueError: A line is not a JSON object with ``text`` and ``mentions``.
    """
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield _parse_row(line, path, f"line {n}")


def words(text: str) -> list[tuple[int, int]]:
    """Word spans used for word-level (seqeval) scoring."""
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]
