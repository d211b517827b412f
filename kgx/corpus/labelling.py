"""Silver labels of one document: mentions from its links, its own names and its infobox
objects, typed by the linked page's class; relations by distant supervision from its infobox
facts.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kgx.corpus.rows import NA
from kgx.ontology import KGX, load_ontology
from kgx.structure.entity_types import (
    EntityInfo,
    EntityTypes,
    Signatures,
    coarse_type,
)
from kgx.text.sentences import Sentencizer, paragraphs

_CAPITALISED = re.compile(r"\b[A-Z][\w'’-]*")


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
        # training rows, but contexts the trainer reads those links in (kgx.model.link_typing).
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
        mentions: list[dict[str, Any]] = []
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
