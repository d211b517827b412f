"""Wikimedia's multistream layout, written: a dump repacked into bz2 streams of N pages.

Takes a dump (any format :mod:`kgx.dump` reads) or a stream of page XML; gives
``NAME-multistream.xml.bz2`` and ``NAME-multistream-index.txt.bz2`` as Wikimedia publishes
them: a header stream (everything before the first ``<page>``), streams of ``pages_per_stream``
pages, a footer stream (``</mediawiki>``), and an index of ``offset:page_id:title`` lines. The
streams decompress to the original bytes, so nothing about the pages changes; what changes is
that ``kgx extract`` can hand each worker its own streams instead of reading the file on one
core. Memory holds one stream's pages at a time.
"""

from __future__ import annotations

import bz2
import html
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from kgx.dump.sources import DumpError, detect_format, open_raw

_TITLE = re.compile(r"<title>(.*?)</title>", re.S)
_ID = re.compile(r"<id>\s*([^<]*?)\s*</id>")


def index_path(dump: str | os.PathLike[str]) -> Path:
    """Where the index of a multistream dump lives: ``X-multistream-index.txt.bz2``."""
    p = Path(dump)
    return p.with_name(p.name[: -len(".xml.bz2")] + "-index.txt.bz2")


def iter_page_xml(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Cut a dump's text into ``("header", xml)``, ``("page", xml)``... ``("footer", xml)``.

    A page runs from the line that opens ``<page>`` to the line that closes ``</page>``, as
    MediaWiki writes them (one element per line); the text between pages goes with the footer.
    """
    buf: list[str] = []
    kind = "header"
    for line in lines:
        stripped = line.lstrip()
        if kind != "page" and stripped.startswith("<page>"):
            if buf:
                yield (kind, "".join(buf))
            buf, kind = [], "page"
        buf.append(line)
        if kind == "page" and stripped.startswith("</page>"):
            yield ("page", "".join(buf))
            buf, kind = [], "between"
    yield ("footer", "".join(buf))


def page_key(page_xml: str) -> tuple[int, str]:
    """The ``(page id, title)`` an index line names, read from a page's XML."""
    m_title, m_id = _TITLE.search(page_xml), _ID.search(page_xml)
    if m_title is None or m_id is None or not m_id.group(1).isdigit():
        raise ValueError("a <page> without a <title> or an integer <id>")
    return int(m_id.group(1)), html.unescape(m_title.group(1))


def write_multistream(parts: Iterable[tuple[str, str]], dump: str | os.PathLike[str],
                      pages_per_stream: int = 100) -> tuple[Path, int]:
    """Write ``(kind, xml)`` parts (see :func:`iter_page_xml`) as a multistream dump + index.

    Files are written under temporary names and renamed when complete.

    Returns:
        The index's path and the number of pages written.
    """
    dump = Path(dump)
    if not dump.name.endswith("-multistream.xml.bz2"):
        raise ValueError(f"{dump}: a multistream dump's name ends in -multistream.xml.bz2")
    idx = index_path(dump)
    tmp, idx_tmp = dump.with_name(dump.name + ".tmp"), idx.with_name(idx.name + ".tmp")
    n = 0
    batch: list[str] = []
    keys: list[tuple[int, str]] = []
    with open(tmp, "wb") as f, bz2.open(idx_tmp, "wt", encoding="utf-8") as ix:
        def flush() -> None:
            off = f.tell()
            f.write(bz2.compress("".join(batch).encode("utf-8")))
            ix.writelines(f"{off}:{pid}:{title}\n" for pid, title in keys)
            batch.clear()
            keys.clear()

        for kind, xml in parts:
            if kind == "page":
                batch.append(xml)
                keys.append(page_key(xml))
                n += 1
                if len(batch) >= pages_per_stream:
                    flush()
                continue
            if batch:
                flush()
            if xml:
                if kind == "between":
                    batch.append(xml)  # text between pages stays where it was
                else:
                    f.write(bz2.compress(xml.encode("utf-8")))
        if batch:
            flush()
    os.replace(tmp, dump)
    os.replace(idx_tmp, idx)
    return idx, n


def repack(src: str | os.PathLike[str], dump: str | os.PathLike[str],
           pages_per_stream: int = 100) -> tuple[Path, int]:
    """Repack any dump kgx reads into the multistream layout (see the module docstring).

    Raises:
        ValueError: ``dump`` is not named ``...-multistream.xml.bz2``.
        DumpError: ``src`` cannot be read, or holds a page without a title or integer id.
    """
    import io

    if not Path(dump).name.endswith("-multistream.xml.bz2"):
        raise ValueError(f"{dump}: a multistream dump's name ends in -multistream.xml.bz2")
    detect_format(src)
    raw = open_raw(src)
    text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    try:
        return write_multistream(iter_page_xml(text), dump, pages_per_stream)
    except (ValueError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise DumpError(src, f"cannot repack: {exc}") from exc
    finally:
        text.close()
