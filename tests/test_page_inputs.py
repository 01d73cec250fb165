"""The page's last input in a real browser: what runs again when the model or compare mode
changes, choosing the same files twice, late answers to an older input, and the one line on the
models that are not loaded.

The service lists every registered model; only lenet and mnist_cnn have committed checkpoints,
so AlexNet and the four VGGs are listed as not loaded, as on a fresh clone without a GPU.
"""

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route

from models.data import MnistSplit
from models.registry import list_models
from tests.browser import ARTIFACTS, launch, wait_until
from tests.helpers import png
from tests.page_driver import draw, open_page, settled
from tests.server import GRACEFUL, Server, start_service, stop_server

UNLOADED = ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19"]
RESULTS = "document.querySelector('#results').dataset"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(MODELS=",".join(list_models()), WORKERS="1")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def files(mnist_test: MnistSplit, tmp_path: Path) -> list[str]:
    """seven.png and two.png: the first two MNIST test digits."""
    paths = []
    for name, i in (("seven.png", 0), ("two.png", 1)):
        (tmp_path / name).write_bytes(png(mnist_test.images[i, 0].numpy()))
        paths.append(str(tmp_path / name))
    return paths


def latest(page: Page) -> int:
    return int(page.evaluate(f"{RESULTS}.latest"))


def answered(page: Page, after: int) -> list[str]:
    """Wait for the answers to an input newer than ``after``; the cards' titles (model: file)."""
    wait_until(page, f"+{RESULTS}.latest > {after} && {RESULTS}.input === {RESULTS}.latest")
    return page.locator("#results .card h2").all_inner_texts()


def choose(page: Page, paths: list[str]) -> list[str]:
    before = latest(page)
    page.set_input_files("#files", paths)
    return answered(page, before)


