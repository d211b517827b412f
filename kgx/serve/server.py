"""``kgx serve``: a SPARQL 1.1 Protocol endpoint, entity lookup and pages, safe by default.

* Binds to 127.0.0.1 unless told otherwise; read-only: updates (``update=``,
  ``application/sparql-update``) and ``LOAD`` get 403.
* No outbound requests: a query that names ``SERVICE`` anywhere is refused (403), decided on
  the query's SPARQL tokens (:mod:`kgx.graph.sparql`), not on a text search; ``FROM``/``FROM NAMED``
  and ``default-graph-uri``/``named-graph-uri`` select graphs of the store as SPARQL 1.1 says,
  and naming a graph the store does not hold is refused (403).
* Requests are read strictly and within deadlines (:mod:`kgx.serve.protocol`); the ``Host``
  header must name a loopback address (an IP literal, ``localhost``) when the server is bound to
  one, or the bound address, or one of ``allowed_hosts`` (DNS rebinding: 403); a browser's
  cross-site POST is refused (403).
* Each query is checked and run in a worker process with an address-space limit and a timeout
  (:mod:`kgx.serve.pool`); light queries keep a lane of their own while long ones hold the
  others. Results are capped at ``max_rows`` and ``max_response_bytes`` (flagged by the
  ``X-KGX-Truncated`` header, and a ``"kgx": {"truncated": true}`` member in SPARQL JSON).
* One version of the graph at a time (:mod:`kgx.serve.version`): a run that rewrites the folder
  changes nothing the server answers until it has finished; then the server moves to the new
  version at once (``follow``).
* Results by content negotiation: SPARQL JSON, XML, CSV, TSV; Turtle or N-Triples for
  CONSTRUCT/DESCRIBE; 406 for anything else. CORS headers only with ``--cors ORIGIN``.

``GET /lookup?q=NAME&k=10`` answers ranked candidate entities as JSON, or none (NIL) when no
entity scores above the linker's NIL threshold. The entity index is loaded once, in the server
process; ``kgx:lookup("name")`` inside a query asks the server process for its answer, so
query workers stay small.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kgx.serve.options import Refused, ServeOptions
from kgx.serve.pool import QueryPool
from kgx.serve.protocol import CappedServer, StrictHandler
from kgx.serve.version import PinnedVersions

FOLLOW_SECONDS = 2.0  # how often a server looks for a new version of its graph


def host_allowed(host_header: str | None, bound: str, allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Host`` header may reach this server (DNS rebinding defence).

    A server bound to a loopback address answers a Host that is a loopback IP literal
    (``127.0.0.1``, ``127.1.2.3``, ``[::1]``), ``localhost``, or a name listed in ``allowed``;
    never a name that merely looks like an address (``127.attacker.example``). One bound to a
    specific address answers that address or ``allowed``; one bound to every address
    (``0.0.0.0``, ``::``) answers any Host unless ``allowed`` lists some.
    """
    if not host_header:
        return False
    name = _host_name(host_header.strip().lower())
    if name is None:
        return False
    if name in {a.lower() for a in allowed}:
        return True
    if bound in ("0.0.0.0", "::", ""):
        return not allowed
    if _is_loopback(bound):
        return name == "localhost" or _is_loopback(name)
    return name in (bound.lower(), f"[{bound.lower()}]")


def _host_name(h: str) -> str | None:
    """The name of a Host header without its port (``[::1]`` keeps its brackets); None for
    a header that is no host at all."""
    if h.startswith("["):
        end = h.find("]")
        if end < 0 or (h[end + 1:] and not h[end + 1:].startswith(":")):
            return None
        return h[: end + 1]
    if h.count(":") > 1:
        return None  # a bare IPv6 address must be bracketed
    return h.split(":", 1)[0]


def _is_loopback(name: str) -> bool:
    """A loopback IP literal (``127.0.0.1``, ``127.5.5.5``, ``::1``, ``[::1]``); never a name."""
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's ``Origin`` header names the server it was sent to."""
    parts = urlsplit(origin)
    return bool(host) and parts.netloc.lower() == (host or "").strip().lower()


@dataclass(slots=True)
class _Version:
    """One version of the graph being served: its pinned store, a handle for the entity
    index, and the workers that answer over it."""

    store: Path
    kg: Any  # KnowledgeGraph (in this process: the linker)
    lookup: Callable[[str], str | None] | None
    pool: QueryPool


