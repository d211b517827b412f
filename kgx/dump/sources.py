"""Where a dump's bytes come from: a file (plain, bz2, multistream bz2, gz) or a pipe, with the
byte offsets read so far, and a clear error for anything else.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Any, BinaryIO

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


def _open_source(path: str | os.PathLike[str]) -> tuple[io.BufferedReader, bytes]:
    """The file opened once, and its first bytes (peeked, not consumed: a pipe cannot be
    opened a second time)."""
    fp: Any = open(path, "rb", buffering=_CHUNK)  # noqa: SIM115 - owned by the caller
    try:
        head = fp.peek(8)[:8]
    except OSError:
        fp.close()
        raise
    return fp, head


class _CompressedReader(io.RawIOBase):
    """A reader of decompressed bytes that knows its position in the compressed file."""

    _fp: _Counted

    @property
    def compressed_pos(self) -> int:
        return self._fp.pos

    def readable(self) -> bool:
        return True


class Bz2Reader(_CompressedReader):
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


class _CountingReader(_CompressedReader):
    """Wraps a decompressed (or plain) stream and tells how many bytes of the file under it
    were read (``compressed_pos``)."""

    def __init__(self, raw: Any, fp: _Counted, path: str) -> None:
        self._raw = raw
        self._fp = fp
        self._path = path

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


def compression(head: bytes) -> str | None:
    """``"bz2"`` or ``"gzip"`` from a file's first bytes, else None (not compressed)."""
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


def _format_of(path: str | os.PathLike[str], head: bytes) -> str:
    packed = compression(head)
    if packed is not None:
        return packed
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
