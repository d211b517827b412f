"""kgx serve's HTML pages over plain HTTP: entity pages, search, the query page, content
negotiation and safety. tests/test_browser.py drives the same pages in headless Chromium."""

from __future__ import annotations

import http.client
import json
import urllib.parse
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgx.serve.entity_page import highlight
from kgx.serve.pages import CSP, EXAMPLES
from kgx.serve.urls import entity_format, entity_path, iri_from_path, wants_html
from tests.support import HOSTILE_TITLES, MARKUP_LABEL, ROOT, serving, write_hostile_graph

# What Chromium sends when it navigates.
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
README = ROOT / "README.md"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("hostile") / "out"
    res = write_hostile_graph(out)
    with serving(out, workers=2, timeout=3, queue_wait=0.2) as (base, srv):
        yield base, res, srv


@pytest.fixture(scope="module")
def sample(readme_out: Path):
    with serving(readme_out, workers=2, timeout=30) as (base, _):
        yield base


def get(base: str, path: str, accept: str = BROWSER) -> tuple[int, dict[str, str], str]:
    """GET without following redirects."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("GET", path, headers={"Accept": accept})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode("utf-8")
    finally:
        conn.close()


class Outline(HTMLParser):
    """Tags, attributes and the text of chosen elements of a page."""

    def __init__(self, body: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("h1", "th", "td", "mark", "title"):
            self._open.append(tag)
            self.text.setdefault(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for tag in set(self._open):
            self.text[tag][-1] += data

    def hrefs(self) -> list[str]:
        return [a["href"] or "" for t, a in self.tags if t == "a" and "href" in a]


def assert_safe(body: str, headers: dict[str, str]) -> Outline:
    """No script but the query page's own file, no event handler, no inline style; the CSP."""
    page = Outline(body)
    for tag, attrs in page.tags:
        assert tag not in ("img", "iframe", "object", "embed", "style"), tag
        if tag == "script":
            assert attrs == {"src": "/static/kgx.js", "defer": None}, attrs
        assert not any(a.startswith("on") or a == "style" for a in attrs), (tag, attrs)
        for a in ("href", "src", "action"):
            assert not (attrs.get(a) or "").lower().startswith("javascript:"), attrs
    assert headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    return page


def test_entity_page_shows_facts_types_and_neighbours(sample: str) -> None:
    st_, h, body = get(sample, "/entity/Ayn_Rand")
    assert st_ == 200 and h["Content-Type"].startswith("text/html")
    page = assert_safe(body, h)
    assert page.text["h1"] == ["Ayn Rand"]
    cells = [c.strip() for c in page.text["th"]], [c.strip() for c in page.text["td"]]
    born = cells[1][cells[0].index("date of birth")]
    assert born.startswith("1905-02-02")
    assert "/entity/Saint_Petersburg" in page.hrefs()
    chain = body[body.index('<div class="chain">'):]
    assert _strip_tags(chain[:chain.index("</div>")]) == "writer → person → agent → entity"
    assert 'id="neighbourhood"' in body and "<svg" in body
    assert "AynRand" in body  # the redirect
    assert "/entity/Category:1905_births" in page.hrefs()


def _strip_tags(fragment: str) -> str:
    out, inside = [], False
    for ch in fragment:
        if ch == "<":
            inside = True
        elif ch == ">":
            inside = False
        elif not inside:
            out.append(ch)
    return unescape("".join(out))


