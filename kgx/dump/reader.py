"""The pages of a dump: ``<siteinfo>`` and every ``<page>`` as :class:`kgx.records.Page`,
streamed (history dumps too: the newest revision of each page, in bounded memory), with a clear
error naming the field, the value and where it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from kgx.dump.sources import DumpError, detect_format, open_raw
from kgx.records import Namespace, Page, SiteInfo


def check_dump(path: str | os.PathLike[str]) -> None:
    """Refuse, before anything is written, what is not a MediaWiki dump: by its first bytes,
    and (for a file; a pipe is read once, by the run) by its root element and siteinfo.

    Raises:
        DumpError: Naming the file and what was expected.
    """
    if detect_format(path) == "stream":
        return
    DumpReader(path).close()


def _local(tag: object) -> str:
    t = str(tag)
    return t.rsplit("}", 1)[-1]


def parse_siteinfo(elem: etree._Element, lang: str | None) -> SiteInfo:
    """Build a :class:`SiteInfo` from a ``<siteinfo>`` element."""
    values: dict[str, str] = {}
    namespaces: list[Namespace] = []
    for child in elem:
        name = _local(child.tag)
        if name == "namespaces":
            for ns in child:
                try:
                    key = _int_field(ns.get("key", "0"), "namespace key", -(1 << 31),
                                     (1 << 31) - 1)
                except ValueError:
                    continue  # a declaration kgx cannot use; pages name it by prefix only
                namespaces.append(Namespace(key, (ns.text or "").strip(),
                                            ns.get("case", "first-letter")))
        else:
            values[name] = (child.text or "").strip()
    # An export before 0.5 names no <dbname>: a Wikimedia wiki's is its base URL's (one wiki,
    # one IRI namespace, whichever export of it is read).
    dbname = values.get("dbname", "") or dbname_from_base(values.get("base", ""))
    if not lang:
        lang = dbname[: -len("wiki")] if dbname.endswith("wiki") else "en"
        lang = lang.replace("_", "-") or "en"
    return SiteInfo(sitename=values.get("sitename", ""), dbname=dbname,
                    base=values.get("base", ""), lang=lang,
                    case=values.get("case", "first-letter"), namespaces=tuple(namespaces))


_PROJECTS = {"wikipedia": "wiki", "wiktionary": "wiktionary", "wikibooks": "wikibooks",
             "wikinews": "wikinews", "wikiquote": "wikiquote", "wikisource": "wikisource",
             "wikiversity": "wikiversity", "wikivoyage": "wikivoyage"}


_SPECIAL_HOSTS = {"commons.wikimedia.org": "commonswiki", "meta.wikimedia.org": "metawiki",
                  "species.wikimedia.org": "specieswiki", "www.wikidata.org": "wikidatawiki",
                  "wikidata.org": "wikidatawiki", "www.mediawiki.org": "mediawikiwiki",
                  "incubator.wikimedia.org": "incubatorwiki"}


def dbname_from_base(base: str) -> str:
    """The database name of a Wikimedia wiki from its main page's URL, as Wikimedia names it
    (``http://it.wikipedia.org/wiki/...`` -> ``itwiki``, ``zh-min-nan.wikipedia.org`` ->
    ``zh_min_nanwiki``); "" for another site.

    >>> dbname_from_base("http://it.wikipedia.org/wiki/Pagina_principale")
    'itwiki'
    >>> dbname_from_base("https://en.wiktionary.org/wiki/Main_Page")
    'enwiktionary'
    """
    from urllib.parse import urlsplit

    host = (urlsplit(base).hostname or "").lower()
    if host in _SPECIAL_HOSTS:
        return _SPECIAL_HOSTS[host]
    parts = host.split(".")
    if len(parts) == 4 and parts[1] == "m":  # the mobile site: en.m.wikipedia.org
        parts = [parts[0], *parts[2:]]
    if len(parts) == 3 and parts[2] == "org" and parts[1] in _PROJECTS and parts[0] != "www":
        return parts[0].replace("-", "_") + _PROJECTS[parts[1]]
    return ""


MAX_ID = (1 << 63) - 1  # MediaWiki's ids are unsigned 64-bit at most; SQLite's are signed


def _int_field(text: str | None, what: str, lo: int, hi: int) -> int:
    raw = (text or "").strip()
    if not raw or not (raw.isascii() and raw.lstrip("-").isdigit()) or raw.count("-") > 1:
        raise ValueError(f"{what} is {raw[:40]!r}, expected an integer")
    value = int(raw[:40]) if len(raw) <= 40 else hi + 1
    if not lo <= value <= hi:
        raise ValueError(f"{what} {raw[:40]} is out of range ({lo} to {hi})")
    return value


@dataclass(slots=True)
class Revision:
    """One ``<revision>`` of a page: its id, timestamp, text, and what was wrong with it."""

    id: int | None = None
    timestamp: str | None = None
    text: str = ""
    problems: tuple[str, ...] = ()

    @classmethod
    def of(cls, elem: etree._Element) -> Revision:
        rev = cls()
        problems = []
        for child in elem:
            name = _local(child.tag)
            if name == "id":
                try:
                    rev.id = _int_field(child.text, "revision <id>", 0, MAX_ID)
                except ValueError as exc:
                    problems.append(str(exc))
            elif name == "timestamp":
                rev.timestamp = (child.text or "").strip() or None
            elif name == "text":
                rev.text = child.text or ""
        rev.problems = tuple(problems)
        return rev

    def newer_than(self, other: Revision | None) -> bool:
        """Whether this revision replaces ``other`` as a page's newest: the later timestamp
        (ISO 8601 in UTC, so strings compare as times), then the higher id; without either,
        the one read later."""
        if other is None:
            return True
        mine = (self.timestamp or "", self.id or 0)
        theirs = (other.timestamp or "", other.id or 0)
        return mine >= theirs


def page_from_element(elem: etree._Element, where: str = "",
                      newest: Revision | None = None, skipped: int = 0) -> Page:
    """Build a :class:`Page` from a ``<page>`` element and its newest revision (by
    timestamp, not its place in the file: a history export may list them newest first).

    Args:
        newest: The newest revision where the reader kept it apart (a streamed history dump
            drops each revision as it is read), compared with any still in ``elem``.
        skipped: Older revisions the reader already dropped.

    A field that is not what the export schema says (a non-integer ``<id>``, ``<ns>`` or
    revision id, an id out of range) does not raise: the page comes back with ``problem`` set,
    naming the field and ``where`` (its position), so that the run skips and reports it.
    """
    title, ns, pid, redirect = "", 0, 0, None
    problems: list[str] = []
    for child in elem:
        name = _local(child.tag)
        try:
            if name == "title":
                title = child.text or ""
            elif name == "ns":
                ns = _int_field(child.text, "<ns>", -(1 << 31), (1 << 31) - 1)
            elif name == "id":
                pid = _int_field(child.text, "page <id>", 0, MAX_ID)
            elif name == "redirect":
                redirect = child.get("title") or ""
            elif name == "revision":
                rev = Revision.of(child)
                if newest is not None:
                    skipped += 1
                if rev.newer_than(newest):
                    newest = rev
        except ValueError as exc:
            problems.append(str(exc))
    rev_id, ts, text = (newest.id, newest.timestamp, newest.text) if newest else (None, None, "")
    if newest is not None:
        problems += newest.problems
    if not title.strip():
        problems.append("empty <title>")
    problem = None
    if problems:
        line = getattr(elem, "sourceline", None)
        at = ", ".join(x for x in (where, f"line {line}" if line else "") if x)
        problem = "; ".join(problems) + (f" (at {at} of the XML)" if at else "")
    return Page(id=pid, ns=ns, title=title, text=text, revision_id=rev_id, timestamp=ts,
                redirect=redirect, problem=problem, revisions_skipped=skipped)


class DumpReader:
    """Streams the pages of a dump file.

    Example:
        >>> reader = DumpReader("data/enwiki-2016-excerpt.xml.bz2")
        >>> reader.site.dbname
        'enwiki'
        >>> next(iter(reader)).title
        'AccessibleComputing'

    Attributes:
        site: The dump's siteinfo (read on construction).
        pages_read: Pages yielded so far.
        last_title: Title of the last page yielded.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        self._raw = open_raw(path)
        self._events = etree.iterparse(self._raw, events=("start", "end"), huge_tree=True,
                                       remove_blank_text=False, resolve_entities=False)
        self.pages_read = 0
        self.last_title: str | None = None
        self._first_page: Page | None = None
        self._done = False
        self.site = self._read_header()

    @property
    def compressed_pos(self) -> int:
        """Bytes of the (compressed) file consumed so far."""
        return self._raw.raw.compressed_pos  # type: ignore[attr-defined]

    @property
    def size(self) -> int | None:
        """The file's size in bytes; None for a pipe."""
        size = os.path.getsize(self.path)
        return size if size or os.path.isfile(self.path) else None

    def _error(self, exc: Exception) -> DumpError:
        if isinstance(exc, DumpError):
            return exc
        msg = str(exc)
        if isinstance(exc, etree.XMLSyntaxError):
            msg = f"broken XML: {exc.msg} (decompressed line {exc.lineno}, column {exc.offset})"
        return DumpError(self.path, msg + f"; {self.pages_read} pages were read",
                         offset=self.compressed_pos, last_page=self.last_title)

    def _next_event(self) -> tuple[str, etree._Element] | None:
        try:
            return next(self._events)
        except StopIteration:
            return None
        except (etree.XMLSyntaxError, DumpError, OSError, EOFError) as exc:
            raise self._error(exc) from exc

    def _read_header(self) -> SiteInfo:
        lang = None
        depth = 0
        while True:
            ev = self._next_event()
            if ev is None:
                raise DumpError(self.path, "no <mediawiki> root element; not a MediaWiki dump")
            kind, elem = ev
            name = _local(elem.tag)
            if kind == "start":
                depth += 1
                if depth == 1:
                    if name != "mediawiki":
                        raise DumpError(self.path, f"root element is <{name}>, expected "
                                        "<mediawiki> (a MediaWiki XML export)")
                    lang = elem.get("{http://www.w3.org/XML/1998/namespace}lang")
                continue
            depth -= 1
            if name == "siteinfo":
                site = parse_siteinfo(elem, lang)
                elem.clear()
                return site
            if name == "page":
                self._first_page = self._take(elem)
                return SiteInfo(lang=lang or "en")
            if depth == 0:
                self._done = True
                return SiteInfo(lang=lang or "en")

    def _take(self, elem: etree._Element, newest: Revision | None = None,
              skipped: int = 0) -> Page:
        page = page_from_element(elem, newest=newest, skipped=skipped)
        elem.clear()
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]
        return page

    def __iter__(self) -> Iterator[Page]:
        if self._first_page is not None:
            page, self._first_page = self._first_page, None
            self.pages_read += 1
            self.last_title = page.title
            yield page
        if self._done:
            return
        ended = False
        # A page's revisions are read one at a time and only the newest is kept, so a
        # history dump (thousands of revisions a page) takes the memory of two of them.
        newest: Revision | None = None
        skipped = 0
        while True:
            ev = self._next_event()
            if ev is None:
                break
            kind, elem = ev
            if kind != "end":
                continue
            name = _local(elem.tag)
            if name == "revision":
                parent = elem.getparent()
                if parent is not None and _local(parent.tag) == "page":
                    rev = Revision.of(elem)
                    if newest is not None:
                        skipped += 1
                    if rev.newer_than(newest):
                        newest = rev
                    elem.clear()
                    parent.remove(elem)
            elif name == "page":
                page = self._take(elem, newest, skipped)
                newest, skipped = None, 0
                self.pages_read += 1
                self.last_title = page.title
                yield page
            elif name == "mediawiki":
                ended = True
        if not ended:
            raise DumpError(self.path, f"dump ends before </mediawiki>; {self.pages_read} pages "
                            "were read", offset=self.compressed_pos, last_page=self.last_title)
        self.close()

    def close(self) -> None:
        self._raw.close()
