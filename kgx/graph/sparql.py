"""SPARQL text read as Oxigraph's parser reads it: tokens, what a query names, readable errors.

Takes the text of a query; gives its :class:`Token` s, a :class:`QueryShape` (its form, the
graphs of its dataset clause, whether it names ``SERVICE``) and syntax errors a person can read.
pyoxigraph exposes no parsed algebra, so the decisions that matter for safety are taken on tokens
cut by the SPARQL 1.1 grammar's own terminals (IRIREF, the four string literals, comments that
end at CR *or* LF, prefixed names...), never on a text search, and they err on the side of
refusal:

* a comment ends at ``\\r`` as well as ``\\n`` (a text search that stopped at ``\\n`` alone let
  ``#c\\rSERVICE <...>`` through);
* Oxigraph matches keywords without a word boundary, so ``SERVICE:x`` is the keyword ``SERVICE``
  followed by the IRI ``:x``: every bare word or prefixed name that *begins* with ``service``
  counts;
* the query is also read once with ``\\uXXXX`` escapes decoded (the SPARQL 1.1 text says they
  are decoded before parsing; Oxigraph 0.5 does not, a later version might);
* a text the tokenizer cannot cut is treated as naming SERVICE if the word occurs in it at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

_RUN = r"[\w\-.\u00b7\u0300-\u036f\u203f\u2040]"
_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"
# A prefixed name's local part (%HH and \-escapes allowed).
_LOCAL = (r"(?:[\w\-:.\u00b7\u0300-\u036f\u203f\u2040]|%[0-9A-Fa-f]{2}"
          r"|\\[_~.\-!$&'()*+,;=/?#@%])*")
# The SPARQL 1.1 terminals, in the order the grammar resolves them. Long strings come before
# short ones ('''...''' would otherwise read as '' then '...).
_TERMINALS = [
    ("ws", r"[ \t\r\n]+"),
    ("comment", r"#[^\r\n]*"),
    ("iri", r"<[^<>\"{}|^`\\\x00-\x20]*>"),
    ("string", r"'''(?:(?:'|'')?(?:[^'\\]|\\.))*'''"),
    ("string", r'"""(?:(?:"|"")?(?:[^"\\]|\\.))*"""'),
    ("string", r"'(?:[^'\\\n\r]|\\.)*'"),
    ("string", r'"(?:[^"\\\n\r]|\\.)*"'),
    ("var", r"[?$][\w\u00b7\u0300-\u036f\u203f\u2040]+"),
    ("langtag", r"@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*"),
    ("bnode", r"_:[\w\-.\u00b7\u0300-\u036f\u203f\u2040]*"),
    ("number", _NUMBER),
    # A run of the characters a prefix may hold, from a letter, and a ':' with a local part
    # if one follows: a prefixed name, or else words (see iter_tokens). Matching the whole run
    # keeps the scan linear: a pattern that tried "prefix, then ':'" at every word of a run
    # was quadratic (``a.a.a.a...`` of 64 KB took 96 s).
    ("name", r"[^\W\d_]" + _RUN + r"*(?::" + _LOCAL + ")?"),
    ("pname", r":" + _LOCAL),
    ("punct", r"\^\^|\|\||&&|!=|<=|>=|[{}()\[\];,.*+\-/=<>!|^?a]"),
]
_LEXER = re.compile("|".join(f"(?P<{kind}{i}>{pat})" for i, (kind, pat) in
                             enumerate(_TERMINALS)))
_KIND = {f"{kind}{i}": kind for i, (kind, _) in enumerate(_TERMINALS)}
_CODEPOINT = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_QUERY_FORMS = ("SELECT", "ASK", "CONSTRUCT", "DESCRIBE")
_UPDATE_WORDS = ("INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "COPY", "MOVE", "ADD",
                 "WITH")
_SIGNIFICANT = frozenset(("word", "pname", "iri"))
_ERROR_AT = re.compile(r"error at (\d+):(\d+): (.*)", re.S)
# Words whose presence makes a query worth cutting into tokens: "service" anywhere (a token that
# begins with it counts), the dataset and update keywords as words. A query with none of them
# names no SERVICE, no dataset and no update whatever its tokens are (about 100 us saved).
_WORTH_TOKENS = re.compile("service|\\b(?:" + "|".join(("FROM",) + _UPDATE_WORDS) + ")\\b",
                           re.I)


class LexError(ValueError):
    """Text that no SPARQL terminal matches, at character ``pos``."""

    def __init__(self, pos: int, char: str) -> None:
        super().__init__(f"no SPARQL token starts with {char!r} at character {pos}")
        self.pos = pos


class Token(NamedTuple):
    """One terminal of a query: its kind (``word``, ``iri``, ``string``...), text and offset.
    (A tuple: a query of 64 KB has 30,000 of them, and a tuple is made at C speed.)"""

    kind: str
    text: str
    start: int


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What a query's tokens say about it.

    Attributes:
        form: ``SELECT``, ``ASK``, ``CONSTRUCT`` or ``DESCRIBE``; ``UPDATE`` for SPARQL Update;
            None when the text names none of them, or names no SERVICE, dataset or update
            keyword at all (then it is not read further).
        names_service: The query may name ``SERVICE`` (see the module docstring).
        from_graphs: IRIs of its ``FROM`` clauses (prefixed names resolved where declared).
        from_named: IRIs of its ``FROM NAMED`` clauses.
        unresolved: Dataset clauses naming a prefix that is not declared.
    """

    form: str | None
    names_service: bool
    from_graphs: tuple[str, ...] = ()
    from_named: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = ()

    @property
    def has_dataset(self) -> bool:
        """Whether the query states its own dataset (FROM or FROM NAMED)."""
        return bool(self.from_graphs or self.from_named or self.unresolved)


