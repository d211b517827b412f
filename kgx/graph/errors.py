"""What a query on the graph can go wrong with."""

from __future__ import annotations


class QueryError(ValueError):
    """A query that could not be parsed or run; the message says where and why."""


class ServiceRefused(QueryError):
    """A query that names ``SERVICE``, which would make the store send HTTP requests."""


class GraphNotFound(FileNotFoundError):
    """An output directory without a kgx graph in it."""
