"""Wikitext -> text, links, sections, aliases: data-driven cases and real-page checks."""

from __future__ import annotations

import pytest
import yaml

from kgx.dump.reader import DumpReader
from kgx.records import Page, SiteInfo
from kgx.text.site import Site
from kgx.text.wikitext import parse_page, render
from tests.support import ROOT, SAMPLE

CASES = yaml.safe_load((ROOT / "tests" / "cases" / "wikitext.yaml").read_text("utf-8"))
SITE = Site(SiteInfo(dbname="enwiki", base="https://en.wikipedia.org/wiki/Main_Page"))


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: dict) -> None:
    doc = parse_page(Page(1, 0, "Test", case["input"]), SITE)
    if "text" in case:
        assert doc.text == case["text"]
    if "links" in case:
        assert [[doc.text[ln.start:ln.end], ln.target] for ln in doc.links] == case["links"]
    if "categories" in case:
        assert list(doc.categories) == case["categories"]
    if "sections" in case:
        assert [[s.title, s.level] for s in doc.sections] == case["sections"]
    if "aliases" in case:
        assert list(doc.aliases) == case["aliases"]


def test_date_templates_record_typed_values() -> None:
    r = render("{{birth date|1809|2|12}}", SITE)
    assert [(d.lexical, d.datatype) for d in r.dates] == [("1809-02-12", "date")]


@pytest.fixture(scope="module")
def sample_docs():
    reader = DumpReader(SAMPLE)
    site = Site(reader.site)
    return [(p, parse_page(p, site)) for p in reader if p.ns == 0 and not p.redirect]


def test_sample_spans_are_consistent(sample_docs) -> None:
    """Every link span lies inside the text, is non-empty, and spans are ordered."""
    n_links = 0
    for _, doc in sample_docs:
        last = -1
        for ln in doc.links:
            assert 0 <= ln.start < ln.end <= len(doc.text)
            assert ln.start >= last
            anchor = doc.text[ln.start:ln.end]
            assert anchor == anchor.strip() and "\n" not in anchor
            last = ln.start
            n_links += 1
        assert 0 <= doc.lead_end <= len(doc.text)
        for s in doc.sections:
            assert 0 <= s.start <= len(doc.text)
    assert n_links > 5000


def test_sample_text_has_no_markup_left(sample_docs) -> None:
    leftovers = ("{{", "}}", "[[", "]]", "<ref", "&lt;", "<!--", "'''", "{|")
    bad = {m: 0 for m in leftovers}
    total = 0
    for _, doc in sample_docs:
        total += len(doc.text)
        for m in leftovers:
            bad[m] += doc.text.count(m)
    # Real pages hold a few stray brackets (unbalanced markup on the page itself), no more.
    assert sum(bad.values()) < 20, bad
    assert total > 2_000_000


def test_links_agree_with_mwparserfromhell(sample_docs) -> None:
    """Targets kgx finds are wikilinks mwparserfromhell finds too (it also sees refs, files)."""
    import mwparserfromhell

    # Its pure-Python tokenizer is 30-140x slower than the C one: make sure the C one runs.
    assert mwparserfromhell.parser.use_c, "mwparserfromhell's C tokenizer is not in use"
    site = SITE
    found = missing = 0
    for page, doc in sample_docs[:40]:
        ref = {site.normalize(str(w.title)) for w in mwparserfromhell.parse(page.text)
               .filter_wikilinks()}
        for ln in doc.links:
            found += 1
            missing += ln.target not in ref
    assert found > 2000
    # Targets from inline templates ({{ill}}, {{flag}}) are not wikilinks to mwparserfromhell.
    assert missing / found < 0.01


def test_infobox_fields_render_links_and_dates(sample_docs) -> None:
    doc = next(d for p, d in sample_docs if p.title == "Ayn Rand")
    box = doc.infoboxes[0]
    assert box.template == "infobox writer"
    fields = {f.name: f for f in box.fields}
    assert [ln.target for ln in fields["birth_place"].value.links] == [
        "Saint Petersburg", "Russian Empire"]
    assert fields["birth_date"].value.dates[0].lexical == "1905-02-02"
    assert fields["notableworks"].value.text == "The Fountainhead\nAtlas Shrugged"
    assert "Ayn Rand" in doc.aliases and "Alisa Zinov'yevna Rosenbaum" in doc.aliases


