"""``kgx serve``: a SPARQL 1.1 Protocol endpoint and an entity lookup endpoint, safe by default.

* Binds to 127.0.0.1 unless told otherwise; read-only: updates (``update=``,
  ``application/sparql-update``) and ``LOAD`` get 403.
* No outbound requests: a query that names ``SERVICE`` anywhere is refused (403), decided on
  the query's SPARQL tokens (:mod:`kgx.sparql`), not on a text search; ``FROM``/``FROM NAMED``
  and ``default-graph-uri``/``named-graph-uri`` select graphs of the store as SPARQL 1.1 says,
  and naming a graph the store does not hold is refused (403).
* Requests: ``Content-Length`` must be a number within the body cap (else 400/413; chunked
  bodies 411); a connection idle for ``idle_timeout`` seconds is closed; at most
  ``max_connections`` are open at once (503 past that); the ``Host`` header must name the bound
  address when it is a loopback one, or one of ``allowed_hosts`` (DNS rebinding: 403).
* Each query runs in a worker process with an address-space limit; one that runs past the
  timeout is killed (a signal cannot stop pyoxigraph's Rust loop, a process kill can) and
  answered 504, while the other workers go on serving. At most ``workers`` queries run at once;
  a request that finds none free within ``queue_wait`` seconds gets 503.
* Results are capped at ``max_rows`` and ``max_response_bytes`` (flagged by the
  ``X-KGX-Truncated`` header, and a ``"kgx": {"truncated": true}`` member in SPARQL JSON);
  queries over ``max_query_bytes`` get 413.
* Results by content negotiation: SPARQL JSON, XML, CSV, TSV; Turtle or N-Triples for
  CONSTRUCT/DESCRIBE; 406 for anything else. CORS headers only with ``--cors ORIGIN``.

``GET /lookup?q=NAME&k=10`` answers ranked candidate entities as JSON. The entity index is
loaded once, in the server process, before the server answers; ``kgx:lookup("name")`` inside a
query asks the server process for its answer, so query workers stay small.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

SELECT_TYPES = {
    "application/sparql-results+json": "json", "application/json": "json",
    "application/sparql-results+xml": "xml", "application/xml": "xml",
    "text/csv": "csv", "text/tab-separated-values": "tsv",
}
GRAPH_TYPES = {"text/turtle": "turtle", "application/n-triples": "ntriples",
               "application/n-quads": "nquads", "application/ld+json": "jsonld",
               "text/plain": "ntriples"}
CONTENT_TYPE = {"json": "application/sparql-results+json", "xml": "application/sparql-results+xml",
                "csv": "text/csv; charset=utf-8", "tsv": "text/tab-separated-values; charset=utf-8",
                "turtle": "text/turtle; charset=utf-8", "ntriples": "application/n-triples",
                "nquads": "application/n-quads", "jsonld": "application/ld+json"}
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(slots=True)
class ServeOptions:
    """Endpoint settings (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 7878
    workers: int = 2
    timeout: float = 10.0
    max_rows: int = 10_000
    max_query_bytes: int = 65_536
    queue_wait: float = 2.0
    memory_mb: int = 2048
    cors: str | None = None
    max_response_bytes: int = 32 << 20
    idle_timeout: float = 20.0
    max_connections: int = 64
    allowed_hosts: tuple[str, ...] = ()


class Refused(Exception):
    """A request the endpoint will not run: HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_query(query: str, prefixes: dict[str, str], has_graph: Any, max_bytes: int) -> None:
    """Refuse what must not run: oversize, updates, SERVICE, graphs the store does not hold.

    Args:
        query: The query text.
        prefixes: The predeclared prefixes (to resolve ``FROM pfx:name``).
        has_graph: ``has_graph(iri) -> bool``, whether the store holds that named graph.
        max_bytes: Largest query accepted.

    Raises:
        Refused: With the HTTP status to answer.
    """
    from kgx.sparql import inspect_query

    size = len(query.encode("utf-8"))
    if size > max_bytes:
        raise Refused(413, f"query is {size:,} bytes; the limit is {max_bytes:,}")
    shape = inspect_query(query, prefixes)
    if shape.names_service:
        raise Refused(403, "SERVICE is refused: this endpoint makes no outbound requests")
    if shape.form == "UPDATE":
        raise Refused(403, "this endpoint is read-only: SPARQL Update is not accepted")
    for iri in shape.from_graphs + shape.from_named:
        if not has_graph(iri):
            raise Refused(403, f"FROM <{iri}> names no graph of this store; remote graphs are "
                          "never fetched")


def negotiate(accept: str, graph_result: bool) -> str | None:
    """The result format for an Accept header, or None (406)."""
    table = GRAPH_TYPES if graph_result else SELECT_TYPES
    default = "turtle" if graph_result else "json"
    if not accept.strip():
        return default
    from kgx.web import accept_ranking

    for mt in accept_ranking(accept):
        if mt in table:
            return table[mt]
        if mt in ("*/*", "application/*", "text/*"):
            return default
    return None


# --------------------------------------------------------------------------- serialisation


def _term_json(t: Any) -> dict[str, str]:
    import pyoxigraph as ox

    if isinstance(t, ox.NamedNode):
        return {"type": "uri", "value": t.value}
    if isinstance(t, ox.BlankNode):
        return {"type": "bnode", "value": t.value}
    d = {"type": "literal", "value": t.value}
    if t.language:
        d["xml:lang"] = t.language
    elif t.datatype is not None and t.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        d["datatype"] = t.datatype.value
    return d


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _row_json(names: list[str], row: list[Any]) -> str:
    return json.dumps({n: _term_json(v) for n, v in zip(names, row, strict=True)
                       if v is not None}, ensure_ascii=False)


def _row_xml(names: list[str], row: list[Any]) -> str:
    out = ["<result>"]
    for n, v in zip(names, row, strict=True):
        if v is None:
            continue
        j = _term_json(v)
        if j["type"] == "uri":
            inner = f"<uri>{_xml_escape(j['value'])}</uri>"
        elif j["type"] == "bnode":
            inner = f"<bnode>{_xml_escape(j['value'])}</bnode>"
        else:
            attr = (f' xml:lang="{_xml_escape(j["xml:lang"])}"' if "xml:lang" in j else
                    f' datatype="{_xml_escape(j["datatype"])}"' if "datatype" in j else "")
            inner = f"<literal{attr}>{_xml_escape(j['value'])}</literal>"
        out.append(f'<binding name="{n}">{inner}</binding>')
    out.append("</result>")
    return "".join(out)


def _row_csv(names: list[str], row: list[Any]) -> str:
    import csv
    import io

    import pyoxigraph as ox

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(
        ["" if v is None else ("_:" + v.value if isinstance(v, ox.BlankNode) else v.value)
         for v in row])
    return buf.getvalue()


def _row_tsv(names: list[str], row: list[Any]) -> str:
    return "\t".join("" if v is None else str(v) for v in row) + "\n"


_ROW = {"json": _row_json, "xml": _row_xml, "csv": _row_csv, "tsv": _row_tsv}


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
                "<head>" + "".join(f'<variable name="{n}"/>' for n in names)
                + "</head><results>" + "".join(pieces) + "</results></sparql>\n")
    elif fmt == "csv":
        body = ",".join(names) + "\r\n" + "".join(pieces)
    else:
        body = "\t".join("?" + n for n in names) + "\n" + "".join(pieces)
    return body.encode("utf-8"), truncated


def serialize_ask(value: bool, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps({"head": {}, "boolean": value}).encode()
    if fmt == "xml":
        return (f'<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">'
                f"<head/><boolean>{'true' if value else 'false'}</boolean></sparql>\n").encode()
    return (("true" if value else "false") + "\n").encode()


# --------------------------------------------------------------------------- workers


def _worker_main(out: str, conn: Any, opts: ServeOptions) -> None:
    """A query worker: opens the store read-only and answers jobs until told to stop.

    Jobs are those of :func:`run_job`. Messages to the server are tagged: ``("result", status,
    ctype, body, headers)`` ends a job; ``("lookup", name)`` asks the server process to resolve
    ``kgx:lookup(name)`` (it holds the entity index, so no worker loads it) and waits for the
    IRI or None; ``("suggest", name, k)`` asks it for up to ``k`` candidate IRIs (a 404 page's
    suggestions).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from kgx.workers import limit_address_space

    limit_address_space(opts.memory_mb)
    from kgx.graph import KnowledgeGraph, QueryError, ServiceRefused

    kg = KnowledgeGraph.open(out)

    def lookup(name: str) -> str | None:
        conn.send(("lookup", name))
        return conn.recv()

    def suggest(name: str, k: int) -> list[str]:
        conn.send(("suggest", name, k))
        return conn.recv()

    kg.lookup_function = lookup
    text = "text/plain; charset=utf-8"
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            conn.send(("result", *run_job(kg, job, opts, suggest)))
        except ServiceRefused as exc:
            conn.send(("result", 403, text, f"{exc}\n".encode(), {}))
        except QueryError as exc:
            conn.send(("result", 400, text, f"{exc}\n".encode(), {}))
        except MemoryError:
            conn.send(("result", 503, text,
                       f"query stopped: over the {opts.memory_mb} MB memory limit\n".encode(),
                       {}))
        except Exception as exc:  # a worker answers every job
            conn.send(("result", 500, text, f"{type(exc).__name__}: {exc}\n".encode(), {}))


def take_triples(results: Iterable[Any], max_rows: int, max_bytes: int) -> tuple[list[Any], bool]:
    """The first triples within ``max_rows`` and (as N-Triples) ``max_bytes``; whether more."""
    out: list[Any] = []
    size = 0
    for t in results:
        size += len(str(t)) + 3
        if len(out) >= max_rows or size > max_bytes:
            return out, True
        out.append(t)
    return out, False


def run_query(kg: Any, query: str, accept: str, opts: ServeOptions, extra: dict[str, Any]
              ) -> tuple[int, str, bytes, dict[str, str]]:
    """Run and serialise one query: (status, content type, body, extra headers)."""
    import pyoxigraph as ox

    if "default_graph" in extra or "named_graphs" in extra:
        extra = {k: [ox.NamedNode(g) for g in v] for k, v in extra.items()}
    res = kg.query(query, **extra)
    if isinstance(res, ox.QueryTriples):
        fmt = negotiate(accept, True)
        if fmt is None:
            return 406, "text/plain", b"CONSTRUCT/DESCRIBE results are available as " \
                b"text/turtle, application/n-triples, application/n-quads, " \
                b"application/ld+json\n", {}
        triples, truncated = take_triples(res, opts.max_rows, opts.max_response_bytes)
        rdf = {"turtle": ox.RdfFormat.TURTLE, "ntriples": ox.RdfFormat.N_TRIPLES,
               "nquads": ox.RdfFormat.N_QUADS, "jsonld": ox.RdfFormat.JSON_LD}[fmt]
        kwargs = {"prefixes": kg.prefixes} if fmt in ("turtle", "jsonld") else {}
        body = ox.serialize(triples, format=rdf, **kwargs) or b""
        return 200, CONTENT_TYPE[fmt], body, _truncated(truncated)
    fmt = negotiate(accept, False)
    if fmt is None:
        return 406, "text/plain", b"SELECT/ASK results are available as " \
            b"application/sparql-results+json, application/sparql-results+xml, text/csv, " \
            b"text/tab-separated-values\n", {}
    if isinstance(res, ox.QueryBoolean):
        return 200, CONTENT_TYPE[fmt], serialize_ask(bool(res), fmt), {}
    names = [v.value for v in res.variables]
    rows = ([sol[n] for n in names] for sol in res)
    body, truncated = serialize_select(names, rows, fmt, opts.max_rows, opts.max_response_bytes)
    return 200, CONTENT_TYPE[fmt], body, _truncated(truncated)


def _truncated(flag: bool) -> dict[str, str]:
    return {"X-KGX-Truncated": "true"} if flag else {}


def run_job(kg: Any, job: tuple[Any, ...], opts: ServeOptions,
            suggest: Callable[[str, int], list[str]] | None = None
            ) -> tuple[int, str, bytes, dict[str, str]]:
    """One job of a query worker: ``("sparql", query, accept, extra)``, ``("page", name,
    params)`` (an HTML page of :mod:`kgx.web`; ``suggest(name, k)`` gives a 404 page its
    candidate IRIs) or ``("describe", iri, accept)`` (an entity's RDF, 404 when the graph does
    not know it)."""
    kind = job[0]
    if kind == "sparql":
        return run_query(kg, job[1], job[2], opts, job[3])
    if kind == "page":
        from kgx.web import render

        page = render(kg, job[1], job[2], suggest)
        return page.status, page.ctype, page.body, page.headers
    if kind == "describe":
        iri = job[1]
        if not kg.query(f"ASK {{ {{ <{iri}> ?p ?o }} UNION {{ ?s ?p <{iri}> }} }}"):
            return 404, "text/plain; charset=utf-8", f"no entity <{iri}>\n".encode(), {}
        status, ctype, body, headers = run_query(kg, f"DESCRIBE <{iri}>", job[2], opts, {})
        return status, ctype, body, {**headers, "Vary": "Accept"}
    raise ValueError(f"unknown job {kind!r}")


class _Worker:
    def __init__(self, ctx: Any, out: str, opts: ServeOptions) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(out, child, opts), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        try:
            self.proc.kill()
        finally:
            self.proc.join(5)
            self.conn.close()


class QueryPool:
    """``workers`` query processes; a job past its timeout kills its process."""

    def __init__(self, out: str, opts: ServeOptions,
                 lookup: Callable[[str], str | None] | None = None,
                 suggest: Callable[[str, int], list[str]] | None = None) -> None:
        self.out = out
        self.opts = opts
        self.lookup = lookup
        self.suggest = suggest
        # spawn: a fresh interpreter per worker, whatever threads and libraries the server
        # process holds (forking a process with torch's thread pools can hang the child).
        self.ctx = mp.get_context("spawn")
        self.idle: list[_Worker] = [_Worker(self.ctx, out, opts) for _ in range(opts.workers)]
        self.lock = threading.Lock()
        self.free = threading.Semaphore(opts.workers)
        self.timeouts = 0

    def run(self, job: tuple[Any, ...]) -> tuple[int, str, bytes, dict[str, str]]:
        """Run a job (see :func:`run_job`) in a free worker: (status, ctype, body, headers)."""
        if not self.free.acquire(timeout=self.opts.queue_wait):
            raise Refused(503, f"all {self.opts.workers} query workers are busy; try again")
        with self.lock:
            w = self.idle.pop()
        try:
            w.conn.send(job)
            deadline = time.monotonic() + self.opts.timeout
            while w.conn.poll(max(0.0, deadline - time.monotonic())):
                msg = w.conn.recv()
                if msg[0] == "result":
                    return msg[1:]
                # ("lookup", name) from kgx:lookup(), ("suggest", name, k) from a 404 page
                w.conn.send(self._lookup(msg[1]) if msg[0] == "lookup" else
                            self._suggest(msg[1], msg[2]))
            self.timeouts += 1
            w.kill()
            w = _Worker(self.ctx, self.out, self.opts)
            what = "query" if job[0] == "sparql" else "page"
            raise Refused(504, f"{what} stopped: it ran past the {self.opts.timeout:g} s timeout")
        except (EOFError, OSError, BrokenPipeError):
            w.kill()
            w = _Worker(self.ctx, self.out, self.opts)
            raise Refused(503, "the query worker died (out of memory?); try a smaller query"
                          ) from None
        finally:
            with self.lock:
                self.idle.append(w)
            self.free.release()

    def _lookup(self, name: Any) -> str | None:
        if self.lookup is None or not isinstance(name, str) or not name.strip():
            return None
        try:
            return self.lookup(name)
        except (ValueError, RuntimeError, OSError):
            return None

    def _suggest(self, name: Any, k: Any) -> list[str]:
        if self.suggest is None or not isinstance(name, str) or not name.strip() \
                or not isinstance(k, int):
            return []
        try:
            return self.suggest(name, max(1, min(k, 20)))
        except (ValueError, RuntimeError, OSError):
            return []

    def close(self) -> None:
        for w in self.idle:
            with contextlib.suppress(OSError, BrokenPipeError):
                w.conn.send(None)
            w.kill()


# --------------------------------------------------------------------------- HTTP


def host_allowed(host_header: str | None, bound: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Host`` header may reach this server (DNS rebinding defence).

    A server bound to a loopback address answers only Host names that are loopback
    (``localhost``, ``127.0.0.1``, ``[::1]``) or listed in ``allowed``; one bound to a specific
    address answers that address or ``allowed``; one bound to every address (``0.0.0.0``, ``::``)
    answers any Host unless ``allowed`` lists some.
    """
    if not host_header:
        return False
    h = host_header.strip().lower()
    if h.startswith("["):  # [::1]:7878
        name = h[: h.index("]") + 1] if "]" in h else h
    else:  # name:port or name
        name = h.split(":", 1)[0] if h.count(":") <= 1 else h
    if name in {a.lower() for a in allowed}:
        return True
    if bound in ("0.0.0.0", "::", ""):
        return not allowed
    if bound in _LOOPBACK_NAMES or bound.startswith("127."):
        return name in _LOOPBACK_NAMES or name.startswith("127.")
    return name in (bound.lower(), f"[{bound.lower()}]")


def _warm_linker(kg: Any, lock: threading.Lock) -> Callable[[str], str | None] | None:
    """Load the entity index once, now, and answer one lookup, so no caller waits for it.

    Returns:
        ``lookup(name) -> IRI or None`` for ``kgx:lookup()``, under ``lock``: the same lock
        ``/lookup`` holds, since both use the one linker. None without an entity index.
    """
    from kgx.linking import LinkingIndexError

    try:
        kg.lookup("warm up", k=1)
    except (LinkingIndexError, FileNotFoundError, ImportError):
        return None

    def lookup(name: str) -> str | None:
        with lock:
            best = kg.lookup(name, k=1)
        return best[0].iri if best else None

    return lookup


def make_server(out: str | Path, opts: ServeOptions | None = None, *, log: Callable[[str], None]
                = lambda m: None) -> ThreadingHTTPServer:
    """A ready (not yet serving) HTTP server over an output directory.

    The entity index, if the directory has one, is loaded here, before the server answers.
    """
    import pyoxigraph as ox

    from kgx.graph import KnowledgeGraph
    from kgx.web import (
        ENTITY_FORMATS,
        accept_ranking,
        entity_format,
        iri_from_path,
        static_file,
        wants_html,
    )

    opts = opts or ServeOptions()
    out = str(out)
    kg = KnowledgeGraph.open(out)  # fails early, in the caller, if there is no graph
    log("kgx: loading the entity index for /lookup and kgx:lookup()...")
    lookup_lock = threading.Lock()  # the linker serves one caller at a time
    lookup = _warm_linker(kg, lookup_lock)

    def has_graph(iri: str) -> bool:
        try:
            return kg.store.contains_named_graph(ox.NamedNode(iri))
        except ValueError:
            return False

    resource = (kg.namespace or "") + "resource/" if kg.namespace else ""

    def candidates(name: str, k: int) -> list[Any]:
        """The linker's candidates for a name (empty without an index or for a bad name)."""
        if lookup is None or not name.strip():
            return []
        try:
            with lookup_lock:
                return kg.lookup(name, k=k)
        except (ValueError, RuntimeError):
            return []

    def suggest(name: str, k: int) -> list[str]:
        return [c.iri for c in candidates(name, k)]

    pool = QueryPool(out, opts, lookup, suggest if lookup is not None else None)
    connections = threading.BoundedSemaphore(opts.max_connections)
    body_cap = opts.max_query_bytes * 4

    class Handler(BaseHTTPRequestHandler):
        server_version = "kgx"
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; with Nagle's algorithm on, the body then
        # waits for the client's delayed ACK: 40 ms on every answer of a kept-alive connection.
        disable_nagle_algorithm = True
        timeout = opts.idle_timeout  # a socket timeout: idle or half-sent requests are dropped

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless asked
            if os.environ.get("KGX_SERVE_LOG"):
                super().log_message(fmt, *args)

        def _send(self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None
                  = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if opts.cors:
                self.send_header("Access-Control-Allow-Origin", opts.cors)
                self.send_header("Vary", "Origin")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _error(self, status: int, msg: str, close: bool = False) -> None:
            if close:
                self.close_connection = True
            self._send(status, "text/plain; charset=utf-8", (msg + "\n").encode())

        def _host_ok(self) -> bool:
            if host_allowed(self.headers.get("Host"), opts.host, opts.allowed_hosts):
                return True
            self._error(403, f"Host {self.headers.get('Host')!r} is not this server's address "
                        "(kgx serve --allow-host NAME to accept it)", close=True)
            return False

        def do_OPTIONS(self) -> None:  # noqa: N802
            if not self._host_ok():
                return
            if not opts.cors:
                self._error(405, "CORS is not enabled on this endpoint (kgx serve --cors)")
                return
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", opts.cors)
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Accept")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            if not self._host_ok():
                return
            url = urlsplit(self.path)
            params = parse_qs(url.query)
            accept = self.headers.get("Accept", "")
            if url.path == "/sparql" or (url.path == "/query" and "query" in params
                                         and not wants_html(accept)):
                self._sparql(params, None)
            elif url.path == "/query":
                self._job(("page", "query", {"query": (params.get("query") or [""])[0]}))
            elif url.path == "/lookup":
                self._lookup(params)
            elif url.path.startswith("/entity/"):
                self._entity(url.path[len("/entity/"):], params, accept)
            elif url.path.startswith("/fact/"):
                as_json = (params.get("format") or [""])[0] == "json" or (
                    "application/json" in accept_ranking(accept) and not wants_html(accept))
                self._job(("page", "fact", {"digest": url.path[len("/fact/"):],
                                            "json": as_json}))
            elif url.path.startswith("/static/"):
                page = static_file(url.path[len("/static/"):])
                self._send(page.status, page.ctype, page.body, page.headers)
            elif url.path == "/favicon.ico":
                self._send(204, "image/x-icon", b"")
            elif url.path == "/" and wants_html(accept):
                self._search((params.get("q") or [""])[0])
            elif url.path == "/":
                self._send(200, "application/json", json.dumps({
                    "sparql": "/sparql", "lookup": "/lookup?q=NAME&k=10",
                    "entity": "/entity/{Title}", "fact": "/fact/{digest}",
                    "pages": "/ (search), /query",
                    "read_only": True, "timeout_s": opts.timeout, "max_rows": opts.max_rows,
                }).encode())
            else:
                self._error(404, f"no such endpoint: {url.path}")

        def _job(self, job: tuple[Any, ...]) -> None:
            """Run a job in a query worker and send its answer."""
            try:
                status, ctype, body, headers = pool.run(job)
            except Refused as exc:
                self._error(exc.status, str(exc))
                return
            self._send(status, ctype, body, headers)

        def _entity(self, tail: str, params: dict[str, list[str]], accept: str) -> None:
            if not tail or not resource:
                self._error(404, "no entity named (try /entity/Title)")
                return
            iri = iri_from_path(tail, resource)
            fmt = entity_format(accept, (params.get("format") or [None])[0])
            if fmt is None:
                self._error(406, "entity pages are available as text/html, "
                            + ", ".join(ENTITY_FORMATS.values()))
            elif fmt != "html":
                self._job(("describe", iri, fmt))
            else:
                self._job(("page", "entity", {"iri": iri}))

        def _search(self, q: str) -> None:
            params: dict[str, Any] = {"q": q}
            if q.strip() and lookup is None:
                params["error"] = "This graph has no entity index, so there is nothing to " \
                    "search (kgx index OUT builds one); the query page still works."
            elif q.strip():
                params["candidates"] = [
                    {"iri": c.iri, "label": c.label, "types": list(c.types), "score": c.score}
                    for c in candidates(q, 10)]
            self._job(("page", "search", params))

        def _read_body(self) -> bytes | None:
            """The request body, or None after answering 400/411/413 (and closing)."""
            if self.headers.get("Transfer-Encoding"):
                self._error(411, "send the body with a Content-Length (chunked bodies are not "
                            "accepted)", close=True)
                return None
            raw = (self.headers.get("Content-Length") or "0").strip()
            if not raw.isascii() or not raw.isdigit():
                self._error(400, f"Content-Length must be a non-negative integer, not {raw!r}",
                            close=True)
                return None
            length = int(raw)
            if length > body_cap:
                self._error(413, f"request body is {length:,} bytes; the limit is "
                            f"{body_cap:,}", close=True)
                return None
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                return None  # the client went away or idled past the timeout
            return body

        def do_POST(self) -> None:  # noqa: N802
            if not self._host_ok():
                return
            url = urlsplit(self.path)
            if url.path not in ("/sparql", "/query", "/update"):
                self._error(404, f"no such endpoint: {url.path}", close=True)
                return
            raw = self._read_body()
            if raw is None:
                return
            body: str | None = raw.decode("utf-8", "replace")
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if url.path == "/update" or ctype == "application/sparql-update":
                self._error(403, "this endpoint is read-only: SPARQL Update is not accepted")
                return
            params = parse_qs(url.query)
            if ctype == "application/x-www-form-urlencoded":
                params.update(parse_qs(body or ""))
                body = None
            elif ctype != "application/sparql-query":
                self._error(415, "POST a query as application/sparql-query or "
                                 "application/x-www-form-urlencoded")
                return
            self._sparql(params, body)

        def _sparql(self, params: dict[str, list[str]], body: str | None) -> None:
            if "update" in params:
                self._error(403, "this endpoint is read-only: SPARQL Update is not accepted")
                return
            query = body if body is not None else (params.get("query") or [None])[0]
            if not query:
                self._error(400, "missing query (GET ?query=..., or POST it)")
                return
            try:
                check_query(query, kg.prefixes, has_graph, opts.max_query_bytes)
                extra: dict[str, Any] = {}
                for key, arg in (("default-graph-uri", "default_graph"),
                                 ("named-graph-uri", "named_graphs")):
                    if key in params:
                        for g in params[key]:
                            if not has_graph(g):
                                raise Refused(403, f"{key} <{g}> names no graph of this store; "
                                              "remote graphs are never fetched")
                        extra[arg] = list(params[key])
            except Refused as exc:
                self._error(exc.status, str(exc))
                return
            self._job(("sparql", query, self.headers.get("Accept", ""), extra))

        def _lookup(self, params: dict[str, list[str]]) -> None:
            q = (params.get("q") or [""])[0]
            try:
                k = int((params.get("k") or ["10"])[0])
            except ValueError:
                self._error(400, "k must be an integer")
                return
            if lookup is None:
                self._error(503, "this graph has no entity index (kgx index OUT builds one)")
                return
            try:
                with lookup_lock:
                    cands = kg.lookup(q, k=max(1, min(k, 100)))
            except ValueError as exc:
                self._error(400, str(exc))
                return
            except RuntimeError as exc:
                self._error(503, str(exc))
                return
            body = json.dumps({"query": q, "results": [
                {"iri": c.iri, "title": c.title, "label": c.label, "types": list(c.types),
                 "score": c.score, "signals": c.signals} for c in cands]}, ensure_ascii=False)
            self._send(200, "application/json; charset=utf-8", body.encode("utf-8"))

    class Server(ThreadingHTTPServer):
        # The default backlog of 5 drops connections under 20 concurrent clients, and each
        # dropped SYN costs the client a one-second retransmit: p99 went from 10 ms to 1 s.
        request_queue_size = 256
        daemon_threads = True

        def process_request(self, request: Any, client_address: Any) -> None:
            # Each connection holds a thread: past max_connections, answer 503 and close
            # instead of starting another (200 half-sent requests once held 205 threads).
            if not connections.acquire(blocking=False):
                with contextlib.suppress(OSError):
                    request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                    b"Content-Length: 0\r\nRetry-After: 1\r\n\r\n")
                self.shutdown_request(request)
                return
            try:
                super().process_request(request, client_address)
            except Exception:
                connections.release()
                raise

        def process_request_thread(self, request: Any, client_address: Any) -> None:
            try:
                super().process_request_thread(request, client_address)
            finally:
                connections.release()

    server = Server((opts.host, opts.port), Handler)
    server.pool = pool  # type: ignore[attr-defined]
    return server


def serve(out: str | Path, opts: ServeOptions | None = None) -> None:
    """Serve until interrupted."""
    opts = opts or ServeOptions()
    server = make_server(out, opts, log=lambda m: print(m, file=sys.stderr, flush=True))
    host, port = server.server_address[:2]
    print(f"kgx: serving {out} at http://{host}:{port}/sparql (lookup: /lookup?q=NAME); "
          f"{opts.workers} query workers, {opts.timeout:g} s timeout, {opts.max_rows:,} rows "
          "max, read-only", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.pool.close()  # type: ignore[attr-defined]
        server.server_close()
        time.sleep(0)
