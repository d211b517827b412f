"""Sentence boundaries: the ones spaCy's rule-based ``sentencizer`` draws, found faster.

kgx cuts every paragraph of a dump into sentences twice, in the corpus stage and in the read
stage: about 150 million sentences for the English Wikipedia. spaCy's ``sentencizer`` on a
blank pipeline works on its tokenizer's ``Doc``. Building that ``Doc`` (every token and its
lexeme) took about 70% of the corpus stage's time, profiled on the bundled sample.

The sentencizer's rule needs much less. A sentence starts at the first token after a
sentence-final mark (``.``, ``!``, ``?`` and their kin in other scripts) that is neither
punctuation nor such a mark. spaCy's tokenizer cuts a text at whitespace first, then tokenises
each whitespace-free segment on its own. A segment with no punctuation character in it cannot
hold a punctuation token. So :class:`Sentencizer` looks only at the segments that hold
punctuation, and at the whitespace spaCy makes tokens of. It asks spaCy's own tokenizer to
tokenise each distinct such segment once, in a bounded memo, and applies the rule to what it
learns. The boundaries are the same as spaCy's: ``tests/test_sentences.py`` checks this on
every paragraph of the bundled sample and on generated text full of abbreviations, quotes and
odd whitespace. A language whose spaCy tokenizer is not the rule-based one (Chinese, or one
whose tokenizer needs a library) is cut by spaCy itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["Sentencizer", "paragraphs", "rules_for"]

# Token kinds, as the sentencizer sees them.
_WORD, _PUNCT, _FINAL = 0, 1, 2
# Items a text's boundaries can depend on, in order: whitespace spaCy keeps as a token (a
# text's leading whitespace, and any run between segments but the single space after a
# segment), and segments holding a character that may be punctuation (a Unicode P* character
# is never a word character, except "_"). Other segments are one word each, as far as the
# rule goes: whatever spaCy cuts them into, none of their tokens is punctuation.
_ITEMS = re.compile(r"^(?P<lead>\s+)|(?<=\S) ?+(?P<ws>\s+)|(?<!\S)(?P<seg>\S*?(?:[^\w\s]|_)\S*)")
_COLUMNS = ("IDX", "LENGTH", "IS_PUNCT", "ORTH")  # of a Doc's tokens, read at once
MEMO_SEGMENTS = 200_000  # distinct punctuation segments remembered (then forgotten at once)
MEMO_CHARS = 64  # longer segments (URLs, runs of unspaced script) are tokenised every time


def rules_for(lang: str) -> str:
    """The language whose spaCy rules cut ``lang``'s sentences: ``lang`` itself, or ``xx``
    (spaCy's multilingual rules: the sentence-final marks of every script, no abbreviations)
    where spaCy has no rules for it (Latgalian, Low German...)."""
    from spacy.util import get_lang_class

    try:
        get_lang_class(lang)  # what spacy.blank looks up, without building a pipeline
    except (ImportError, KeyError):
        return "xx"
    return lang


def fallback_note(lang: str) -> str | None:
    """The line a stage logs once when ``lang`` has no sentence rules of its own."""
    if rules_for(lang) == lang:
        return None
    return (f"no sentence rules for the wiki's language {lang!r}: sentences are cut by "
            "spaCy's multilingual rules (sentence-final marks, no abbreviations)")


class Sentencizer:
    """Sentence spans of a text, as ``spacy.blank(lang)`` with a ``sentencizer`` gives them.

    Args:
        lang: The wiki's language; spaCy's blank pipeline for it (its tokenizer's exceptions,
            such as "Mr." or "e.g."), or the multilingual one where spaCy has none.
    """

    def __init__(self, lang: str = "en") -> None:
        import spacy
        from spacy.attrs import IS_PUNCT
        from spacy.pipeline import Sentencizer as SpacySentencizer
        from spacy.tokenizer import Tokenizer

        nlp = spacy.blank(rules_for(lang))
        tk: Any = nlp.tokenizer
        nlp.add_pipe("sentencizer")
        # A new string's lexeme computes every attribute (shape, like_num, ...) by default:
        # the sentencizer reads one, its punctuation flag. (This pipeline is this class's own.)
        vocab: Any = nlp.vocab
        vocab.lex_attr_getters = {IS_PUNCT: vocab.lex_attr_getters[IS_PUNCT]}
        self._nlp = nlp  # spaCy itself, for what the fast way cannot decide alone
        self._tokenizer = tk
        # sentence-final marks and the newline, as the hashes of their text in spaCy's table
        self._final = frozenset(nlp.vocab.strings.add(c)
                                for c in SpacySentencizer.default_punct_chars)
        self._newline = nlp.vocab.strings.add("\n")
        self._memo: dict[str, tuple[tuple[int, int, int], ...]] = {}
        self._rule_based = type(tk) is Tokenizer  # else spaCy cuts every text
        self.by_spacy = 0  # texts handed to spaCy whole (see _joins)
        # A tokenizer exception of several tokens (an emoticon "o.O", "e.g.") is matched on
        # the whole text's tokens, across single spaces too: such a match is then dropped,
        # but it hides the matches it overlaps, and a segment is then tokenised otherwise
        # than alone (": x.Y" gives ":", "x", ".", "Y" where "x.Y" alone gives "x.", "Y").
        # For each place between two tokens of an exception: what must end the text before
        # a space and start the text after it for the exception to match across that space,
        # by the characters on either side of the space.
        self._across: dict[tuple[str, str], list[tuple[re.Pattern[str], re.Pattern[str]]]] = {}
        if self._rule_based:
            bare = Tokenizer(nlp.vocab, rules={}, prefix_search=tk.prefix_search,
                             suffix_search=tk.suffix_search, infix_finditer=tk.infix_finditer,
                             token_match=tk.token_match, url_match=tk.url_match)
            splits: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
            for rule in tk.rules:
                toks = tuple(t.text for t in bare(rule))
                splits.update((toks[:i], toks[i:]) for i in range(1, len(toks)))
            for left, right in sorted(splits):
                self._across.setdefault((left[-1][-1], right[0][0]), []).append(
                    (re.compile(" ?".join(map(re.escape, left)) + r"\Z"),
                     re.compile(" ?".join(map(re.escape, right)))))

    def _segments(self, segs: list[str]) -> dict[str, tuple[tuple[int, int, int], ...]]:
        """The tokens of whitespace-free segments, each as (start, end, kind), offsets in the
        segment. Those not in the memo are tokenised together, in one call: a newline
        between two segments is a token no exception spans, so each is tokenised as alone."""
        found: dict[str, Any] = {seg: self._memo.get(seg) for seg in segs}
        missing = [seg for seg, toks in found.items() if toks is None]
        if missing:
            starts = []
            pos = 0
            for seg in missing:
                starts.append(pos)
                pos += len(seg) + 1
            got: list[list[tuple[int, int, int]]] = [[] for _ in missing]
            k = 0
            doc = self._tokenizer("\n".join(missing))
            for idx, length, is_punct, orth in doc.to_array(list(_COLUMNS)).tolist():
                if orth == self._newline:
                    continue
                while k + 1 < len(starts) and idx >= starts[k + 1]:
                    k += 1
                got[k].append((idx - starts[k], idx - starts[k] + length,
                               _FINAL if orth in self._final else
                               _PUNCT if is_punct else _WORD))
            if len(self._memo) + len(missing) > MEMO_SEGMENTS:
                self._memo.clear()  # bounded: a dump's segments outnumber any memory
            for seg, toks in zip(missing, got, strict=True):
                found[seg] = tuple(toks)
                if len(seg) <= MEMO_CHARS:
                    self._memo[seg] = found[seg]
        return found  # type: ignore[return-value]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of each sentence of ``text``, as spaCy's ``doc.sents`` gives
        ``start_char`` and ``end_char``."""
        if not self._rule_based:
            return self._spacy_spans(text)
        out: list[tuple[int, int]] = []
        start = -1  # of the sentence being read; -1 before the first token
        last_end = 0  # of the last token read
        seen_final = False
        pos = 0  # where the text after the last item begins
        after_segment = False  # the last item was a segment: a single space after it is no token
        items = list(_ITEMS.finditer(text))
        tokens = self._segments([m.group("seg") for m in items if m.lastgroup == "seg"])
        for m in items:
            a = m.start(m.lastindex or 0)
            # words between the last item and this one: the first may start a sentence
            w = pos + 1 if after_segment and pos < a and text[pos] == " " else pos
            if w < a:
                if start < 0:
                    start = w
                elif seen_final:
                    out.append((start, last_end))
                    start, seen_final = w, False
            if m.lastgroup == "seg":
                if self._joins(text, a, m.end()):
                    self.by_spacy += 1
                    return self._spacy_spans(text)
                toks: Any = [(a + s, a + e, k) for s, e, k in tokens[m.group("seg")]]
                after_segment = True
            else:  # whitespace spaCy keeps is a token: not punctuation
                toks = [(a, m.end(), _WORD)]
                after_segment = False
            for s, e, kind in toks:
                if start < 0:
                    start = s
                if seen_final and kind == _WORD:
                    out.append((start, last_end))
                    start, seen_final = s, False
                elif kind == _FINAL:
                    seen_final = True
                last_end = e
            pos = m.end()
        n = len(text)
        w = pos + 1 if after_segment and pos < n and text[pos] == " " else pos
        if w < n:  # words after the last item; a single space after the last one is no token
            if start < 0:
                start = w
            elif seen_final:
                out.append((start, last_end))
                start = w
            last_end = n - 1 if text[-1] == " " else n
        if start >= 0:
            out.append((start, last_end))
        return out

    def _spacy_spans(self, text: str) -> list[tuple[int, int]]:
        return [(s.start_char, s.end_char) for s in self._nlp(text).sents]

    def _joins(self, text: str, a: int, b: int) -> bool:
        """Whether a tokenizer exception may match across the single space before or after
        the segment ``text[a:b]`` (rare: then spaCy cuts the text)."""
        for gap in (a - 1, b):
            if 0 < gap < len(text) - 1 and text[gap] == " ":
                for before, after in self._across.get((text[gap - 1], text[gap + 1]), ()):
                    if after.match(text, gap + 1) and before.search(text, max(0, gap - 64), gap):
                        return True
        return False


def paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """The lines of ``text`` that hold more than whitespace, with their offsets: what kgx cuts
    into sentences (a document's text keeps one paragraph a line)."""
    pos = 0
    for line in text.split("\n"):
        if line.strip():
            yield pos, line
        pos += len(line) + 1
