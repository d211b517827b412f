"""kgx.text.sentences cuts text where spaCy's sentencizer does, on real and on generated text."""

from __future__ import annotations

import random

import pytest
import spacy

import kgx.text.sentences
from kgx.dump.reader import DumpReader
from kgx.text.sentences import Sentencizer
from kgx.text.site import Site
from kgx.text.wikitext import parse_page
from tests.support import ROOT

SAMPLE = ROOT / "data" / "enwiki-2016-excerpt.xml.bz2"


def spacy_spans(nlp: spacy.language.Language, text: str) -> list[tuple[int, int]]:
    return [(s.start_char, s.end_char) for s in nlp(text).sents]


def blank_with_sentencizer(lang: str) -> spacy.language.Language:
    nlp = spacy.blank(lang)
    nlp.add_pipe("sentencizer")
    return nlp


def sample_lines() -> tuple[list[str], list[str]]:
    """The sample's articles: the lines of their plain text (what kgx cuts), and the lines of
    the first 20 pages' raw wikitext (markup: every kind of punctuation)."""
    reader = DumpReader(SAMPLE)
    site = Site(reader.site)
    plain: list[str] = []
    raw: list[str] = []
    for page in reader:
        if page.ns != 0 or page.redirect:
            continue
        plain += [line for line in parse_page(page, site).text.split("\n") if line.strip()]
        if len(raw) < 20:
            raw.append(page.text)
    return plain, [line for text in raw for line in text.split("\n")]


def test_the_sample_is_cut_where_spacy_cuts_it() -> None:
    nlp = blank_with_sentencizer("en")
    ours = Sentencizer("en")
    plain, raw = sample_lines()
    assert len(plain) > 5_000 and len(raw) > 2_000
    differ = [line for line in plain + raw if ours.spans(line) != spacy_spans(nlp, line)]
    assert differ == []
    # the sample is real prose: most of its lines hold several sentences
    assert sum(len(ours.spans(line)) > 1 for line in plain) > len(plain) / 3


PIECES = ["word", "Word", "U.S.", "Mr.", "e.g.", "etc.", ".", "!", "?", "...", '"', "'", "(",
          ")", "“", "”", "«", "»", "—", "-", ",", ";", ":", "3.5", "10km", "_", "a_b", "¿",
          "¡", "。", "।", "http://x.org/a.b", "end.", 'end."', "(end).", "?!", "‿", "x.Y",
          "St.", "No.", "Jan.", "a.m.", ":)", "$5", "%", "#tag", "@user", "Ωmega", "١٢"]
SPACES = [" ", " ", " ", " ", "", "  ", "\t", "\xa0", " \xa0", "\u2009", " \t ", "\n",
          "\u3000"]


def generated(nlp: spacy.language.Language, n: int, seed: int) -> list[str]:
    """Texts of abbreviations, quotes, sentence marks of several scripts, the tokenizer's own
    exceptions and odd whitespace, leading and trailing included."""
    rng = random.Random(seed)
    rules = sorted(nlp.tokenizer.rules)
    texts = []
    for _ in range(n):
        s = "".join(rng.choice(PIECES if rng.random() < 0.7 else rules) + rng.choice(SPACES)
                    for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.2:
            s = rng.choice(SPACES) + s
        if rng.random() < 0.3:
            s = s.rstrip()
        texts.append(s)
    return texts


@pytest.mark.parametrize("lang", ["en", "de", "fr", "xx"])
def test_generated_text_is_cut_where_spacy_cuts_it(lang: str) -> None:
    nlp = blank_with_sentencizer(lang)
    ours = Sentencizer(lang)
    texts = generated(nlp, 3_000, seed=len(lang))
    differ = [t for t in texts if ours.spans(t) != spacy_spans(nlp, t)]
    assert differ == []
    assert sum(len(ours.spans(t)) > 1 for t in texts) > 1_000  # the texts do get cut


def test_a_text_with_no_sentence_mark_is_one_sentence_and_an_empty_one_none() -> None:
    ours = Sentencizer("en")
    assert ours.spans("") == []
    assert ours.spans("No mark at all here") == [(0, 19)]
    assert ours.spans("Mr. Smith went to Washington. He stayed.") == [(0, 29), (30, 40)]


def test_a_language_whose_tokenizer_is_not_rule_based_is_cut_by_spacy() -> None:
    text = "北京是中国的首都。 上海是最大的城市。它位于长江口。"
    assert Sentencizer("zh").spans(text) == spacy_spans(blank_with_sentencizer("zh"), text)
    assert len(Sentencizer("zh").spans(text)) == 3


def test_the_memo_of_segments_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kgx.text.sentences, "MEMO_SEGMENTS", 50)
    ours = Sentencizer("en")
    nlp = blank_with_sentencizer("en")
    for i in range(500):
        text = f"Item {i}. Then x{i}-y{i}, (z{i}). " + "a" * 80 + f".b{i} end"
        assert ours.spans(text) == spacy_spans(nlp, text)
        assert len(ours._memo) <= 50


def test_a_language_spacy_has_no_rules_for_falls_back_and_says_so() -> None:
    from kgx.text.sentences import fallback_note, rules_for

    assert rules_for("it") == "it" and fallback_note("it") is None
    assert rules_for("ltg") == "xx"  # Latgalian: spaCy has no rules of its own for it
    assert "'ltg'" in fallback_note("ltg") and "multilingual" in fallback_note("ltg")
    text = "Rēzekne ir pilsāta. Tei irā Latgolā!"
    assert [text[a:b] for a, b in Sentencizer("ltg").spans(text)] == [
        "Rēzekne ir pilsāta.", "Tei irā Latgolā!"]