class App:
    """What the HTTP threads share: the graph version being served, and the entity index.

    Args:
        out: The output directory.
        opts: The endpoint's settings.
        log: Where it says what it does.
    """

    def __init__(self, out: Path, opts: ServeOptions, log: Callable[[str], None]) -> None:
        self.out, self.opts, self.log = out, opts, log
        self.lookup_lock = threading.Lock()  # the linker serves one caller at a time
        self.versions = PinnedVersions(out, log)
        self.current = self._open(self.versions.pin())
        self._closed = threading.Event()
        if opts.follow:
            threading.Thread(target=self._follow, daemon=True, name="kgx-follow").start()

    def _open(self, store: Path) -> _Version:
        from kgx.graph.knowledge_graph import KnowledgeGraph

        try:
            kg = KnowledgeGraph.open(self.out, store=store)
            self.log("kgx: loading the entity index for /lookup and kgx:lookup()...")
            lookup = self._warm_linker(kg)
            suggest = self._suggest_with(kg) if lookup is not None else None
            pool = QueryPool(str(self.out), str(store), self.opts, lookup, suggest, self.log)
        except BaseException:
            self.versions.release(store)
            raise
        return _Version(store, kg, lookup, pool)

    def _warm_linker(self, kg: Any) -> Callable[[str], str | None] | None:
        """Load the entity index once, now, and answer one lookup, so no caller waits for it.

        Returns:
            ``lookup(name) -> IRI or None`` (NIL) for ``kgx:lookup()``; None without an
            entity index.
        """
        from kgx.linking.tables import LinkingIndexError

        try:
            kg.lookup("warm up", k=1)
        except (LinkingIndexError, FileNotFoundError, ImportError):
            return None

        def lookup(name: str) -> str | None:
            with self.lookup_lock:
                best = kg.lookup(name, k=1)
            return best[0].iri if best else None

        return lookup

    def _suggest_with(self, kg: Any) -> Callable[[str, int], list[str]]:
        def suggest(name: str, k: int) -> list[str]:
            return [c.iri for c in self.candidates(name, k, kg=kg, nil=False)]

        return suggest

    def candidates(self, name: str, k: int, kg: Any = None, nil: bool = True) -> list[Any]:
        """The linker's candidates for a name (empty without an index, for a bad name, or,
        with ``nil``, when none scores above the NIL threshold)."""
        v = self.current
        kg = kg or v.kg
        if v.lookup is None or not name.strip():
            return []
        try:
            with self.lookup_lock:
                return kg.lookup(name, k=k, nil=nil)
        except (ValueError, RuntimeError):
            return []

    @property
    def pool(self) -> QueryPool:
        return self.current.pool

    def _follow(self) -> None:
        """Move to a new version of the graph once a run that rewrote it has finished."""
        from kgx.outdir import run_state

        said: str | None = None
        while not self._closed.wait(FOLLOW_SECONDS):
            if not self.versions.changed():
                continue
            why = run_state(self.out)
            if why is not None:
                if why != said:
                    self.log(f"kgx: {why}; still serving the version this server pinned")
                    said = why
                continue
            try:
                new = self._open(self.versions.pin())
            except Exception as exc:  # try again at the next look
                self.log(f"kgx: a new version of {self.out} could not be opened ({exc})")
                continue
            old, self.current = self.current, new
            said = None
            self.log(f"kgx: {self.out} has a new version (a run finished); serving it now")
            self._retire(old)

    def _retire(self, old: _Version) -> None:
        old.pool.close()

        def release() -> None:
            while not old.pool.drained():
                time.sleep(0.2)
            self.versions.release(old.store)

        threading.Thread(target=release, daemon=True, name="kgx-release").start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        v = self.current
        v.pool.close()
        deadline = time.monotonic() + 10
        while not v.pool.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.versions.release(v.store)


