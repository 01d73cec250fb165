"""Versions and POST /models/reload through the ASGI app, on a copy of the committed weights:
which version answers, what a reload changes, that a bad file never replaces a good one, that
a new version is warmed off the request path and a removed one finishes and is freed."""

import asyncio
import gc
import shutil
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import app.engine.host
import app.engine.loading
from app.main import create_app
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings, shared_app

LENET = WEIGHTS / "lenet.safetensors"


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A weights folder of the service's own: lenet version 1, as committed."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(LENET, folder / "lenet.safetensors")
    return folder


def add(weights: Path, version: int, data: bytes | None = None) -> Path:
    """Version ``version`` of lenet: a copy of the committed one, or ``data``."""
    path = weights / "lenet" / f"{version}.safetensors"
    path.parent.mkdir(exist_ok=True)
    if data is None:
        shutil.copy(LENET, path)
    else:
        path.write_bytes(data)
    return path


@pytest.fixture
def client(weights: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings(weights_dir=weights, models=("lenet", "vgg16")))) as c:
        yield c


def predict(c: TestClient, seven: bytes, query: str = "") -> httpx.Response:
    return c.post(f"/predict/lenet{query}", files={"files": ("7.png", seven)})


def reload(c: TestClient) -> list[tuple[str, int, str]]:
    r = c.post("/models/reload")
    assert r.status_code == 200, r.text
    return [(x["model"], x["version"], x["change"]) for x in r.json()["changes"]]


def versions(c: TestClient) -> tuple[int | None, dict[int, str]]:
    body = c.get("/models/lenet").json()
    return body["default_version"], {v["version"]: v["status"] for v in body["versions"]}


def test_every_answer_says_which_version_answered(client: TestClient, seven: bytes) -> None:
    r = predict(client, seven)
    assert r.status_code == 200 and r.json()["version"] == 1
    assert r.headers["x-model-version"] == "1"
    assert list(r.json()) == ["model", "version", "device", "predictions"]
    body = client.get("/models/lenet").json()
    assert body["default_version"] == 1 and body["status"] == "ready"
    (only,) = body["versions"]
    assert only["version"] == 1 and only["status"] == "ready" and only["test_accuracy"] > 0.99
    assert only["checkpoint"] == body["checkpoint"]  # the top level describes the default
    vgg = client.get("/models/vgg16").json()
    assert (vgg["default_version"], vgg["versions"], vgg["status"]) == (None, [], "missing")
    for query, status in [("?version=0", 422), ("?version=x", 422), ("?version=2", 404)]:
        assert predict(client, seven, query).status_code == status, query
    r = client.post("/predict/vgg16?version=1", files={"files": seven})
    assert r.status_code == 404 and r.json()["known_versions"] == []


def test_a_reload_adds_replaces_and_removes(
    client: TestClient, weights: Path, seven: bytes
) -> None:
    assert reload(client) == []  # nothing changed
    add(weights, 2)
    assert reload(client) == [("lenet", 2, "added")]
    assert versions(client) == (2, {1: "ready", 2: "ready"})
    assert predict(client, seven).json()["version"] == 2
    assert predict(client, seven, "?version=1").headers["x-model-version"] == "1"
    (weights / "lenet.safetensors").unlink()
    assert reload(client) == [("lenet", 1, "removed")]
    r = predict(client, seven, "?version=1")
    assert r.status_code == 404 and r.json()["type"] == "/problems/unknown-version"
    assert r.json()["known_versions"] == [2]
    path = add(weights, 2)  # the same version, written again (a new file): loaded again
    path.touch()
    assert reload(client) == [("lenet", 2, "replaced")]
    ready = client.get("/health/ready").json()
    assert ready["models"]["lenet"] == "ready" and ready["versions"]["lenet"] == {"2": "ready"}


