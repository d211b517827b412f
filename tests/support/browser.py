"""Headless Chromium for the browser tests and the README's screenshot, through Playwright.

The browser is Debian's ``chromium`` package (``/usr/bin/chromium``, or ``KGX_CHROMIUM``):
Playwright's own browser download needs the internet, which these machines do not have, so
Playwright's Python package drives the system's Chromium instead.

Run as a script it screenshots one page of a running ``kgx serve``, as the tests do::

    python -m tests.browser http://127.0.0.1:7878/entity/Apollo docs/entity-page.png [HEIGHT]
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Flags for a closed network: without the background-networking ones Chromium keeps trying
# to reach Google's hosts.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1100, "height": 900}


def chromium_path() -> str | None:
    """The Chromium executable, or None when none is installed."""
    path = os.environ.get("KGX_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


def why_no_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if chromium_path() is None:
        return ("no Chromium: install Debian's package (apt-get install chromium) or set "
                "KGX_CHROMIUM to a Chromium executable")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is missing: pip install -e '.[test]'"
    return None


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium browser (Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def screenshot(page: Any, path: str, *, open_evidence: bool = True, height: int | None = None
               ) -> None:
    """The page as a PNG (the whole page, or its top ``height`` pixels), the first model fact's
    evidence opened when it has one."""
    if open_evidence and page.locator("li.model-fact summary").count():
        first = page.locator("li.model-fact").first
        if not first.locator("details").evaluate("d => d.open"):
            first.locator("summary").click()
        first.locator("ol.evidence, p.error").first.wait_for()
    clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
    page.screenshot(path=path, full_page=True, clip=clip)


def main(argv: list[str]) -> int:
    url, out, *rest = argv
    with browser() as b:
        page = b.new_page(viewport=VIEWPORT)
        page.goto(url)
        page.wait_for_load_state("networkidle")
        screenshot(page, out, height=int(rest[0]) if rest else None)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
