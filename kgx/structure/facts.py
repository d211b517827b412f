"""Facts a wiki states in its structure: infoboxes, categories, redirects, links, labels.

Takes a :class:`~kgx.records.Page` and its :class:`~kgx.records.Document`; gives
:class:`~kgx.records.Fact` s, each with the page, revision and extractor as provenance.
Infobox values are typed by the range of the ontology property they map to: wikilinks become
entities (several for list values), dates ``xsd:date``/``xsd:gYear`` (BC years too), numbers
typed literals, other text language-tagged literals. Unmapped parameters keep their raw name
in the wiki's property namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kgx.ontology import (
    FOAF_PRIMARY_TOPIC_OF,
    KGX,
    RDF_TYPE,
    RDFS_LABEL,
    SKOS_BROADER,
    XSD,
    Family,
    Mappings,
    PropertyInfo,
    fold_name,
)
from kgx.records import (
    IRI,
    DateValue,
    Document,
    Entity,
    Fact,
    Link,
    Literal,
    Page,
    Provenance,
    Rendered,
    Term,
)
from kgx.text.site import Site
from kgx.text.templates import MONTHS, date_value
from kgx.version import __version__

_MONTH = {m.lower(): i + 1 for i, m in enumerate(MONTHS)}
_MONTH.update({m[:3].lower(): i + 1 for i, m in enumerate(MONTHS)})
_MONTH["sept"] = 9
_M = r"(?P<m>[A-Za-z]{3,9})\.?"
_DATE_PATTERNS = [
    re.compile(r"(?P<y>\d{3,4})-(?P<mn>\d{1,2})-(?P<d>\d{1,2})\b"),
    re.compile(_M + r"\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{1,4})\b(?P<bc>\s*BCE?)?"),
    re.compile(r"\b(?P<d>\d{1,2})\s+" + _M + r",?\s+(?P<y>\d{1,4})\b(?P<bc>\s*BCE?)?"),
    re.compile(_M + r"\s+(?P<y>\d{3,4})\b"),
    re.compile(r"\b(?P<y>\d{1,4})\s*(?P<bc>BCE?)\b"),
    re.compile(r"(?<![\d,.])(?P<y>\d{3,4})(?![\d,.])"),
]
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])"
                     r"|(?<![\w.])[-−]?\d+(?:\.\d+)?")
# Starts only where a word starts: from inside a 20,000-character word every start position
# re-scanned the rest of the word (1.4 s for one infobox value).
_URL = re.compile(r"(?<![\w.-])(?:https?://)?(?:[\w-]+\.)+[a-z]{2,}(?:/\S*)?", re.I)
_NUMERIC = {XSD + "integer", XSD + "decimal", XSD + "double", XSD + "float",
            XSD + "nonNegativeInteger", XSD + "positiveInteger"}
_DATES = {XSD + "date", XSD + "gYear", XSD + "gYearMonth", XSD + "dateTime"}
MAX_NUMBER_DIGITS = 100
_ONLY_NUMBER = re.compile(r"\s*[-−]?[\d,]+(?:\.\d+)?\s*")


def parse_date_text(text: str) -> DateValue | None:
    """Read the first date written in English prose (``February 2, 1905``, ``384 BC``...)."""
    for pat in _DATE_PATTERNS:
        m = pat.search(text)
        if not m:
            continue
        g = m.groupdict()
        month = None
        if g.get("mn"):
            month = int(g["mn"])
        elif g.get("m"):
            month = _MONTH.get(g["m"].lower())
            if month is None:
                continue
        year = int(g["y"])
        if g.get("bc"):
            year = -year
        day = int(g["d"]) if g.get("d") else None
        if year == 0 or (month is not None and not 1 <= month <= 12):
            continue
        if day is not None and not 1 <= day <= 31:
            day = None
        return date_value(year, month, day)
    return None


def parse_number(text: str, datatype: str) -> Literal | None:
    """The first number in ``text`` as a literal of ``datatype`` (thousands separators dropped)."""
    m = _NUMBER.search(text)
    if not m:
        return None
    s = m.group().replace(",", "").replace("−", "-")
    if len(s) > MAX_NUMBER_DIGITS:
        return None  # no infobox states such a number; int() would refuse it past 4,300 digits
    if datatype == XSD + "integer":
        sign, digits = ("-", s[1:]) if s.startswith("-") else ("", s)
        digits = digits.split(".")[0].lstrip("0") or "0"
        return Literal(("" if digits == "0" else sign) + digits, datatype)
    return Literal(s, datatype)


def _lines(text: str) -> list[str]:
    return [ln.strip(" ,;") for ln in text.split("\n") if ln.strip(" ,;")]


_SEE = re.compile(r"\b(?:see|cf)\b\.?(?:\s+also)?\s*:?\s*$", re.I)
# {{lang|la|...}}, {{lang-ar|...}}, {{transl|ar|...}}, {{native name|sq|...}}: their codes
_LANG_TEMPLATE = re.compile(r"\{\{\s*(?:lang\s*\|\s*|lang-|transl(?:iteration)?\s*\|\s*|"
                            r"native[ _]name\s*\|\s*)([a-zA-Z]{2,3}(?:-[a-zA-Z0-9]+)*)", re.I)
_LATIN_LANGS = frozenset("en de fr es it pt nl sv da no nb nn fi pl cs sk sl hr bs sr-latn ro hu "
                         "tr id ms vi ca eu gl et lv lt sq is ga cy mt af sw tl eo la".split())


def primary_links(value: Rendered) -> list[Link]:
    """The links that are the value itself, not an aside: a link inside parentheses ("Swiss
    Patent Office ([[Bern]])", "(today: [[Czech Republic]])") or after "see" ("See: [[Abraham
    Lincoln and religion]]") is left out."""
    text = value.text
    depth = [0] * (len(text) + 1)
    d = 0
    for i, c in enumerate(text):
        depth[i] = d
        if c == "(":
            d += 1
        elif c == ")":
            d = max(0, d - 1)
    depth[len(text)] = d
    out = []
    for link in value.links:
        if depth[link.start] > 0:
            continue
        line_start = text.rfind("\n", 0, link.start) + 1
        if _SEE.search(text[line_start:link.start]):
            continue
        out.append(link)
    return out


def text_language(raw: str, text: str, wiki_lang: str, foreign: bool) -> str | None:
    """The language tag of an infobox text value, only where it is known: a language
    template's code when the value holds one (and is one line), the wiki's language for
    ordinary text, none for text of a property whose values are often in another language
    (a motto) or in a script the wiki's language is not written in."""
    codes = {c.lower() for c in _LANG_TEMPLATE.findall(raw)}
    if codes:
        return codes.pop() if len(codes) == 1 and "\n" not in text.strip() else None
    if foreign:
        return None
    if wiki_lang.split("-")[0] in _LATIN_LANGS and any(
            ord(c) > 0x24F and c.isalpha() for c in text):
        return None  # Arabic, Cyrillic, Greek... text on a wiki written in Latin script
    return wiki_lang


def typed_values(prop: PropertyInfo, value: Rendered, lang: str | None,
                 raw: str = "", foreign: bool = False) -> list[Term]:
    """Values of a mapped infobox parameter, typed by the property's range: the links that
    are the value (:func:`primary_links`), a date, a number, a URL, or text in the language
    :func:`text_language` knows it is in (else a plain string)."""
    if prop.object:
        return list(dict.fromkeys(Entity(link.target) for link in primary_links(value)))
    rng = prop.range
    if rng in _DATES:
        d = value.dates[0] if value.dates else parse_date_text(value.text)
        return [Literal(d.lexical, XSD + d.datatype)] if d else []
    if rng in _NUMERIC:
        n = parse_number(value.text, rng or "")
        return [n] if n else []
    if rng == XSD + "anyURI":
        m = _URL.search(value.text)
        if not m:
            return []
        url = m.group()
        return [Literal(url if "://" in url else "http://" + url, rng)]
    if rng == XSD + "string":
        return [Literal(v) for v in _lines(value.text)]
    tag = text_language(raw, value.text, lang or "", foreign) if lang else None
    return [Literal(v, lang=tag) for v in _lines(value.text)]


def raw_values(value: Rendered, lang: str, raw: str = "") -> list[Term]:
    """Values of an unmapped parameter: links, else a date, else a number, else text."""
    if value.links:
        return list(dict.fromkeys(Entity(link.target) for link in value.links))
    if value.dates:
        return [Literal(d.lexical, XSD + d.datatype) for d in value.dates]
    if _ONLY_NUMBER.fullmatch(value.text) and any(c.isdigit() for c in value.text):
        kind = XSD + ("decimal" if "." in value.text else "integer")
        n = parse_number(value.text, kind)
        return [n] if n else []
    tag = text_language(raw, value.text, lang, False)
    return [Literal(v, lang=tag) for v in _lines(value.text)]


class StructureExtractor:
    """Turns pages into structural facts.

    Args:
        site: Title and IRI rules of the wiki.
        mappings: Infobox and category mappings.
    """

    def __init__(self, site: Site, mappings: Mappings) -> None:
        self.site = site
        self.mappings = mappings
        self.onto = mappings.ontology
        self.lang = site.lang
        self._cls_type = IRI(RDF_TYPE)
        self._p = {name: IRI(KGX + name) for name in (
            "abstract", "wikiLink", "redirectsTo", "disambiguates", "category",
            "infoboxTemplate", "alias")}

    def _prov(self, page: Page, extractor: str) -> Provenance:
        return Provenance(page.id, page.revision_id, extractor, __version__)

    def redirect_facts(self, page: Page, title: str, target: str) -> list[Fact]:
        """``<redirect> kgx:redirectsTo <target>`` and the redirect's title as an alias."""
        prov = self._prov(page, "redirect")
        return [Fact(Entity(title), self._p["redirectsTo"], Entity(target), prov),
                Fact(Entity(target), self._p["alias"], Literal(title, lang=self.lang), prov)]

    def article_facts(self, page: Page, doc: Document, title: str, disambiguation: bool
                      ) -> Iterator[Fact]:
        """Every structural fact of an article or disambiguation page."""
        e = Entity(title)
        lang = self.lang
        prov = self._prov(page, "label")
        yield Fact(e, IRI(RDFS_LABEL), Literal(title, lang=lang), prov)
        yield Fact(e, IRI(FOAF_PRIMARY_TOPIC_OF), IRI(self.site.page_url(title)), prov)
        lead = doc.lead
        if lead and not disambiguation:
            yield Fact(e, self._p["abstract"], Literal(lead, lang=lang), prov)
        for alias in doc.aliases:
            if alias != title:
                yield Fact(e, self._p["alias"], Literal(alias, lang=lang), prov)
        targets = list(dict.fromkeys(link.target for link in doc.links if link.target != title))
        if disambiguation:
            prov = self._prov(page, "disambiguation")
            yield Fact(e, self._cls_type, IRI(KGX + "DisambiguationPage"), prov)
            for t in targets:
                yield Fact(e, self._p["disambiguates"], Entity(t), prov)
        if doc.categories:
            prov = self._prov(page, "category")
            cat_ns = self.site.namespace_name(14) or "Category"
            for c in doc.categories:
                yield Fact(e, self._p["category"], Entity(f"{cat_ns}:{c}"), prov)
            if not doc.infoboxes and not disambiguation:
                for cls in self.mappings.category_classes(lang, doc.categories):
                    yield Fact(e, self._cls_type, IRI(cls), prov)
        if doc.infoboxes:
            yield from self._infobox_facts(page, e, doc)
        if targets:
            prov = self._prov(page, "link")
            for t in targets:
                yield Fact(e, self._p["wikiLink"], Entity(t), prov)

    def _property(self, fam: Family, param: str, labels: dict[str, str], taken: set[str]
                  ) -> str | None:
        """The property a parameter maps to: a qualified one's by its label parameter (see
        :class:`kgx.ontology.Qualified`), else the family's map."""
        key = fold_name(param)
        base = key.rstrip("0123456789")
        q = fam.qualified.get(base) or fam.qualified.get(base.rstrip("_"))
        if q is None:
            return self.mappings.property_for(fam, param)
        number = key[len(base):]
        label = labels.get(q.label + number)
        if label is None and number:
            label = labels.get(f"{q.label}_{number}")
        local = q.property_for(label)
        if local is not None and q.first:
            if local in taken:
                return None
            taken.add(local)
        return local

    def category_facts(self, page: Page, doc: Document, title: str) -> Iterator[Fact]:
        """A category page's place in the category tree: ``skos:broader`` each category it
        is in (its parent), its label without the namespace prefix, its class."""
        e = Entity(title)
        prov = self._prov(page, "category")
        yield Fact(e, self._cls_type, IRI(KGX + "Category"), prov)
        name = title.split(":", 1)[1] if ":" in title else title
        yield Fact(e, IRI(RDFS_LABEL), Literal(name, lang=self.lang), prov)
        cat_ns = self.site.namespace_name(14) or "Category"
        for c in doc.categories:
            parent = f"{cat_ns}:{c}"
            if parent != title:
                yield Fact(e, IRI(SKOS_BROADER), Entity(parent), prov)

    def _infobox_facts(self, page: Page, e: Entity, doc: Document) -> Iterator[Fact]:
        prov = self._prov(page, "infobox")
        lang = self.lang
        for box in doc.infoboxes:
            if not box.lead:
                continue  # an infobox further down the page describes something else
            fam: Family | None = self.mappings.family(box.template)
            yield Fact(e, self._p["infoboxTemplate"], Literal(box.template), prov)
            if fam is not None and fam.cls:
                yield Fact(e, self._cls_type, IRI(fam.cls), prov)
            labels = {fold_name(f.name): f.value.text for f in box.fields}
            taken: set[str] = set()  # properties a "first" qualified mapping has given
            for fld in box.fields:
                values: list[Term] = []
                local = self._property(fam, fld.name, labels, taken) if fam else None
                if local is not None:
                    prop = self.onto.properties[local]
                    values = typed_values(prop, fld.value, lang, fld.raw,
                                          local in fam.foreign_text if fam else False)
                    pred = IRI(prop.iri)
                if not values:
                    values = raw_values(fld.value, lang, fld.raw)
                    pred = IRI(self.site.property_iri(fld.name))
                for v in values:
                    if isinstance(v, Literal) and v.lang and v.datatype is None and not v.value:
                        continue
                    yield Fact(e, pred, v, prov)
