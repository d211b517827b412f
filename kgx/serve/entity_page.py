"""An entity's page and a fact's page: facts, evidence, candidates and the neighbourhood picture."""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from kgx.ontology import (
    KGX,
)
from kgx.serve.entity_data import (
    _FACT_PROPS,
    CHAR_WIDTH,
    LABEL_CHARS,
    LABEL_LINES,
    LINE_HEIGHT,
    MAX_FACTS,
    MAX_INCOMING,
    MAX_LINKS,
    MAX_MODEL_FACTS,
    MAX_NEIGHBOURS,
    MAX_REDIRECTS,
    Extractors,
    _count,
    _count_text,
    _properties,
    read_candidates,
    read_entity,
    read_evidence,
    read_incoming,
    read_model_facts,
    select,
)
from kgx.serve.pages import HTML_HEADERS, HTML_TYPE, Page, Renderer, esc, html_page, not_found_page
from kgx.serve.urls import entity_path, title_of

if TYPE_CHECKING:
    from kgx.serve.entity_data import Evidence, Fact
    from kgx.serve.pages import Suggest


def marks(sentence: str, start: int, spans: Sequence[tuple[Any, Any, str]]
          ) -> list[tuple[int, int, str]]:
    """``(start, end, class)`` spans given as page offsets, made relative to the sentence;
    spans that fall outside it or overlap an earlier one are left out."""
    out: list[tuple[int, int, str]] = []
    for a, b, cls in sorted((int(a), int(b), c) for a, b, c in spans if a is not None
                            and b is not None):
        a, b = a - start, b - start
        if 0 <= a < b <= len(sentence) and (not out or a >= out[-1][1]):
            out.append((a, b, cls))
    return out


def highlight(sentence: str, start: int, spans: Sequence[tuple[Any, Any, str]]) -> str:
    """The sentence as HTML with each ``(start, end, class)`` span (page offsets) in a ``<mark>``
    (see :func:`marks`).

    >>> highlight("Rand was born in Saint Petersburg.", 100, [(100, 104, "s"), (117, 133, "o")])
    '<mark class="s">Rand</mark> was born in <mark class="o">Saint Petersburg</mark>.'
    """
    out, pos = [], 0
    for a, b, cls in marks(sentence, start, spans):
        out.append(esc(sentence[pos:a]))
        out.append(f'<mark class="{esc(cls)}">{esc(sentence[a:b])}</mark>')
        pos = b
    out.append(esc(sentence[pos:]))
    return "".join(out)


@functools.lru_cache(maxsize=MAX_NEIGHBOURS + 1)
def _star_layout(n: int) -> tuple[tuple[float, float], ...]:
    """Positions of a centre and ``n`` neighbours by networkx's ``shell_layout``: the centre in
    the middle; past a dozen neighbours, every other one on an outer ring, so labels keep
    apart. The same for every entity with ``n`` neighbours, so computed once per ``n``."""
    import networkx as nx

    if n == 0:
        return ((0.0, 0.0),)
    g = nx.star_graph(n)  # node 0 is the centre
    ring = list(range(1, n + 1))
    shells = [[0], ring] if n <= 12 else [[0], ring[::2], ring[1::2]]
    pos = nx.shell_layout(g, nlist=shells)
    return tuple((float(pos[i][0]), float(pos[i][1])) for i in range(n + 1))


