"""benchmarks.photos: seeded phone photos of handwritten digits, their geometry, the control."""

import json
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from scipy import ndimage

from benchmarks import photos, robustness
from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from tests.helpers import WEIGHTS

PER = 4  # photos per condition: each condition's draws show in a few, and the file stays fast


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:PER, 0].numpy()


@pytest.fixture(scope="module")
def shots(digits: np.ndarray) -> dict[str, list[photos.Shot]]:
    return {c: photos.shots(c, digits, seed=0) for c in photos.CONDITIONS}


def upright(shot: photos.Shot) -> Image.Image:
    """The photo as a viewer shows it: decoded, EXIF orientation applied."""
    return ImageOps.exif_transpose(Image.open(BytesIO(shot.jpeg)))


def grey(shot: photos.Shot) -> np.ndarray:
    return np.asarray(upright(shot).convert("L"), np.float32) / 255


def rgb(shot: photos.Shot) -> np.ndarray:
    return np.asarray(upright(shot).convert("RGB"), np.float32) / 255


def test_photos_are_the_same_bytes_for_a_seed(
    digits: np.ndarray, shots: dict[str, list[photos.Shot]]
) -> None:
    first = photos.render("plain", digits[:2], seed=3)
    assert first == photos.render("plain", digits[:2], seed=3)
    assert first != photos.render("plain", digits[:2], seed=4)
    # render() is shots() without the geometry, and each condition draws from its own stream.
    assert photos.render("ruled", digits, seed=0) == [s.jpeg for s in shots["ruled"]]
    assert photos.render("plain", digits[:1])[0] != photos.render("pencil", digits[:1])[0]
    assert photos.render("dim", digits[:1])[0] == photos.render("dim", digits[:3])[0]


def test_every_condition_makes_phone_sized_jpegs(shots: dict[str, list[photos.Shot]]) -> None:
    assert len(photos.CONDITIONS) == len(set(photos.CONDITIONS)) >= 9
    orientations = set()
    for condition, made in shots.items():
        assert len(made) == PER, condition
        for shot in made:
            img = upright(shot)
            assert Image.open(BytesIO(shot.jpeg)).format == "JPEG"
            assert img.size == shot.size, condition
            assert 480 <= max(img.size) <= 1200, (condition, img.size)
            orientations.add(img.width > img.height)
    assert orientations == {True, False}  # landscape and portrait both


def test_some_photos_are_stored_sideways_with_an_exif_orientation(digits: np.ndarray) -> None:
    many = np.concatenate([digits] * 6)  # 24 photos: ~4 with an orientation (15%)
    stored = photos.shots("plain", many, seed=2)
    plain = photos.shots("plain", many, seed=2, exif=False)
    turned = [i for i, s in enumerate(stored) if s.orientation != 1]
    assert 2 <= len(turned) <= 12
    assert {stored[i].orientation for i in turned} <= set(range(2, 9))
    assert {6, 8} & {stored[i].orientation for i in turned}  # phones' usual quarter turns
    for i in turned:
        raw = Image.open(BytesIO(stored[i].jpeg))
        assert raw.getexif()[0x0112] == stored[i].orientation
        if stored[i].orientation >= 5:  # a quarter turn: the stored pixels are the other way up
            assert raw.size == stored[i].size[::-1]
        # EXIF transposed, the pixels are the upright photo (up to JPEG's rounding).
        assert np.abs(rgb(stored[i]) - rgb(plain[i])).mean() < 0.02
        assert plain[i].orientation == 1 and Image.open(BytesIO(plain[i].jpeg)).getexif() == {}


def test_the_digit_is_20_to_55_percent_of_the_frame_height(
    shots: dict[str, list[photos.Shot]],
) -> None:
    for condition, made in shots.items():
        for shot in made:
            x0, y0, x1, y1 = shot.box
            w, h = shot.size
            assert 0.2 <= (y1 - y0) / h <= 0.55, (condition, (y1 - y0) / h)
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, condition
    centres = [(s.box[0] + s.box[2]) / 2 / s.size[0] for m in shots.values() for s in m]
    assert np.ptp(centres) > 0.3  # placed anywhere, not always centred


