"""What a rendered page keeps: the debris of removed templates and markup cut out of its lines."""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING

from kgx.records import DateValue, Link, Section
from kgx.text.markup import _UNPROTECT, parse_heading

if TYPE_CHECKING:
    from kgx.text.markup import _Builder


_NBSP = ("\u00a0", "\u202f", "\u2007")


_LINE_PREFIX = re.compile(r"[*#:;]+\s*|----+\s*")


_SPACE_RUN = re.compile(r"[ \t\u00a0]{2,}")


_PARENTHETICAL = re.compile(r"\(([^()\n]*)\)")


_DEBRIS_LEAD = re.compile(r"[\s;,]*")


_DEBRIS_TRAIL = re.compile(r"[\s;,]*\Z")


_SEPARATOR_RUN = re.compile(r"[;,](?:\s*[;,])+")


_OPEN_DEBRIS = re.compile(r"\(\s*[;,][\s;,]*")


def _debris(body: str) -> list[tuple[int, int]]:
    """Ranges of a line that removed templates left as debris, to drop: a parenthetical of
    nothing but separators and spaces (with the space before it); the separators and spaces
    a parenthetical opens or closes with (``(; born 1905`` -> ``(born 1905``), and the
    separators it repeats (``(a, , b)``)."""
    out: list[tuple[int, int]] = []
    for m in _PARENTHETICAL.finditer(body):
        inner, a, b = m.group(1), m.start(1), m.end(1)
        if not inner.strip(" \t;,"):
            start = m.start()
            while start > 0 and body[start - 1] == " ":
                start -= 1
            out.append((start, m.end()))
            continue
        lead = _DEBRIS_LEAD.match(inner)
        if lead and lead.end():
            out.append((a, a + lead.end()))
        trail = _DEBRIS_TRAIL.search(inner)
        if trail and trail.start() < len(inner):
            out.append((a + trail.start(), b))
        for r in _SEPARATOR_RUN.finditer(inner, lead.end() if lead else 0):
            if trail is None or r.end() <= trail.start():
                out.append((a + r.start() + 1, a + r.end()))
    # an opening whose close is beyond this piece of text (a nested parenthetical)
    for m in _OPEN_DEBRIS.finditer(body):
        out.append((m.start() + 1, m.end()))
    return out


def _kept_pieces(body: str) -> list[tuple[int, int]]:
    """The ranges of a line kept: everything but :func:`_debris` and all but the first
    character of every run of spaces."""
    drop = bytearray(len(body))
    for a, b in _debris(body):
        drop[a:b] = b"\x01" * (b - a)
    pieces: list[tuple[int, int]] = []
    start = None
    prev_space = False
    for i, ch in enumerate(body):
        space = ch in " \t"
        skip = drop[i] or (space and prev_space)
        if not drop[i]:
            prev_space = space
        if skip:
            if start is not None:
                pieces.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        pieces.append((start, len(body)))
    return pieces


_FIRST_HEADING = re.compile(r"^[ \t]*==?[^=\n].*?=[ \t]*$", re.M)


def _clean_lines(b: _Builder, sections: list[Section] | None, protected: bool
                 ) -> tuple[str, tuple[Link, ...], list[DateValue]]:
    """Step 4: headings out, list markers and extra spaces out, spans mapped to new offsets."""
    # Protected characters (from <nowiki> and <pre>) stay protected through the line pass, so
    # that "<nowiki>* foo</nowiki>" keeps its '*' and "<pre>= h =</pre>" is no heading; the
    # mapping is one character to one, so offsets hold.
    raw = b.result()
    for sp in _NBSP:
        if sp in raw:
            raw = raw.replace(sp, " ")
    old_starts: list[int] = []
    new_starts: list[int] = []
    lengths: list[int] = []
    out: list[str] = []
    npos = 0
    line_start = 0
    for line in raw.split("\n"):
        ls = line_start
        line_start += len(line) + 1
        stripped = line.strip()
        if not stripped:
            continue
        c = stripped[0]
        if c == "=" and stripped[-1] == "=":
            heading = parse_heading(stripped)
            if heading is not None:
                if sections is not None:
                    title = _SPACE_RUN.sub(" ", heading[1]).strip("= ")
                    sections.append(Section(title, heading[0], npos))
                continue
        if c in "|!" or stripped.startswith(("{|", "|}")):
            continue  # rows of a table whose brackets did not pair
        # keep [a, b) of this line, minus list markers and surrounding spaces
        a = len(line) - len(line.lstrip())
        m = _LINE_PREFIX.match(line, a)
        if m:
            a = m.end()
        e = len(line.rstrip())
        if a >= e:
            continue
        if out:
            out.append("\n")
            npos += 1
        # collapse runs of spaces, and the separators and empty parentheses that removed
        # templates leave ("Ayn Rand (; born ...", "Andorra (; , ), officially")
        body = line[a:e]
        pieces = _kept_pieces(body)
        for p0, p1 in pieces:
            if p1 > p0:
                old_starts.append(ls + a + p0)
                new_starts.append(npos)
                lengths.append(p1 - p0)
                out.append(body[p0:p1])
                npos += p1 - p0
    text = "".join(out)
    if protected:
        text = text.translate(_UNPROTECT)

    def fwd(o: int) -> int:
        k = bisect_right(old_starts, o) - 1
        if k >= 0 and o < old_starts[k] + lengths[k]:
            return new_starts[k] + o - old_starts[k]
        return new_starts[k + 1] if k + 1 < len(old_starts) else len(text)

    def back(o: int) -> int:  # maps an exclusive end
        k = bisect_right(old_starts, o - 1) - 1
        if k < 0:
            return 0
        if o - 1 < old_starts[k] + lengths[k]:
            return new_starts[k] + o - old_starts[k]
        return new_starts[k] + lengths[k]

    links = []
    for s0, e0, target in b.links:
        s1, e1 = fwd(s0), back(e0)
        while s1 < e1 and text[s1].isspace():
            s1 += 1
        while e1 > s1 and text[e1 - 1].isspace():
            e1 -= 1
        if e1 > s1 and "\n" not in text[s1:e1]:
            links.append(Link(s1, e1, target))
    if sections is not None:
        # bold spans are returned through the builder, mapped the same way
        b.bold = [(fwd(s0), back(e0)) for s0, e0 in b.bold]
    return text, tuple(links), b.dates