# The terminals inside a name run that no ':' ends: words, numbers, '.' and '-'.
_RUN_PARTS = re.compile(r"(?P<word>[^\W\d_]\w*)|(?P<number>" + _NUMBER + r")|(?P<punct>[.\-])")


def iter_tokens(text: str, *, keep_space: bool = False) -> Iterator[Token]:
    """Cut a query into SPARQL terminals, in time linear in its length.

    Raises:
        LexError: A character no terminal starts with.
    """
    pos = 0
    for m in _LEXER.finditer(text):
        if m.start() != pos:
            raise LexError(pos, text[pos])
        pos = m.end()
        kind = _KIND[m.lastgroup or ""]
        tok = m.group()
        if kind == "name":
            if tok.isalnum():  # a plain word, the usual case
                yield Token("word", tok, m.start())
            else:
                yield from _name_tokens(tok, m.start())
            continue
        if kind == "pname" and tok.endswith(".") and not tok.endswith(":."):
            yield Token("pname", tok.rstrip("."), m.start())
            yield from _dots(m.start() + len(tok.rstrip(".")), pos)
            continue
        if keep_space or (kind != "ws" and kind != "comment"):
            yield Token(kind, tok, m.start())
    if pos != len(text):
        raise LexError(pos, text[pos])


def _dots(start: int, end: int) -> Iterator[Token]:
    for k in range(start, end):
        yield Token("punct", ".", k)


def _name_tokens(run: str, start: int) -> Iterator[Token]:
    """A name run's tokens: one prefixed name (its trailing dots apart: a local name never
    ends in '.'), or the words, numbers and punctuation of a run with no ':'."""
    if ":" in run:
        name = run if run.endswith(":.") else run.rstrip(".")
        yield Token("pname", name, start)
        yield from _dots(start + len(name), start + len(run))
        return
    at = 0
    for m in _RUN_PARTS.finditer(run):
        if m.start() != at:
            raise LexError(start + at, run[at])
        at = m.end()
        yield Token(m.lastgroup or "punct", m.group(), start + m.start())
    if at != len(run):
        raise LexError(start + at, run[at])


def decode_codepoints(text: str) -> str:
    r"""``\uXXXX`` and ``\UXXXXXXXX`` escapes decoded, as SPARQL 1.1 section 19.2 describes."""
    def char(m: re.Match[str]) -> str:
        code = int(m.group(1) or m.group(2), 16)
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group()

    return _CODEPOINT.sub(char, text) if "\\u" in text or "\\U" in text else text


_KEYWORDS = frozenset(("PREFIX", "FROM", "NAMED") + _QUERY_FORMS + _UPDATE_WORDS)
_HAS_KEYWORD = re.compile("service|" + "|".join(sorted(_KEYWORDS)), re.I)
_BORING = frozenset(g for g, kind in _KIND.items()
                    if kind not in ("name", "pname", "iri"))


