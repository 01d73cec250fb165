"""API keys, what an anonymous caller can see, CORS and the pages' security headers."""

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png, settings

KEY, OTHER = "k3y-for-tests-7f1c", "an0ther-k3y-55e2"
GUARDED = [
    ("POST", "/predict/lenet"),
    ("GET", "/models"),
    ("GET", "/models/lenet"),
    ("GET", "/metrics"),
]
OPEN = ["/health/live", "/health/ready", "/", "/docs", "/redoc", "/openapi.json", "/page/app.js"]
OPEN += ["/v2/health/live", "/v2/health/ready", "/v2/models/lenet/ready"]  # the v2 probes


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


@pytest.fixture(scope="module")
def keyed() -> Iterator[TestClient]:
    with TestClient(create_app(settings(models=("lenet",), api_keys=(KEY, OTHER)))) as c:
        yield c


def _call(c: TestClient, method: str, path: str, seven: bytes, key: str | None) -> httpx.Response:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    files = {"files": ("7.png", seven, "image/png")} if method == "POST" else None
    return c.request(method, path, headers=headers, files=files)


@pytest.mark.parametrize(("method", "path"), GUARDED)
def test_guarded_routes_need_a_valid_key(
    keyed: TestClient, seven: bytes, method: str, path: str
) -> None:
    missing = _call(keyed, method, path, seven, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="mnist-zoo"'
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["type"] == "/problems/unauthorized"
    wrong = _call(keyed, method, path, seven, "not-the-key")
    assert wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="mnist-zoo", error="invalid_token"'
    assert KEY not in wrong.text and "not-the-key" not in wrong.text
    for key in (KEY, OTHER):
        assert _call(keyed, method, path, seven, key).status_code == 200
    basic = keyed.request(method, path, headers={"authorization": f"Basic {KEY}"})
    assert basic.status_code == 401  # the key only counts as a Bearer token


@pytest.mark.parametrize("path", OPEN)
def test_probes_page_and_docs_stay_open(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_keys_can_come_from_a_secret_file(tmp_path: Path, seven: bytes) -> None:
    secret = tmp_path / "api_keys"
    secret.write_text(f"{KEY}\n{OTHER}, third-one\n")
    with TestClient(create_app(settings(models=("lenet",), api_keys_file=secret))) as c:
        for key, status in ((KEY, 200), ("third-one", 200), ("nope", 401), (None, 401)):
            assert _call(c, "POST", "/predict/lenet", seven, key).status_code == status


@pytest.mark.parametrize("content", [None, "", " \n,\n"])
def test_a_missing_or_empty_key_file_stops_start_up(tmp_path: Path, content: str | None) -> None:
    secret = tmp_path / "api_keys"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValueError, match="API_KEYS_FILE"):
        create_app(settings(models=("lenet",), api_keys_file=secret))


def test_an_unreadable_key_file_says_what_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which file, which uid and gid the service runs as, its owner and mode, the commands."""
    secret = tmp_path / "api_keys"
    secret.write_text(f"{KEY}\n")
    secret.chmod(0o600)
    real_read_text = Path.read_text

    def refused(self: Path, *args: object, **kwargs: object) -> str:
        if self == secret:  # tests run as root, who reads anything: refuse as for uid 10001
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", refused)
    with pytest.raises(ValueError) as caught:
        settings(models=("lenet",), api_keys_file=secret).keys()
    said, uid, gid = str(caught.value), os.getuid(), os.getgid()
    assert said.startswith(f"API_KEYS_FILE {secret}: Permission denied: ")
    assert f"runs as uid {uid} gid {gid}" in said
    st = secret.stat()
    assert f"owned by {st.st_uid}:{st.st_gid} with mode 0600" in said
    assert f"sudo chgrp {gid} FILE && sudo chmod 0640 FILE" in said
    assert "./secrets/api_keys" in said and "docker-compose.keys.yml" in said


@pytest.mark.parametrize("value", [",", " , ", " ", ",,\n"])
def test_api_keys_that_name_no_key_stop_start_up(value: str) -> None:
    with pytest.raises(ValueError, match="API_KEYS is set but holds no key"):
        create_app(settings(models=("lenet",), api_keys=value))


def test_blank_entries_between_keys_are_skipped(seven: bytes) -> None:
    conf = settings(models=("lenet",), api_keys=f" {KEY} ,, {OTHER}, ")
    assert conf.keys() == (KEY.encode(), OTHER.encode())
    assert settings(models=("lenet",), api_keys="").keys() == ()  # empty: no keys, as unset


@pytest.mark.parametrize("path", ["/metrics/", "/models/", "/health/live/", "/docs/"])
def test_no_redirect_to_the_clients_host(keyed: TestClient, path: str) -> None:
    """Starlette would answer a trailing slash with a 307 to http://<Host>/...: an open
    redirect, and for /metrics/ one sent before the key is checked."""
    for key in (None, KEY):
        headers = {"host": "evil.example"} | ({"authorization": f"Bearer {key}"} if key else {})
        r = keyed.get(path, headers=headers, follow_redirects=False)
        assert "location" not in r.headers and r.status_code in (401, 404), (path, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"
        assert "evil.example" not in r.text


def test_without_keys_everything_is_open(seven: bytes) -> None:
    with TestClient(create_app(settings(models=("lenet",)))) as c:
        for method, path in GUARDED:
            assert _call(c, method, path, seven, None).status_code == 200
        assert "securitySchemes" not in c.get("/openapi.json").json()["components"]


def test_the_schema_declares_the_bearer_scheme_where_it_applies(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "one of the service's API_KEYS",
    }
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            v2_probe = path.startswith("/v2/health/") or path.endswith("/ready")
            guarded = path.startswith(("/predict", "/models", "/metrics", "/v2")) and not v2_probe
            assert (operation.get("security") == [{"apiKey": []}]) == guarded, path
            assert ("401" in operation["responses"]) == guarded, path


def test_anonymous_callers_see_no_host_paths(seven: bytes) -> None:
    with TestClient(create_app(settings(models=("lenet", "vgg16")))) as c:
        models = c.get("/models").text
        assert str(WEIGHTS) not in models and str(WEIGHTS.parent) not in models
        assert json.loads(models)["models"][0]["checkpoint"]["path"] == "lenet.safetensors"
        r = _call(c, "POST", "/predict/vgg16", seven, None)
        assert r.status_code == 503 and str(WEIGHTS.parent) not in r.text


def test_cors_is_off_unless_origins_are_listed(seven: bytes) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization",
    }
    with TestClient(create_app(settings(models=("lenet",)))) as c:
        r = c.options("/predict/lenet", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
    app = create_app(
        settings(models=("lenet",), api_keys=(KEY,), cors_origins=("https://app.example",))
    )
    with TestClient(app) as c:
        r = c.options("/predict/lenet", headers=preflight)  # answered without a key
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        other = c.options("/predict/lenet", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        r = _call(c, "POST", "/predict/lenet", seven, KEY)
        assert r.status_code == 200


@pytest.mark.parametrize("path", ["/", "/docs", "/redoc", "/openapi.json", "/page/app.js"])
def test_pages_carry_security_headers(keyed: TestClient, path: str) -> None:
    headers = keyed.get(path).headers
    csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'"  # no inline script, no eval
    assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'self'"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
