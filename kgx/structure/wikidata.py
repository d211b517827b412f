"""Wikidata ids for the wiki's entities, from a Wikidata JSON dump (``kgx extract --wikidata``).

Wikidata's JSON dump (``latest-all.json.bz2`` or ``.gz``) is one JSON array with one entity per
line. Each item's sitelink for this wiki (``enwiki``, ``itwiki``...) names the page that
describes it. Every entity of the graph whose page an item links gets, in the page's graph of
extractor ``wikidata`` (with its provenance, as every structure fact):

- ``owl:sameAs wd:Q...`` and ``kgx:wikidataId "Q..."``;
- the item's label and aliases in the wiki's language, as ``kgx:alias`` (those that differ
  from the page's title).

The file is read as a stream, one line at a time: memory stays flat however large it is. A
sitelink to a redirect reaches the redirect's target; one to a page the dump does not have is
counted, not written.
"""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kgx.dump.sources import compression
from kgx.ontology import KGX, WD
from kgx.records import IRI, Entity, Fact, Literal, Provenance

OWL_SAME_AS = "http://www.w3.org/2002/07/owl#sameAs"
EXTRACTOR = "wikidata"


class WikidataError(ValueError):
    """A file that is not a Wikidata JSON dump, or a line that is not an entity."""


@dataclass(frozen=True, slots=True)
class WikidataItem:
    """What kgx takes from one item: its id, the title its sitelink names, and its label and
    aliases in the wiki's language."""

    id: str
    title: str
    label: str | None
    aliases: tuple[str, ...]


@dataclass(slots=True)
class WikidataReport:
    """What a read of the file found (``report.json``'s ``wikidata``)."""

    file: str
    site: str
    entities: int = 0  # entities read (items, properties, lexemes...)
    items_with_sitelink: int = 0  # items that link a page of this wiki
    matched: int = 0  # ... whose page is an entity of the graph
    missing: int = 0  # ... whose page the dump does not have
    facts: int = 0
    cut: str | None = None  # where the file broke off, when it did
    examples_missing: list[str] = field(default_factory=list)


def site_key(dbname: str | None, lang: str) -> str:
    """The sitelink key of a wiki: its ``dbname`` (``enwiki``), else ``<lang>wiki``."""
    return dbname or f"{lang}wiki"


def _open(path: Path) -> IO[str]:
    with open(path, "rb") as f:
        packed = compression(f.read(3))
    if packed == "bz2":
        return bz2.open(path, "rt", encoding="utf-8")
    if packed == "gzip":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def check_file(path: Path) -> None:
    """Refuse, before any work, a file that cannot be a Wikidata JSON dump.

    Raises:
        WikidataError: Missing, unreadable, or not beginning with the JSON array's ``[``.
    """
    try:
        with _open(path) as f:
            first = f.readline().strip()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise WikidataError(f"{path}: cannot be read as a Wikidata JSON dump "
                            f"({getattr(exc, 'strerror', None) or exc})") from exc
    if first != "[":
        raise WikidataError(f"{path}: line 1: expected '[' (a Wikidata JSON dump, "
                            "latest-all.json.bz2: one entity per line in a JSON array), found "
                            f"{first[:40]!r}")


def read_items(path: Path, site: str, lang: str, report: WikidataReport
               ) -> Iterator[WikidataItem]:
    """The items of ``path`` that link a page of ``site``, in file order.

    A line that is not JSON is an error naming it, unless it is the file's last: a file cut
    off in transfer keeps every whole entity, and ``report.cut`` says where it ended.

    Raises:
        WikidataError: Not a Wikidata JSON dump (its first line is not ``[``, or an entity has
            no ``id``), or a damaged line inside the file.
    """
    try:
        f = _open(path)
    except OSError as exc:
        raise WikidataError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    with f:
        pending: tuple[int, str] | None = None  # a bad line: an error unless it is the last
        closed = False
        for n, raw in enumerate(_lines(f, path), 1):
            line = raw.strip()
            if pending is not None and line:
                raise WikidataError(f"{path}: line {pending[0]}: not a JSON entity "
                                    f"({pending[1]})")
            if n == 1:
                if line != "[":
                    check_file(path)  # says what was expected
                continue
            if not line:
                continue
            if line == "]":
                closed = True
                continue
            try:
                entity = json.loads(line.rstrip(","))
            except ValueError as exc:
                pending = (n, str(exc))
                continue
            if not isinstance(entity, dict) or "id" not in entity:
                raise WikidataError(f"{path}: line {n}: an entity without an 'id'; not a "
                                    "Wikidata JSON dump")
            report.entities += 1
            link = (entity.get("sitelinks") or {}).get(site)
            if not link or not link.get("title"):
                continue
            report.items_with_sitelink += 1
            label = ((entity.get("labels") or {}).get(lang) or {}).get("value")
            aliases = tuple(a["value"] for a in (entity.get("aliases") or {}).get(lang, [])
                            if a.get("value"))
            yield WikidataItem(entity["id"], link["title"], label, aliases)
        if pending is not None:
            report.cut = f"{path}: line {pending[0]} is cut off ({pending[1]}); every " \
                         "whole entity before it was read"
        elif not closed:
            report.cut = f"{path}: ends without the closing ']' (cut off?); every whole " \
                         "entity was read"


def _lines(f: IO[str], path: Path) -> Iterator[str]:
    try:
        yield from f
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a cut compressed stream
        raise WikidataError(f"{path}: cannot be read to its end ({exc})") from exc


def wikidata_facts(items: Iterator[WikidataItem], page_of: Callable[[str], tuple[str, int]
                                                                    | None],
                   lang: str, version: str, report: WikidataReport
                   ) -> Iterator[tuple[Entity, list[Fact]]]:
    """Each matched entity with its Wikidata facts.

    Args:
        items: From :func:`read_items`.
        page_of: A sitelink title -> (the entity's normalised title, its page id), following
            a redirect; None for a page the dump does not have.
        lang: The wiki's language (the aliases' language tag).
        version: The extractor version in the facts' provenance.
        report: Counts, updated.
    """
    for item in items:
        page = page_of(item.title)
        if page is None:
            report.missing += 1
            if len(report.examples_missing) < 10:
                report.examples_missing.append(f"{item.id} {item.title}")
            continue
        title, page_id = page
        report.matched += 1
        e = Entity(title)
        prov = Provenance(page_id, None, EXTRACTOR, version)
        facts = [Fact(e, IRI(OWL_SAME_AS), IRI(WD + item.id), prov),
                 Fact(e, IRI(KGX + "wikidataId"), Literal(item.id), prov)]
        seen = {title.casefold()}
        for name in (item.label, *item.aliases):
            if name and name.casefold() not in seen:
                seen.add(name.casefold())
                facts.append(Fact(e, IRI(KGX + "alias"), Literal(name, lang=lang), prov))
        report.facts += len(facts)
        yield e, facts