def test_the_box_is_where_the_ink_is(shots: dict[str, list[photos.Shot]]) -> None:
    for shot in shots["plain"]:
        g = ndimage.median_filter(grey(shot), 3)
        x0, y0, x1, y1 = shot.box
        pad = 0.02 * shot.size[1] + 2
        near = np.zeros(g.shape, bool)
        near[
            int(max(0, y0 - pad)) : int(y1 + pad) + 1, int(max(0, x0 - pad)) : int(x1 + pad) + 1
        ] = True
        paper, ink = np.median(g[~near]), np.percentile(g[near], 0.5)
        dark = g < (paper + ink) / 2
        assert (dark & ~near).sum() <= 0.01 * dark.sum()  # no ink outside the box
        ys = np.nonzero(dark.any(1))[0]
        assert 0.9 <= (ys[-1] - ys[0] + 1) / (y1 - y0) <= 1.08  # and the ink fills it


def test_handwriting_fonts_are_photographed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    found = photos.handwriting_fonts()
    if not found:
        pytest.skip("no handwriting-like font installed (Debian: fonts-comic-neue and others)")
    files, labels = photos.font_photos("ruled", 12, seed=0)
    assert labels.tolist() == [*range(10), 0, 1] and len(files) == 12
    assert files == photos.font_photos("ruled", 12, seed=0)[0]
    assert all(Image.open(BytesIO(f)).format == "JPEG" for f in files)
    rng = np.random.default_rng(0)
    shot = photos.shoot("plain", photos.font_strokes(found[0], 4, rng), rng)
    assert 0.2 <= (shot.box[3] - shot.box[1]) / shot.size[1] <= 0.55
    monkeypatch.setattr(photos, "handwriting_fonts", lambda: ())
    empty, none = photos.font_photos("plain", 5)
    assert empty == [] and none.shape == (0,)


def test_the_control_keeps_the_writers_digit(mnist_test: MnistSplit) -> None:
    """The strokes framed as MNIST: the committed CNN reads them, so the redraw kept the digit."""
    digits, labels = mnist_test.images[:50, 0].numpy(), mnist_test.labels[:50].numpy()
    files = photos.strokes_as_mnist(digits, seed=0)
    assert files == photos.strokes_as_mnist(digits, seed=0)
    framed = np.stack([np.asarray(Image.open(BytesIO(f))) for f in files])
    assert framed.shape == (50, 28, 28) and framed.dtype == np.uint8
    for d in framed[:10]:  # MNIST's framing: a 20 px box, the centre of mass in the middle
        ys, xs = np.nonzero(d > 0)
        assert max(np.ptp(ys), np.ptp(xs)) + 1 <= 21
        assert np.allclose(ndimage.center_of_mass(d.astype(float)), (14, 14), atol=0.6)
    ckpt = load_checkpoint(WEIGHTS / "mnist_cnn.safetensors")
    with torch.inference_mode():
        predicted = ckpt.model.eval()(ckpt.transform(torch.from_numpy(framed)[:, None])).argmax(1)
    assert (predicted.numpy() == labels).mean() >= 0.9


def _regular_lines(img: np.ndarray, box: photos.Box) -> float:
    """The share of 16-px strips across ``img`` (away from the digit) whose profile along the
    strip dips sharply at 3+ evenly spaced places: printed lines across the strip."""
    found = []
    for x in range(0, img.shape[1] - 16, 24):
        if box[0] - 8 < x + 16 and x < box[2] + 8:
            continue
        profile = img[:, x : x + 16].mean(1)
        d = profile - ndimage.gaussian_filter1d(profile, 6)
        sd = 1.4826 * np.median(np.abs(d - np.median(d))) + 1e-4
        labelled, n = ndimage.label(d < -5 * sd)
        if n < 3:
            found.append(False)
            continue
        centres = np.sort([c[0] for c in ndimage.center_of_mass(-d, labelled, range(1, n + 1))])
        gaps = np.diff(centres)
        found.append(gaps.std() < 0.25 * gaps.mean())
    return float(np.mean(found)) if found else 0.0


def _lines(shot: photos.Shot) -> tuple[float, float]:
    """Regular lines across (horizontal ones) and down (vertical ones) the upright photo."""
    x0, y0, x1, y1 = shot.box
    g = grey(shot)
    return _regular_lines(g, shot.box), _regular_lines(g.T, (y0, x0, y1, x1))


