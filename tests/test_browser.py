"""The docs pages in a real browser (Chromium, driven by Playwright), on a live service, offline.

Chromium is Debian's (``make test`` installs the package when missing); Playwright downloads
no browser of its own. Every request the pages make must succeed: the service serves every
asset itself.
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from models.data import MnistSplit
from tests.browser import Watched, launch
from tests.helpers import png
from tests.server import GRACEFUL, Server, start_service, stop_server


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS="lenet", WORKERS="1")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    page = browser.new_page()
    yield Watched(page)
    page.close()


def test_swagger_ui_renders_every_operation_and_tries_predict(
    server: Server, watched: Watched, mnist_test: MnistSplit, tmp_path: Path
) -> None:
    page = watched.page
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock")
    spec = httpx.get(f"{server.url}/openapi.json").json()
    expected = {
        f"operations-{op['tags'][0]}-{op['operationId']}"
        for ops in spec["paths"].values()
        for op in ops.values()
    }
    shown = page.locator(".opblock")
    ids = [shown.nth(i).get_attribute("id") for i in range(shown.count())]
    assert sorted(ids) == sorted(expected) and len(ids) == len(expected) >= 16
    assert ids[0] == "operations-predict-predict"  # the predict tag leads the page
    seven = tmp_path / "seven.png"
    seven.write_bytes(png(mnist_test.images[0, 0].numpy()))
    op = page.locator("#operations-predict-predict")
    op.locator(".opblock-summary").click()
    op.get_by_role("button", name="Try it out").click()
    op.locator('tr[data-param-name="model"] input').fill("lenet")
    op.locator('input[type="file"]').first.set_input_files(str(seven))
    op.get_by_role("button", name="Execute").click()
    live = op.locator(".live-responses-table tbody tr.response").first
    live.wait_for()
    assert live.locator(".response-col_status").inner_text().strip() == "200"
    body = live.locator("pre.microlight").first.inner_text()
    assert '"filename": "seven.png"' in body and '"label": "7"' in body
    watched.expect_clean()


def test_redoc_renders_offline(server: Server, watched: Watched) -> None:
    page = watched.page
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("h1")
    assert page.locator("h1").first.inner_text().startswith("MNIST model zoo")
    for operation in ("predict", "listModels", "getModel", "live", "ready", "metrics"):
        page.wait_for_selector(f'[data-section-id="operation/{operation}"]')
    page.wait_for_load_state("networkidle")
    watched.expect_clean()