def test_markup_in_the_graph_renders_as_text(hostile) -> None:
    base, res, _ = hostile
    st_, h, body = get(base, "/entity/Markup")
    assert st_ == 200
    page = assert_safe(body, h)
    assert page.text["h1"] == [MARKUP_LABEL]
    assert page.text["title"][0] == MARKUP_LABEL + " · kgx"  # the <title>, then SVG titles
    assert "<script>window" not in body and "onerror=" not in body.replace("onerror=&quot;", "")
    assert "/entity/AC/DC" in page.hrefs()
    # The model fact opens onto its evidence, fetched from its own page (a link without JS).
    assert ("details", {"data-evidence": "/fact/1?format=json"}) in page.tags
    assert "/fact/1" in page.hrefs()
    st_, h, body = get(base, "/fact/1")
    assert st_ == 200
    page = assert_safe(body, h)
    # Both mentions marked at their offsets, the rest escaped.
    assert ('<mark class="subject">Markup</mark> &lt;b&gt;wrote&lt;/b&gt; about '
            '<mark class="object">AC/DC</mark> &amp; friends.') in body
    assert "https://wiki.test/wiki/Markup?oldid=7" in page.hrefs()
    st_, h, body = get(base, "/fact/1?format=json", "application/json")
    data = json.loads(body)
    assert st_ == 200 and data["object"] == res + "AC/DC" and data["confidence"] == "0.75"
    ev = data["evidence"][0]
    assert [ev["sentence"][a:b] for a, b, _ in ev["marks"]] == ["Markup", "AC/DC"]
    assert ev["page_path"] == "/entity/Markup" and ev["revision"] == "7"
    for bad in ("/fact/2", "/fact/zz", "/fact/1/..", "/fact/"):
        assert get(base, bad)[0] == 404, bad


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_titles_round_trip(hostile, title: str) -> None:
    base, res, _ = hostile
    iri = iri_from_path(title, res)
    path = entity_path(iri, res)
    assert path is not None and iri_from_path(path[len("/entity/"):], res) == iri
    st_, h, body = get(base, path)
    assert st_ == 200, (title, path)
    assert Outline(body).text["h1"] == [title]


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<>[]{}|_"),
               min_size=1, max_size=30).filter(lambda t: t.strip() == t and "  " not in t))
def test_entity_paths_invert(title: str) -> None:
    res = "https://kgx.dev/enwiki/resource/"
    iri = iri_from_path(title, res)
    path = entity_path(iri, res)
    assert path is not None and path.isascii()
    assert iri_from_path(urllib.parse.urlsplit(path).path[len("/entity/"):], res) == iri


def test_redirects_unknown_entities_and_suggestions(hostile, sample: str) -> None:
    base, _, _ = hostile
    st_, h, _ = get(base, "/entity/Old_name")
    assert st_ == 303 and h["Location"] == "/entity/Markup"
    st_, h, body = get(sample, "/entity/Ayn_Rnd")
    assert st_ == 404 and "Did you mean" in body
    assert "/entity/Ayn_Rand" in Outline(body).hrefs()
    assert_safe(body, h)
    st_, _, body = get(base, "/entity/Nobody")  # no entity index here: no suggestions
    assert st_ == 404 and "no similar name" in body


def test_content_negotiation_on_entity_urls(sample: str) -> None:
    import pyoxigraph as ox

    birth = "https://kgx.dev/ontology/birthDate"
    for accept, fmt in (("text/turtle", ox.RdfFormat.TURTLE),
                        ("application/n-triples", ox.RdfFormat.N_TRIPLES),
                        ("application/ld+json", ox.RdfFormat.JSON_LD)):
        st_, h, body = get(sample, "/entity/Ayn_Rand", accept)
        assert st_ == 200 and h["Content-Type"].startswith(accept), (accept, h)
        assert h["Vary"] == "Accept"
        triples = list(ox.parse(body.encode(), format=fmt))
        assert any(t.predicate.value == birth and t.object.value == "1905-02-02"
                   for t in triples), accept
    st_, h, body = get(sample, "/entity/Ayn_Rand?format=ntriples")
    assert st_ == 200 and h["Content-Type"] == "application/n-triples"
    assert get(sample, "/entity/Ayn_Rand", "image/png")[0] == 406
    assert get(sample, "/entity/No_such_entity", "text/turtle")[0] == 404
    assert get(sample, "/entity/Ayn_Rand", "*/*")[1]["Content-Type"].startswith("text/html")


def test_search_page_ranks_entities(sample: str, hostile) -> None:
    st_, h, body = get(sample, "/?q=" + urllib.parse.quote("Ayn Rnd"))
    assert st_ == 200
    page = assert_safe(body, h)
    results = [x for x in page.hrefs() if x.startswith("/entity/")]
    assert results[0] == "/entity/Ayn_Rand"
    assert "Russian-born American novelist" in body  # its line of abstract
    st_, _, body = get(sample, "/", "application/json")  # what an API client gets stays JSON
    assert st_ == 200 and json.loads(body)["sparql"] == "/sparql"
    st_, _, body = get(hostile[0], "/?q=Markup")
    assert st_ == 200 and "no entity index" in body
    # Candidates that share a label are told apart by their titles (the book, the film).
    st_, _, body = get(sample, "/?q=" + urllib.parse.quote("Passion of Ayn Rand"))
    shown = [unescape(m) for m in __import__("re").findall(r'<li><p><a [^>]*>([^<]*)</a>',
                                                            body)]
    passion = [x for x in shown if x.startswith("The Passion of Ayn Rand")]
    assert len(passion) == len(set(passion)) >= 2, shown


