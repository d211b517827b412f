"""The settings of ``kgx serve``, checked before anything starts."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class ServeOptions:
    """Endpoint settings (see :mod:`kgx.serve`).

    Attributes:
        host, port: Where to listen (loopback by default).
        workers: Queries that may run at once for as long as ``timeout`` allows.
        timeout: Seconds a query may run.
        light_timeout: Seconds a query may run in the light lane, the one worker kept for
            light queries while the others are busy (:mod:`kgx.serve.pool`).
        max_rows: Rows (or triples) per answer.
        max_query_bytes: Largest query.
        queue_wait: Seconds a request waits for a worker before 503.
        memory_mb: Memory a query worker may add.
        cors: ``Access-Control-Allow-Origin`` to send (off by default).
        max_response_bytes: Largest answer.
        idle_timeout: Seconds a connection waits for its next request.
        request_timeout: Seconds a request (line, headers and body) may take to arrive once
            its first byte has.
        max_connections: Connections open at once.
        allowed_hosts: More ``Host`` names to answer (DNS rebinding defence).
        follow: Move to a new version of the graph once a run that rewrote it has finished
            (the server serves one version at a time).
    """

    host: str = "127.0.0.1"
    port: int = 7878
    workers: int = 2
    timeout: float = 10.0
    light_timeout: float = 0.5
    max_rows: int = 10_000
    max_query_bytes: int = 65_536
    queue_wait: float = 2.0
    memory_mb: int = 2048
    cors: str | None = None
    max_response_bytes: int = 32 << 20
    idle_timeout: float = 20.0
    request_timeout: float = 10.0
    max_connections: int = 64
    allowed_hosts: tuple[str, ...] = ()
    follow: bool = True

    def check(self) -> ServeOptions:
        """These settings, or ValueError naming the first that cannot work."""
        positive = {"timeout": self.timeout, "light timeout": self.light_timeout,
                    "idle timeout": self.idle_timeout, "request timeout": self.request_timeout,
                    "queue wait": self.queue_wait}
        for name, v in positive.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number of seconds, not {v!r}")
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1, not {self.workers}")
        if self.memory_mb < MIN_MEMORY_MB:
            raise ValueError(f"--memory-mb must be at least {MIN_MEMORY_MB} (a worker needs "
                             f"that much to open the store), not {self.memory_mb}")
        for name, n in (("max rows", self.max_rows), ("max response bytes",
                                                      self.max_response_bytes),
                        ("max connections", self.max_connections),
                        ("max query bytes", self.max_query_bytes)):
            if n < 1:
                raise ValueError(f"{name} must be at least 1, not {n}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be 0 to 65535, not {self.port}")
        return self


# Address space a worker needs beyond its start to open a store and answer a small query
# (measured: opening the sample's store and running the README's queries took 150-190 MB).
MIN_MEMORY_MB = 256


class Refused(Exception):
    """A request the endpoint will not run: HTTP status and message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
