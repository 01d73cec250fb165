"""Each corpus input gets its status and problem+json (or its label); the service stays up."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from models.data import MnistSplit
from tests.corpus import Case, cases
from tests.helpers import settings

CASES = cases("7")  # built from MNIST test digit 0, a 7


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = create_app(
        settings(
            models=("mnist_cnn",),
            max_files=16,
            max_upload_bytes=2 * 1024 * 1024,
            max_image_pixels=40_000_000,
        )
    )
    with TestClient(app) as c:
        yield c


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_input(case: Case, client: TestClient, mnist_test: MnistSplit) -> None:
    request = case.build(mnist_test.images[0, 0].numpy())
    r = client.request(**request)
    assert r.status_code == case.status, r.text[:500]
    if case.status == 200:
        pred = r.json()["predictions"][0]
        assert pred["label"] == case.label
        for key, value in case.extra.items():
            assert pred[key] == value
    else:
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == case.status and body["title"] and body["type"].startswith("/")
        if case.detail:
            assert case.detail in body["detail"]
    assert client.get("/health/ready").status_code == 200  # still serving


# VmHWM, not ru_maxrss: a child starts with its parent's ru_maxrss (it survives fork and exec),
# while the high-water mark belongs to the address space exec makes anew.
PEAK_SCRIPT = """
import re, sys
from app.digits.pipeline import to_digits
from app.digits.decode import ImageLimits
def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
before = peak_kib()
digits, rejections = to_digits([data], ImageLimits(max_pixels=int(sys.argv[2])))
print((peak_kib() - before) / 1024, [r.failure.kind.status for r in rejections])
"""


def _peak_growth_mib(image: Path, max_pixels: int) -> tuple[float, list[int]]:
    """Decode ``image`` as the service would, in a fresh process; its peak memory growth."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(image), str(max_pixels)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    grown, statuses = out.stdout.strip().split(" ", 1)
    return float(grown), json.loads(statuses)


@pytest.mark.parametrize(
    ("fmt", "mode", "options"),
    [
        ("PNG", "1", {}),
        ("PNG", "L", {}),  # 8-bit grey: the fast decoder's path (libspng), not Pillow's
        ("TIFF", "1", {"compression": "group4"}),
        ("GIF", "1", {}),
    ],
)
def test_huge_images_are_refused_without_decoding(
    tmp_path: Path, fmt: str, mode: str, options: dict[str, str]
) -> None:
    # 12000 x 12000 real pixels, tiny on the wire: decoding needs 137 MiB for the pixels.
    image = tmp_path / f"huge.{fmt.lower()}"
    Image.new(mode, (12000, 12000), 0).save(image, fmt, **options)
    grown, statuses = _peak_growth_mib(image, 40_000_000)
    assert statuses == [413]
    assert grown < 30, f"peak memory grew {grown:.0f} MiB: the pixels were decoded"
    # The measurement sees decoding when it happens: allowed, the same file costs 137+ MiB.
    grown, statuses = _peak_growth_mib(image, 200_000_000)
    assert grown > 100 and statuses == [422]  # decoded, and found blank