def test_the_conditions_are_what_they_say(shots: dict[str, list[photos.Shot]]) -> None:
    lines = {c: np.array([_lines(s) for s in shots[c]]) for c in ("plain", "ruled", "squared")}
    assert lines["plain"].max() < 0.1
    assert (lines["ruled"][:, 0] > 0.5).sum() >= 3 and lines["ruled"][:, 1].max() < 0.1
    assert (lines["squared"].min(1) > 0.5).sum() >= 3  # lines both ways

    def dark(shot: photos.Shot) -> float:  # a large region well below the lit paper
        g = ndimage.uniform_filter(grey(shot), 15)
        return float((g < 0.7 * np.percentile(g, 95)).mean())

    shadowed = [dark(s) for s in shots["shadow"]]
    assert np.mean(shadowed) > 0.15 and np.mean(shadowed) > 3 * np.mean(
        [dark(s) for s in shots["plain"]]
    )

    def washed_out(shot: photos.Shot) -> float:
        return float((rgb(shot).min(2) > 0.97).mean())

    assert np.mean([washed_out(s) for s in shots["glare"]]) > 0.05
    assert max(washed_out(s) for s in shots["plain"]) < 0.005

    def ink(shot: photos.Shot) -> tuple[float, float]:
        """Contrast of the ink against the paper, and its area over the box height squared."""
        g = ndimage.median_filter(grey(shot), 3)
        x0, y0, x1, y1 = (int(v) for v in shot.box)
        inside = g[y0 : y1 + 1, x0 : x1 + 1]
        paper, darkest = np.median(g), np.percentile(inside, 0.5)
        return (paper - darkest) / paper, (inside < (paper + darkest) / 2).sum() / (y1 - y0) ** 2

    plain, pencil, marker = (
        np.array([ink(s) for s in shots[c]]) for c in ("plain", "pencil", "marker")
    )
    assert pencil[:, 0].max() < 0.55 < plain[:, 0].min()  # faint graphite
    assert marker[:, 1].mean() > 2 * plain[:, 1].mean()  # thick felt tip
    assert all(0.2 < s.page < 0.97 for s in shots["table"])  # the desk shows
    assert all(s.page == 1.0 for c in ("plain", "shadow", "glare") for s in shots[c])

    def chroma(shot: photos.Shot) -> float:
        return float(np.median(np.ptp(rgb(shot), axis=2)))

    assert np.mean([chroma(s) for s in shots["sticky"]]) > 3 * np.mean(
        [chroma(s) for s in shots["plain"]]
    )

    def noise(shot: photos.Shot) -> float:
        g = grey(shot)
        return float(np.median(np.abs(g - ndimage.median_filter(g, 3))))

    dim, lit = shots["dim"], shots["plain"]
    assert max(np.median(grey(s)) for s in dim) < min(np.median(grey(s)) for s in lit)
    assert min(noise(s) for s in dim) > max(noise(s) for s in lit)


def test_the_benchmark_runs_only_the_photo_suites(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "photos.json"
    args = ["--data-dir", str(data_dir), "--models", "lenet", "--only", "photos", "--photos", "3"]
    assert robustness.main([*args, "--json", str(out)]) == 0
    suites = json.loads(out.read_text())["models"]["lenet"]
    expected = {f"photos/{c}" for c in photos.CONDITIONS}
    expected |= {"photos/mean", "photos/strokes_as_mnist"}
    if photos.handwriting_fonts():
        expected.add("photos/fonts")
    assert set(suites) == expected
    assert suites["photos/plain"]["images"] == 3 and suites["photos/mean"]["images"] == 36
    means = [suites[f"photos/{c}"]["accuracy"] for c in photos.CONDITIONS]
    assert suites["photos/mean"]["accuracy"] == pytest.approx(np.mean(means))
    assert "photos/mean" in capsys.readouterr().out


def test_a_machine_without_handwriting_fonts_says_it_skips_them(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(photos, "handwriting_fonts", lambda: ())
    args = ["--data-dir", str(data_dir), "--models", "lenet", "--only", "photos/fonts"]
    assert robustness.main(args) == 0
    assert "photos/fonts: skipped" in capsys.readouterr().out
