import re
import time
from pathlib import Path

import httpx
import pytest

from charrnn.api import load

pytest.importorskip("fastapi", reason="the playground needs the [serve] extra (FastAPI, uvicorn)")
pytest.importorskip("uvicorn", reason="the playground needs the [serve] extra (FastAPI, uvicorn)")
from charrnn.serving import app as serve  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api", reason="the playground test drives Chromium with Playwright")
expect = sync_api.expect

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} to load the page in")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def served(tiny_run):
    app = serve.build_app(load(tiny_run), tiny_run, max_length=1_000_000, max_concurrent=8)
    # Paced, so that a stream of the page's longest length is still running when the test looks at it: unpaced,
    # the tiny model can finish all of it before a busy browser has shown its first characters.
    step = app.state.batcher._step

    def paced_step(joining):
        time.sleep(0.002)
        return step(joining)

    app.state.batcher._step = paced_step
    with serve.background(app) as url:
        yield url, app.state.batcher


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    yield page
    page.close()


def set_range(page, selector: str, value) -> None:
    page.eval_on_selector(
        selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }", str(value)
    )


def test_the_playground_streams_text_in_and_stop_ends_it(served, page):
    url, batcher = served
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(url + "/")
    expect(page.locator("#model")).to_contain_text("parameters")

    page.fill("#prime", "Alice ")
    set_range(page, "#length", page.eval_on_selector("#length", "el => el.max"))
    page.click("#generate")
    expect(page.locator("#output-new")).to_have_text(re.compile(".{20}", re.DOTALL))
    assert page.text_content("#output-prime") == "Alice "
    assert page.is_enabled("#stop") and not page.is_enabled("#generate")

    page.click("#stop")
    expect(page.locator("#status")).to_have_text(re.compile("^stopped"))
    shown = page.text_content("#output-new")
    page.wait_for_timeout(300)
    assert page.text_content("#output-new") == shown
    assert page.is_enabled("#generate") and not page.is_enabled("#stop")
    deadline = page.evaluate("Date.now()") + 5000
    while batcher.rows_in_use and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(50)
    assert batcher.rows_in_use == 0, "the server went on generating for a stopped page"
    assert all(address.startswith(url + "/") for address in requested), requested


def test_the_page_shows_what_the_api_returns_for_the_same_settings(served, page):
    url, _ = served
    page.goto(url + "/")
    page.fill("#prime", "The queen ")
    set_range(page, "#length", 100)
    set_range(page, "#temperature", 0.5)
    set_range(page, "#top-p", 0.9)
    page.fill("#seed", "7")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile("^done"))
    body = {"prime": "The queen ", "length": 100, "temperature": 0.5, "top_p": 0.9, "seed": 7}
    expected = httpx.post(f"{url}/v1/generate", json=body).json()["samples"][0]
    assert page.text_content("#output") == expected
    assert "seed 7" in page.text_content("#status")


def test_the_page_shows_the_servers_error(served, page):
    url, _ = served
    page.goto(url + "/")
    page.fill("#prime", "tea €")
    page.click("#generate")
    expect(page.locator("#status")).to_have_text(re.compile("^error"))
    assert "422" in page.text_content("#status") and "'€'" in page.text_content("#status")
    assert page.is_enabled("#generate")