def test_compare_and_the_model_run_the_uploaded_files_again(
    browser: Browser, server: Server, files: list[str]
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    assert choose(page, files) == ["mnist_cnn: seven.png", "mnist_cnn: two.png"]
    page.click("#clear")  # nothing is drawn: clearing leaves the files the last input
    before = latest(page)
    page.check("#compare")
    assert answered(page, before) == [
        "lenet: seven.png",
        "lenet: two.png",
        "mnist_cnn: seven.png",
        "mnist_cnn: two.png",
    ]
    assert page.locator("#results .card").evaluate_all("cs => cs.map(c => c.dataset.label)") == [
        "7",
        "2",
        "7",
        "2",
    ]
    before = latest(page)
    page.uncheck("#compare")
    answered(page, before)
    before = latest(page)
    page.select_option("#model", "lenet")
    assert answered(page, before) == ["lenet: seven.png", "lenet: two.png"]
    watched.expect_clean()
    page.close()


def test_the_last_input_is_what_runs_again(
    browser: Browser, server: Server, files: list[str], mnist_test: MnistSplit
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    draw(page, mnist_test.images[3, 0].numpy())  # a 0
    settled(page)
    assert page.locator("#results .card h2").all_inner_texts() == ["mnist_cnn: drawing.png"]
    assert choose(page, files[:1]) == ["mnist_cnn: seven.png"]
    before = latest(page)
    page.check("#compare")
    assert answered(page, before) == ["lenet: seven.png", "mnist_cnn: seven.png"]
    draw(page, mnist_test.images[3, 0].numpy())  # drawing again: the drawing is the last input
    settled(page)
    assert page.locator("#results .card h2").all_inner_texts() == [
        "lenet: drawing.png",
        "mnist_cnn: drawing.png",
    ]
    before = latest(page)
    page.uncheck("#compare")
    assert answered(page, before) == ["mnist_cnn: drawing.png"]
    watched.expect_clean()
    page.close()


def test_choosing_the_same_file_again_runs_it_again(
    browser: Browser, server: Server, files: list[str]
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "/predict/" in r.url else None)
    assert choose(page, files[:1]) == ["mnist_cnn: seven.png"]
    assert len(sent) == 1
    assert choose(page, files[:1]) == ["mnist_cnn: seven.png"]  # the same file, chosen again
    assert len(sent) == 2
    watched.expect_clean()
    page.close()


def holding(page: Page, filename: str) -> list[Route]:
    """Hold back every predict request that sends ``filename``; the others go on at once."""
    held: list[Route] = []

    def route(r: Route, request: Request) -> None:
        if f'filename="{filename}"'.encode() in (request.post_data_buffer or b""):
            held.append(r)
        else:
            r.continue_()

    page.route("**/predict/**", route)
    return held


def wait_for(page: Page, held: list[Route], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not held:
        assert time.monotonic() < deadline, "no request was held"
        page.wait_for_timeout(20)


def release(page: Page, held: list[Route]) -> None:
    """Let the held requests go, and give the page time to read their (late) answers."""
    with page.expect_response("**/predict/**") as late:
        for r in held:
            r.continue_()
    assert late.value.ok
    late.value.finished()
    page.wait_for_timeout(500)


def stroke(page: Page) -> None:
    box = page.locator("#canvas").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] - 40, steps=5)
    page.mouse.up()


def test_a_late_answer_to_the_drawing_does_not_replace_the_files(
    browser: Browser, server: Server, files: list[str]
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    held = holding(page, "drawing.png")
    stroke(page)
    wait_for(page, held)
    assert choose(page, files) == ["mnist_cnn: seven.png", "mnist_cnn: two.png"]
    release(page, held)
    assert page.locator("#results .card h2").all_inner_texts() == [
        "mnist_cnn: seven.png",
        "mnist_cnn: two.png",
    ]
    watched.expect_clean()
    page.close()


def test_a_late_answer_to_files_does_not_replace_the_drawing(
    browser: Browser, server: Server, files: list[str]
) -> None:
    watched = open_page(browser, server)
    page = watched.page
    held = holding(page, "seven.png")
    page.set_input_files("#files", files[:1])
    wait_for(page, held)
    stroke(page)
    settled(page)
    assert page.locator("#results .card h2").all_inner_texts() == ["mnist_cnn: drawing.png"]
    release(page, held)
    assert page.locator("#results .card h2").all_inner_texts() == ["mnist_cnn: drawing.png"]
    watched.expect_clean()
    page.close()


def test_the_models_that_are_not_loaded_take_one_line(browser: Browser, server: Server) -> None:
    watched = open_page(browser, server, 390)
    page = watched.page
    box = page.locator("#unavailable")
    summary = box.locator("summary")
    assert summary.inner_text() == "5 not loaded: AlexNet, VGG need a GPU to train"
    closed = box.bounding_box()
    canvas = page.locator("#canvas").bounding_box()
    assert closed is not None and canvas is not None
    assert closed["height"] < 30, closed  # one line, closed
    assert canvas["y"] < 300, canvas  # the canvas is near the top of a phone's screen
    for name in UNLOADED:  # the reasons are there, folded
        assert page.get_by_text(f"{name}: missing:").is_hidden()
    summary.focus()
    page.keyboard.press("Enter")  # opens by keyboard too
    reasons = box.locator("li").all_inner_texts()
    assert [r.split(":", 1)[0] for r in reasons] == UNLOADED
    for name, reason in zip(UNLOADED, reasons, strict=True):
        assert reason.startswith(f"{name}: missing: no checkpoint {name}.safetensors"), reason
        assert f"make it with: python -m models.train --model {name}" in reason
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "page-390-not-loaded.png"), full_page=True)
    page.select_option("#model", "vgg19")  # picking one still says why it is not loaded
    assert "vgg19 is not loaded: no checkpoint vgg19.safetensors" in page.inner_text("#error")
    watched.expect_clean()
    page.close()


def test_a_phone_photo_dropped_on_the_page_is_read(
    browser: Browser, server: Server, mnist_test: MnistSplit, tmp_path: Path
) -> None:
    """A photo made by the project's own suite (benchmarks.photos): ruled paper, a ballpoint,
    a lighting gradient, JPEG, perhaps stored sideways with an EXIF orientation."""
    from PIL import Image

    from benchmarks import photos

    digit, label = mnist_test.images[0, 0].numpy(), str(int(mnist_test.labels[0]))
    (jpeg,) = photos.render("ruled", digit[None], seed=3)
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg)
    assert min(Image.open(path).size) >= 480  # a frame, not a crop
    page = open_page(browser, server).page
    before = latest(page)
    # Dropped on the drop zone, as a person drags a file from their photos.
    dropped = page.evaluate_handle(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "photo.jpg", {type: "image/jpeg"}));
            return data;
        }""",
        base64.b64encode(jpeg).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    assert answered(page, before) == ["mnist_cnn: photo.jpg"]
    card = page.locator("#results .card")
    assert card.evaluate("c => c.dataset.label") == label
    seen = card.locator("img").evaluate("i => [i.naturalWidth, i.naturalHeight, i.complete]")
    assert seen == [28, 28, True]  # the digit the model saw, drawn from the answer
    page.screenshot(path=str(ARTIFACTS / "page-photo.png"), full_page=True)
