"""Strict HTTP/1.1 for ``kgx serve``: framing, deadlines, and the connection cap.

Python's :mod:`http.server` is lenient: it takes ``Transfer-Encoding :`` (a space before the
colon) for another header, the first of two ``Content-Length`` headers, and a ``GET`` with a
body as two requests. Behind a proxy that reads the same bytes another way, one request then
becomes two (request smuggling). This module reads a request the strict way and refuses what
RFC 9112 lets a server refuse:

* the request line is ``METHOD /target HTTP/1.x``; the target has no control character;
* header names are tokens followed at once by ``:``; no line folding; at most
  :data:`MAX_HEADER_LINES` lines and :data:`MAX_HEADER_BYTES` bytes;
* at most one ``Content-Length`` and one ``Host``; ``Transfer-Encoding`` is refused (411, or 400
  beside a ``Content-Length``); a method without a body (GET, HEAD, OPTIONS) sends none.

Time is bounded twice: a connection waits ``idle_timeout`` for the first byte of a request,
and from that byte the whole request (line, headers, body) must arrive within
``request_timeout``, however slowly it trickles in. At most ``max_connections`` connections
are open; a new one past the cap closes the connection that has waited longest for its request
(idle first, then one still sending), so slow senders cannot shut everyone else out: only
connections that are being answered count against a newcomer, who gets 503 when all are.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_HEADER_LINES = 100
MAX_HEADER_BYTES = 32 << 10
MAX_REQUEST_LINE = 65_536
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[^\x00-\x20\x7f]+")
BODILESS = ("GET", "HEAD", "OPTIONS")


class BadRequest(Exception):
    """A request this server will not read further: status and reason (the connection
    closes)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _DeadlineSocket(io.RawIOBase):
    """The socket a handler reads, each ``recv`` bounded by the handler's clock: the idle
    timeout while no byte of a request has come, the request's deadline after."""

    def __init__(self, sock: socket.socket, handler: StrictHandler) -> None:
        self._sock = sock
        self._h = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        h = self._h
        if h.deadline is None:
            wait = h.idle_timeout
        else:
            wait = h.deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError("the request did not arrive within its deadline")
        self._sock.settimeout(wait)
        n = self._sock.recv_into(buffer)
        if n and h.deadline is None:
            h.request_started()
        return n


