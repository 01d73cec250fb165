"""Driving the page at / in Chromium: open it, draw on it, wait for what it shows.

Digits are drawn by moving the mouse along strokes traced from MNIST digits (their skeletons,
scaled up to the canvas), the way a person draws.
"""

import numpy as np
from playwright.sync_api import Browser, Page

from tests.browser import Watched, wait_until
from tests.server import Server
from tests.strokes import polylines


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
    if not first.count() or first.get_attribute("data-refused"):  # not one digit: no answer
        return None
    return first.get_attribute("data-label")


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
