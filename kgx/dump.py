"""Reading MediaWiki XML dumps as a stream of pages.

Takes a path (``.xml``, ``.xml.bz2``, ``.xml.gz``, or Wikimedia's multistream ``.xml.bz2`` with
its ``-index.txt.bz2``); gives the dump's :class:`~kgx.records.SiteInfo` and an iterator of
:class:`~kgx.records.Page`. Memory stays bounded: each ``<page>`` element is dropped once read.

Integrity is checked, never assumed. Python's ``bz2`` module takes a corrupted stream after the
first for trailing garbage and reports a normal end of file; kgx decompresses stream by stream
itself and raises :class:`DumpError` with the byte offset instead. XML that stops mid-document
raises with the last page read.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lxml import etree

from kgx.records import Namespace, Page, SiteInfo

FORMATS = ".xml, .xml.bz2 (single- or multistream), .xml.gz"
_CHUNK = 1 << 20


class DumpError(Exception):
    """A dump that cannot be read: names the file, the position reached and what was expected."""

    def __init__(self, path: str | os.PathLike[str], message: str, *, offset: int | None = None,
                 last_page: str | None = None) -> None:
        self.path = str(path)
        self.offset = offset
        self.last_page = last_page
        where = f" at byte {offset:,}" if offset is not None else ""
        after = f" (after page {last_page!r})" if last_page else ""
        super().__init__(f"{self.path}{where}{after}: {message}")


# --------------------------------------------------------------------------- raw streams


class _Counted(io.RawIOBase):
    """A binary file read through a count of the bytes taken from it: the position in a
    stream that cannot tell its own (a pipe: ``bzcat dump | kgx extract /dev/stdin``)."""

    def __init__(self, fp: BinaryIO, consumed: int = 0) -> None:
        self._fp = fp
        self.pos = consumed

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._fp.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._fp.read(size)
        self.pos += len(data)
        return data

    def close(self) -> None:
        self._fp.close()
        super().close()


def _open_source(path: str | os.PathLike[str]) -> tuple[BinaryIO, bytes]:
    """The file opened once, and its first bytes (peeked, not consumed: a pipe cannot be
    opened a second time)."""
    fp = open(path, "rb", buffering=_CHUNK)  # noqa: SIM115 - owned by the caller
    try:
        head = fp.peek(8)[:8]
    except OSError:
        fp.close()
        raise
    return fp, head


class Bz2Reader(io.RawIOBase):
    """Decompresses a (multi-stream) bz2 file and fails loudly on any corruption.

    Unlike :class:`bz2.BZ2File`, a stream that does not start with a valid bz2 header after a
    finished one is an error, not the end of the file, and a file that ends inside a stream is an
    error too. ``compressed_pos`` tells how far into the file reading has come.
    """

    def __init__(self, path: str | os.PathLike[str], fp: BinaryIO | None = None) -> None:
        self._path = path
        self._fp = _Counted(fp if fp is not None else open(path, "rb"))  # noqa: SIM115
        self._dec = bz2.BZ2Decompressor()
        self._stream_start = 0
        self._pending = b""
        self._eof = False

    @property
    def compressed_pos(self) -> int:
        return self._fp.pos

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        return n

    def _read(self, size: int) -> bytes:
        while not self._eof:
            if self._pending:
                out, self._pending = self._pending[:size], self._pending[size:]
                return out
            if self._dec.eof:
                rest = self._dec.unused_data
                self._stream_start = self._fp.pos - len(rest)
                if not rest:
                    rest = self._fp.read(_CHUNK)
                    self._stream_start = self._fp.pos - len(rest)
                if not rest:
                    self._eof = True
                    break
                self._dec = bz2.BZ2Decompressor()
                if not rest.startswith(b"BZh"):
                    raise DumpError(self._path, "data after a complete bz2 stream is not a bz2 "
                                    "stream (corrupted or appended garbage)",
                                    offset=self._stream_start)
                chunk = rest
            else:
                chunk = self._fp.read(_CHUNK) if self._dec.needs_input else b""
                if not chunk and self._dec.needs_input:
                    raise DumpError(self._path, "file ends inside a bz2 stream (truncated)",
                                    offset=self._fp.pos)
            try:
                self._pending = self._dec.decompress(chunk, max_length=_CHUNK)
            except OSError as exc:
                raise DumpError(self._path, f"corrupted bz2 stream ({exc})",
                                offset=self._stream_start) from exc
        return b""

    def close(self) -> None:
        self._fp.close()
        super().close()


class _CountingReader(io.RawIOBase):
    """Wraps a decompressed (or plain) stream and tells how many bytes of the file under it
    were read (``compressed_pos``)."""

    def __init__(self, raw: BinaryIO, fp: _Counted, path: str) -> None:
        self._raw = raw
        self._fp = fp
        self._path = path

    @property
    def compressed_pos(self) -> int:
        return self._fp.pos

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        try:
            data = self._raw.read(len(buffer))
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise DumpError(self._path, f"corrupted or truncated gzip data ({exc})",
                            offset=self._fp.pos) from exc
        n = len(data)
        buffer[:n] = data
        return n

    def close(self) -> None:
        self._raw.close()
        self._fp.close()
        super().close()


def _format_of(path: str | os.PathLike[str], head: bytes) -> str:
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"<") or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "xml"
    if not head:
        raise DumpError(path, f"file is empty; expected a MediaWiki dump ({FORMATS})")
    raise DumpError(path, f"unknown format (starts with {head[:4]!r}); known formats: {FORMATS}")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Return ``"bz2"``, ``"gzip"`` or ``"xml"`` from the file's first bytes; ``"stream"``
    for a pipe or device (``/dev/stdin``), whose bytes are read only once, when it is opened.

    Raises:
        DumpError: The file is missing, unreadable or of an unknown format.
    """
    p = Path(path)
    if not p.exists():
        raise DumpError(path, f"no such file; expected a MediaWiki dump ({FORMATS})")
    if p.is_dir():
        raise DumpError(path, f"is a directory; expected a MediaWiki dump file ({FORMATS})")
    if not p.is_file():
        return "stream"
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise DumpError(path, f"cannot be read ({exc.strerror or exc})") from exc
    return _format_of(path, head)