class StrictHandler(BaseHTTPRequestHandler):
    """A request handler that reads requests strictly (see the module docstring).

    Subclasses set :attr:`idle_timeout` and :attr:`request_timeout` and implement ``do_*``.
    :meth:`read_body` reads a POST body within the request's deadline.
    """

    protocol_version = "HTTP/1.1"
    idle_timeout = 20.0
    request_timeout = 10.0
    max_body_bytes = 1 << 20
    deadline: float | None = None

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BufferedReader(_DeadlineSocket(self.connection, self), 65_536)
        self.deadline = None
        self._track("idle")

    def _track(self, state: str) -> None:
        table = getattr(self.server, "connections", None)
        if table is not None:
            table.set_state(self.connection, state)

    def request_started(self) -> None:
        """The first byte of a request came: the whole request is due by the deadline."""
        self.deadline = time.monotonic() + self.request_timeout
        self._track("reading")

    def request_read(self) -> None:
        """The request is in: no deadline while it is answered."""
        self.deadline = None
        self._track("busy")

    def handle_one_request(self) -> None:
        self.deadline = None
        self._track("idle")
        try:
            super().handle_one_request()
        except (TimeoutError, OSError):
            self.close_connection = True

    def parse_request(self) -> bool:
        """The request line and headers, read strictly; False after answering an error."""
        line = str(getattr(self, "raw_requestline", b""), "iso-8859-1").rstrip("\r\n")
        self.requestline = line
        try:
            parts = line.split(" ")
            if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                raise BadRequest(400, f"expected 'METHOD /target HTTP/1.1', got {line[:80]!r}")
            if not _TOKEN.fullmatch(parts[0].encode("latin-1")):
                raise BadRequest(400, f"{parts[0][:20]!r} is not a method name")
            target = parts[1]
            if not _TARGET.fullmatch(target) or not (target.startswith("/") or target == "*"):
                raise BadRequest(400, "the request target must be a path that starts with '/' "
                                 "and holds no space or control character")
            block = self._read_header_block()
        except BadRequest as exc:
            self.close_connection = True
            self.request_version = "HTTP/1.1"
            self.command, self.path = "", ""
            self.send_error_text(exc.status, str(exc))
            return False
        saved, self.rfile = self.rfile, io.BufferedReader(io.BytesIO(block))  # type: ignore
        try:
            ok = super().parse_request()
        finally:
            self.rfile = saved
        if not ok:
            return False
        try:
            self._check_framing()
        except BadRequest as exc:
            self.close_connection = True
            self.send_error_text(exc.status, str(exc))
            return False
        return True

    def _read_header_block(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while True:
            raw = self.rfile.readline(MAX_HEADER_BYTES + 1)
            if not raw:
                raise BadRequest(400, "the connection closed inside the headers")
            size += len(raw)
            if size > MAX_HEADER_BYTES or len(lines) >= MAX_HEADER_LINES:
                raise BadRequest(431, f"headers over {MAX_HEADER_LINES} lines or "
                                 f"{MAX_HEADER_BYTES:,} bytes")
            if raw in (b"\r\n", b"\n"):
                lines.append(raw)
                return b"".join(lines)
            if raw[:1] in (b" ", b"\t"):
                raise BadRequest(400, "folded header lines are not accepted")
            name, colon, _ = raw.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise BadRequest(400, f"malformed header line {raw[:60]!r} (a header name is a "
                                 "token followed at once by ':')")
            if b"\x00" in raw or not raw.endswith(b"\n"):
                raise BadRequest(400, "a header line holds a NUL or does not end")
            lines.append(raw)

    def _check_framing(self) -> None:
        for single in ("Content-Length", "Host"):
            values = self.headers.get_all(single) or []
            if len(values) > 1:
                raise BadRequest(400, f"{len(values)} {single} headers; send one")
        if self.headers.get("Transfer-Encoding") is not None:
            if self.headers.get("Content-Length") is not None:
                raise BadRequest(400, "both Transfer-Encoding and Content-Length")
            raise BadRequest(411, "send the body with a Content-Length (chunked bodies are not "
                             "accepted)")
        raw = (self.headers.get("Content-Length") or "").strip()
        if raw and not (raw.isascii() and raw.isdigit()):
            raise BadRequest(400, f"Content-Length must be a non-negative integer, not {raw!r}")
        if self.command in BODILESS and raw and int(raw) > 0:
            raise BadRequest(400, f"a {self.command} request has no body")

    def read_body(self) -> bytes | None:
        """The request body (within ``max_body_bytes`` and the deadline), or None after
        answering 413 or the client going away."""
        length = int((self.headers.get("Content-Length") or "0").strip() or "0")
        if length > self.max_body_bytes:
            self.close_connection = True
            self.send_error_text(413, f"request body is {length:,} bytes; the limit is "
                                 f"{self.max_body_bytes:,}")
            return None
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            body = b""
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def send_error_text(self, status: int, message: str,
                        headers: dict[str, str] | None = None) -> None:
        """A plain-text answer (every error of this server has one)."""
        body = (message + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class ConnectionTable:
    """The open connections and what each is doing (``idle``, ``reading``, ``busy``), so
    that a newcomer past the cap can take the place of one that only waits."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._cond = threading.Condition()
        self._state: dict[socket.socket, tuple[str, float]] = {}

    def set_state(self, conn: socket.socket, state: str) -> None:
        with self._cond:
            if conn in self._state:
                self._state[conn] = (state, time.monotonic())

    def admit(self, conn: socket.socket, wait: float = 2.0) -> bool:
        """Make room for ``conn``; False when every open connection is being answered."""
        with self._cond:
            deadline = time.monotonic() + wait
            while len(self._state) >= self.cap:
                victim = self._victim()
                if victim is None:
                    return False
                self._state[victim] = ("closing", time.monotonic())
                with contextlib.suppress(OSError):
                    victim.shutdown(socket.SHUT_RDWR)
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return len(self._state) < self.cap
            self._state[conn] = ("idle", time.monotonic())
            return True

    def _victim(self) -> socket.socket | None:
        for wanted in ("idle", "reading"):
            waiting = [(t, c) for c, (s, t) in self._state.items() if s == wanted]
            if waiting:
                return min(waiting, key=lambda x: x[0])[1]
        return None

    def remove(self, conn: socket.socket) -> None:
        with self._cond:
            self._state.pop(conn, None)
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._state)


class CappedServer(ThreadingHTTPServer):
    """A threading HTTP server with a :class:`ConnectionTable` (``connections``)."""

    # The default backlog of 5 drops connections under 20 concurrent clients, and each
    # dropped SYN costs the client a one-second retransmit: p99 went from 10 ms to 1 s.
    request_queue_size = 256
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[StrictHandler],
                 max_connections: int) -> None:
        self.connections = ConnectionTable(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.admit(request):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                b"Content-Length: 0\r\nRetry-After: 1\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.connections.remove(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.remove(request)
