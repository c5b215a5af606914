"""The built book in a real browser (headless Chromium): every page, offline.

Run after the book is built (``make book``): ``make check-book`` or
``pytest -m browser tests/test_browser.py``.  Each page is served from 127.0.0.1 and
opened in Debian's ``chromium`` through Playwright; every request to another host is
refused, as in an offline classroom.  On each page: the math is typeset (no raw TeX
left), every image has loaded, every solution dropdown opens, no uncaught JavaScript
error and no request leaves the machine; every Markdown table that a notebook
displays (``display(Markdown(...))``) is an HTML ``<table>``, and no line of raw
``| a | b |`` pipe-table text is left in the visible text.  A screenshot of each page
goes to ``_build/screenshots/``.  The API page must list every public name of every module.

In CI (``CI=true``) a Chromium that cannot start fails the test; elsewhere it skips.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("TARLIB_BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = ROOT / "_build" / "screenshots"
EXECUTED = HTML.parent / "jupyter_execute"  # the notebooks as the book build executed them
PAGES = sorted(p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")
               if not p.relative_to(HTML).parts[0].startswith("_")) if HTML.is_dir() else []

pytestmark = pytest.mark.browser

# Text of the article with code, scripts and typeset math removed: raw TeX must not be left.
ARTICLE_TEXT = """() => {
  const article = document.querySelector('article') || document.body;
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
  return copy.innerText;
}"""
UNTYPESET = """() => [...document.querySelectorAll('.math')]
  .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))"""
IMAGES = """async () => {
  const images = [...document.images];
  images.forEach(i => { i.loading = 'eager'; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  return images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
}"""


# Header cells of every <table> in the page's cell outputs.
TABLE_HEADERS = """() => [...document.querySelectorAll('article .cell_output table')]
  .map(t => [...t.querySelectorAll('thead th, tr:first-child th')].map(th => th.innerText.trim()))"""
_DELIMITER_ROW = re.compile(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*")  # |---|---:|
_RAW_PIPE_LINE = re.compile(r"\s*\|[^\n]*\|[^\n]*\|\s*")  # | a | b |, as text


def markdown_tables(markdown: str) -> list[list[str]]:
    """The header cells of each pipe table in ``markdown``."""
    lines = markdown.splitlines()
    return [[cell.strip() for cell in head.strip().strip("|").split("|")]
            for head, rule in zip(lines, lines[1:]) if "|" in head and "|" in rule and _DELIMITER_ROW.fullmatch(rule)]


def words(header: list[str]) -> list[str]:
    """Letters and digits of each cell: Markdown marks and Sphinx's smart quotes and dashes do not count."""
    return [re.sub(r"\W", "", cell) for cell in header]


def notebook_tables(page_path: str) -> list[list[str]]:
    """Header cells of every Markdown table that the executed notebook of ``page_path`` displays."""
    executed = EXECUTED / page_path.replace(".html", ".ipynb")
    if not executed.is_file():
        return []
    cells = json.loads(executed.read_text())["cells"]
    return [table for cell in cells for output in cell.get("outputs", [])
            for table in markdown_tables("".join(output.get("data", {}).get("text/markdown", "")))]


def _fail_or_skip(message: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(f"no built book at {HTML}: run `make book` first")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        _fail_or_skip("no `chromium` on PATH: `apt-get install chromium` (.ci/run does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _fail_or_skip("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        try:
            # --no-sandbox: CI and containers run as root, where Chromium's sandbox cannot start
            chromium = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as error:  # noqa: BLE001  (any launch failure is reported the same way)
            _fail_or_skip(f"Chromium ({executable}) did not start: {error}")
        yield chromium
        chromium.close()


def test_the_book_has_pages() -> None:
    assert {"book/intro.html", "book/api.html"} <= set(PAGES), f"built pages: {PAGES}"
    assert any(p.startswith("notebooks/") for p in PAGES)


def test_notebooks_display_markdown_tables() -> None:
    """The table check below is not empty: Table 1, the claims and the robustness tables are there."""
    pages = {p for p in PAGES if notebook_tables(p)}
    assert {p for p in PAGES if p.startswith(("notebooks/04_", "notebooks/09_", "notebooks/11_"))} <= pages, pages
    assert markdown_tables("| a | *b* |\n|---|---:|\n| 1 | 2 |\n\n| c |\n|:-:|\n") == [["a", "*b*"], ["c"]]
    assert words(["*b*", "the paper's"]) == words(["b", "the paper’s"]) == ["b", "thepapers"]
    assert _RAW_PIPE_LINE.fullmatch("| method | accuracy (%) |") and not _RAW_PIPE_LINE.fullmatch("|x| is small")


@pytest.mark.parametrize("page_path", PAGES)
def test_page_in_chromium(page_path: str, server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def route(r) -> None:
        url = urlparse(r.request.url)
        if url.scheme in {"data", "blob", "about"} or url.hostname in {"127.0.0.1", "localhost"}:
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{server}/{page_path}", wait_until="load")
    if 'http-equiv="refresh"' in (HTML / page_path).read_text().lower():  # index.html forwards to the intro
        page.wait_for_url(lambda url: not url.endswith(page_path))
        page.wait_for_load_state("load")
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    text = page.evaluate(ARTICLE_TEXT)
    raw = [t for t in ("\\(", "\\)", "\\[", "\\]", "$$", "\\begin{") if t in text]
    assert not raw, f"{page_path}: raw TeX {raw} left in the page's text"
    pipes = [line for line in text.splitlines() if _RAW_PIPE_LINE.fullmatch(line)]
    assert not pipes, f"{page_path}: raw pipe-table text instead of a table: {pipes[:3]}"
    rendered = page.evaluate(TABLE_HEADERS)
    missing = [head for head in notebook_tables(page_path) if words(head) not in map(words, rendered)]
    assert not missing, f"{page_path}: Markdown tables not rendered as <table> (headers {missing}); rendered {rendered}"
    assert page.evaluate(UNTYPESET) == [], f"{page_path}: math not typeset by MathJax"
    if 'class="math' in (HTML / page_path).read_text():
        assert page.locator("mjx-container").count() > 0, f"{page_path}: has math, but MathJax typeset none"
    assert page.evaluate(IMAGES) == [], f"{page_path}: images that did not load"
    dropdowns = page.locator("article details")
    for i in range(dropdowns.count()):
        details = dropdowns.nth(i)
        details.locator("summary").first.click()
        assert details.evaluate("d => d.open"), f"{page_path}: dropdown {i} did not open"
        height = details.evaluate("d => d.getBoundingClientRect().height - d.querySelector('summary').offsetHeight")
        assert height > 0, f"{page_path}: dropdown {i} opened empty"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / (page_path.replace("/", "__").removesuffix(".html") + ".png")))
    page.close()
    assert not errors, f"{page_path}: uncaught JavaScript errors {errors}"
    assert not outside, f"{page_path}: requests to other hosts {outside}"


def test_api_page_documents_every_public_name() -> None:
    """Every module of tarlib, and every public name of each, has an entry on the API page."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    tarlib_book = importlib.import_module("tarlib_book")
    html = (HTML / "book" / "api.html").read_text()
    missing = [f"{module}.{name}" for module in tarlib_book.modules()
               for name in tarlib_book.public_names(importlib.import_module(module))
               if f'id="{module}.{name}"' not in html]
    assert not missing, f"not on the API page: {missing}"
