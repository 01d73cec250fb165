"""zoo-predict as people run it (a process): a folder of good, bad and blank files labelled
in-process and through a running service, one CSV row per file, the exit status."""

import csv
import io
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.data import MnistSplit
from tests.conftest import SERVICE_KEY
from tests.helpers import ROOT, WEIGHTS, png
from tests.server import Server

GOOD = 300  # more than a batch of 128: the worker processes label them
BAD = {
    "notes.txt": "not a recognised image",
    "empty.png": "empty upload",
    "truncated.png": "could not decode",
    "blank.png": "no digit found: the image is blank",
    "huge.png": "(MAX_UPLOAD_BYTES)",  # never read: the others' places must not shift
}


def zoo_predict(*args: str, **env: str) -> tuple[int, list[dict[str, str]], str]:
    """Run it; its exit status, the CSV rows it wrote to standard output, and its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.predict", *args, "--weights-dir", str(WEIGHTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=300,
    )
    return done.returncode, list(csv.DictReader(io.StringIO(done.stdout))), done.stderr


@pytest.fixture(scope="module")
def folder(mnist_test: MnistSplit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MNIST PNGs named by their label (in two subfolders), uploads in other styles, bad files,
    a blank one and a hidden one."""
    root = tmp_path_factory.mktemp("scans")
    for i in range(GOOD):
        sub = root / f"class-{i % 2}"
        sub.mkdir(exist_ok=True)
        (sub / f"{i:04d}_{int(mnist_test.labels[i])}.png").write_bytes(
            png(mnist_test.images[i, 0].numpy())
        )
    for i in range(4):  # dark ink on a big light page, as JPEG and as a grey PNG
        digit = Image.fromarray(255 - mnist_test.images[i, 0].numpy()).resize((160, 160))
        label = int(mnist_test.labels[i])
        digit.convert("RGB").save(root / f"scan{i}_{label}.jpg", quality=90)
    (root / "notes.txt").write_text("shopping list")
    (root / "empty.png").write_bytes(b"")
    (root / "truncated.png").write_bytes(png(mnist_test.images[0, 0].numpy())[:60])
    (root / "blank.png").write_bytes(png(np.full((28, 28), 255, np.uint8)))
    with open(root / "huge.png", "wb") as f:  # sparse: 21 MiB on paper, nothing on disk
        f.truncate(21 << 20)
    (root / ".hidden.png").write_bytes(b"left out")
    return root


def check_rows(rows: list[dict[str, str]], root: Path) -> None:
    assert list(rows[0]) == ["path", "label", "confidence", "error"]
    names = sorted(Path(r["path"]).name for r in rows)
    every = sorted(p.name for p in root.rglob("*") if p.is_file() and p.name[0] != ".")
    assert names == every and len(rows) == GOOD + 4 + len(BAD)  # a row per file
    by_name = {Path(r["path"]).name: r for r in rows}
    for name, words in BAD.items():
        row = by_name[name]
        assert row["label"] == row["confidence"] == "" and words in row["error"], row
    good = [r for r in rows if Path(r["path"]).name not in BAD]
    assert all(r["error"] == "" and 0 < float(r["confidence"]) <= 1 for r in good)
    right = sum(r["label"] == Path(r["path"]).stem[-1] for r in good)
    assert right >= len(good) - 3, right  # lenet: 99.45% of MNIST's test set


def test_a_folder_labelled_in_process(folder: Path) -> None:
    status, rows, err = zoo_predict(str(folder), "--model", "lenet")
    assert status == 1, err  # some files could not be labelled
    check_rows(rows, folder)
    assert f"{len(rows)} files" in err and f"{len(BAD)} not" in err


def test_through_a_running_service_the_same_rows(folder: Path, keyed_service: Server) -> None:
    _, local, _ = zoo_predict(str(folder), "--model", "lenet")
    status, remote, err = zoo_predict(
        str(folder), "--model", "lenet", "--url", keyed_service.url, ZOO_API_KEY=SERVICE_KEY
    )
    assert status == 1, err
    assert remote == local  # labels, confidences and errors alike


