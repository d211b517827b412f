"""The data model every kgx stage reads and writes.

``Page -> Document (text + link spans) -> Fact (with Provenance)`` for the structure, and for
the prose ``Document -> PredictedMention / PredictedRelation`` (:mod:`kgx.model.decoding`, what
the reader reads in a sentence) ``-> FactRow`` (one sentence's support for a fact, as the read
stage stores it) ``-> ModelFact`` with its ``Evidence`` (:mod:`kgx.read.assertion`, what the
graph asserts or keeps as a candidate). All values are small frozen records. Offsets are always
half-open character offsets ``[start, end)`` into the page's plain text (``Document.text``);
sub-token indices never leave the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

# --------------------------------------------------------------------------- dump level


@dataclass(frozen=True, slots=True)
class Namespace:
    """One namespace declared in a dump's ``<siteinfo>``."""

    key: int
    name: str
    case: str = "first-letter"


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """What a dump says about its wiki: drives title normalisation and IRIs.

    Attributes:
        sitename: Human name of the wiki ("Wikipedia").
        dbname: Database name ("enwiki"); used to derive the default IRI namespace.
        base: URL of the main page; article URLs are derived from it.
        lang: Language code of the content ("en"), used for language-tagged literals.
        case: Default case rule ("first-letter" or "case-sensitive").
        namespaces: Declared namespaces.
    """

    sitename: str = ""
    dbname: str = ""
    base: str = ""
    lang: str = "en"
    case: str = "first-letter"
    namespaces: tuple[Namespace, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One ``<page>`` of a dump with its latest revision."""

    id: int
    ns: int
    title: str
    text: str
    revision_id: int | None = None
    timestamp: str | None = None
    redirect: str | None = None
    problem: str | None = None  # why the page cannot be read (a field of the wrong type...)
    revisions_skipped: int = 0  # older revisions a history dump held (only the newest is read)


# --------------------------------------------------------------------------- text level


@dataclass(frozen=True, slots=True)
class Link:
    """A wikilink: ``text[start:end]`` is the anchor; ``target`` the normalised title."""

    start: int
    end: int
    target: str


@dataclass(frozen=True, slots=True)
class Section:
    """A section heading; ``start`` is where its body begins in the plain text."""

    title: str
    level: int
    start: int


@dataclass(frozen=True, slots=True)
class DateValue:
    """A date read from wikitext, as an XSD lexical form and its datatype local name."""

    lexical: str
    datatype: str  # "date", "gYear" or "gYearMonth"


@dataclass(frozen=True, slots=True)
class Rendered:
    """Wikitext rendered to plain text, with the links and dates a reader would see."""

    text: str
    links: tuple[Link, ...] = ()
    dates: tuple[DateValue, ...] = ()


@dataclass(frozen=True, slots=True)
class InfoboxField:
    """One parameter of an infobox: its name, raw wikitext and rendered value."""

    name: str
    raw: str
    value: Rendered


@dataclass(frozen=True, slots=True)
class Infobox:
    """An infobox template call (normalised template name) with its fields in order.

    ``lead``: the call stands before the page's first heading, so it describes the page's
    subject; one further down ("Infobox U.S. Cabinet" in a section of Abraham Lincoln's page)
    describes something else the page talks about.
    """

    template: str
    fields: tuple[InfoboxField, ...]
    lead: bool = True


@dataclass(frozen=True, slots=True)
class Document:
    """An article as plain text with the structure kgx reads from it.

    Attributes:
        page_id, revision_id, title: Identify the source page revision.
        text: Plain body text (headings excluded, one paragraph per line).
        links: Wikilinks in ``text``, ordered by ``start``.
        sections: Section headings with the offset where each body starts.
        lead_end: End offset of the lead (text before the first heading).
        aliases: Bold names in the lead (the article's title aliases).
        categories: Normalised category names (without namespace prefix).
        infoboxes: Infobox template calls found on the page.
        templates: Normalised names of every template the page calls.
    """

    page_id: int
    revision_id: int | None
    title: str
    text: str
    links: tuple[Link, ...] = ()
    sections: tuple[Section, ...] = ()
    lead_end: int = 0
    aliases: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    infoboxes: tuple[Infobox, ...] = ()
    templates: frozenset[str] = field(default_factory=frozenset)

    @property
    def lead(self) -> str:
        """The lead section's text."""
        return self.text[: self.lead_end].strip()

    def to_json(self) -> dict[str, object]:
        """The document as JSON (text, link spans, sections) for the corpus stage."""
        return {"page_id": self.page_id, "revision_id": self.revision_id, "title": self.title,
                "text": self.text, "lead_end": self.lead_end, "aliases": list(self.aliases),
                "links": [[ln.start, ln.end, ln.target] for ln in self.links],
                "sections": [[s.title, s.level, s.start] for s in self.sections],
                "categories": list(self.categories)}


# --------------------------------------------------------------------------- graph level


@dataclass(frozen=True, slots=True)
class IRI:
    """An absolute IRI (already encoded)."""

    value: str


@dataclass(frozen=True, slots=True)
class Entity:
    """A wiki page by normalised title; becomes an IRI once redirects are resolved."""

    title: str


@dataclass(frozen=True, slots=True)
class Literal:
    """An RDF literal: ``datatype`` is a full IRI, or ``lang`` a language tag."""

    value: str
    datatype: str | None = None
    lang: str | None = None


Term = IRI | Entity | Literal


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a fact comes from. Structural facts fill the first four fields; model facts all."""

    page_id: int
    revision_id: int | None
    extractor: str
    extractor_version: str
    sentence: tuple[int, int] | None = None
    evidence: tuple[int, int] | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Fact:
    """One triple and where it came from."""

    subject: IRI | Entity
    predicate: IRI
    object: Term
    provenance: Provenance


# --------------------------------------------------------------------------- prose level


class Sentence(NamedTuple):
    """A sentence of a chunk's documents: ``docs[doc]["text"][start:end]``."""

    doc: int  # the document's index in its chunk
    start: int
    end: int


class LinkedMention(NamedTuple):
    """The entity a predicted mention names (:func:`kgx.linking.mentions.link_mentions`)."""

    title: str  # the entity's normalised title
    how: str  # "wikilink" (the page's own link around it), "page" (the page itself), "linker"
    score: float


class FactRow(NamedTuple):
    """One sentence's support for a fact the reader read: one row of the read stage's facts
    table (a tuple, so SQLite stores it as it is). Offsets are into the page's text."""

    subject: str  # the subject's title
    prop: str  # the property (kgx local name or unaligned Wikidata id)
    object: str  # the object's title
    page_id: int
    revision_id: int | None
    sentence_start: int
    sentence_end: int
    start: int  # the span that holds both mentions
    end: int
    sentence: str
    score: float  # the relation's score in this sentence
    page: str  # the title of the page the sentence is on
    subject_start: int
    subject_end: int
    object_start: int
    object_end: int
    subject_label: str | None = None  # the mentions' NER labels and scores
    object_label: str | None = None
    subject_score: float | None = None
    object_score: float | None = None
