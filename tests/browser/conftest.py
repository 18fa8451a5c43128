"""Debian's Chromium driven by Playwright, one browser per module and a fresh context
(1280 × 860, light) per test."""

import os
import shutil
from pathlib import Path

import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import route_sandbox

CHROMIUM = os.environ.get("NANOWEB_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        if os.environ.get("NANOWEB_CI"):
            pytest.fail(f"Chromium is required in CI but {CHROMIUM} does not exist")
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls made between
    # browser steps (and the database teardown) are ordinary blocking calls.
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as p:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
    # Anything the Content-Security-Policy refuses (an inline handler, a script of
    # another origin, an eval) fails the test that caused it.
    context.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => "
        "window.__csp.push(`${e.effectiveDirective} ${e.blockedURI} "
        "${e.sourceFile}:${e.lineNumber}`))"
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    violations = page.evaluate("window.__csp || []") if not page.is_closed() else []
    context.close()
    assert violations == [], f"Content-Security-Policy refused: {violations}"


@pytest.fixture
def slow_sandbox(db, settings):
    """The sandbox answering after about two seconds, so the 'generating' state is visible."""
    with running_sandbox(SandboxConfig(latency_min=2.0, latency_max=2.5)) as url:
        yield route_sandbox(url, settings)