def label_lines(label: str) -> list[str]:
    """A node's label in at most :data:`LABEL_LINES` lines of :data:`LABEL_CHARS` characters,
    cut at spaces; what does not fit ends in an ellipsis (the whole name is the tooltip)."""
    words, lines, cur = label.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > LABEL_CHARS:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    lines = [ln if len(ln) <= LABEL_CHARS else ln[: LABEL_CHARS - 1] + "…" for ln in lines]
    if len(lines) > LABEL_LINES:
        last = lines[LABEL_LINES - 1]
        lines = lines[: LABEL_LINES - 1] + [(last[: LABEL_CHARS - 1] + "…")
                                            if len(last) >= LABEL_CHARS else last + " …"]
    return lines


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
              ) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def neighbourhood_svg(center: str, edges: Sequence[tuple[str, str, str]], r: Renderer) -> str:
    """The entity and its one-hop neighbours (at most :data:`MAX_NEIGHBOURS`) as an SVG star,
    laid out by :func:`_star_layout`.

    The longest labels take the slots nearest the horizontal axis, where a label has room
    beside its node; a label runs to two lines before it is cut; one that would cover a label
    already placed moves outwards; the picture's box grows to hold every label, so none is
    clipped.

    Args:
        center: The entity's IRI.
        edges: ``(neighbour IRI, predicate name, "out" or "in")``.
    """
    by_node: dict[str, list[str]] = {}
    for node, pred, direction in edges:
        if node == center:
            continue
        if node not in by_node and len(by_node) >= MAX_NEIGHBOURS:
            continue
        name = pred if direction == "out" else f"{pred} (in)"
        names = by_node.setdefault(node, [])
        if name not in names:
            names.append(name)
    label = {n: r.name(n) for n in [center, *by_node]}
    layout = _star_layout(len(by_node))
    slots = sorted(range(1, len(layout)), key=lambda i: (abs(layout[i][1]), i))
    nodes = sorted(by_node, key=lambda n: (-len(label[n]), label[n], n))
    pos = {center: layout[0], **{n: layout[i] for n, i in zip(nodes, slots, strict=True)}}
    extent = max((max(abs(x), abs(y)) for x, y in layout), default=0.0) or 1.0
    width, height = 760, 520

    def xy(n: str) -> tuple[float, float]:
        x, y = pos[n]
        return (round(width / 2 + float(x) / extent * 250, 1),
                round(height / 2 + float(y) / extent * 210, 1))

    cx, cy = xy(center)
    box = [cx - 12, cy - 12, cx + 12, cy + 12]
    placed: list[tuple[float, float, float, float]] = []
    drawn: list[str] = []
    for n in [center, *nodes]:
        x, y = xy(n)
        lines = label_lines(label[n])
        # Labels point away from the middle, so that neighbours' labels do not cross edges.
        anchor = "middle" if abs(x - cx) < 40 else ("start" if x > cx else "end")
        w = max(len(ln) for ln in lines) * CHAR_WIDTH
        h = len(lines) * LINE_HEIGHT
        tx = x + (0 if anchor == "middle" else (10 if anchor == "start" else -10))
        up = y < cy if n != center else False
        ty = (y + 20 if not up else y - 12 - (len(lines) - 1) * LINE_HEIGHT) \
            if anchor == "middle" else y + 4 - (len(lines) - 1) * LINE_HEIGHT / 2
        left = tx - w / 2 if anchor == "middle" else (tx if anchor == "start" else tx - w)
        rect = (left, ty - LINE_HEIGHT + 3, left + w, ty - LINE_HEIGHT + 3 + h)
        step = (-1 if up else 1) * (LINE_HEIGHT + 2)
        for _ in range(12):  # outwards until it covers no label placed before
            if not any(_overlaps(rect, p) for p in placed):
                break
            ty += step
            rect = (rect[0], rect[1] + step, rect[2], rect[3] + step)
        placed.append(rect)
        box = [min(box[0], rect[0], x - 10), min(box[1], rect[1], y - 10),
               max(box[2], rect[2], x + 10), max(box[3], rect[3], y + 10)]
        spans = "".join(f'<tspan x="{round(tx, 1)}" dy="{0 if i == 0 else LINE_HEIGHT:g}">'
                        f"{esc(ln)}</tspan>" for i, ln in enumerate(lines))
        path = entity_path(n, r.resource)
        cls = ' class="center"' if n == center else ""
        node = (f'<circle cx="{x}" cy="{y}" r="{9 if n == center else 6}"{cls}></circle>'
                f'<text x="{round(tx, 1)}" y="{round(ty, 1)}" text-anchor="{anchor}">{spans}'
                f"</text><title>{esc(label[n])}</title>")
        drawn.append(f'<a href="{esc(path)}">{node}</a>' if path else f"<g>{node}</g>")
    lines_svg = []
    for n in nodes:
        x, y = xy(n)
        lines_svg.append(f'<line x1="{cx}" y1="{cy}" x2="{x}" y2="{y}"><title>'
                         f'{esc(", ".join(by_node[n]))}</title></line>')
    x0, y0 = min(0.0, box[0] - 8), min(0.0, box[1] - 8)
    x1, y1 = max(float(width), box[2] + 8), max(float(height), box[3] + 8)
    view = f"{round(x0, 1)} {round(y0, 1)} {round(x1 - x0, 1)} {round(y1 - y0, 1)}"
    return (f'<svg class="neighbourhood" xmlns="http://www.w3.org/2000/svg" viewBox="{view}" '
            f'role="img" aria-label="one-hop neighbourhood">' + "".join(lines_svg)
            + "".join(drawn) + "</svg>")


