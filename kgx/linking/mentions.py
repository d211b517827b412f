"""Which entity a predicted mention names: the page's own wikilink around it, the page itself,
or the linker.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Any

from kgx.records import LinkedMention


def page_context(linker: Any, doc: dict[str, Any]) -> Any:
    eid = linker.aliases.entity_id(doc["title"])
    return linker.entity_vector(eid) if eid is not None else None


def link_mentions(linker: Any, pending: list[Any], stats: dict[str, int],
                   alias_key: Callable[[str], str]) -> list[LinkedMention | None]:
    """The entity each mention names: by the page's own wikilink around it, the page itself,
    or the linker; None for NIL."""
    out: list[LinkedMention | None] = [None] * len(pending)
    todo = []
    for i, (doc, a, m, _ctx) in enumerate(pending):
        stats["mentions"] += 1
        s, e = a + m.start, a + m.end
        target = _wikilink_of(doc, s, e, m.text, alias_key)
        if target is not None:
            out[i] = LinkedMention(target, "wikilink", 1.0)
            stats["linked_by_wikilink"] += 1
            continue
        names = {alias_key(doc["title"]), *(alias_key(x) for x in doc.get("aliases", []))}
        if alias_key(m.text) in names or (m.label == "PER" and alias_key(m.text) ==
                                          alias_key(doc["title"].split(" (")[0].split()[-1])):
            out[i] = LinkedMention(doc["title"], "page", 1.0)
            stats["linked_by_page"] += 1
            continue
        todo.append(i)
    if todo:
        res = linker.link_many([(pending[i][2].text, pending[i][2].label, pending[i][3])
                                for i in todo])
        for i, c in zip(todo, res, strict=True):
            if c is not None:
                out[i] = LinkedMention(c.title, "linker", c.score)
                stats["linked_by_linker"] += 1
    stats["linked_mentions"] += sum(1 for x in out if x is not None)
    return out


LINK_SPAN_SHARE = 0.75  # of a link's text a mention inside it must cover (and conversely)


def _wikilink_of(doc: dict[str, Any], s: int, e: int, text: str,
                 alias_key: Callable[[str], str]) -> str | None:
    """The target of the page's link that names the mention ``[s, e)``: a link that holds it
    or lies inside it, where the shorter of the two spans covers most of the longer
    (:data:`LINK_SPAN_SHARE`), or the mention is the target's name without its qualifier.
    "Florida" inside ``[[Merritt Island, Florida]]`` or "United States" inside ``[[United
    States bankruptcy court]]`` is not that link's target: it goes to the linker."""
    link = _covering_span(doc, s, e)
    if link is None:
        return None
    ls, le, target = link
    short, long_ = sorted((e - s, le - ls))
    if short >= LINK_SPAN_SHARE * long_:
        return target
    name = target.split(" (")[0].split(", ")[0]
    return target if alias_key(text) == alias_key(name) else None


def _covering_span(doc: dict[str, Any], s: int, e: int) -> tuple[int, int, str] | None:
    """The page's link (start, end, target) that contains ``[s, e)`` or lies inside it.

    Links are sorted and never overlap, so a bisection finds the candidates.
    """
    links = doc["links"]
    starts = doc.get("_starts")
    if starts is None:
        starts = doc["_starts"] = [ln[0] for ln in links]
    i = bisect_right(starts, s)
    if i and links[i - 1][0] <= s and e <= links[i - 1][1]:
        return links[i - 1][0], links[i - 1][1], links[i - 1][2]
    i = bisect_left(starts, s)
    while i < len(links) and links[i][0] < e:
        if s <= links[i][0] and links[i][1] <= e:
            return links[i][0], links[i][1], links[i][2]
        i += 1
    return None