def _tokens(text: str) -> list[Token] | None:
    """The tokens :func:`inspect_query` reads: keywords, names that begin with "service",
    prefixed names and IRIs, in order; None when the text does not cut into SPARQL tokens.

    The same cut as :func:`iter_tokens`, with what cannot matter skipped at C speed: no
    token is made for punctuation, variables, strings or plain words (a 64 KB query holds
    30,000 of them)."""
    out: list[Token] = []
    pos = 0
    for m in _LEXER.finditer(text):
        if m.start() != pos:
            return None
        pos = m.end()
        group = m.lastgroup
        if group in _BORING:
            continue
        tok = m.group()
        kind = _KIND[group or ""]
        if kind == "name":
            if tok.isalnum():
                if tok[:7].lower() == "service" or (len(tok) <= 9 and tok.upper() in _KEYWORDS):
                    out.append(Token("word", tok, m.start()))
                continue
            if ":" not in tok and not _HAS_KEYWORD.search(tok):
                continue  # words only (a.b-c), none of them one that matters
            try:
                out += (t for t in _name_tokens(tok, m.start()) if t.kind in _SIGNIFICANT)
            except LexError:
                return None
            continue
        if kind == "pname" and tok.endswith(".") and not tok.endswith(":."):
            tok = tok.rstrip(".")
        out.append(Token(kind, tok, m.start()))
    return out if pos == len(text) else None


def _names_service(text: str, toks: list[Token] | None) -> bool:
    if toks is None:
        return "service" in text.lower()
    return any(t.kind in ("word", "pname") and t.text[:7].lower() == "service" for t in toks)


def inspect_query(text: str, prefixes: dict[str, str] | None = None) -> QueryShape:
    """Read a query's form, dataset clauses and SERVICE use from its tokens.

    Args:
        text: The query.
        prefixes: Prefixes declared outside the query (kgx's predeclared ones).
    """
    decoded = decode_codepoints(text)
    if not _WORTH_TOKENS.search(text) and (decoded is text or not _WORTH_TOKENS.search(decoded)):
        return QueryShape(None, False)
    toks = _tokens(text)  # once; and once more for the text with its escapes decoded
    service = _names_service(text, toks) or (decoded != text and
                                             _names_service(decoded, _tokens(decoded)))
    if toks is None:
        return QueryShape(None, service)
    declared = dict(prefixes or {})
    form: str | None = None
    graphs: dict[str, list[str]] = {"FROM": [], "FROM NAMED": []}
    unresolved: list[str] = []
    # Only names and IRIs decide anything here (punctuation between a keyword and its IRI
    # makes no valid clause, and reading it as one only refuses more).
    i = 0
    while i < len(toks):
        t = toks[i]
        word = t.text.upper() if t.kind == "word" and len(t.text) <= 9 else ""
        if word == "PREFIX" and i + 2 < len(toks) and toks[i + 1].kind == "pname" \
                and toks[i + 2].kind == "iri":
            declared[toks[i + 1].text[:-1]] = toks[i + 2].text[1:-1]
            i += 3
            continue
        if form is None and word in _QUERY_FORMS:
            form = word
        elif form is None and word in _UPDATE_WORDS:
            form = "UPDATE"
        elif word == "FROM" and i + 1 < len(toks):
            clause = "FROM"
            j = i + 1
            if toks[j].kind == "word" and toks[j].text.upper() == "NAMED":
                clause, j = "FROM NAMED", j + 1
            if j < len(toks):
                iri = _resolve(toks[j], declared)
                if iri is not None:
                    graphs[clause].append(iri)
                elif toks[j].kind == "pname":
                    unresolved.append(toks[j].text)
                i = j
        i += 1
    return QueryShape(form, service, tuple(graphs["FROM"]), tuple(graphs["FROM NAMED"]),
                      tuple(unresolved))


def _resolve(tok: Token, prefixes: dict[str, str]) -> str | None:
    if tok.kind == "iri":
        return tok.text[1:-1]
    if tok.kind == "pname":
        prefix, local = tok.text.split(":", 1)
        if prefix in prefixes:
            return prefixes[prefix] + re.sub(r"\\(.)", r"\1", local)
    return None


# --------------------------------------------------------------------------- errors


