"""kgx serve's pages in a real browser: headless Chromium driven by Playwright.

Each test takes a screenshot of its page into ``KGX_SCREENSHOTS`` (default: the test's
temporary folder). Skipped, with the reason, only where no Chromium or no Playwright is
installed (tests/browser.py says how to install them); with ``KGX_REQUIRE_BROWSER=1`` (CI)
a missing browser is an error instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import MARKUP_LABEL, serving, write_hostile_graph
from tests.support.browser import VIEWPORT, browser, screenshot, why_no_browser

if why_no_browser() is not None and os.environ.get("KGX_REQUIRE_BROWSER"):  # CI: no skipping
    raise RuntimeError(f"KGX_REQUIRE_BROWSER is set, but {why_no_browser()}")
pytestmark = pytest.mark.skipif(why_no_browser() is not None, reason=why_no_browser() or "")


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport=VIEWPORT, java_script_enabled=True)
    p = context.new_page()
    p.set_default_timeout(30_000)
    p.dialogs = []
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    p.console = []
    p.on("console", lambda m: p.console.append(m.text))
    yield p
    context.close()


@pytest.fixture(scope="module")
def sample(readme_out: Path):
    with serving(readme_out, workers=2, timeout=30) as (base, _):
        yield base


def shot(page, request: pytest.FixtureRequest, tmp_path: Path) -> Path:  # noqa: ANN001
    folder = Path(os.environ.get("KGX_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request.node.name}.png"
    screenshot(page, str(path))
    assert path.stat().st_size > 10_000  # a page was drawn, not a blank
    return path


def test_entity_page_shows_birth_date_and_place(page, sample: str, request, tmp_path) -> None:
    page.goto(f"{sample}/entity/Ayn_Rand")
    assert page.locator("h1").inner_text() == "Ayn Rand"
    row = page.locator("#infobox tr", has=page.locator("th", has_text="date of birth"))
    assert row.locator("td").inner_text().startswith("1905-02-02")
    place = page.locator("#infobox tr", has=page.locator("th", has_text="place of birth"))
    assert "Saint Petersburg" in place.locator("td").inner_text()
    assert page.locator("svg.neighbourhood circle").count() > 1
    place.locator("a", has_text="Saint Petersburg").click()
    page.wait_for_url("**/entity/Saint_Petersburg")
    assert page.locator("h1").inner_text() == "Saint Petersburg"
    page.go_back()
    shot(page, request, tmp_path)
    assert not page.dialogs


def test_misspelt_search_lands_on_the_entity(page, sample: str, request, tmp_path) -> None:
    page.goto(f"{sample}/")
    page.fill("input[name=q]", "Ayn Rnd")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/?q=Ayn+Rnd")
    first = page.locator("ol.results li a").first
    assert first.inner_text() == "Ayn Rand"
    shot(page, request, tmp_path)
    first.click()
    page.wait_for_url("**/entity/Ayn_Rand")
    assert page.locator("h1").inner_text() == "Ayn Rand"


def test_readme_query_and_click_through(page, sample: str, request, tmp_path) -> None:
    page.goto(f"{sample}/query")
    page.locator("ul.examples a", has_text="Books and their authors").click()
    table = page.locator("#results table")
    table.wait_for()
    assert page.locator("#results th").all_inner_texts() == ["book", "author"]
    assert page.locator("#status").inner_text().startswith("4 rows")
    shot(page, request, tmp_path)
    table.locator("a", has_text="Jonathan Swift").click()
    page.wait_for_url("**/entity/Jonathan_Swift")
    assert page.locator("h1").inner_text() == "Jonathan Swift"
    # A bad query shows the server's message with its line and column.
    page.goto(f"{sample}/query")
    page.fill("textarea[name=query]", "SELECT ?x WHERE {\n  ?x nope:p ?y }")
    page.click("#sparql button[type=submit]")
    status = page.locator("#status.error")
    status.wait_for()
    assert "400" in status.inner_text() and "line 2" in status.inner_text()
    assert not page.dialogs


def test_markup_in_a_label_is_shown_not_run(page, tmp_path_factory, request, tmp_path) -> None:
    out = tmp_path_factory.mktemp("hostile") / "out"
    write_hostile_graph(out)
    with serving(out, workers=1, timeout=30) as (base, _):
        page.goto(f"{base}/entity/Markup")
        assert page.locator("h1").inner_text() == MARKUP_LABEL
        assert page.evaluate("typeof window.kgxPwned") == "undefined"
        assert page.locator("main img, main script").count() == 0
        page.locator("li.model-fact summary").click()  # fetches the evidence
        page.locator("mark.subject").wait_for()
        assert page.locator("mark.subject").inner_text() == "Markup"
        assert page.locator("mark.object").inner_text() == "AC/DC"
        assert "<b>wrote</b>" in page.locator("p.sentence").inner_text()
        shot(page, request, tmp_path)
    assert not page.dialogs


def test_neighbourhood_labels_neither_overlap_nor_clip(page, sample: str, request,
                                                       tmp_path) -> None:
    """The picture's labels as the browser lays them out: no two overlap, and every one lies
    inside the picture (none is cut at its edge)."""
    page.goto(f"{sample}/entity/Abraham_Lincoln")
    boxes = page.evaluate("""() => {
        const svg = document.querySelector("svg.neighbourhood");
        const vb = svg.viewBox.baseVal;
        return {view: [vb.x, vb.y, vb.x + vb.width, vb.y + vb.height],
                labels: Array.from(svg.querySelectorAll("text")).map(t => {
                    const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height];
                })};
    }""")
    labels, view = boxes["labels"], boxes["view"]
    assert len(labels) > 10
    for i, a in enumerate(labels):
        assert view[0] <= a[0] and view[1] <= a[1] and a[2] <= view[2] and a[3] <= view[3], a
        for b in labels[i + 1:]:
            assert not (a[0] < b[2] - 1 and b[0] < a[2] - 1 and a[1] < b[3] - 1
                        and b[1] < a[3] - 1), (a, b)
    shot(page, request, tmp_path)