def test_a_bad_file_never_replaces_a_good_one(
    client: TestClient, weights: Path, seven: bytes
) -> None:
    add(weights, 2)
    reload(client)
    sha = client.get("/models/lenet").json()["checkpoint"]["sha256"]
    add(weights, 3, b"not a checkpoint")  # a new version that fails validation
    r = client.post("/models/reload").json()
    (change,) = r["changes"]
    assert (change["version"], change["change"]) == (3, "invalid")
    assert "lenet/3.safetensors is not a readable safetensors file" in change["reason"]
    assert r["default_versions"]["lenet"] == 2  # the highest *valid* version
    assert versions(client) == (2, {1: "ready", 2: "ready", 3: "invalid"})
    assert predict(client, seven, "?version=3").status_code == 503
    good = LENET.read_bytes()
    add(weights, 2, good[: len(good) // 2])  # version 2's file is overwritten with half of one
    assert reload(client) == [("lenet", 2, "invalid")]
    assert client.get("/models/lenet").json()["checkpoint"]["sha256"] == sha  # still serving
    assert predict(client, seven).json()["version"] == 2
    assert reload(client) == []  # an unchanged bad file is not read again at every look
    assert client.get("/health/ready").status_code == 200  # no gap, no readiness drop


def test_a_pinned_version_answers_by_default(weights: Path, seven: bytes) -> None:
    add(weights, 2)
    conf = settings(weights_dir=weights, models=("lenet",), model_versions={"lenet": 1})
    with TestClient(create_app(conf)) as c:
        assert versions(c) == (1, {1: "ready", 2: "ready"})
        assert predict(c, seven).json()["version"] == 1
        (weights / "lenet.safetensors").unlink()
        reload(c)
        body = c.get("/models/lenet").json()  # pinned to a version that is gone: no drift
        assert (body["default_version"], body["status"]) == (1, "missing")
        r = predict(c, seven)
        assert r.status_code == 503 and "MODEL_VERSIONS pins version 1" in r.json()["detail"]
        assert predict(c, seven, "?version=2").status_code == 200
        ready = c.get("/health/ready")  # no model answers by default: not ready
        assert ready.status_code == 503 and ready.json()["models"] == {"lenet": "missing"}


def test_a_folder_that_cannot_be_read_changes_nothing(
    client: TestClient, weights: Path, seven: bytes
) -> None:
    weights.rename(weights.with_name("elsewhere"))  # the volume is not mounted any more
    try:
        r = client.post("/models/reload")
        assert r.status_code == 503 and r.json()["type"] == "/problems/weights-unreadable"
        assert "retry-after" not in r.headers
        assert str(weights) not in r.text  # no host paths
        assert predict(client, seven).json()["version"] == 1  # still serving
    finally:
        weights.with_name("elsewhere").rename(weights)


def test_metrics_label_versions_in_the_catalogue_only(
    client: TestClient, weights: Path, seven: bytes
) -> None:
    predict(client, seven)
    add(weights, 2)
    reload(client)
    predict(client, seven)
    predict(client, seven, "?version=9")
    text = client.get("/metrics").text
    for version in ("1", "2"):
        assert f'zoo_requests_total{{model="lenet",status="200",version="{version}"}}' in text
        assert f'zoo_queue_depth{{model="lenet",version="{version}"}}' in text
    assert 'zoo_requests_total{model="lenet",status="404",version="_unknown"}' in text
    (weights / "lenet.safetensors").unlink()
    reload(client)
    text = client.get("/metrics").text
    assert 'version="1"' not in text and 'version="2"' in text  # bounded by the catalogue
    kept = client.app.state.metrics.exposition().decode()  # type: ignore[attr-defined]
    assert 'version="1"' not in kept and 'version="2"' in kept  # forgotten, not just hidden


def test_reload_is_documented_and_guarded(weights: Path) -> None:
    conf = settings(weights_dir=weights, models=("lenet",), api_keys="k1")
    with TestClient(create_app(conf)) as c:
        assert c.post("/models/reload").status_code == 401
        ok = c.post("/models/reload", headers={"authorization": "Bearer k1"})
        assert ok.status_code == 200 and ok.json()["default_versions"] == {"lenet": 1}
        op = c.get("/openapi.json").json()["paths"]["/models/reload"]["post"]
    assert op["operationId"] == "reloadModels" and op["security"] == [{"apiKey": []}]
    assert set(op["responses"]) == {"200", "401", "500", "503"}
    problems = op["responses"]["503"]["content"]["application/problem+json"]["examples"]
    assert set(problems) == {"weights-unreadable", "shutting-down"}


@asynccontextmanager
async def _client(app_: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app_.router.lifespan_context(app_):
        transport = httpx.ASGITransport(app=app_)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


async def test_a_new_version_is_warmed_off_the_request_path_and_swapped_in_warm(
    weights: Path, seven: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    warming, place = threading.Event(), app.engine.loading.place

    def slow(ckpt: object, *args: object) -> object:
        if ckpt.path.name == "2.safetensors":  # type: ignore[attr-defined]
            warming.set()
            time.sleep(1.5)  # a big model's warm-up
        return place(ckpt, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(app.engine.loading, "place", slow)
    monkeypatch.setattr(app.engine.host, "place", slow)
    app_ = create_app(settings(weights_dir=weights, models=("lenet",)))
    async with _client(app_) as c:
        add(weights, 2)
        reloading = asyncio.ensure_future(c.post("/models/reload"))
        await asyncio.to_thread(warming.wait, 10)
        answered = []
        while not reloading.done():  # requests meanwhile: the old default, without waiting
            started = time.perf_counter()
            r = await c.post("/predict/lenet", files={"files": seven})
            answered.append((r.status_code, r.json()["version"], time.perf_counter() - started))
            assert (await c.get("/models/lenet")).json()["default_version"] == 1 or reloading.done()
        assert (await reloading).json()["default_versions"] == {"lenet": 2}
        assert len(answered) > 10 and {(s, v) for s, v, _ in answered} == {(200, 1)}
        assert max(t for _, _, t in answered) < 0.5, max(t for _, _, t in answered)
        r = await c.post("/predict/lenet", files={"files": seven})
        assert r.json()["version"] == 2


async def test_a_removed_version_finishes_what_it_accepted_then_is_freed(
    weights: Path, seven: bytes
) -> None:
    add(weights, 2)
    app_ = create_app(settings(weights_dir=weights, models=("lenet",)))
    async with _client(app_) as c:
        host = app_.state.zoo.engine.host
        old = host.hosted["lenet", 1]
        gate = threading.Event()

        def held(x: object, run: object = old.batcher.fn) -> object:  # version 1 holds a batch
            gate.wait(10)
            return run(x)  # type: ignore[operator]

        old.batcher.fn = held
        first = asyncio.ensure_future(c.post("/predict/lenet?version=1", files={"files": seven}))
        while not old.batcher._busy:
            await asyncio.sleep(0.01)
        (weights / "lenet.safetensors").unlink()
        reloading = asyncio.ensure_future(c.post("/models/reload"))
        while (await c.get("/models/lenet")).json()["default_version"] != 2 or len(
            (await c.get("/models/lenet")).json()["versions"]
        ) != 1:
            await asyncio.sleep(0.01)
        assert not first.done() and not reloading.done()  # swapped, draining what it accepted
        gate.set()
        r = await first
        assert r.status_code == 200 and r.json()["version"] == 1  # accepted, so answered
        assert (await reloading).json()["changes"][0]["change"] == "removed"
        assert host.retiring == {}
        model = weakref.ref(old.predictor.model)
        del old, held
        gc.collect()  # which never sees what start-up built: app/main.py froze it
        assert model() is None  # the model's memory went with it


def test_the_shared_layout_reloads_in_the_owner_and_every_frontend_switches(
    weights: Path, seven: bytes
) -> None:
    conf = settings(weights_dir=weights, models=("lenet",))
    with shared_app(conf) as (app_a, owner), TestClient(app_a) as a:
        other = create_app(conf.model_copy(update={"engine_socket": str(owner.socket)}))
        with TestClient(other) as b:
            add(weights, 2)
            assert reload(a) == [("lenet", 2, "added")]
            for c in (a, b):  # the frontend that did not ask has switched too
                assert versions(c) == (2, {1: "ready", 2: "ready"})
                r = predict(c, seven)
                assert r.json()["version"] == 2 and r.headers["x-model-version"] == "2"
                assert predict(c, seven, "?version=1").json()["version"] == 1
            (weights / "lenet.safetensors").unlink()
            add(weights, 3, b"garbage")
            changes = reload(b)
            assert changes == [("lenet", 3, "invalid"), ("lenet", 1, "removed")]
            for c in (a, b):
                assert versions(c) == (2, {2: "ready", 3: "invalid"})
                assert predict(c, seven, "?version=1").status_code == 404
                assert predict(c, seven).json()["version"] == 2
                series = c.app.state.metrics.exposition().decode()  # type: ignore[attr-defined]
                assert 'version="1"' not in series and 'version="2"' in series


async def test_a_request_that_began_before_a_swap_runs_on_what_is_there_when_queued(
    weights: Path, mnist_test: MnistSplit
) -> None:
    rgb = png(mnist_test.images[0, 0].numpy(), mode="RGB")  # decoded in the decoder process
    app_ = create_app(settings(weights_dir=weights, models=("lenet",)))
    async with _client(app_) as c:
        reader = app_.state.zoo.reader
        decoding, release, decode = asyncio.Event(), asyncio.Event(), reader.digits

        async def held(*args: object) -> object:
            decoding.set()
            await release.wait()
            return await decode(*args)

        reader.digits = held
        default = asyncio.ensure_future(c.post("/predict/lenet", files={"files": rgb}))
        pinned = asyncio.ensure_future(c.post("/predict/lenet?version=1", files={"files": rgb}))
        await decoding.wait()
        add(weights, 2)  # a rolling deploy: the new version in, the old one out, one reload
        (weights / "lenet.safetensors").unlink()
        changes = (await c.post("/models/reload")).json()["changes"]
        assert [(x["version"], x["change"]) for x in changes] == [(2, "added"), (1, "removed")]
        release.set()
        r = await default  # it began on version 1; version 2 is what was there when it queued
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        gone = await pinned  # it asked for version 1 by name, and version 1 is gone
        assert gone.status_code == 404 and gone.json()["type"] == "/problems/unknown-version"