def _fact_rows(facts: Sequence[Fact], r: Renderer) -> str:
    """Facts grouped by predicate as table rows: the predicate once, then its values."""
    groups: dict[str, list[str]] = {}
    for f in sorted(facts, key=lambda f: (r.name(f.predicate).lower(), f.predicate)):
        groups.setdefault(f.predicate, []).append(r.term(f.object))
    return "".join(
        f'<tr><th scope="row">{r.link(p)}</th><td>{"<br>".join(vals)}</td></tr>'
        for p, vals in groups.items())


def _section(ident: str, title: str, inner: str, note: str = "") -> str:
    n = f'<p class="note">{note}</p>' if note else ""
    return f'<section id="{ident}"><h2>{esc(title)}</h2>{n}{inner}</section>'


def fact_path(graph: str, kg: Any) -> str | None:
    """The page path of a model fact's graph (``/fact/{digest}``), or None for other graphs."""
    for kind in ("fact", "candidate"):
        prefix = (kg.namespace or "") + f"graph/{kind}/"
        digest = graph[len(prefix):] if graph.startswith(prefix) else ""
        if _DIGEST.fullmatch(digest):
            return f"/fact/{digest}"
    return None


_DIGEST = re.compile(r"[0-9a-f]{1,64}")


def _model_section(kg: Any, facts: list[Fact], r: Renderer) -> str:
    """Each model fact as a summary line that opens onto its evidence: ``/static/kgx.js``
    fetches it from ``/fact/{digest}`` when opened (without script, the link goes there)."""
    items = []
    for f, meta in read_model_facts(kg, facts):
        conf = meta.get("conf")
        agree = meta.get("agree") == "true"
        n = meta.get("n")
        path = fact_path(f.graph, kg)
        where = (f'<p class="note"><a href="{esc(path)}">The sentence{"" if n == "1" else "s"} '
                 "that state it</a>, with the subject and the object marked.</p>"
                 if path else "")
        data = f' data-evidence="{esc(path)}?format=json"' if path else ""
        items.append(
            f'<li class="model-fact"><details{data}><summary>'
            f'<span class="fact">{r.link(f.predicate)} → {r.term(f.object)}</span> '
            f'<span class="confidence">confidence {float(conf or 0):.2f}</span> '
            f'<span class="support">{esc(n if n is not None else "?")} sentence'
            f'{"" if n == "1" else "s"}</span> '
            f'<span class="agrees {"yes" if agree else "no"}">'
            f'{"an infobox agrees" if agree else "no infobox states it"}</span>'
            f'</summary><div class="evidence-slot">{where}</div></details></li>')
    more = (f'<p class="note">Showing the {MAX_MODEL_FACTS} most confident of {len(facts):,}.</p>'
            if len(facts) > MAX_MODEL_FACTS else "")
    return f'<ul class="model-facts">{"".join(items)}</ul>{more}'


