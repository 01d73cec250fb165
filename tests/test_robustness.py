"""benchmarks.robustness and its suites: fonts and upload styles as the benchmark makes them."""

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.digits.preprocess import preprocess
from benchmarks import fonts, robustness, styles
from models.data import MnistSplit


def test_fonts_on_this_machine_draw_readable_digits() -> None:
    found = fonts.installed_fonts()
    assert found, "no font with digits found (Debian: fonts-dejavu-core)"
    files, labels, hand = fonts.render_suite(found[:2], per_digit=1, seed=0)
    assert len(files) == 20 and labels.tolist() == list(range(10)) * 2
    for data in files:
        img = Image.open(BytesIO(data))
        assert img.format == "PNG" and img.mode == "L"
        digit = preprocess(data)  # dark on light, distorted: still a digit, not a blank page
        assert digit.shape == (28, 28) and digit.max() > 0.9
    assert hand.dtype == bool


@pytest.mark.parametrize(
    ("family", "stem", "expected"),
    [
        ("Humor Sans", "Humor-Sans", True),
        ("DkgHandwriting", "dkgIt", True),
        ("Z003", "Z003-MediumItalic", True),
        ("DejaVu Sans", "DejaVuSans-Bold", False),
    ],
)
def test_handwriting_like_fonts_are_told_apart(family: str, stem: str, expected: bool) -> None:
    assert bool(fonts.HANDWRITING.search(f"{family} {stem}")) is expected


def test_renderings_are_seeded(mnist_test: MnistSplit) -> None:
    digits = mnist_test.images[:5, 0].numpy()
    for name in styles.STYLES:
        assert styles.render(name, digits, seed=1) == styles.render(name, digits, seed=1)
    assert styles.render("tight_crop", digits, 1) != styles.render("tight_crop", digits, 2)
    found = fonts.installed_fonts()[:1]
    assert fonts.render_suite(found, 1, seed=3)[0] == fonts.render_suite(found, 1, seed=3)[0]


def test_styles_are_what_they_claim(mnist_test: MnistSplit) -> None:
    digit = mnist_test.images[0, 0].numpy()
    rng = np.random.default_rng(0)

    def grey(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(BytesIO(data)).convert("L"), dtype=np.float32) / 255

    crop = grey(styles.tight_crop(digit, rng))
    edges = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    assert (edges < 0.5).any() and np.median(crop) > 0.5  # dark ink reaching the edge
    faint = grey(styles.low_contrast(digit, rng))
    assert 0.05 < float(np.percentile(faint, 99.9) - np.percentile(faint, 0.1)) < 0.45
    assert Image.open(BytesIO(styles.low_contrast(digit, rng))).format == "JPEG"
    blurry = grey(styles.low_res(digit, rng))
    assert min(blurry.shape) >= 100 and len(np.unique(blurry)) > 50  # enlarged, smooth
    filled = grey(styles.filled_frame(digit, rng))
    assert filled.shape == (64, 64) and (filled[0].max() > 0.2 or filled[-1].max() > 0.2)


def test_the_benchmark_prints_and_writes_before_and_after(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    args = ["--data-dir", str(data_dir), "--limit", "40", "--models", "lenet", "--only", "mnist"]
    assert robustness.main([*args, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    suites = report["models"]["lenet"]
    assert "mnist" in suites and "mnist_c/mean" in suites and "styles/tight_crop" not in suites
    assert len([s for s in suites if s.startswith("mnist_c/")]) == 16  # 15 and their mean
    assert suites["mnist"]["images"] == 40 and 0.9 <= suites["mnist"]["accuracy"] <= 1
    table = capsys.readouterr().out
    assert "| suite | lenet | refused |" in table
    report["models"]["lenet"]["mnist"]["accuracy"] = 0.5  # a baseline that differs
    (tmp_path / "before.json").write_text(json.dumps(report))
    assert robustness.main([*args, "--baseline", str(tmp_path / "before.json")]) == 0
    table = capsys.readouterr().out
    assert "| suite | lenet before | lenet after | refused before -> after |" in table
    assert "| mnist | 50.00% |" in table
