"""API keys on a live ``python -m app``: in a real browser, through a generated client, in logs."""

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from benchmarks.harness import Server, free_port, service_command, start_server
from models.data import MnistSplit
from tests.browser import Watched, launch, wait_until
from tests.generated import generate_client
from tests.helpers import WEIGHTS, png
from tests.server import GRACEFUL, stop_server

KEY = "live-k3y-0b9d41"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("keyed") / "service.log"
    port = free_port()
    env = {
        "WEIGHTS_DIR": str(WEIGHTS),
        "DEVICE": "cpu",
        "MODELS": "lenet,mnist_cnn",
        "WORKERS": "2",
        "API_KEYS": KEY,
    }
    s = start_server("keyed", service_command(port), env, "/health/ready", port=port, log=log)
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


def test_keys_never_reach_logs_or_metrics(server: Server, seven: bytes) -> None:
    files = {"files": ("7.png", seven)}
    for key in (KEY, "wrong-key-3e5f"):
        httpx.post(
            f"{server.url}/predict/lenet", files=files, headers={"authorization": f"Bearer {key}"}
        )
    metrics = httpx.get(f"{server.url}/metrics", headers={"authorization": f"Bearer {KEY}"})
    assert metrics.status_code == 200 and "zoo_requests_total" in metrics.text
    assert server.log is not None
    logged = server.log.read_text()
    for secret in (KEY, "wrong-key-3e5f"):
        assert secret not in metrics.text and secret not in logged


def test_swagger_authorize_then_try_it_out(
    server: Server, browser: Browser, seven: bytes, tmp_path: Path
) -> None:
    (tmp_path / "seven.png").write_bytes(seven)
    page = browser.new_page()
    watched = Watched(page)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock")
    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#auth-bearer-value").fill(KEY)
    page.get_by_role("button", name="Apply credentials").click()
    page.locator(".auth-btn-wrapper button.btn-done").click()
    op = page.locator("#operations-predict-predict")
    op.locator(".opblock-summary").click()
    op.get_by_role("button", name="Try it out").click()
    op.locator('tr[data-param-name="model"] input').fill("lenet")
    op.locator('input[type="file"]').first.set_input_files(str(tmp_path / "seven.png"))
    op.get_by_role("button", name="Execute").click()
    live = op.locator(".live-responses-table tbody tr.response").first
    live.wait_for()
    assert live.locator(".response-col_status").inner_text().strip() == "200"
    assert '"label": "7"' in live.locator("pre.microlight").first.inner_text()
    watched.expect_clean()  # no CSP violation, no failed request
    page.close()


def test_the_page_asks_for_the_key_and_keeps_it_for_the_tab_only(
    server: Server, browser: Browser, seven: bytes, tmp_path: Path
) -> None:
    (tmp_path / "seven.png").write_bytes(seven)
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/")
    page.locator("#auth").wait_for()  # /models answered 401: the page asks
    assert "needs an API key" in page.locator("#error").inner_text()
    page.fill("#key", KEY)
    page.click("#auth button")
    wait_until(page, "document.querySelector('#model').options.length === 2")
    page.set_input_files("#files", str(tmp_path / "seven.png"))
    page.locator("#results .card").first.wait_for()
    assert page.locator("#results .card").first.get_attribute("data-label") == "7"
    assert page.evaluate("sessionStorage.getItem('zoo-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0  # nothing kept beyond the tab
    other = context.new_page()  # a new tab of the same browser asks again
    other.goto(f"{server.url}/")
    other.locator("#auth").wait_for()
    context.close()


def test_a_generated_client_takes_the_token(server: Server, seven: bytes, tmp_path: Path) -> None:
    _, output = generate_client(server.url, tmp_path, "keyed_client")
    assert "arning" not in output, output
    from keyed_client import AuthenticatedClient, Client
    from keyed_client.api.models import list_models
    from keyed_client.api.predict import predict
    from keyed_client.models import PredictFilesBody, PredictResponse, Problem
    from keyed_client.types import File

    body = PredictFilesBody(files=[File(payload=io.BytesIO(seven), file_name="7.png")])
    with_token = AuthenticatedClient(base_url=server.url, token=KEY)
    answer = predict.sync(model="lenet", client=with_token, body=body)
    assert isinstance(answer, PredictResponse) and answer.predictions[0].label == "7"  # type: ignore[union-attr]
    assert [m.name for m in list_models.sync(client=with_token).models] == ["lenet", "mnist_cnn"]
    body = PredictFilesBody(files=[File(payload=io.BytesIO(seven), file_name="7.png")])
    denied = predict.sync(model="lenet", client=Client(base_url=server.url), body=body)
    assert isinstance(denied, Problem) and denied.status == 401