def test_exit_status_zero_when_every_file_is_labelled(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "labels.csv"
    status, rows, err = zoo_predict(
        str(folder / "class-0"), str(folder / "scan0_7.jpg"), "--model", "mnist_cnn", "--out",
        str(out),
    )  # fmt: skip
    assert status == 0 and rows == [], err  # written to the file, not standard output
    written = list(csv.DictReader(out.open()))
    assert len(written) == GOOD // 2 + 1 and written[-1]["label"] == "7"


def test_a_missing_path_gets_its_row(folder: Path) -> None:
    status, rows, _ = zoo_predict(str(folder / "class-1"), "nowhere/", "--model", "lenet")
    assert status == 1
    assert rows[0] == {"path": "nowhere/", "label": "", "confidence": "", "error": rows[0]["error"]}
    assert rows[0]["error"] == "no such file or folder" and len(rows) == GOOD // 2 + 1


def test_what_stops_the_run_says_why(folder: Path, keyed_service: Server) -> None:
    status, _, err = zoo_predict(str(folder), "--model", "vgg16")
    assert status == 2 and "no checkpoint for 'vgg16'" in err and "lenet" in err
    url = keyed_service.url
    status, _, err = zoo_predict(str(folder), "--model", "lenet", "--url", url, ZOO_API_KEY="no")
    assert status == 2 and "401" in err and "the API key is not valid" in err
    args = (str(folder), "--model", "resnet", "--url", url)
    status, _, err = zoo_predict(*args, ZOO_API_KEY=SERVICE_KEY)
    assert status == 2 and "no model named 'resnet'" in err


def test_it_is_a_console_script_of_the_package() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["zoo-predict"] == "app.cli.predict:main"


def test_batches_over_the_services_limits_are_split(folder: Path) -> None:
    """A service with smaller limits than zoo-predict's batches: MAX_FILES 4, 4 KiB bodies."""
    from fastapi.testclient import TestClient

    from app.cli.remote import _post
    from app.main import create_app
    from tests.helpers import settings

    big = folder.parent / "big.png"
    big.write_bytes(np.random.default_rng(0).bytes(5000))
    paths = [*sorted(str(p) for p in (folder / "class-0").iterdir())[:10], str(big)]
    conf = settings(models=("lenet",), max_files=4, max_queue=8, max_upload_bytes=4096)
    with TestClient(create_app(conf)) as service:
        rows = _post(service, "lenet", paths)
    assert [r.path for r in rows] == paths
    assert [r.label for r in rows[:10]] == [Path(p).stem[-1] for p in paths[:10]]
    assert rows[10].label == "" and "4096-byte limit" in rows[10].error


def test_a_file_that_is_not_a_digit_gets_the_guess_and_why_not(
    mnist_test: MnistSplit, tmp_path: Path, keyed_service: Server
) -> None:
    from benchmarks import outliers

    drawn, _ = outliers.suite("nondigits/canvas", 12, 3)
    for i, data in enumerate(drawn):
        (tmp_path / f"drawn{i:02d}.png").write_bytes(data)
    (tmp_path / "seven.png").write_bytes(png(mnist_test.images[0, 0].numpy()))
    status, local, err = zoo_predict(str(tmp_path), "--model", "mnist_cnn")
    assert status == 1, err
    refused = [r for r in local if r["error"].startswith("not-a-digit: not a digit (score")]
    assert len(refused) >= 6, local
    assert all(r["label"] in "0123456789" and 0 < float(r["confidence"]) <= 1 for r in refused)
    assert next(r for r in local if r["path"].endswith("seven.png"))["label"] == "7"
    _, remote, err = zoo_predict(
        str(tmp_path), "--model", "mnist_cnn", "--url", keyed_service.url, ZOO_API_KEY=SERVICE_KEY
    )
    assert remote == local, err
