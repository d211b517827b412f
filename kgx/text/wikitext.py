"""Wikitext to plain text with link spans, sections and infoboxes, linear in the page size."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from kgx.records import DateValue, Document, Infobox, InfoboxField, Page, Rendered, Section
from kgx.text.cleanup import _FIRST_HEADING, _clean_lines
from kgx.text.markup import (
    _ANY_PROTECTED,
    _B_CLOSE,
    _B_OPEN,
    _CLOSER_OF,
    _KIND,
    _L_OPEN,
    _MATCH_LOOKBACK,
    _PIPE,
    _T_OPEN,
    _TOKEN,
    _TRAIL,
    _UNPROTECT,
    MAX_DEPTH,
    _Builder,
    normalize_template_name,
    pipe_trick,
    preprocess,
)
from kgx.text.site import ParsedTitle, Site
from kgx.text.templates import DISAMBIGUATION, Arg, Call, handler_for


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

    def link(self, text: str, target: str) -> None:
        start = self.out.pos
        self.out.text(text)
        self._add_link(start, self.site.parse(target))

    def _add_link(self, start: int, parsed: ParsedTitle | None) -> None:
        """The text written since ``start`` becomes a link when its target is an article."""
        if parsed is not None and not parsed.interwiki and parsed.ns == 0 and \
                self.out.pos > start:
            self.out.links.append((start, self.out.pos, parsed.title))

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
        handler = handler_for(name, self.site.lang)
        if name.startswith("infobox") or name in self.infobox_names:
            self.infoboxes.append((name, args, self.tpos[i] < self.first_heading))
            if handler is None:
                return  # an infobox shows nothing in the prose; {{Bio}} writes its lead too
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
        self._add_link(start, parsed)
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
