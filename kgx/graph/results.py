"""Query results for people and programs: tables for the terminal, and the SPARQL result formats
(JSON, XML, CSV, TSV) with byte caps.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kgx.graph.errors import QueryError

if TYPE_CHECKING:
    from kgx.graph.knowledge_graph import KnowledgeGraph


XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def term_json(t: Any) -> dict[str, str]:
    """A pyoxigraph term as a SPARQL JSON results binding."""
    import pyoxigraph as ox

    if isinstance(t, ox.NamedNode):
        return {"type": "uri", "value": t.value}
    if isinstance(t, ox.BlankNode):
        return {"type": "bnode", "value": t.value}
    d = {"type": "literal", "value": t.value}
    if t.language:
        d["xml:lang"] = t.language
    elif t.datatype is not None and t.datatype.value != XSD_STRING:
        d["datatype"] = t.datatype.value
    return d


def xml_escape(s: str) -> str:
    """Text or attribute content for XML 1.0: markup escaped, impossible characters replaced."""
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return _NOT_XML.sub("\ufffd", s)


def _row_json(names: list[str], row: list[Any]) -> str:
    return json.dumps({n: term_json(v) for n, v in zip(names, row, strict=True)
                       if v is not None}, ensure_ascii=False)


def _row_xml(names: list[str], row: list[Any]) -> str:
    out = ["<result>"]
    for n, v in zip(names, row, strict=True):
        if v is None:
            continue
        j = term_json(v)
        if j["type"] == "uri":
            inner = f"<uri>{xml_escape(j['value'])}</uri>"
        elif j["type"] == "bnode":
            inner = f"<bnode>{xml_escape(j['value'])}</bnode>"
        else:
            attr = (f' xml:lang="{xml_escape(j["xml:lang"])}"' if "xml:lang" in j else
                    f' datatype="{xml_escape(j["datatype"])}"' if "datatype" in j else "")
            inner = f"<literal{attr}>{xml_escape(j['value'])}</literal>"
        out.append(f'<binding name="{xml_escape(n)}">{inner}</binding>')
    out.append("</result>")
    return "".join(out)


def _row_csv(names: list[str], row: list[Any]) -> str:
    import pyoxigraph as ox

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(
        ["" if v is None else ("_:" + v.value if isinstance(v, ox.BlankNode) else v.value)
         for v in row])
    return buf.getvalue()


def _row_tsv(names: list[str], row: list[Any]) -> str:
    return "\t".join("" if v is None else str(v) for v in row) + "\n"


_ROW = {"json": _row_json, "xml": _row_xml, "csv": _row_csv, "tsv": _row_tsv}


SELECT_WRITERS = tuple(_ROW)


def serialize_select(names: list[str], rows: Iterable[list[Any]], fmt: str,
                     max_rows: int | None = None, max_bytes: int | None = None
                     ) -> tuple[bytes, bool]:
    """SPARQL SELECT results as JSON, XML, CSV or TSV (W3C formats), within a row and byte cap.

    Returns:
        The body, and whether rows were left out to keep within ``max_rows`` or ``max_bytes``.
    """
    pieces: list[str] = []
    size = 0
    truncated = False
    for r in rows:
        if max_rows is not None and len(pieces) >= max_rows:
            truncated = True
            break
        piece = _ROW[fmt](names, r)
        size += len(piece.encode("utf-8")) if max_bytes is not None else 0
        if max_bytes is not None and size > max_bytes:
            truncated = True
            break
        pieces.append(piece)
    if fmt == "json":
        head = json.dumps({"vars": names}, ensure_ascii=False)
        tail = ', "kgx": {"truncated": true}}' if truncated else "}"
        body = f'{{"head": {head}, "results": {{"bindings": [{", ".join(pieces)}]}}{tail}'
    elif fmt == "xml":
        body = ('<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">'
                "<head>" + "".join(f'<variable name="{xml_escape(n)}"/>' for n in names)
                + "</head><results>" + "".join(pieces) + "</results></sparql>\n")
    elif fmt == "csv":
        body = ",".join(names) + "\r\n" + "".join(pieces)
    else:
        body = "\t".join("?" + n for n in names) + "\n" + "".join(pieces)
    return body.encode("utf-8"), truncated


def serialize_ask(value: bool, fmt: str) -> bytes:
    """A SPARQL ASK result in ``fmt`` (json, xml; else plain ``true``/``false``)."""
    if fmt == "json":
        return json.dumps({"head": {}, "boolean": value}).encode()
    if fmt == "xml":
        return (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">'
                f"<head/><boolean>{'true' if value else 'false'}</boolean></sparql>\n").encode()
    return (("true" if value else "false") + "\n").encode()


def take_triples(results: Iterable[Any], max_rows: int, max_bytes: int) -> tuple[list[Any], bool]:
    """The first triples within ``max_rows`` and, written as N-Triples, ``max_bytes`` bytes (of
    UTF-8, not characters); whether more were left out."""
    out: list[Any] = []
    size = 0
    for t in results:
        size += len(str(t).encode("utf-8")) + 3
        if len(out) >= max_rows or size > max_bytes:
            return out, True
        out.append(t)
    return out, False


SELECT_FORMATS = ("table", "json", "csv", "tsv", "xml")


GRAPH_FORMATS = ("turtle", "ntriples", "nquads")


def format_result(kg: KnowledgeGraph, query: str, fmt: str, *, allow_service: bool = False
                  ) -> str:
    """Run ``query`` and render it as text in ``fmt`` (see SELECT_FORMATS, GRAPH_FORMATS).

    Raises:
        QueryError: Bad query, a refused SERVICE, or a format that does not fit the query form.
    """
    import pyoxigraph as ox

    res = kg.query(query, allow_service=allow_service)
    if isinstance(res, ox.QueryTriples):
        rdf = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES,
               "nquads": ox.RdfFormat.N_QUADS, "table": ox.RdfFormat.TURTLE}.get(fmt)
        if rdf is None:
            raise QueryError(f"format {fmt!r} does not fit CONSTRUCT/DESCRIBE; use one of "
                             f"{', '.join(GRAPH_FORMATS)}")
        if rdf == ox.RdfFormat.TURTLE:
            return (ox.serialize(res, format=rdf, prefixes=kg.prefixes) or b"").decode("utf-8")
        return (res.serialize(format=rdf) or b"").decode("utf-8")
    if fmt in GRAPH_FORMATS:
        raise QueryError(f"format {fmt!r} is for CONSTRUCT/DESCRIBE; use one of "
                         f"{', '.join(SELECT_FORMATS)}")
    if fmt == "table":
        if isinstance(res, ox.QueryBoolean):
            return "true\n" if bool(res) else "false\n"
        names = [v.value for v in res.variables]
        rows = [[_short(sol[n], kg.prefixes) for n in names] for sol in res]
        return render_table(names, rows)
    from kgx.graph.results import SELECT_WRITERS, serialize_ask, serialize_select

    if fmt not in SELECT_WRITERS:
        raise QueryError(f"unknown format {fmt!r}; known: "
                         f"{', '.join(SELECT_FORMATS + GRAPH_FORMATS)}")
    # the endpoint's writers: the same bytes from kgx query and kgx serve, and XML that is
    # well-formed whatever a literal holds
    if isinstance(res, ox.QueryBoolean):
        return serialize_ask(bool(res), fmt).decode("utf-8")
    names = [v.value for v in res.variables]
    return serialize_select(names, ([sol[n] for n in names] for sol in res), fmt)[0].decode(
        "utf-8")


def _short(term: Any, prefixes: dict[str, str]) -> str:
    import pyoxigraph as ox

    if term is None:
        return ""
    if isinstance(term, ox.NamedNode):
        v = term.value
        best = max((ns for ns in prefixes.values() if v.startswith(ns)), key=len, default=None)
        if best is not None:
            name = next(k for k, ns in prefixes.items() if ns == best)
            return f"{name}:{v[len(best):]}"
        return f"<{v}>"
    if isinstance(term, ox.Literal):
        return term.value
    return str(term)


def render_table(names: Sequence[str], rows: Iterable[Sequence[str]], width: int = 80) -> str:
    """A plain-text table, each cell cut to ``width`` characters."""
    rows = [[c.replace("\n", " ") for c in r] for r in rows]
    rows = [[c if len(c) <= width else c[: width - 1] + "…" for c in r] for r in rows]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    out = io.StringIO()
    out.write(" | ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)).rstrip() + "\n")
    out.write("-+-".join("-" * w for w in widths) + "\n")
    for r in rows:
        out.write(" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")
    return out.getvalue()