class Handler(StrictHandler):
    """The endpoint's routes (see the module docstring)."""

    server_version = "kgx"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body then
    # waits for the client's delayed ACK: 40 ms on every answer of a kept-alive connection.
    disable_nagle_algorithm = True
    server: KgxServer

    def setup(self) -> None:
        opts = self.server.opts
        self.idle_timeout = opts.idle_timeout
        self.request_timeout = opts.request_timeout
        self.max_body_bytes = opts.max_query_bytes * 4
        super().setup()

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless asked
        if os.environ.get("KGX_SERVE_LOG"):
            super().log_message(fmt, *args)

    @property
    def app(self) -> App:
        return self.server.app

    def _send(self, status: int, ctype: str, body: bytes, headers: dict[str, str] | None
              = None) -> None:
        opts = self.server.opts
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

    def _error(self, status: int, msg: str, close: bool = False,
               headers: dict[str, str] | None = None) -> None:
        if close:
            self.close_connection = True
        self._send(status, "text/plain; charset=utf-8", (msg + "\n").encode(), headers)

    def _host_ok(self) -> bool:
        opts = self.server.opts
        host = self.headers.get("Host")
        if host_allowed(host, opts.host, opts.allowed_hosts):
            return True
        self._error(403, f"Host {host!r} is not this server's address (kgx serve --allow-host "
                    "NAME to accept it)", close=True)
        return False

    def _cross_site(self) -> bool:
        """Refuse (403) a browser's request sent from another site's page: a form that POSTs
        a query here would make a visitor's browser run it."""
        origin = self.headers.get("Origin")
        site = (self.headers.get("Sec-Fetch-Site") or "").lower()
        cors = self.server.opts.cors
        allowed_origin = origin is not None and cors is not None and cors in ("*", origin)
        if (site == "cross-site" or (origin is not None and origin != "null" and
                                     not _same_origin(origin, self.headers.get("Host"))))\
                and not allowed_origin:
            self._error(403, "a cross-site request from a web page is refused (kgx serve "
                        "--cors ORIGIN lets a site's pages query this endpoint)", close=True)
            return True
        return False

    def do_OPTIONS(self) -> None:  # noqa: N802
        if not self._host_ok():
            return
        self.request_read()
        opts = self.server.opts
        if not opts.cors:
            self._error(405, "CORS is not enabled on this endpoint (kgx serve --cors)")
            return
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", opts.cors)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Accept")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        from kgx.serve.pages import static_file
        from kgx.serve.urls import accept_ranking, wants_html

        if not self._host_ok():
            return
        self.request_read()
        url = urlsplit(self.path)
        params = parse_qs(url.query)
        accept = self.headers.get("Accept", "")
        opts = self.server.opts
        if url.path == "/sparql" and "query" not in params and wants_html(accept):
            self._send(303, "text/plain; charset=utf-8", b"see /query\n", {"Location": "/query"})
        elif url.path == "/sparql" or (url.path == "/query" and "query" in params
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
            self._job(("page", "fact", {"digest": url.path[len("/fact/"):], "json": as_json}))
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
            status, ctype, body, headers = self.app.pool.run(job, self.client_address[0])
        except Refused as exc:
            retry = {"Retry-After": "1"} if exc.status == 503 else {}
            self._error(exc.status, str(exc), headers={**retry, **exc.headers})
            return
        self._send(status, ctype, body, headers)

    def _entity(self, tail: str, params: dict[str, list[str]], accept: str) -> None:
        from kgx.serve.urls import ENTITY_FORMATS, entity_format, iri_from_path

        namespace = self.app.current.kg.namespace
        resource = namespace + "resource/" if namespace else ""
        if not tail or not resource:
            self._error(404, "no entity named (try /entity/Title)")
            return
        iri = iri_from_path(tail, resource)
        fmt = entity_format(accept, next(iter(params.get("format") or []), None))
        if fmt is None:
            self._error(406, "entity pages are available as text/html, "
                        + ", ".join(ENTITY_FORMATS.values()))
        elif fmt != "html":
            self._job(("describe", iri, fmt))
        else:
            self._job(("page", "entity", {"iri": iri}))

    def _search(self, q: str) -> None:
        params: dict[str, Any] = {"q": q}
        if q.strip() and self.app.current.lookup is None:
            params["error"] = "This graph has no entity index, so there is nothing to " \
                "search (kgx index OUT builds one); the query page still works."
        elif q.strip():
            params["candidates"] = [
                {"iri": c.iri, "title": c.title, "label": c.label, "types": list(c.types),
                 "score": c.score} for c in self.app.candidates(q, 10, nil=False)]
        self._job(("page", "search", params))

    def do_POST(self) -> None:  # noqa: N802
        if not self._host_ok() or self._cross_site():
            return
        url = urlsplit(self.path)
        if url.path not in ("/sparql", "/query", "/update"):
            self._error(404, f"no such endpoint: {url.path}", close=True)
            return
        raw = self.read_body()
        if raw is None:
            return
        self.request_read()
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
        opts = self.server.opts
        if "update" in params:
            self._error(403, "this endpoint is read-only: SPARQL Update is not accepted")
            return
        query = body if body is not None else next(iter(params.get("query") or []), None)
        if not query:
            self._error(400, "missing query (GET /sparql?query=..., or POST it; the query "
                        "page is /query)")
            return
        size = len(query.encode("utf-8"))
        if size > opts.max_query_bytes:  # the rest of the check runs in the worker
            self._error(413, f"query is {size:,} bytes; the limit is {opts.max_query_bytes:,}")
            return
        graphs = {k: v for k, v in params.items()
                  if k in ("default-graph-uri", "named-graph-uri")}
        self._job(("sparql", query, self.headers.get("Accept", ""), graphs))

    def _lookup(self, params: dict[str, list[str]]) -> None:
        q = (params.get("q") or [""])[0]
        try:
            k = int((params.get("k") or ["10"])[0])
        except ValueError:
            self._error(400, "k must be an integer")
            return
        nil = (params.get("nil") or ["yes"])[0].lower() not in ("no", "false", "0", "off")
        v = self.app.current
        if v.lookup is None:
            self._error(503, "this graph has no entity index (kgx index OUT builds one)")
            return
        try:
            with self.app.lookup_lock:
                cands = v.kg.lookup(q, k=max(1, min(k, 100)), nil=nil)
                threshold = v.kg.linker.lookup_threshold
        except ValueError as exc:
            self._error(400, str(exc))
            return
        except RuntimeError as exc:
            self._error(503, str(exc))
            return
        body = json.dumps({"query": q, "nil": not cands, "nil_threshold": threshold,
                           "results": [
            {"iri": c.iri, "title": c.title, "label": c.label, "types": list(c.types),
             "score": c.score, "signals": c.signals} for c in cands]}, ensure_ascii=False)
        self._send(200, "application/json; charset=utf-8", body.encode("utf-8"))


class KgxServer(CappedServer):
    """The HTTP server with its :class:`App` (``app``); ``pool`` is the current version's
    query workers."""

    app: App

    def __init__(self, opts: ServeOptions) -> None:
        self.opts = opts
        super().__init__((opts.host, opts.port), Handler, opts.max_connections)

    @property
    def pool(self) -> QueryPool:
        return self.app.pool

    def server_close(self) -> None:
        super().server_close()
        app = getattr(self, "app", None)
        if app is not None:
            app.close()


def make_server(out: str | Path, opts: ServeOptions | None = None, *, log: Callable[[str], None]
                = lambda m: None) -> KgxServer:
    """A ready (not yet serving) HTTP server over an output directory.

    The port is bound first (a busy port is said at once), then the graph is pinned, the entity
    index loaded and the query workers started, before the server answers.

    Raises:
        GraphNotFound: No graph in ``out``.
        ValueError: A setting that cannot work (:meth:`ServeOptions.check`).
        OSError: The port cannot be bound (the message says which and what to do).
    """
    from kgx.graph.knowledge_graph import KnowledgeGraph
    from kgx.outdir import run_state

    opts = (opts or ServeOptions()).check()
    out_p = Path(out)
    KnowledgeGraph.open(out_p).close()  # fails early, in the caller, if there is no graph
    try:
        server = KgxServer(opts)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise OSError(exc.errno, f"port {opts.port} on {opts.host} is in use (another kgx "
                          "serve?); choose another with --port") from exc
        raise
    try:
        warning = run_state(out_p)
        if warning:
            log(f"kgx: warning: {warning}")
        server.app = App(out_p, opts, log)
    except BaseException:
        server.socket.close()
        raise
    return server


def serve(out: str | Path, opts: ServeOptions | None = None) -> None:
    """Serve until interrupted."""
    opts = opts or ServeOptions()

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    server = make_server(out, opts, log=say)
    host, port = server.server_address[:2]
    base = f"http://{host!s}:{port}"
    print(f"kgx: serving {out} at {base}/ (search and entity pages), {base}/query (a SPARQL "
          f"page), {base}/sparql (the SPARQL endpoint), {base}/lookup?q=NAME; "
          f"{opts.workers} query workers, {opts.timeout:g} s timeout, {opts.max_rows:,} rows "
          "max, read-only", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
