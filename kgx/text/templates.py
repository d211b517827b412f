"""How inline templates render: the visible text a reader sees for ``{{birth date|...}}`` etc.

kgx does not expand templates from their definitions (a dump's template pages are Lua and
parser functions, and expanding them is MediaWiki's job). Instead, the templates that render
visible text inside sentences and infobox values are rendered here by rule; every other
template (citations, navboxes, maintenance tags, pronunciation) renders nothing, as in
WikiExtractor. Each handler gets a :class:`Call` and writes through the renderer it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from kgx.records import DateValue

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")


class Writer(Protocol):
    """What a template handler may do: write text, render an argument, read one raw."""

    def emit(self, text: str) -> None: ...
    def link(self, text: str, target: str) -> None: ...
    def render_arg(self, arg: Arg) -> None: ...
    def raw(self, arg: Arg) -> str: ...
    def add_date(self, date: DateValue) -> None: ...


@dataclass(slots=True)
class Arg:
    """One template argument: ``key`` is the name or 1-based position; span in the source."""

    key: str
    start: int
    end: int


@dataclass(slots=True)
class Call:
    """A template call being rendered."""

    name: str
    args: list[Arg]
    out: Writer

    def positional(self) -> list[Arg]:
        return [a for a in self.args if a.key.isdigit()]

    def get(self, key: str) -> Arg | None:
        for a in self.args:
            if a.key == key:
                return a
        return None

    def raw(self, key: str, default: str = "") -> str:
        a = self.get(key)
        return self.out.raw(a) if a is not None else default


Handler = Callable[[Call], None]


def _first(call: Call) -> None:
    pos = call.positional()
    if pos:
        call.out.render_arg(pos[0])


def _second(call: Call) -> None:
    pos = call.positional()
    if len(pos) >= 2:
        call.out.render_arg(pos[1])
    elif pos:
        call.out.render_arg(pos[0])


def _last(call: Call) -> None:
    pos = call.positional()
    if pos:
        call.out.render_arg(pos[-1])


def _const(text: str) -> Handler:
    def handler(call: Call) -> None:
        call.out.emit(text)
    return handler


def _list(call: Call) -> None:
    items = [a for a in call.positional() if call.out.raw(a).strip()]
    for i, a in enumerate(items):
        if i:
            call.out.emit("\n")
        call.out.render_arg(a)


def _int(s: str) -> int | None:
    s = s.strip()
    return int(s) if s.isdigit() else None


def _date_parts(call: Call, first: int = 0) -> tuple[int, int | None, int | None] | None:
    pos = [call.out.raw(a).strip() for a in call.positional()][first:first + 3]
    if not pos:
        return None
    y = _int(pos[0]) if pos[0].lstrip("-").isdigit() else None
    if y is None:
        return None
    if pos[0].startswith("-"):
        y = -int(pos[0][1:])
    m = _int(pos[1]) if len(pos) > 1 else None
    d = _int(pos[2]) if len(pos) > 2 else None
    if m is not None and not 1 <= m <= 12:
        m, d = None, None
    if d is not None and not 1 <= d <= 31:
        d = None
    return y, m, d


def format_date(y: int, m: int | None, d: int | None, dmy: bool) -> str:
    """Render a date as English Wikipedia does (``February 12, 1809`` or ``12 February 1809``)."""
    year = str(y) if y > 0 else f"{-y} BC"
    if m is None:
        return year
    if d is None:
        return f"{MONTHS[m - 1]} {year}"
    return f"{d} {MONTHS[m - 1]} {year}" if dmy else f"{MONTHS[m - 1]} {d}, {year}"


def date_value(y: int, m: int | None, d: int | None) -> DateValue:
    """An XSD date value; BC years follow XSD 1.1 (1 BC is year 0000, 2 BC is -0001)."""
    year = y if y > 0 else y + 1
    ys = f"{year:04d}" if year >= 0 else f"-{-year:04d}"
    if m is None:
        return DateValue(ys, "gYear")
    if d is None:
        return DateValue(f"{ys}-{m:02d}", "gYearMonth")
    return DateValue(f"{ys}-{m:02d}-{d:02d}", "date")


def _date(first: int = 0) -> Handler:
    def handler(call: Call) -> None:
        parts = _date_parts(call, first)
        if parts is None:
            _first(call)
            return
        dmy = any(call.raw(k).strip().lower() in ("y", "yes") for k in ("df",))
        call.out.add_date(date_value(*parts))
        call.out.emit(format_date(*parts, dmy=dmy))
    return handler


def _marriage(call: Call) -> None:
    pos = call.positional()
    if not pos:
        return
    call.out.render_arg(pos[0])
    years = [call.out.raw(a).strip() for a in pos[1:3] if call.out.raw(a).strip()]
    if years:
        call.out.emit(" (m. " + "–".join(years) + ")")


def _convert(call: Call) -> None:
    pos = [call.out.raw(a).strip() for a in call.positional()]
    if pos:
        call.out.emit(" ".join(p for p in pos[:2] if p))


def _lang_x(call: Call) -> None:
    _last(call) if call.name.startswith("lang-") else _second(call)


def _circa(call: Call) -> None:
    call.out.emit("c. ")
    _first(call)


def _as_of(call: Call) -> None:
    parts = _date_parts(call)
    if parts:
        call.out.emit("As of " + format_date(*parts, dmy=False))


def _old_style_date(call: Call) -> None:
    pos = [call.out.raw(a).strip() for a in call.positional()]
    if len(pos) >= 2:
        call.out.emit(f"{pos[0]}, {pos[1]}")
    elif pos:
        call.out.emit(pos[0])


def _currency(prefix: str) -> Handler:
    def handler(call: Call) -> None:
        call.out.emit(prefix)
        _first(call)
    return handler


INLINE: dict[str, Handler] = {
    # text wrappers
    **dict.fromkeys(["nowrap", "nobr", "small", "smaller", "big", "larger", "smallcaps", "sc",
                     "nobold", "noitalic", "resize", "script",
                     "lang", "linktext", "abbr", "abbrlink", "keypress", "mono", "code",
                     "samp", "var", "em", "strong", "sic", "nihongo", "korean", "zh", "angbr",
                     "not a typo", "proper name", "vanchor", "anchor-visible", "visible anchor",
                     "center", "centre", "ill", "interlanguage link", "interlanguage link multi",
                     "illm", "flag", "flagcountry", "flagu", "flag country", "ship", "sclass",
                     "unit", "val", "tooltip", "hover title", "nastaliq", "ruby"], _first),
    "lang": _lang_x, "nihongo2": _first, "ja-stage": _first,
    # {{transl|ar|Allāhu akbar}}, {{transl|ar|ALA|...}}: the text is the last argument
    "transl": _last, "transliteration": _last,
    "ubl": _list, "unbulleted list": _list, "plainlist": _list, "plain list": _list,
    "hlist": _list, "flatlist": _list, "flat list": _list, "bulleted list": _list,
    "blist": _list, "bullet list": _list, "ordered list": _list, "collapsible list": _list,
    "enum": _list, "unordered list": _list, "nbsp list": _list, "endash list": _list,
    # dates
    **dict.fromkeys(["birth date", "dob", "birth date and age", "bda", "death date",
                     "start date", "end date", "start date and age", "end date and age",
                     "film date", "release date", "date", "birth-date", "death-date",
                     "start-date", "end-date", "birth year and age", "death year and age",
                     "birth year", "death year"], _date()),
    **dict.fromkeys(["death date and age", "dda"], _date()),
    "marriage": _marriage, "married": _marriage,
    "convert": _convert, "cvt": _convert,
    "circa": _circa, "c.": _circa, "as of": _as_of, "oldstyledate": _old_style_date,
    "us$": _currency("US$"), "usd": _currency("US$"), "£": _currency("£"), "gbp": _currency("£"),
    "€": _currency("€"), "eur": _currency("€"), "inr": _currency("₹"),
    # punctuation
    "'": _const("'"), "\"": _const('"'), "!": _const("|"), "=": _const("="), "snd": _const(" – "),
    "spaced ndash": _const(" – "), "ndash": _const("–"), "mdash": _const("—"),
    "nbsp": _const(" "), "·": _const(" · "), "dot": _const(" · "), "middot": _const("·"),
    "bull": _const(" • "), "sp": _const(" "), "thinsp": _const(" "), "zwsp": _const(""),
    "en dash": _const("–"), "em dash": _const("—"), "ndashes": _const("–"), "shy": _const(""),
    "px2": _const(""), "-": _const(""), "break": _const("\n"), "br": _const("\n"),
}

# Prefixes: ``{{lang-ru|...}}`` and friends render their text argument.
INLINE_PREFIXES: tuple[tuple[str, Handler], ...] = (("lang-", _lang_x),)

# Templates that mark a disambiguation page on English wikis (extend per wiki in the mappings).
DISAMBIGUATION = frozenset({
    "disambiguation", "disambig", "dab", "disamb", "dis", "hndis", "geodis", "numberdis",
    "letter-numbercombdisambig", "mil-unit-dis", "shipindex", "surname", "given name",
    "set index article", "sia", "disambiguation cleanup", "school disambiguation",
    "hospital disambiguation", "mountainindex", "roaddis", "species latin name disambiguation",
    "call sign disambiguation", "chinese title disambiguation", "place name disambiguation",
})


def _it_article(word: str, female: bool) -> str:
    """The Italian indefinite article before ``word``: un, uno, una or un'."""
    w = word.lower()
    if female:
        return "un'" if w[:1] in "aeiou" else "una "
    return "uno " if w.startswith(("z", "gn", "ps", "x", "y")) or (
        w[:1] == "s" and w[1:2] not in "aeiou") else "un "


