"""End-to-end fixtures: examples served by the real CLI, and Debian's Chromium via Playwright.

A missing browser, Playwright or curl FAILS the tests that need it when CONDUIT_EXTENSIONS=1
or CI is set (``.ci/run`` installs them all), and skips them, with the reason, otherwise.
"""

from __future__ import annotations

import os
import shutil

import pytest
from e2e_harness import CHROMIUM, ExampleServer, launch_chromium

DRAIN_SECONDS = 20.0


def _strict() -> bool:
    ci = os.environ.get("CI", "").strip().lower()
    return os.environ.get("CONDUIT_EXTENSIONS") == "1" or ci not in ("", "0", "false", "no")


def require(ok: bool, what: str) -> None:
    """Fail (in CI or with CONDUIT_EXTENSIONS=1) or skip (otherwise) when ``ok`` is false."""
    if ok:
        return
    message = f"{what} (.ci/run installs it: apt-get install chromium curl; pip install '.[test]')"
    if _strict():
        pytest.fail(f"end-to-end prerequisite missing: {message}", pytrace=False)
    pytest.skip(f"end-to-end prerequisite missing: {message}")


def _stop_and_check(server: ExampleServer) -> None:
    code = server.stop(timeout=DRAIN_SECONDS)
    assert code == 0, f"{server.example} exited with {code} after SIGTERM\n{server.log}"
    assert not any("graceful timeout" in line for line in server.log_lines), (
        f"{server.example} was cut by the graceful timeout, not drained\n{server.log}"
    )


@pytest.fixture
def run_example():
    """A factory: ``run_example("sse_simple_server")`` -> base URL of the running example.

    On teardown every server started sends SIGTERM and must exit with status 0 after a
    graceful drain.
    """
    servers: list[ExampleServer] = []

    def start(name: str, *extra_args: str) -> str:
        server = ExampleServer(f"examples/{name}.py", *extra_args)
        servers.append(server)
        return server.base_url

    yield start
    errors = []
    for server in servers:
        try:
            _stop_and_check(server)
        except Exception as exc:  # stop them all, then report the first
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def simple_server(run_example) -> str:
    """examples/sse_simple_server.py, served by ``python -m conduit run``; its base URL."""
    return run_example("sse_simple_server")


@pytest.fixture
def curl() -> str:
    path = shutil.which("curl")
    require(path is not None, "curl is not on PATH")
    return path


@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium (/usr/bin/chromium) launched by Playwright."""
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the Python package playwright is not installed")
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser):
    """A new page in a new browser context (fresh cookies, cache and connections)."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()
