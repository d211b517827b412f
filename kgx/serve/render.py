"""A page rendered in a query worker: the request's path to the page that answers it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kgx.serve.entity_page import entity_page, fact_page
from kgx.serve.pages import query_page, search_page

if TYPE_CHECKING:
    from kgx.serve.pages import Page, Suggest


def render(kg: Any, name: str, params: dict[str, Any], suggest: Suggest | None = None) -> Page:
    """The page ``name`` ("entity", "search", "query") with its parameters: the entry point the
    server's query workers call. ``suggest(name, k)``: candidate IRIs for a 404 page."""
    if name == "entity":
        return entity_page(kg, params["iri"], suggest)
    if name == "search":
        return search_page(kg, params.get("q", ""), params.get("candidates"),
                           params.get("error"))
    if name == "query":
        return query_page(kg, params.get("query", ""))
    if name == "fact":
        return fact_page(kg, params["digest"], params.get("json", False))
    raise ValueError(f"no page {name!r}")
