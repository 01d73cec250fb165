"""app/digits/pipeline.py: a request's uploads -> digits, in their places, MNIST unchanged."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from app.digits import pipeline as fast
from app.digits.decode import ImageLimits, ImageRejected
from app.digits.pipeline import Rejection, plain_gray_png, to_digits, to_uint8
from app.digits.preprocess import preprocess
from app.failures import Failure
from models.data import MnistSplit
from tests.corpus import png_header
from tests.helpers import png


def one_by_one(datas: list[bytes], limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, list]:
    """app/digits/preprocess.py, one image at a time (each a stack of one)."""
    out, rejections = np.zeros((len(datas), 28, 28), np.uint8), []
    for i, data in enumerate(datas):
        try:
            out[i] = to_uint8(preprocess(data, limits))
        except ImageRejected as exc:
            rejections.append(Rejection(i, exc.detail, exc.failure))
    return out, rejections


@pytest.fixture(scope="module")
def mnist_pngs(mnist_test: MnistSplit) -> list[bytes]:
    return [png(x) for x in mnist_test.images[:, 0].numpy()]


def test_every_mnist_test_digit_passes_through_unchanged(
    mnist_test: MnistSplit, mnist_pngs: list[bytes]
) -> None:
    images = mnist_test.images[:, 0].numpy()
    for start in range(0, len(images), 256):  # as requests of MAX_FILES images arrive
        digits, rejections = to_digits(mnist_pngs[start : start + 256], ImageLimits())
        changed = np.flatnonzero((digits != images[start : start + 256]).any(axis=(1, 2)))
        assert not rejections and changed.size == 0, f"digits {start + changed} changed"
    # One image at a time too (the single-image request's path).
    singles = np.stack([to_digits([p], ImageLimits())[0][0] for p in mnist_pngs])
    assert np.array_equal(singles, images)


def _mixed_images(mnist_test: MnistSplit) -> list[np.ndarray]:
    """Small greyscale images of several shapes that take the crop path's uncommon steps."""
    rng = np.random.default_rng(7)
    x = mnist_test.images[:6, 0].numpy()
    out: list[np.ndarray] = []
    for d in x:
        f = d.astype(np.float32)
        out += [
            d,  # MNIST itself: no ink step at all
            255 - d,  # dark ink on a light page
            (f * 0.3 + 60).astype(np.uint8),  # faint ink on grey paper: stretched
            np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8),  # noisy border
            np.asarray(Image.fromarray(d).resize((14, 14))),  # small: resized to 20 px
            np.pad(d, ((3, 9), (0, 12))),  # not square
        ]
    out += [np.zeros((28, 28), np.uint8), np.full((28, 28), 200, np.uint8)]  # blank pages
    return out


def test_a_request_gets_the_digits_its_images_get_one_by_one(mnist_test: MnistSplit) -> None:
    """Stacks of many and stacks of one go through the same steps: the same digits and
    rejections whichever way the images come."""
    datas = [png(a) for a in _mixed_images(mnist_test)]
    got, got_rej = to_digits(datas, ImageLimits())
    want, want_rej = one_by_one(datas)
    assert [r.index for r in got_rej] == [len(datas) - 2, len(datas) - 1]  # the blank pages
    assert got_rej == want_rej and np.array_equal(got, want)


def test_same_shaped_crops_go_through_the_steps_as_one_stack(
    monkeypatch: pytest.MonkeyPatch, mnist_test: MnistSplit
) -> None:
    calls: list[int] = []
    crop_ink = fast.crop_ink

    def counted(stack: np.ndarray) -> object:
        calls.append(len(stack))
        return crop_ink(stack)

    monkeypatch.setattr(fast, "crop_ink", counted)
    datas = [png(x) for x in mnist_test.images[:8, 0].numpy()] + [png(np.zeros((30, 30), np.uint8))]
    to_digits(datas, ImageLimits())
    assert sorted(calls) == [1, 8]  # the 28x28 group together; the lone 30x30 on its own


def test_mixed_formats_and_rejections_keep_their_places(mnist_test: MnistSplit) -> None:
    x = mnist_test.images[:6, 0].numpy()
    rgba = Image.fromarray(x[1]).convert("RGBA")
    buf = io.BytesIO()
    Image.fromarray(255 - x[2]).save(buf, format="JPEG", quality=95)
    datas = [
        png(x[0]),
        png(np.asarray(rgba), "RGBA"),
        buf.getvalue(),
        b"not an image",
        png(x[4]),
        png_header(60000, 60000),
        png(x[5]),
        b"",
    ]
    got, got_rej = to_digits(datas, ImageLimits())
    want, want_rej = one_by_one(datas)
    assert np.array_equal(got, want)
    assert [(r.index, r.failure.kind.status) for r in got_rej] == [(3, 422), (5, 413), (7, 422)]
    assert got_rej == want_rej


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _with_chunk(data: bytes, kind: bytes, payload: bytes) -> bytes:
    """``data`` with one more chunk right after IHDR."""
    return data[:33] + _chunk(kind, payload) + data[33:]


def test_plain_greyscale_pngs_take_the_fast_decoder(mnist_test: MnistSplit) -> None:
    x = mnist_test.images[0, 0].numpy()
    plain = png(x)
    assert plain_gray_png(plain) == (28, 28)
    pixels = fast.gray(plain, ImageLimits())
    assert pixels.dtype == np.uint8 and np.array_equal(pixels, x)  # libspng, not Pillow
    others = {
        "RGB": png(x, "RGB"),
        "palette": png(x, "P"),
        "16-bit": png(x.astype(np.uint16) * 257, "I;16"),
        "transparency": _with_chunk(plain, b"tRNS", b"\x00\x00"),
        "EXIF": _with_chunk(plain, b"eXIf", b"MM\x00*\x00\x00\x00\x08" + bytes(6)),
        "truncated": plain[:-20],
    }
    for name, data in others.items():
        assert plain_gray_png(data) is None, name
    assert fast.gray(others["transparency"], ImageLimits()).dtype == np.float32  # Pillow
    datas = list(others.values())
    got, got_rej = to_digits(datas, ImageLimits())  # Pillow decides on each of them
    want, want_rej = one_by_one(datas)
    assert np.array_equal(got, want) and got_rej == want_rej


def test_pixel_limit_is_checked_from_the_header_on_the_fast_path() -> None:
    digits, rejections = to_digits([png_header(9000, 9000)], ImageLimits(max_pixels=1_000_000))
    (r,) = rejections
    assert r.failure is Failure.IMAGE_TOO_LARGE and "9000x9000" in r.detail and not digits.any()


def test_a_crop_without_a_digit_is_read_as_a_page_when_it_could_be_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Crops of 64 px and up in which the crop steps find nothing may be small photos (and
    frames of PHOTO_MIN_SIDE and up are photos from the start); smaller crops are blank."""
    pages: list[tuple[int, int]] = []

    def page_ink(gray: np.ndarray) -> None:
        pages.append(gray.shape)
        return None

    monkeypatch.setattr(fast, "page_ink", page_ink)
    flat = [np.full(shape, 180, np.uint8) for shape in ((40, 40), (100, 90), (250, 250))]
    digits, missing = fast.digits_from_luminance(flat)
    assert missing == [0, 1, 2] and not digits.any()
    assert pages == [(100, 90), (250, 250)]
