"""The pieces of wikitext below a page: tags cut, headings, link labels, template names, and the
text builder with its offsets.
"""

from __future__ import annotations

import html
import re

from kgx.records import DateValue

MAX_DEPTH = 100  # bracket nesting beyond this is text: real pages stay far below it


_MATCH_LOOKBACK = 32  # how far down the stack a closer looks for its opener


_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)


_HIDDEN_TAGS = ("ref", "references", "gallery", "math", "chem", "ce", "score", "timeline",
                "graph", "imagemap", "syntaxhighlight", "source", "templatedata", "mapframe",
                "maplink", "hiero", "includeonly", "categorytree", "inputbox", "charinsert",
                "templatestyles", "indicator", "section", "ref-group", "dynamicpagelist")


_RAW_TAGS = ("nowiki", "pre", "code", "tt")


_KEEP_TAGS = ("noinclude", "onlyinclude", "poem", "blockquote")


_TAG = re.compile(r"<(/?)(" + "|".join(_HIDDEN_TAGS + _RAW_TAGS + _KEEP_TAGS)
                  + r")\b[^<>]*?(/?)>", re.I)


_BR = re.compile(r"<br\s*/?>|</?p>|</?li>", re.I)


_HTML_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")


_MAGIC = re.compile(r"__[A-Z]{3,}__")


_TOKEN = re.compile(r"\{\{|\}\}|\[\[|\]\]|^[ \t:]*\{\||^[ \t]*\|\}(?!\})|\|", re.M)


# Markup characters inside <nowiki> and <pre> are swapped for Unicode noncharacters (U+FDD0...,
# which Unicode reserves for a program's internal use), so that no later step sees them as
# markup, and swapped back at the end (both keep offsets). Noncharacters already in a page are
# replaced by U+FFFD first: private-use characters, once used here, collided with real text.
_PROTECTED = "{}[]|'<=*#:"


_PROTECT = str.maketrans({c: chr(0xFDD0 + i) for i, c in enumerate(_PROTECTED)})


_UNPROTECT = str.maketrans({chr(0xFDD0 + i): c for i, c in enumerate(_PROTECTED)})


_ANY_PROTECTED = re.compile("[\ufdd0-\ufdda]")


_NONCHARACTER = re.compile("[\ufdd0-\ufdef]")


# The URL and the label are split by one whitespace character: with ``\s*`` before a label that
# may itself start with spaces, "[http://x" and 40,000 spaces took 18 s (every split was tried).
_EXTLINK = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\]\[]*(?:\s([^\]\[]*))?\]")


_EXTLINK_OPEN = re.compile(r"\[(?:https?:|ftp:|//)[^\s\]]*\s?")


_QUOTES = re.compile(r"('{2,}|\n)")


_TRAIL = re.compile(r"[^\W\d_]+")


_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")


_NAME_SPACES = re.compile(r"[\s_]+")


# token kinds
_T_OPEN, _T_CLOSE, _L_OPEN, _L_CLOSE, _B_OPEN, _B_CLOSE, _PIPE = range(7)


_KIND = {"{{": _T_OPEN, "}}": _T_CLOSE, "[[": _L_OPEN, "]]": _L_CLOSE, "|": _PIPE}


_CLOSER_OF = {_T_CLOSE: _T_OPEN, _L_CLOSE: _L_OPEN, _B_CLOSE: _B_OPEN}


def _cut_tags(s: str) -> str:
    """Cut hidden tag blocks, protect raw ones, unwrap kept ones; one linear pass."""
    if "<" not in s:
        return s
    out: list[str] = []
    pos = 0
    open_: tuple[str, int, int] | None = None  # name, start of open tag, end of open tag
    for m in _TAG.finditer(s):
        closing, name, selfclosing = m.group(1), m.group(2).lower(), m.group(3)
        if open_ is None:
            if closing or selfclosing:
                out.append(s[pos:m.start()])  # a stray close or an empty element: drop the tag
                pos = m.end()
            else:
                open_ = (name, m.start(), m.end())
            continue
        if name != open_[0]:
            continue  # other tags inside an open block go with it
        if closing:
            out.append(s[pos:open_[1]])
            inner = s[open_[2]:m.start()]
            if open_[0] in _RAW_TAGS:
                out.append(html.unescape(inner).translate(_PROTECT))
            elif open_[0] in _KEEP_TAGS:
                out.append(_cut_tags(inner))
            pos = m.end()
            open_ = None
        elif not selfclosing:
            # A second opener before any close: the first one was never closed.
            out.append(s[pos:open_[1]])
            pos = open_[2]
            open_ = (name, m.start(), m.end())
    if open_ is not None:
        # Never closed: drop the tag alone; what follows is scanned as ordinary text.
        out.append(s[pos:open_[1]])
        out.append(_cut_tags(s[open_[2]:]))
        return "".join(out)
    out.append(s[pos:])
    return "".join(out)