def explain_syntax_error(query: str, message: str, prefixes: dict[str, str] | None = None
                         ) -> str:
    """Turn Oxigraph's parser message into one a person can act on.

    ``error at 1:29: expected one of Prefix not found, ['%'], ...`` becomes::

        SPARQL syntax error at line 1, column 22: undeclared prefix 'foo:' (predeclared:
        kgx:, res:, ...; declare others with PREFIX foo: <...>)
          SELECT ?s WHERE { ?s foo:bar ?o }
                               ^

    Messages without a position come back as they are, after ``SPARQL error:``.
    """
    m = _ERROR_AT.match(message)
    if m is None:
        return f"SPARQL error: {message}"
    line, col, detail = int(m.group(1)), int(m.group(2)), m.group(3)
    lines = query.split("\n")
    first = _first_word(query)
    if first is not None and first[0].upper() not in _QUERY_FORMS + ("PREFIX", "BASE"):
        line, col = _line_col(query, first[1])
        what = (f"a query starts with SELECT, ASK, CONSTRUCT or DESCRIBE (after any PREFIX or "
                f"BASE), not {first[0]!r}")
    elif "Prefix not found" in detail:
        pname = _pname_near(query, lines, line, col)
        known = ", ".join(f"{p}:" for p in sorted(prefixes or {}))
        name = pname.split(":", 1)[0] if pname else "?"
        what = (f"undeclared prefix '{name}:'" + (f" (predeclared: {known}" if known else " (")
                + f"; declare others with PREFIX {name}: <...>)")
        if pname:
            line, col = _line_col(query, _offset(lines, line, col, pname))
    elif (unclosed := _unclosed(query)) is not None:
        what, offset = unclosed
        line, col = _line_col(query, offset)
    else:
        what = "expected " + _short_expected(detail.removeprefix("expected "))
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return (f"SPARQL syntax error at line {line}, column {col}: {what}\n  {src}\n  "
            + " " * max(col - 1, 0) + "^")


_PAIRS = {"{": "}", "(": ")", "[": "]"}


def _unclosed(query: str) -> tuple[str, int] | None:
    """The first bracket the query opens and never closes, said the way a person would fix
    it, with its offset; None when every bracket is closed (or the text does not cut into
    tokens)."""
    stack: list[tuple[str, int]] = []
    try:
        for t in iter_tokens(query):
            if t.kind != "punct":
                continue
            if t.text in _PAIRS:
                stack.append((t.text, t.start))
            elif t.text in _PAIRS.values():
                if not stack:
                    return f"'{t.text}' closes nothing that is open", t.start
                if _PAIRS[stack[-1][0]] != t.text:
                    opened, at = stack[-1]
                    return (f"missing '{_PAIRS[opened]}' before this '{t.text}' (the "
                            f"'{opened}' at column {_line_col(query, at)[1]} is still open)",
                            t.start)
                stack.pop()
    except LexError:
        return None
    if not stack:
        return None
    opened, at = stack[-1]
    return (f"missing '{_PAIRS[opened]}': the '{opened}' here is never closed "
            f"({len(stack)} bracket{'s' if len(stack) > 1 else ''} left open)", at)


def _first_word(query: str) -> tuple[str, int] | None:
    try:
        for t in iter_tokens(query):
            return (t.text, t.start) if t.kind == "word" else None
    except LexError:
        return None
    return None


def _line_col(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


def _pname_near(query: str, lines: list[str], line: int, col: int) -> str | None:
    """The prefixed name that ends at or spans the error position."""
    pos = sum(len(ln) + 1 for ln in lines[: line - 1]) + col - 1
    best = None
    try:
        for t in iter_tokens(query):
            if t.start > pos:
                break
            if t.kind == "pname":
                best = t
    except LexError:
        pass
    return best.text if best else None


def _offset(lines: list[str], line: int, col: int, pname: str) -> int:
    """Offset of the last ``pname`` that starts at or before the error position."""
    text = "\n".join(lines)
    pos = sum(len(ln) + 1 for ln in lines[: line - 1]) + col - 1
    at = text.rfind(pname, 0, pos + 1)
    return at if at >= 0 else pos


def _short_expected(detail: str, keep: int = 8) -> str:
    """Oxigraph's list of expected terminals without its Unicode character-class ranges."""
    items = [x.strip() for x in re.split(r",\s*(?![^\[]*\])", detail)]
    words = [x for x in items if x and not x.startswith("[")]
    if not words:
        return "a name or a term"
    more = len(words) - keep
    return ", ".join(words[:keep]) + (f" (or {more} more)" if more > 0 else "")