def _evidence_json(ev: Evidence, r: Renderer) -> dict[str, Any]:
    page = title_of(ev.page, r.resource) if ev.page else None
    return {"sentence": ev.sentence,
            "marks": marks(ev.sentence, ev.start, ev.spans) if ev.start is not None else [],
            "page": page, "page_path": entity_path(ev.page, r.resource) if ev.page else None,
            "page_id": ev.page_id, "revision": ev.revision,
            "revision_url": r.wiki_url(page, ev.revision) if page and ev.revision else None,
            "confidence": float(ev.confidence) if ev.confidence is not None else None}


def fact_page(kg: Any, digest: str, as_json: bool = False) -> Page:
    """``/fact/{digest}``: one model fact with its most confident evidence sentences (at most
    :data:`MAX_EVIDENCE` of the first :data:`EVIDENCE_READ`), as HTML or as JSON (what the
    entity page's script draws)."""
    import pyoxigraph as ox

    r = Renderer(kg)
    graph = (kg.namespace or "") + "graph/fact/" + digest
    triples = [] if not _DIGEST.fullmatch(digest) else list(itertools.islice(
        kg.store.quads_for_pattern(None, None, None, ox.NamedNode(graph)), 2))
    candidate = None
    if not triples and _DIGEST.fullmatch(digest):  # a fact kept below the bar
        graph = (kg.namespace or "") + "graph/candidate/" + digest
        rdf = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
        props = _properties(kg, graph, {rdf + "subject": "s", rdf + "predicate": "p",
                                        rdf + "object": "o", KGX + "heldBack": "why"})
        if {"s", "p", "o"} <= set(props):
            triples = [ox.Triple(ox.NamedNode(props["s"]), ox.NamedNode(props["p"]),
                                 ox.NamedNode(props["o"]))]
            candidate = props.get("why", "")
    if len(triples) != 1:
        return html_page(404, "Not found", f"<h1>No model fact {esc(digest)}</h1>")
    t = triples[0]
    meta = _properties(kg, graph, _FACT_PROPS)
    evidence = read_evidence(kg, graph)
    if as_json:
        body = json.dumps({"subject": t.subject.value, "predicate": t.predicate.value,
                           "object": t.object.value, "confidence": meta.get("conf"),
                           "support": meta.get("n"), "agrees": meta.get("agree") == "true",
                           "candidate": candidate is not None, "held_back": candidate,
                           "evidence": [_evidence_json(ev, r) for ev in evidence]},
                          ensure_ascii=False)
        return Page(200, "application/json; charset=utf-8", body.encode("utf-8"),
                    {"X-Content-Type-Options": "nosniff"})
    items = []
    for ev in evidence:
        j = _evidence_json(ev, r)
        text = highlight(ev.sentence, ev.start, ev.spans) if ev.start is not None \
            else esc(ev.sentence)
        where = []
        if ev.page:
            where.append(r.link(ev.page))
            if j["revision_url"]:
                where.append(f'<a class="external" href="{esc(j["revision_url"])}" '
                             f'rel="noopener noreferrer">revision {esc(ev.revision)}</a>')
        elif ev.page_id is not None:
            where.append(f"page id {esc(ev.page_id)}")
        if ev.confidence is not None:
            where.append(f"sentence confidence {float(ev.confidence):.2f}")
        items.append(f'<li><p class="sentence">{text}</p>'
                     f'<p class="source">{" · ".join(where)}</p></li>')
    n = meta.get("n")
    shown = f"{len(evidence)} of {int(n):,}" if n is not None and int(n) > len(evidence) \
        else f"{len(evidence)}"
    title = f"{r.name(t.subject.value)} → {r.name(t.predicate.value)} → " + (
        r.name(t.object.value) if isinstance(t.object, ox.NamedNode) else t.object.value)
    agree = meta.get("agree") == "true"
    what = (f"A candidate the model read, not asserted ({esc(candidate)}): confidence "
            if candidate is not None else "A fact the model read: confidence ")
    body = (f"<h1>{r.link(t.subject.value)} → {r.link(t.predicate.value)} → "
            f"{r.term(t.object)}</h1><p class=\"note\">{what}"
            f"{float(meta.get('conf') or 0):.2f} over {esc(n or '?')} sentence(s); "
            f"{'an infobox states it too' if agree else 'no infobox states it'}.</p>"
            f"<h2>Evidence ({shown})</h2><p class=\"note\">The subject and the object as the "
            f"model found them in each sentence.</p><ol class=\"evidence\">{''.join(items)}</ol>")
    return html_page(200, title, body)


