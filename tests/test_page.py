"""The page at / in a real browser: draw digits with the mouse, upload files, pick models.

Digits are drawn by moving the mouse along strokes traced from MNIST test digits (their
skeletons, scaled up to the canvas), the way a person draws. Screenshots at each width are
written to test-artifacts/.
"""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page

from models.data import MnistSplit
from tests.browser import ARTIFACTS, Watched, launch, wait_until
from tests.helpers import png
from tests.server import GRACEFUL, Server, start_service, stop_server
from tests.strokes import polylines

DRAWINGS_PER_CLASS = 2


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS="lenet,mnist_cnn,vgg16", WORKERS="1")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


def open_page(browser: Browser, server: Server, width: int = 1280) -> Watched:
    page = browser.new_page(viewport={"width": width, "height": 900})
    watched = Watched(page)
    page.goto(f"{server.url}/")
    wait_until(page, "document.querySelector('#model').options.length > 0")
    return watched


def settled(page: Page) -> str | None:
    """Wait until what the results show answers the drawing now on the canvas."""
    wait_until(
        page,
        "document.querySelector('#results').dataset.version"
        " === document.querySelector('#canvas').dataset.version",
    )
    first = page.locator("#results .card").first
    return first.get_attribute("data-label") if first.count() else None


def draw(page: Page, digit: np.ndarray) -> None:
    """Trace ``digit`` (28x28) on the canvas with the mouse, stroke by stroke."""
    page.click("#clear")
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    scale = box["width"] / 28
    for stroke in polylines(digit):
        points = [(box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=2)
        page.mouse.up()


def test_drawn_digits_are_recognised(
    browser: Browser, server: Server, mnist_test: MnistSplit
) -> None:
    watched = open_page(browser, server)
    labels = mnist_test.labels.numpy()
    picks = [i for d in range(10) for i in np.flatnonzero(labels == d)[:DRAWINGS_PER_CLASS]]
    got = []
    for i in picks:
        draw(watched.page, mnist_test.images[i, 0].numpy())
        got.append(settled(watched.page))
    right = sum(g == str(labels[i]) for g, i in zip(got, picks, strict=True))
    print(f"drawn digits recognised: {right} of {len(picks)}: {got}")
    assert right >= 19, list(zip(got, labels[picks].tolist(), strict=True))
    watched.expect_clean()
    watched.page.close()


def test_two_uploaded_files_and_the_digits_the_model_saw(
    browser: Browser, server: Server, mnist_test: MnistSplit, tmp_path: Path
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    digits = [mnist_test.images[i, 0].numpy() for i in (0, 1)]  # a 7 and a 2
    paths = []
    for name, digit in zip(("seven.png", "two.png"), digits, strict=True):
        (tmp_path / name).write_bytes(png(digit))
        paths.append(str(tmp_path / name))
    page.set_input_files("#files", paths)
    cards = page.locator("#results .card")
    cards.nth(1).wait_for()
    assert [cards.nth(i).get_attribute("data-label") for i in range(2)] == ["7", "2"]
    for i, digit in enumerate(digits):
        src = cards.nth(i).locator("img").get_attribute("src") or ""
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
        assert np.array_equal(seen, digit)  # MNIST digits reach the model unchanged
        assert cards.nth(i).locator(".bars li").count() == 3
    watched.expect_clean()
    page.close()


def test_a_model_that_is_not_loaded_shows_why(browser: Browser, server: Server) -> None:
    watched = open_page(browser, server)
    page = watched.page
    assert "vgg16: missing: no checkpoint" in page.locator("#unavailable").inner_text()
    page.select_option("#model", "vgg16")
    error = page.locator("#error")
    error.wait_for()
    assert "vgg16 is not loaded: no checkpoint" in error.inner_text()
    watched.expect_clean()
    page.close()


def test_a_bad_file_shows_the_problem_detail(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    (tmp_path / "notes.png").write_text("shopping: milk, eggs")
    page.set_input_files("#files", str(tmp_path / "notes.png"))
    error = page.locator("#error")
    error.wait_for()
    assert "notes.png: not a recognised image" in error.inner_text()
    # The 422 is shown, not thrown: the only console line is Chromium's own note of it.
    assert watched.errors == [
        "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    ]
    assert [u.rsplit("/", 1)[1] for u in watched.failed] == ["mnist_cnn?top_k=3&include=digit"]
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_fits_each_width_without_errors(
    browser: Browser, server: Server, mnist_test: MnistSplit, width: int
) -> None:
    watched = open_page(browser, server, width)
    page = watched.page
    page.check("#compare")
    draw(page, mnist_test.images[0, 0].numpy())
    settled(page)
    assert page.locator("#results .card").count() == 2  # lenet and mnist_cnn side by side
    overflow = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
        " > document.documentElement.clientWidth + 1).map(e => e.tagName + '#' + e.id)"
    )
    assert overflow == [] and page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{width}.png"), full_page=True)
    watched.expect_clean()
    page.close()


def test_the_page_works_by_keyboard(browser: Browser, server: Server, tmp_path: Path) -> None:
    watched = open_page(browser, server)
    page = watched.page
    page.focus("#model")
    page.keyboard.press("ArrowDown")  # lenet -> mnist_cnn
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    assert {"compare", "canvas", "undo", "clear", "live", "drop"} <= set(reached)
    watched.expect_clean()
    page.close()
