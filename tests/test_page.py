"""The page at / in a real browser: draw digits with the mouse, upload files, pick models.

Digits are drawn as a person draws them (tests/page_driver.py). Screenshots at each width are
written to test-artifacts/.
"""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser

from models.data import MnistSplit
from tests.browser import ARTIFACTS, launch
from tests.helpers import png
from tests.page_driver import draw, open_page, settled
from tests.server import GRACEFUL, Server, start_service, stop_server

DRAWINGS_PER_CLASS = 2


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS="lenet,mnist_cnn,vgg16", WORKERS="1")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


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
    page.click("#unavailable summary")  # one line that opens to the reasons
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
    refused = watched.failed + watched.refused  # a 422: the whole request refused
    assert [u.rsplit("/", 1)[1] for u in refused] == ["mnist_cnn?top_k=3&include=digit"]
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


def _star() -> np.ndarray:
    """A five-pointed star drawn in one stroke on 28x28: no digit."""
    from PIL import ImageDraw

    img = Image.new("L", (28, 28), 0)
    angles = -np.pi / 2 + np.arange(6) * 4 * np.pi / 5
    points = [(14 + 10 * np.cos(a), 14 + 10 * np.sin(a)) for a in angles]
    ImageDraw.Draw(img).line(points, fill=255, width=2)
    return np.asarray(img)


def test_a_drawing_that_is_not_a_digit_is_shown_as_one(browser: Browser, server: Server) -> None:
    watched = open_page(browser, server)
    page = watched.page
    draw(page, _star())
    assert settled(page) is None  # no digit answered
    card = page.locator("#results .card").first
    assert card.get_attribute("data-refused") in ("not-a-digit", "several-digits")
    text = card.inner_text()
    assert "not a digit" in text or "several digits" in text
    guess = card.locator(".guess")
    assert guess.inner_text() in "0123456789" and f"best guess {guess.inner_text()}" in text
    grey = page.evaluate("getComputedStyle(document.querySelector('.card .guess')).color")
    assert grey == "rgb(174, 174, 178)", grey  # the guess, greyed
    page.screenshot(path=str(ARTIFACTS / "page-not-a-digit.png"))
    # The request was answered 422: the page's answer, not an error shown.
    assert watched.refused and page.locator("#error").inner_text().strip() == ""
    watched.expect_clean()
    page.close()
