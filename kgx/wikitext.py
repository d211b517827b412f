"""Wikitext to plain text with link spans, sections, lead, aliases, categories and infoboxes.

Takes a page's wikitext; gives a :class:`~kgx.records.Document`. The scanner is built for dumps:
every step is linear in the page size, so the pathological pages that make general parsers
quadratic (runs of unclosed ``{{``, ``[[``, ``<ref>``, ``<!--``, ``{|``) cost no more than any
other text. It parses only what kgx's outputs need:

1. Comments, and tags whose content is never visible text (``<ref>``, ``<math>``,
   ``<gallery>``...), are cut in one pass each; ``<nowiki>`` content is protected.
2. Brackets (``{{ }}``, ``[[ ]]``, ``{| |}``) and the pipes that split their arguments are
   tokenised once and paired with a bounded stack; an opener that is never closed is text, as in
   MediaWiki.
3. A renderer walks the paired tokens: links become anchor text plus a :class:`Link` span,
   inline templates render by rule (:mod:`kgx.templates`), infoboxes are kept as fields,
   tables, files, citations and navboxes render nothing.
4. A line pass removes headings (kept as :class:`Section` s), list markers and extra spaces
   while mapping every span to its final offset.
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

from kgx.records import DateValue, Document, Infobox, InfoboxField, Link, Page, Rendered, Section
from kgx.site import Site
from kgx.templates import DISAMBIGUATION, Arg, Call, handler_for

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
_NBSP = ("\u00a0", "\u202f", "\u2007")
# The URL and the label are split by one whitespace character: with ``\s*`` before a label that
# may itself start with spaces, "[http://x" and 40,000 spaces took 18 s (every split was tried).
_EXTLINK = re.compile(r"\[(?:https?:|ftp:|mailto:|//)[^\s\]\[]*(?:\s([^\]\[]*))?\]")
_EXTLINK_OPEN = re.compile(r"\[(?:https?:|ftp:|//)[^\s\]]*\s?")
_QUOTES = re.compile(r"('{2,}|\n)")
_TRAIL = re.compile(r"[^\W\d_]+")
_LINE_PREFIX = re.compile(r"[*#:;]+\s*|----+\s*")
_SPACE_RUN = re.compile(r"[ \t\u00a0]{2,}")
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


class _Renderer:
    """Renders one preprocessed page (steps 2 and 3 of the module docstring)."""

    def __init__(self, src: str, site: Site, infobox_names: frozenset[str]) -> None:
        self.src = src
        self.protected = _ANY_PROTECTED.search(src) is not None  # any <nowiki> content?
        self.site = site
        self.infobox_names = infobox_names
        self.templates: set[str] = set()
        self.categories: list[str] = []
        self.infoboxes: list[tuple[str, list[Arg], bool]] = []
        heading = _FIRST_HEADING.search(src)
        self.first_heading = heading.start() if heading else len(src)
        self.out = _Builder()
        pos: list[int] = []
        end: list[int] = []
        kind: list[int] = []
        for m in _TOKEN.finditer(src):
            t = m.group()
            k = _KIND.get(t)
            if k is None:
                k = _B_OPEN if t.endswith("{|") else _B_CLOSE
            pos.append(m.start())
            end.append(m.end())
            kind.append(k)
        self.tpos, self.tend, self.tkind = pos, end, kind
        self.match = [-1] * len(pos)
        self.pipes: dict[int, list[int]] = {}
        self._pair()

    def _pair(self) -> None:
        stack: list[int] = []
        kind, match, pipes = self.tkind, self.match, self.pipes
        for i, k in enumerate(kind):
            if k == _PIPE:
                if stack and kind[stack[-1]] != _B_OPEN:
                    pipes.setdefault(stack[-1], []).append(i)
                continue
            want = _CLOSER_OF.get(k)
            if want is None:  # an opener
                if len(stack) < MAX_DEPTH:
                    stack.append(i)
                continue
            for back in range(1, min(len(stack), _MATCH_LOOKBACK) + 1):
                if kind[stack[-back]] == want:
                    # Openers above the match were never closed: they become text, and the
                    # pipes they held split the matched node's arguments instead.
                    moved: list[int] = []
                    for _ in range(back - 1):
                        moved.extend(pipes.pop(stack.pop(), ()))
                    j = stack.pop()
                    if moved and want != _B_OPEN:
                        own = pipes.setdefault(j, [])
                        own.extend(moved)
                        own.sort()
                    match[j] = i
                    match[i] = j
                    break

    # ------------------------------------------------------------ Writer protocol

    def emit(self, text: str) -> None:
        self.out.text(text)

    def raw(self, arg: Arg) -> str:
        return self.src[arg.start:arg.end].translate(_UNPROTECT)

    def render_arg(self, arg: Arg) -> None:
        self.render(arg.start, arg.end)

    def add_date(self, date: DateValue) -> None:
        self.out.dates.append(date)

    # ------------------------------------------------------------ rendering

    def _first_token(self, start: int) -> int:
        return bisect_left(self.tpos, start)

    def render(self, start: int, end: int) -> None:
        """Render ``src[start:end]`` into the current builder."""
        src, tpos, tend, match = self.src, self.tpos, self.tend, self.match
        ti = self._first_token(start)
        pos = start
        n = len(tpos)
        while ti < n and tpos[ti] < end:
            j = match[ti]
            if j < ti or tend[j] > end:  # literal token, a closer, or a node leaving the range
                ti += 1
                continue
            self.out.text(src[pos:tpos[ti]])
            pos = self._node(ti, j)
            ti = self._first_token(pos)
        self.out.text(src[pos:end])

    def _node(self, i: int, j: int) -> int:
        k = self.tkind[i]
        if k == _T_OPEN:
            self._template(i, j)
        elif k == _L_OPEN:
            return self._link(i, j)
        return self.tend[j]  # tables render nothing

    def _args(self, i: int, j: int) -> tuple[str, list[Arg]]:
        src, tpos, tend = self.src, self.tpos, self.tend
        inner = [x for p in self.pipes.get(i, ()) for x in (tpos[p], tend[p])]
        bounds = [tend[i], *inner, tpos[j]]
        name_raw = src[bounds[0]:bounds[1]]
        args: list[Arg] = []
        n = 0
        for b in range(2, len(bounds) - 1, 2):
            a_start, a_end = bounds[b], bounds[b + 1]
            nxt = self._first_token(a_start)
            limit = tpos[nxt] if nxt < len(tpos) and tpos[nxt] < a_end else a_end
            eq = src.find("=", a_start, limit)
            if eq >= 0:
                key = src[a_start:eq].strip().translate(_UNPROTECT)
                args.append(Arg(key, eq + 1, a_end))
            else:
                n += 1
                args.append(Arg(str(n), a_start, a_end))
        return name_raw, args

    def _template(self, i: int, j: int) -> None:
        name_raw, args = self._args(i, j)
        name = normalize_template_name(name_raw)
        if not name or name[0] == "#" or ":" in name:
            return  # parser functions, magic words, transcluded pages: nothing visible here
        self.templates.add(name)
        if name.startswith("infobox") or name in self.infobox_names:
            self.infoboxes.append((name, args, self.tpos[i] < self.first_heading))
            return
        handler = handler_for(name)
        if handler is not None:
            handler(Call(name, args, self))

    def _link(self, i: int, j: int) -> int:
        src, tpos, tend = self.src, self.tpos, self.tend
        pipes = self.pipes.get(i)
        target_end = tpos[pipes[0]] if pipes else tpos[j]
        target_raw = src[tend[i]:target_end]
        if self.protected:
            target_raw = target_raw.translate(_UNPROTECT)
        parsed = self.site.parse(target_raw)
        if parsed is None and target_raw.strip() and not target_raw.lstrip().startswith("#"):
            # Not a title MediaWiki accepts: the brackets are text, and what they hold
            # (a link inside, as in [[foo[[bar]]]]) renders on its own.
            self.out.text(src[tpos[i]:tend[i]])
            return tend[i]
        after = tend[j]
        if parsed is not None and not parsed.leading_colon:
            if parsed.interwiki and ":" in target_raw and len(target_raw.split(":", 1)[0]) <= 3:
                return after  # interlanguage link: not part of the text
            if parsed.ns in (6, -2):
                return after  # files and media
            if parsed.ns == 14:
                self.categories.append(parsed.title.split(":", 1)[1])
                return after
        start = self.out.pos
        if pipes:
            a_start = tend[pipes[0]]
            if not src[a_start:tpos[j]].strip():
                # The pipe trick: [[Foo (bar)|]] shows "Foo".
                self.out.text(pipe_trick(target_raw))
            else:
                self.render(a_start, tpos[j])
        else:
            self.out.text(target_raw.lstrip(":"))
        m = _TRAIL.match(src, after)
        if m:
            self.out.text(m.group())
            after = m.end()
        if (parsed is not None and not parsed.interwiki and parsed.ns == 0
                and self.out.pos > start):
            self.out.links.append((start, self.out.pos, parsed.title))
        return after

    def render_value(self, start: int, end: int) -> Rendered:
        """Render a range into its own text (an infobox value)."""
        outer = self.out
        self.out = _Builder()
        try:
            self.render(start, end)
            text, links, dates = _clean_lines(self.out, None, self.protected)
        finally:
            self.out = outer
        return Rendered(text, links, tuple(dates))


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


def parse_page(page: Page, site: Site, infobox_names: Iterable[str] = ()) -> Document:
    """Turn an article's wikitext into a :class:`Document`.

    Args:
        page: The page (any namespace; callers skip non-articles).
        site: Title rules of the wiki.
        infobox_names: Extra template names (lower case) to treat as infoboxes, besides every
            ``Infobox ...`` template.
    """
    src = preprocess(page.text)
    r = _Renderer(src, site, frozenset(infobox_names))
    r.render(0, len(src))
    sections: list[Section] = []
    text, links, _ = _clean_lines(r.out, sections, r.protected)
    lead_end = sections[0].start if sections else len(text)
    first_para_end = text.find("\n")
    if first_para_end < 0 or first_para_end > lead_end:
        first_para_end = lead_end
    aliases: list[str] = []
    for s0, e0 in r.out.bold:
        if s0 < first_para_end and e0 > s0:
            alias = text[s0:e0].strip(" ,;:()\"'")
            if alias and len(alias) < 120 and "\n" not in alias and alias not in aliases:
                aliases.append(alias)
    infoboxes = []
    for name, fields, lead in r.infoboxes:
        values = []
        for arg in fields:
            raw = r.raw(arg).strip()
            if raw:
                values.append(InfoboxField(arg.key, raw, r.render_value(arg.start, arg.end)))
        infoboxes.append(Infobox(name, tuple(values), lead))
    return Document(page_id=page.id, revision_id=page.revision_id, title=page.title, text=text,
                    links=links, sections=tuple(sections), lead_end=lead_end,
                    aliases=tuple(aliases), categories=tuple(dict.fromkeys(r.categories)),
                    infoboxes=tuple(infoboxes), templates=frozenset(r.templates))


def render(wikitext: str, site: Site) -> Rendered:
    """Render a fragment of wikitext (an infobox value, a caption) to text with links."""
    src = preprocess(wikitext)
    r = _Renderer(src, site, frozenset())
    return r.render_value(0, len(src))


def is_disambiguation(doc: Document, extra: Iterable[str] = (),
                      categories: Iterable[str] = ()) -> bool:
    """Whether a page is a disambiguation page: by its templates (kgx's English list and
    ``extra``, the wiki's own), its categories (``categories``, case-folded names without the
    namespace prefix), or its title."""
    names = DISAMBIGUATION.union(extra)
    if any(t in names or t.endswith(" disambiguation") for t in doc.templates):
        return True
    marks = frozenset(categories)
    if marks and any(c.casefold() in marks for c in doc.categories):
        return True
    return doc.title.endswith("(disambiguation)")