def test_labels_of_the_neighbourhood_picture_wrap_before_they_are_cut() -> None:
    from kgx.serve.entity_data import LABEL_CHARS
    from kgx.serve.entity_page import label_lines

    assert label_lines("Ayn Rand") == ["Ayn Rand"]
    assert label_lines("Republican Party (United States)") == ["Republican Party (United",
                                                               "States)"]
    long = label_lines("A " * 60)
    assert len(long) == 2 and long[-1].endswith("…")
    assert all(len(x) <= LABEL_CHARS for x in label_lines("x" * 100 + " y"))


def test_query_page_and_its_examples(sample: str) -> None:
    st_, h, body = get(sample, "/query")
    assert st_ == 200
    page = assert_safe(body, h)
    assert ("script", {"src": "/static/kgx.js", "defer": None}) in page.tags
    assert "res: &lt;https://kgx.dev/enwiki/resource/&gt;" in body
    readme = " ".join(README.read_text().split())
    for name, query in EXAMPLES:
        assert query in readme, name  # the examples are the README's
        link = "/query?" + urllib.parse.urlencode({"query": query})
        assert link in page.hrefs()
        st_, _, answer = get(sample, "/sparql?" + urllib.parse.urlencode({"query": query}),
                             "application/sparql-results+json")
        assert st_ == 200 and "results" in json.loads(answer), name
    # A SPARQL client on /query still gets results, as before there was a page.
    st_, h, answer = get(sample, "/query?query=ASK%7B%3Fs%20%3Fp%20%3Fo%7D",
                         "application/sparql-results+json")
    assert st_ == 200 and json.loads(answer) == {"head": {}, "boolean": True}


def test_pages_share_the_query_workers(hostile) -> None:
    """Pages run in the query workers: with both long-lane workers held by slow queries, a
    page takes the light lane and answers at once; the workers killed at the timeout are
    replaced."""
    import threading
    import time

    base, _, srv = hostile
    slow = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
    codes: list[int] = []
    busy = [threading.Thread(target=lambda: codes.append(get(
        base, "/sparql?query=" + urllib.parse.quote(slow), "application/json")[0]))
        for _ in range(2)]
    for t in busy:
        t.start()
    deadline = time.monotonic() + 10
    while srv.pool.running("long") < 2 and time.monotonic() < deadline:  # both taken
        time.sleep(0.02)
    t0 = time.monotonic()
    assert get(base, "/entity/Markup")[0] == 200 and time.monotonic() - t0 < 1.0
    for t in busy:
        t.join(30)
    assert codes == [504, 504]
    assert get(base, "/entity/Markup")[0] == 200


def test_static_files_and_nothing_else(sample: str) -> None:
    st_, h, body = get(sample, "/static/kgx.js")
    assert st_ == 200 and h["Content-Type"].startswith("text/javascript") and "fetch(" in body
    assert get(sample, "/static/kgx.css")[1]["Content-Type"].startswith("text/css")
    for path in ("/static/../web.py", "/static/%2e%2e/web.py", "/static/nope.js",
                 "/static/__init__.py"):
        assert get(sample, path)[0] == 404, path


def test_highlight_and_negotiation_units() -> None:
    assert highlight("a <b> c", 10, [(12, 15, "subject"), (16, 17, "object")]) == \
        'a <mark class="subject">&lt;b&gt;</mark> <mark class="object">c</mark>'
    # Spans outside the sentence or overlapping an earlier one are dropped, not drawn wrong.
    assert highlight("abc", 0, [(0, 2, "s"), (1, 3, "o"), (2, 9, "x")]) == \
        '<mark class="s">ab</mark>c'
    assert wants_html(BROWSER) and not wants_html("application/sparql-results+json")
    assert not wants_html("") and not wants_html("*/*")
    assert entity_format("", None) == "html"
    assert entity_format("text/turtle;q=0.5, application/ld+json", None) == "application/ld+json"
    assert entity_format("text/html", "turtle") == "text/turtle"
    assert entity_format("image/png", None) is None
    assert entity_format("text/html", "pdf") is None