def open_raw(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open a dump file as a decompressed binary stream with a ``compressed_pos`` property.
    The file is opened once, so a pipe works as well as a file."""
    if not Path(path).exists() or Path(path).is_dir():
        detect_format(path)  # raises, saying what was expected
    try:
        fp, head = _open_source(path)
    except OSError as exc:
        raise DumpError(path, f"cannot be read ({exc.strerror or exc})") from exc
    fmt = _format_of(path, head)
    if fmt == "bz2":
        return io.BufferedReader(Bz2Reader(path, fp), buffer_size=_CHUNK)
    counted = _Counted(fp)
    if fmt == "gzip":
        return io.BufferedReader(_CountingReader(gzip.GzipFile(fileobj=counted), counted,
                                                 str(path)), buffer_size=_CHUNK)
    return io.BufferedReader(_CountingReader(counted, counted, str(path)), buffer_size=_CHUNK)


def check_dump(path: str | os.PathLike[str]) -> None:
    """Refuse, before anything is written, what is not a MediaWiki dump: by its first bytes,
    and (for a file; a pipe is read once, by the run) by its root element and siteinfo.

    Raises:
        DumpError: Naming the file and what was expected.
    """
    if detect_format(path) == "stream":
        return
    DumpReader(path).close()


# --------------------------------------------------------------------------- XML


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


# --------------------------------------------------------------------------- multistream


@dataclass(frozen=True, slots=True)
class Stream:
    """One bz2 stream of a multistream dump, as its index describes it."""

    index: int
    offset: int
    end: int | None  # offset of the next stream, None for the last indexed stream
    page_ids: tuple[int, ...]
    titles: tuple[str, ...]


def find_index(path: str | os.PathLike[str]) -> Path | None:
    """The multistream index next to ``path`` (``X-multistream-index.txt[.bz2]``), if any."""
    p = Path(path)
    name = p.name
    if "multistream" not in name or not name.endswith(".xml.bz2"):
        return None
    stem = name[: -len(".xml.bz2")]
    for cand in (stem + "-index.txt.bz2", stem + "-index.txt"):
        q = p.with_name(cand)
        if q.exists():
            return q
    return None


def read_index(path: str | os.PathLike[str]) -> list[Stream]:
    """Read a multistream index (``offset:page_id:title`` per line) into streams.

    Raises:
        DumpError: A line is not of the form ``offset:page_id:title``.
    """
    opener = bz2.open if str(path).endswith(".bz2") else open
    groups: dict[int, tuple[list[int], list[str]]] = {}
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line:
                    continue
                parts = line.split(":", 2)
                if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
                    raise DumpError(path, f"line {lineno}: expected 'offset:page_id:title', "
                                    f"got {line[:80]!r}")
                ids, titles = groups.setdefault(int(parts[0]), ([], []))
                ids.append(int(parts[1]))
                titles.append(parts[2])
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DumpError(path, f"unreadable multistream index ({exc})") from exc
    offsets = sorted(groups)
    streams = []
    for i, off in enumerate(offsets):
        end = offsets[i + 1] if i + 1 < len(offsets) else None
        ids, titles = groups[off]
        streams.append(Stream(i, off, end, tuple(ids), tuple(titles)))
    return streams


def read_stream_bytes(path: str | os.PathLike[str], offset: int, end: int | None) -> bytes:
    """Decompress the single bz2 stream that starts at ``offset``.

    Raises:
        DumpError: The stream is corrupted or truncated.
    """
    dec = bz2.BZ2Decompressor()
    out: list[bytes] = []
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = None if end is None else end - offset
        while not dec.eof:
            n = _CHUNK if remaining is None else min(_CHUNK, remaining)
            chunk = f.read(n) if n > 0 else b""
            if remaining is not None:
                remaining -= len(chunk)
            if not chunk:
                raise DumpError(path, "bz2 stream is truncated", offset=offset)
            try:
                out.append(dec.decompress(chunk))
            except OSError as exc:
                raise DumpError(path, f"corrupted bz2 stream ({exc})", offset=offset) from exc
    return b"".join(out)


def read_multistream_site(path: str | os.PathLike[str], first_offset: int) -> SiteInfo:
    """Read the siteinfo from the header stream ``[0, first_offset)`` of a multistream dump."""
    data = read_stream_bytes(path, 0, first_offset)
    text = data + b"</mediawiki>"
    try:
        root = etree.fromstring(text, etree.XMLParser(huge_tree=True, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        raise DumpError(path, f"header stream is not a <mediawiki> header: {exc}",
                        offset=0) from exc
    lang = root.get("{http://www.w3.org/XML/1998/namespace}lang")
    for child in root:
        if _local(child.tag) == "siteinfo":
            return parse_siteinfo(child, lang)
    return SiteInfo(lang=lang or "en")


def iter_stream_pages(path: str | os.PathLike[str], stream: Stream) -> list[Page]:
    """Decompress and parse one stream of a multistream dump into pages.

    Raises:
        DumpError: The stream is corrupted, or its XML is broken.
    """
    data = read_stream_bytes(path, stream.offset, stream.end)
    # A stream holds bare <page> elements; the last one may also hold </mediawiki>.
    data = data.replace(b"</mediawiki>", b"")
    try:
        root = etree.fromstring(b"<pages>" + data + b"</pages>",
                                etree.XMLParser(huge_tree=True, resolve_entities=False))
    except etree.XMLSyntaxError as exc:
        raise DumpError(path, f"broken XML in stream: {exc}", offset=stream.offset) from exc
    where = f"the bz2 stream at byte {stream.offset:,}"
    return [page_from_element(e, where) for e in root if _local(e.tag) == "page"]
