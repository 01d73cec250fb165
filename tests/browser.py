"""Chromium for the browser tests: Debian's package, driven by Playwright (no browser download)."""

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Response, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As a headless browser on a closed network should run: no calls home, no GPU.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def launch() -> Iterator[Browser]:
    """A headless Chromium for the length of a test module."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def wait_until(page: Page, expression: str, timeout_s: float = 30) -> None:
    """Poll a JavaScript expression until it is true. (Playwright's wait_for_function evaluates
    its predicate with eval inside the page, which the service's CSP rightly forbids.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(f"still false after {timeout_s} s: {expression}")
        page.wait_for_timeout(20)


class Watched:
    """A page whose failed requests, console errors and uncaught exceptions are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.failed: list[str] = []  # requests with no answer, or answered 4xx/5xx
        self.refused: list[str] = []  # predictions answered 422 (an image judged not one digit)
        self.errors: list[str] = []
        page.on("requestfailed", lambda r: self.failed.append(r.url))
        page.on("response", self._answered)
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _answered(self, response: Response) -> None:
        if response.status == 422 and "/predict/" in response.url:
            self.refused.append(response.url)
        elif response.status >= 400:
            self.failed.append(response.url)

    def expect_clean(self) -> None:
        """Every request answered 2xx/3xx, or 422 for a drawing that is not (yet) one digit,
        which the page shows as an answer; and nothing went wrong in the page's scripts (the
        browser's own line for each 422 aside)."""
        errors = [e for e in self.errors if "status of 422" not in e or not self.refused]
        assert self.failed == [] and errors == [], (self.failed, errors)