def preprocess(wikitext: str) -> str:
    """Steps 1 of the module docstring: comments, hidden tags, HTML tags, magic words."""
    if _NONCHARACTER.search(wikitext):
        wikitext = _NONCHARACTER.sub("\ufffd", wikitext)
    s = _COMMENT.sub("", wikitext) if "<!--" in wikitext else wikitext
    s = _cut_tags(s)
    if "<" in s:
        s = _BR.sub("\n", s)
        s = _HTML_TAG.sub("", s)
    if "__" in s:
        s = _MAGIC.sub("", s)
    return s


def _extlink_label(m: re.Match[str]) -> str:
    return (m.group(1) or "").lstrip()


def parse_heading(line: str) -> tuple[int, str] | None:
    """``(level, title)`` of a stripped line such as ``== History ==``, or None.

    The level is the smaller of the runs of ``=`` on either side (at most 6), as MediaWiki
    reads it; what is left over belongs to the title. Linear: counting, not backtracking.

    >>> parse_heading("=== A ==")
    (2, '= A')
    >>> parse_heading("==") is None
    True
    """
    lead = len(line) - len(line.lstrip("="))
    trail = len(line) - len(line.rstrip("="))
    level = min(lead, trail, 6, (len(line) - 1) // 2)
    if level < 1:
        return None
    title = line[level:len(line) - level].strip()
    return (level, title) if title else None


def pipe_trick(target: str) -> str:
    """The text MediaWiki's pipe trick shows for ``[[target|]]``.

    The namespace, a trailing parenthesis and anything after the first comma go:
    ``Foo (bar)`` and ``Foo, Bar`` both show ``Foo``.

    >>> pipe_trick("Help:Foo (bar)"), pipe_trick("Paris, Texas"), pipe_trick("A (b) c")
    ('Foo', 'Paris', 'A (b) c')
    """
    t = target.split(":", 1)[-1].strip()
    if t.endswith(")") and "(" in t:
        t = t[: t.index("(")]
    if "," in t:
        t = t[: t.index(",")]
    return t.strip()


def normalize_template_name(raw: str) -> str:
    """Lower-cased template name without ``Template:`` prefix, spaces folded."""
    name = _NAME_SPACES.sub(" ", raw.translate(_UNPROTECT)).strip().lower()
    if name.startswith("template:"):
        name = name[9:].strip()
    elif name.startswith(("subst:", "safesubst:")):
        name = name.split(":", 1)[1].strip()
    return name


class _Builder:
    """Collects rendered text with link spans, bold spans and dates."""

    __slots__ = ("parts", "pos", "links", "bold", "bold_start", "dates")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.links: list[tuple[int, int, str]] = []
        self.bold: list[tuple[int, int]] = []
        self.bold_start: int | None = None
        self.dates: list[DateValue] = []

    def put(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.pos += len(text)

    def text(self, s: str) -> None:
        if not s:
            return
        if "[" in s:
            s = _EXTLINK.sub(_extlink_label, s)
            if "[" in s:
                s = _EXTLINK_OPEN.sub("", s)
        if "'" not in s and "\n" not in s:
            self.put(html.unescape(s) if "&" in s else s)
            return
        for part in _QUOTES.split(s):
            if not part:
                continue
            if part == "\n":
                if self.bold_start is not None:
                    self.bold.append((self.bold_start, self.pos))
                    self.bold_start = None
                self.put(part)
            elif part[0] == "'" and len(part) >= 2 and not part.strip("'"):
                n = len(part)
                if n == 4:
                    self.put("'")
                elif n > 5:
                    self.put("'" * (n - 5))
                if n >= 3 and n != 2:
                    if self.bold_start is None:
                        self.bold_start = self.pos
                    else:
                        self.bold.append((self.bold_start, self.pos))
                        self.bold_start = None
            else:
                self.put(html.unescape(part) if "&" in part else part)

    def result(self) -> str:
        return "".join(self.parts)
