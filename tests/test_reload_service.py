"""Reload through ``python -m app`` with two workers, in both layouts, on a copy of weights/:
one request switches every worker, polling picks up a copied file, and under load 30 cycles
of add-then-remove fail no request and leave resident memory where it was
(benchmarks/reload.py does the cycles)."""

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from benchmarks.reload import main as reload_benchmark
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png
from tests.server import GRACEFUL, Server, start_service

LAYOUTS = ["worker", "shared"]


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    folder = tmp_path / "weights"
    (folder / "lenet").mkdir(parents=True)
    shutil.copy(WEIGHTS / "lenet.safetensors", folder / "lenet.safetensors")
    return folder


@contextmanager
def _serve(tmp_path: Path, weights: Path, engine: str, **env: str) -> Iterator[Server]:
    server = start_service(tmp_path / "service.log", WEIGHTS_DIR=str(weights), MODELS="lenet",
                           WORKERS="2", ENGINE=engine, **env)  # fmt: skip
    try:
        yield server
    finally:
        assert server.stop() in GRACEFUL


def _everywhere(server: Server, seven: bytes) -> set[tuple[int, int]]:
    """(default version, version that answered), from 16 fresh connections: both workers."""
    seen = set()
    for _ in range(16):
        with httpx.Client(base_url=server.url, timeout=30) as c:
            default = c.get("/models/lenet").json()["default_version"]
            r = c.post("/predict/lenet", files={"files": ("7.png", seven)})
            assert r.status_code == 200, r.text
            seen.add((default, int(r.headers["x-model-version"])))
    return seen


@pytest.mark.parametrize("engine", LAYOUTS)
def test_one_reload_request_switches_every_worker(
    tmp_path: Path, weights: Path, seven: bytes, engine: str
) -> None:
    with _serve(tmp_path, weights, engine) as server:
        assert _everywhere(server, seven) == {(1, 1)}
        shutil.copy(WEIGHTS / "lenet.safetensors", weights / "lenet" / "2.safetensors")
        r = httpx.post(server.url + "/models/reload", timeout=120)
        assert r.json()["changes"] == [
            {"model": "lenet", "version": 2, "change": "added", "reason": None}
        ]
        assert _everywhere(server, seven) == {(2, 2)}  # at once, whichever worker answers
        (weights / "lenet" / "3.safetensors").write_bytes(b"\0" * 100)
        r = httpx.post(server.url + "/models/reload", timeout=120)
        assert [c["change"] for c in r.json()["changes"]] == ["invalid"]
        assert _everywhere(server, seven) == {(2, 2)}
        assert server.log is not None
        said = server.log.read_text()  # what `make serve` shows
        assert "reload: added lenet v2; default versions: lenet v2" in said
        assert "reload: invalid lenet v3 (" in said


@pytest.mark.parametrize("engine", LAYOUTS)
def test_polling_picks_up_files_copied_into_the_folder(
    tmp_path: Path, weights: Path, seven: bytes, engine: str
) -> None:
    with _serve(tmp_path, weights, engine, RELOAD_INTERVAL_S="0.3") as server:
        new = weights / "lenet" / "2.safetensors"
        shutil.copy(WEIGHTS / "lenet.safetensors", new.with_suffix(".tmp"))
        new.with_suffix(".tmp").replace(new)  # copy, then rename: never half a file
        deadline = time.monotonic() + 30
        while (seen := _everywhere(server, seven)) != {(2, 2)}:
            assert time.monotonic() < deadline, seen
            time.sleep(0.3)
        (weights / "lenet.safetensors").unlink()
        deadline = time.monotonic() + 30
        one = server.url + "/predict/lenet?version=1"
        while httpx.post(one, files={"files": seven}).status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.3)


@pytest.mark.parametrize("engine", LAYOUTS)
def test_30_reload_cycles_under_load_fail_no_request_and_leak_nothing(
    tmp_path: Path, data_dir: Path, engine: str
) -> None:
    out = tmp_path / "reload.json"
    args = ["--cycles", "30", "--connections", "4", "--engine", engine, "--workers", "2"]
    code = reload_benchmark([*args, "--data-dir", str(data_dir), "--json", str(out)])
    figures = json.loads(out.read_text())
    assert code == 0, figures["problems"]
    assert figures["failed_requests"] == 0 and sum(figures["requests"]["statuses"].values()) > 500
    assert len(figures["add_s"]) == 30 and figures["rss_mb"]["growth"] < 50
