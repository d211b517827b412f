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
    ("number", r"[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?"),
    # A prefixed name: optional prefix, colon, optional local part (%HH and \-escapes allowed).
    ("pname", r"(?:[^\W\d_][\w\-.\u00b7\u0300-\u036f\u203f\u2040]*)?:"
              r"(?:[\w\-:.\u00b7\u0300-\u036f\u203f\u2040]|%[0-9A-Fa-f]{2}"
              r"|\\[_~.\-!$&'()*+,;=/?#@%])*"),
    ("word", r"[^\W\d_]\w*"),
    ("punct", r"\^\^|\|\||&&|!=|<=|>=|[{}()\[\];,.*+\-/=<>!|^?a]"),
]
_LEXER = re.compile("|".join(f"(?P<{kind}{i}>{pat})" for i, (kind, pat) in
                             enumerate(_TERMINALS)))
_KIND = {f"{kind}{i}": kind for i, (kind, _) in enumerate(_TERMINALS)}
_CODEPOINT = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_QUERY_FORMS = ("SELECT", "ASK", "CONSTRUCT", "DESCRIBE")
_UPDATE_WORDS = ("INSERT", "DELETE", "LOAD", "CLEAR", "DROP", "CREATE", "COPY", "MOVE", "ADD",
                 "WITH")
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


@dataclass(frozen=True, slots=True)
class Token:
    """One terminal of a query: its kind (``word``, ``iri``, ``string``...), text and offset."""

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


def iter_tokens(text: str, *, keep_space: bool = False) -> Iterator[Token]:
    """Cut a query into SPARQL terminals.

    Raises:
        LexError: A character no terminal starts with.
    """
    pos, n = 0, len(text)
    while pos < n:
        m = _LEXER.match(text, pos)
        if m is None or m.end() == pos:
            raise LexError(pos, text[pos])
        kind = _KIND[m.lastgroup or ""]
        tok = m.group()
        if kind == "pname" and tok.endswith(".") and not tok.endswith(":."):
            tok = tok.rstrip(".")  # a local name never ends in '.': the dot ends the triple
        if keep_space or kind not in ("ws", "comment"):
            yield Token(kind, tok, pos)
        pos += len(tok)


def decode_codepoints(text: str) -> str:
    r"""``\uXXXX`` and ``\UXXXXXXXX`` escapes decoded, as SPARQL 1.1 section 19.2 describes."""
    def char(m: re.Match[str]) -> str:
        code = int(m.group(1) or m.group(2), 16)
        return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group()

    return _CODEPOINT.sub(char, text) if "\\u" in text or "\\U" in text else text


def _names_service(text: str) -> bool:
    try:
        return any(t.kind in ("word", "pname") and t.text[:7].lower() == "service"
                   for t in iter_tokens(text))
    except LexError:
        return "service" in text.lower()


def inspect_query(text: str, prefixes: dict[str, str] | None = None) -> QueryShape:
    """Read a query's form, dataset clauses and SERVICE use from its tokens.

    Args:
        text: The query.
        prefixes: Prefixes declared outside the query (kgx's predeclared ones).
    """
    decoded = decode_codepoints(text)
    if not _WORTH_TOKENS.search(text) and (decoded is text or not _WORTH_TOKENS.search(decoded)):
        return QueryShape(None, False)
    service = _names_service(text) or (decoded != text and _names_service(decoded))
    try:
        toks = list(iter_tokens(text))
    except LexError:
        return QueryShape(None, service)
    declared = dict(prefixes or {})
    form: str | None = None
    graphs: dict[str, list[str]] = {"FROM": [], "FROM NAMED": []}
    unresolved: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        word = t.text.upper() if t.kind == "word" else ""
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
    else:
        what = "expected " + _short_expected(detail.removeprefix("expected "))
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    return (f"SPARQL syntax error at line {line}, column {col}: {what}\n  {src}\n  "
            + " " * max(col - 1, 0) + "^")


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