def _bio(call: Call) -> None:
    """Italian Wikipedia's ``{{Bio}}``, which writes a biography's first sentence from its
    parameters: "Alfred Nobel (Stoccolma, 21 ottobre 1833 – Sanremo, 10 dicembre 1896) è
    stato un chimico svedese." The name comes out bold (the article's own name, an alias), the
    places as links (``LuogoNascitaLink`` where the place's page has another title)."""
    out = call.out

    def text(key: str) -> str:
        return " ".join(call.raw(key).split())

    def put(key: str, before: str = "", after: str = "") -> bool:
        arg = call.get(key)
        raw = out.raw(arg) if arg is not None else ""
        if arg is None or not raw.strip():
            return False
        out.emit(before)  # the value alone, not the line break before the next parameter
        out.render_arg(Arg(key, arg.start + len(raw) - len(raw.lstrip()),
                           arg.end - len(raw) + len(raw.rstrip())))
        out.emit(after)
        return True

    def place_and_date(place: str, day: str, year: str) -> None:
        name = text(place)
        if name:
            out.link(name, text(place + "Link") or name)
        date = " ".join(x for x in (text(day), text(year)) if x)
        if date:
            out.emit((", " if name else "") + date)

    put("Titolo", after=" ")
    out.emit(BOLD + " ".join(x for x in (text("Nome"), text("Cognome")) if x) + BOLD)
    if not put("PostCognomeVirgola", before=", "):
        put("PostCognome", before=" ")
    born = bool(text("LuogoNascita") or text("AnnoNascita"))
    died = bool(text("LuogoMorte") or text("AnnoMorte"))
    if born or died or text("PreData"):
        out.emit(" (")
        put("PreData", after="; " if born or died else "")
        place_and_date("LuogoNascita", "GiornoMeseNascita", "AnnoNascita")
        put("NoteNascita")
        if died:
            out.emit(" – ")
            place_and_date("LuogoMorte", "GiornoMeseMorte", "AnnoMorte")
            put("NoteMorte")
        out.emit(")")
    female = text("Sesso").upper().startswith("F")
    jobs = [text(k) for k in ("Attività", "Attività2", "Attività3") if text(k)]
    if jobs:
        out.emit(" è " + (("stata " if female else "stato ") if died else "")
                 + _it_article(jobs[0], female)
                 + (jobs[0] if len(jobs) == 1 else ", ".join(jobs[:-1]) + " e " + jobs[-1]))
        put("Nazionalità", before=" ")
        put("PostNazionalità")
    out.emit(".")


BOLD = "'" * 3

# Templates that render text on one language's wikis only, by the wiki's language.
BY_LANGUAGE: dict[str, dict[str, Handler]] = {"it": {"bio": _bio}}


def handler_for(name: str, lang: str = "en") -> Handler | None:
    """The inline renderer for template ``name`` (lower-cased, normalised) on a wiki in
    ``lang``, or ``None``."""
    h = BY_LANGUAGE.get(lang.split("-")[0], {}).get(name) or INLINE.get(name)
    if h is not None:
        return h
    for prefix, h in INLINE_PREFIXES:
        if name.startswith(prefix):
            return h
    return None
