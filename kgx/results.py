"""SPARQL results written out: the W3C SELECT and ASK formats, for the endpoint and the CLI.

One writer serves ``kgx serve`` and ``kgx query --format``, so both give the same bytes. The
XML form is well-formed for every literal: characters XML 1.0 cannot carry at all (the C0
controls other than tab, newline and carriage return, lone surrogates, U+FFFE and U+FFFF) are
written as U+FFFD.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable
from typing import Any

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
