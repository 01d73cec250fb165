"""benchmarks.outliers: the suites of uploads that are not one digit (non-digits, numbers)."""

from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from app.digits.decode import ImageLimits
from app.digits.pipeline import to_digits
from benchmarks import outliers, pens, photos
from models.data import MnistSplit

POOL = 200  # MNIST test digits the numbers are made of


@pytest.fixture(scope="module")
def pool(mnist_test: MnistSplit) -> tuple[np.ndarray, np.ndarray]:
    return mnist_test.images[:POOL, 0].numpy(), mnist_test.labels[:POOL].numpy()


def opened(files: list[bytes]) -> list[Image.Image]:
    images = [Image.open(BytesIO(f)) for f in files]
    for image in images:
        image.load()
    return images


def test_fonts_are_the_evaluation_hands_only() -> None:
    found = outliers.letter_fonts()
    assert found, "DkgHandwriting or Z003 missing: apt-get install fonts-dkg-handwriting"
    names = " ".join(p.stem.lower() for p in found)
    assert "dkg" in names and "z003" in names
    assert "humor" not in names and "comic" not in names  # those are the training's


def test_no_excluded_letter_is_ever_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not set(outliers.LETTERS) & outliers.EXCLUDED
    assert set("OoIlSZBbgq") <= outliers.EXCLUDED  # the list
    for word in outliers.WORDS:  # a word is never all digit-like letters
        assert 2 <= len(word) <= 7
        assert len([c for c in word if c not in outliers.EXCLUDED]) >= 2, word
    drawn: list[str] = []
    real = outliers._text_lines

    def spy(path: str, text: str) -> pens.Strokes:
        drawn.append(text)
        return real(path, text)

    monkeypatch.setattr(outliers, "_text_lines", spy)
    rng = np.random.default_rng(5)
    letters = [outliers.letter(rng)[1] for _ in range(300)]
    assert not set(letters) & outliers.EXCLUDED
    assert len(set(letters)) > 30  # upper and lower case, many letters
    outliers.non_digit_canvases(15, seed=3)
    singles = [t for t in drawn if len(t) == 1]
    assert singles and not set(singles) & outliers.EXCLUDED
    assert not {"-", ".", "/", "|", "(", ")", "[", "]", "\u00a7"} & set(singles)


def test_every_kind_in_both_suites() -> None:
    assert outliers.non_digit_kinds(10) == list(outliers.KINDS) * 2
    _, kinds = outliers.suite("nondigits/photos", len(photos.CONDITIONS), seed=1)
    assert set(kinds) == set(outliers.KINDS)
    rng = np.random.default_rng(2)
    shapes = {outliers.shape(rng)[1] for _ in range(80)}
    scribbles = {outliers.scribble(rng)[1] for _ in range(30)}
    assert shapes == set(outliers.SHAPES) and scribbles == set(outliers.SCRIBBLES)
    for kind in outliers.KINDS:
        strokes, _ = outliers.non_digit(kind, rng)
        assert strokes and all(s.ndim == 2 and s.shape[1] == 2 for s in strokes)
        assert all(np.isfinite(s).all() for s in strokes)


def test_deterministic_for_a_seed(pool: tuple[np.ndarray, np.ndarray]) -> None:
    assert outliers.non_digit_canvases(5, seed=4) == outliers.non_digit_canvases(5, seed=4)
    assert outliers.non_digit_canvases(5, seed=4) != outliers.non_digit_canvases(5, seed=5)
    assert outliers.non_digit_photos("pencil", 2, 4) == outliers.non_digit_photos("pencil", 2, 4)
    one = outliers.number_photos("ruled", 2, 4, *pool)
    assert one == outliers.number_photos("ruled", 2, 4, *pool)
    assert one != outliers.number_photos("ruled", 2, 5, *pool)
    assert outliers.number_canvases(3, 4, *pool) == outliers.number_canvases(3, 4, *pool)


def test_numbers_spell_the_digits_used(
    pool: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    digits, labels = pool
    by_bytes = {d.tobytes(): int(label) for d, label in zip(digits, labels, strict=True)}
    used: list[int] = []
    real = pens.mnist_strokes

    def spy(digit: np.ndarray) -> pens.Strokes:
        used.append(by_bytes[np.ascontiguousarray(digit).tobytes()])
        return real(digit)

    monkeypatch.setattr(pens, "mnist_strokes", spy)
    rng = np.random.default_rng(6)
    counts = set()
    for _ in range(60):
        used.clear()
        strokes, text = outliers.number(digits, labels, rng)
        assert text == "".join(map(str, used))
        assert 2 <= len(text) <= 6 and text.isdigit()
        counts.add(len(text))
        width = np.ptp(pens.points(strokes)[:, 0])
        assert width > 0.8 * len(text) * 20 * 0.4  # side by side, not piled up
    assert counts == {2, 3, 4, 5, 6}


def test_wide_ink_stays_in_the_photo(pool: tuple[np.ndarray, np.ndarray]) -> None:
    rng = np.random.default_rng(7)
    for condition in photos.CONDITIONS:
        strokes, _ = outliers.number(*pool, rng)
        shot = photos.shoot(condition, strokes, rng, least=0.0, margin=outliers.MARGIN)
        w, h = shot.size
        x0, y0, x1, y1 = shot.box
        assert x0 >= 0.04 * w and y0 >= 0.04 * h and x1 <= 0.96 * w and y1 <= 0.96 * h


def test_files_decode_and_go_through_the_service(pool: tuple[np.ndarray, np.ndarray]) -> None:
    n = len(photos.CONDITIONS)
    suites = {
        name: outliers.suite(name, n, seed=8, mnist_test=pool)
        for name in ("nondigits/photos", "nondigits/canvas", "numbers/photos", "numbers/canvas")
    }
    assert tuple(suites) == outliers.SUITES
    for name, (files, tags) in suites.items():
        assert len(files) == len(tags) == n
        images = opened(files)
        if name.endswith("canvas"):
            assert all(i.format == "PNG" and i.mode == "RGBA" for i in images)
            assert all(i.size == (outliers.CANVAS, outliers.CANVAS) for i in images)
        else:
            assert all(i.format == "JPEG" and min(i.size) >= 270 for i in images)
        if name.startswith("numbers"):
            assert all(t.isdigit() and 2 <= len(t) <= 6 for t in tags)
        digits, rejections = to_digits(files, ImageLimits())
        assert digits.shape == (n, 28, 28)
        assert all(0 <= r.index < n for r in rejections)
    with pytest.raises(ValueError, match="mnist_test"):
        outliers.suite("numbers/canvas", 2, seed=0)
    with pytest.raises(ValueError, match="no suite"):
        outliers.suite("letters/photos", 2)