@pytest.mark.parametrize("unit", ["{{a|", "[[a|", "[http://x ", "<ref>", "<!--", "{|\n",
                                  "'''", "{{a|[[b|<ref>{|", "}}]]|}"])
def test_pathological_markup_is_linear_and_safe(unit: str) -> None:
    """Runs of unclosed markup (which make general parsers quadratic) parse to something sane.

    No timing is asserted (machines are noisy): a quadratic scanner would take minutes on
    this input and fail the suite's time budget instead. The benchmark measures the pace.
    """
    text = unit * (64_000 // len(unit))
    doc = parse_page(Page(1, 0, "P", text), SITE)
    assert len(doc.text) <= len(text)
    assert all(0 <= ln.start < ln.end <= len(doc.text) for ln in doc.links)


def test_link_targets_parse_the_same_remembered_and_the_memo_stays_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``Site.parse`` remembers targets: the same answers as parsing anew, a memo that
    empties when full, and none of it sent with the site to a worker (pickled)."""
    import pickle

    import kgx.text.site

    monkeypatch.setattr(kgx.text.site, "PARSE_MEMO", 8)
    site = Site(SiteInfo(dbname="enwiki", base="https://en.wikipedia.org/wiki/Main_Page"))
    targets = ["paris", "Paris", "Category:Cities", "fr:Paris", "a<b", "", "#top",
               "New_York  City", "Talk: x", "%C3%89cole", "&amp;c"] * 3
    for t in targets:
        assert site.parse(t) == site.parse_uncached(t), t
        assert len(site._parsed) <= 8
    assert site._parsed  # it did remember
    copy = pickle.loads(pickle.dumps(site))
    assert copy._parsed == {} and copy.parse("paris") == site.parse("paris")


IT_SITE = Site(SiteInfo(dbname="itwiki", base="https://it.wikipedia.org/wiki/Pagina_principale",
                        lang="it"))
BIO = """{{Bio
|Nome = Alfred Bernhard
|Cognome = Nobel
|Sesso = M
|LuogoNascita = Stoccolma
|GiornoMeseNascita = 21 ottobre
|AnnoNascita = 1833
|LuogoMorte = Sanremo
|LuogoMorteLink = Sanremo (Italia)
|GiornoMeseMorte = 10 dicembre
|AnnoMorte = 1896
|Attività = chimico
|Attività2 = filantropo
|Nazionalità = svedese
}}
È noto per la dinamite."""


def test_italian_bio_writes_the_first_sentence_with_its_name_and_places() -> None:
    """Italian Wikipedia's biographies start with {{Bio}}: without it a biography would lose
    its first sentence, its own name (an alias) and its places."""
    doc = parse_page(Page(id=1, title="Alfred Nobel", ns=0, text=BIO), IT_SITE)
    first = ("Alfred Bernhard Nobel (Stoccolma, 21 ottobre 1833 – Sanremo, 10 dicembre 1896) "
             "è stato un chimico e filantropo svedese.")
    assert doc.text.startswith(first + "\nÈ noto per la dinamite.")
    assert doc.aliases == ("Alfred Bernhard Nobel",)
    assert [(doc.text[x.start:x.end], x.target) for x in doc.links] == [
        ("Stoccolma", "Stoccolma"), ("Sanremo", "Sanremo (Italia)")]
    alive = BIO.replace("|LuogoMorte = Sanremo\n", "").replace("|AnnoMorte = 1896\n", "") \
        .replace("|Sesso = M", "|Sesso = F").replace("chimico", "scienziata")
    doc = parse_page(Page(id=1, title="X", ns=0, text=alive), IT_SITE)
    assert "(Stoccolma, 21 ottobre 1833) è una scienziata e filantropo svedese." in doc.text
    # Mapped as an infobox (its page is a Person), it still writes the lead.
    from kgx.ontology import load_mappings

    doc = parse_page(Page(id=1, title="Alfred Nobel", ns=0, text=BIO), IT_SITE,
                     load_mappings().infobox_names())
    assert doc.text.startswith(first) and [b.template for b in doc.infoboxes] == ["bio"]
    # On another wiki {{Bio}} is no template kgx renders: nothing is written.
    assert parse_page(Page(id=1, title="X", ns=0, text=BIO), SITE).text.startswith("È noto")
