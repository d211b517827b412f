"""Wikimedia's multistream layout: the index of streams, one stream's bytes and pages, and the
siteinfo of the first stream.
"""

from __future__ import annotations

import bz2
import os
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from kgx.dump.reader import _local, page_from_element, parse_siteinfo
from kgx.dump.sources import _CHUNK, DumpError
from kgx.records import Page, SiteInfo


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