def entity_page(kg: Any, iri: str, suggest: Suggest | None = None) -> Page:
    """The HTML page of one entity; a redirect's page sends the browser to its target (303);
    an IRI the graph does not know gets a 404 page with what ``suggest(name, k)`` offers."""
    import pyoxigraph as ox

    r = Renderer(kg)
    extractor = Extractors(kg)
    facts = read_entity(kg, iri, extractor)
    if facts.redirect and (path := entity_path(facts.redirect, r.resource)):
        return Page(303, HTML_TYPE, b"", {**HTML_HEADERS, "Location": path})
    if not facts.quads and not select(kg, f"ASK {{ ?s ?p <{iri}> }}"):
        name = title_of(iri, r.resource)
        return not_found_page(kg, iri, suggest(name, 5) if suggest is not None else [])
    vocab = r.vocab
    title = facts.label or r.name(iri)
    head = [f"<h1>{esc(title)}</h1>", f'<p class="iri"><code>{esc(iri)}</code>']
    if facts.source_url and facts.source_url.startswith(("http://", "https://")):
        head.append(f' · <a class="external" href="{esc(facts.source_url)}" '
                    'rel="noopener noreferrer">page on the wiki</a>')
    path = entity_path(iri, r.resource) or ""
    head.append(" · RDF: " + ", ".join(
        f'<a href="{esc(path)}?format={f}">{n}</a>'
        for f, n in (("turtle", "Turtle"), ("ntriples", "N-Triples"), ("jsonld", "JSON-LD"))))
    head.append("</p>")
    chains = [" → ".join(r.link(c) for c in vocab.chain(t)) for t in
              vocab.most_specific(facts.types)]
    in_chain = {c for t in vocab.most_specific(facts.types) for c in vocab.chain(t)}
    others = [r.link(t) for t in facts.types if t not in in_chain]
    if chains or others:
        head.append('<dl class="summary"><dt>Types</dt><dd class="types">'
                    + "".join(f'<div class="chain">{c}</div>' for c in chains)
                    + (f'<div class="also">also {", ".join(others)}</div>' if others else "")
                    + "</dd>")
    else:
        head.append('<dl class="summary">')
    if facts.aliases:
        head.append(f'<dt>Aliases</dt><dd class="aliases">{esc(", ".join(facts.aliases))}</dd>')
    head.append("</dl>")
    if facts.abstract:
        head.append('<div class="abstract">' + "".join(
            f"<p>{esc(p)}</p>" for p in facts.abstract.split("\n") if p.strip()) + "</div>")
    body = ["".join(head)]
    if facts.infobox:
        body.append(_section("infobox", "Infobox facts",
                             f'<table class="facts">{_fact_rows(facts.infobox, r)}</table>',
                             "Stated by the page's infobox, mapped onto the ontology where a "
                             "mapping exists (prop: is a raw infobox parameter)."))
    if facts.model:
        body.append(_section("model", "Facts the model read", _model_section(kg, facts.model, r),
                             "Read by the fine-tuned reader from the article text, each with "
                             "its confidence (its probability of being right, calibrated on "
                             "held-out infobox facts); open one to see the sentences that "
                             "state it."))
    candidates = read_candidates(kg, iri)
    if candidates:
        items = "".join(
            f'<li class="candidate"><a href="{esc(fact_path(c.node, kg) or "")}">'
            f'{r.link(c.predicate)} → {r.link(c.object)}</a> '
            f'<span class="confidence">confidence {c.confidence:.2f}</span> '
            f'<span class="why">{esc(c.why)}</span></li>' for c in candidates)
        body.append(_section(
            "candidates", "Candidates the graph does not assert",
            f'<details><summary>{len(candidates):,} fact{"s" if len(candidates) != 1 else ""}'
            f" the reader read below the bar</summary><ul class=\"candidates\">{items}</ul>"
            "</details>",
            "Kept out of the default graph (their property's facts are not right often "
            "enough on held-out infobox facts, or could not be measured); SPARQL reaches them "
            "in the graph <code>graph/candidates</code>."))
    incoming = read_incoming(kg, iri, vocab, extractor)
    if incoming:
        rows = "".join(f'<tr><td>{r.link(s)}</td><td>{r.link(p)}</td>'
                       f'<td class="extractor">{esc(ex or "inferred")}</td></tr>'
                       for s, p, ex in incoming[:MAX_INCOMING])
        more = " (the first " + str(MAX_INCOMING) + ")" if len(incoming) > MAX_INCOMING else ""
        body.append(_section("incoming", "Incoming facts",
                             f'<table class="facts"><thead><tr><th>subject</th><th>property</th>'
                             f"<th>from</th></tr></thead>{rows}</table>",
                             f"Facts that name {esc(title)} as their value{more}."))
    neighbours = [(f.object.value, r.name(f.predicate), "out") for f in facts.infobox
                  + facts.model if entity_path(f.object.value, r.resource)]
    neighbours += [(s, r.name(p), "in") for s, p, _ in incoming]
    if neighbours:
        body.append(_section("neighbourhood", "Neighbourhood",
                             f"<figure>{neighbourhood_svg(iri, neighbours, r)}</figure>",
                             f"{esc(title)} and the entities one fact away (at most "
                             f"{MAX_NEIGHBOURS}; hover an edge for its property)."))
    redirects = sorted(q.subject.value for q in itertools.islice(kg.store.quads_for_pattern(
        None, ox.NamedNode(KGX + "redirectsTo"), ox.NamedNode(iri)), MAX_REDIRECTS))
    if redirects:
        body.append(_section("redirects", "Redirects here",
                             '<ul class="inline">' + "".join(
                                 f"<li>{esc(r.name(x))}</li>" for x in redirects) + "</ul>"))
    if facts.inferred:
        body.append(_section("inferred", "Inferred facts",
                             f'<details><summary>{len(facts.inferred):,} facts entailed by the '
                             f"ontology (RDFS / OWL-RL)</summary><table class=\"facts\">"
                             f"{_fact_rows(facts.inferred, r)}</table></details>"))
    if facts.other:
        body.append(_section("other", "Other facts",
                             f'<table class="facts">{_fact_rows(facts.other, r)}</table>'))
    if facts.categories:
        body.append(_section("categories", "Categories", '<ul class="inline">' + "".join(
            f"<li>{r.link(c, r.name(c).split(':', 1)[-1])}</li>" for c in facts.categories)
            + "</ul>"))
    out_links = sorted(facts.links)[:MAX_LINKS]
    n_out = len(facts.links) if not facts.truncated else \
        _count(kg, f"<{iri}> <{KGX}wikiLink> ?o")
    n_in = _count(kg, f"?s <{KGX}wikiLink> <{iri}>")
    links = f"<p>Links to {_count_text(n_out)} pages; {_count_text(n_in)} pages link here.</p>"
    if out_links:
        every = urlencode({"query": f"SELECT ?page WHERE {{ <{iri}> kgx:wikiLink ?page }} "
                                    "ORDER BY ?page"})
        links += ('<ul class="inline">' + "".join(f"<li>{r.link(o)}</li>" for o in out_links)
                  + (f'<li><a href="/query?{esc(every)}">all {_count_text(n_out)}…</a></li>'
                     if n_out > MAX_LINKS else "") + "</ul>")
    body.append(_section("links", "Wikilinks", links))
    if facts.truncated:
        body.append(f'<p class="note">This entity has more than {MAX_FACTS:,} facts; the page '
                    "shows the first. SPARQL reaches them all.</p>")
    return html_page(200, title, "".join(body))
