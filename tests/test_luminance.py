"""Luminance from every bit depth, EXIF orientation and speck removal, value for value.

Written for mutants that survived the broader preprocessing tests (docs/mutation.md).
"""

import io

import numpy as np
import pytest
from PIL import Image

from app.digits.decode import decode_image
from app.digits.ink import despeckle
from app.digits.luminance import luminance


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([0, 65535], np.uint16, [0, 1]),  # I;16: white is 65535
        ([0, 1], np.int32, [0, 1]),  # 32-bit data written in [0, 1]
        ([0, 255], np.int32, [0, 1]),  # ... in [0, 255]
        ([0, 40000], np.int32, [0, 40000 / 65535]),  # ... in [0, 65535]
        ([0, 70000], np.int32, [0, 1]),  # beyond 16 bits: its own maximum is white
        ([-0.5, 0.25, 1.0], np.float32, [0, 0.25, 1]),  # F: clipped into [0, 1]
    ],
)
def test_high_bit_depths_are_scaled_by_their_true_range(
    values: list[float], dtype: type, expected: list[float]
) -> None:
    img = Image.fromarray(np.array([values], dtype=dtype))
    np.testing.assert_allclose(luminance(img), [expected], rtol=0, atol=1e-7)


def test_a_colour_keyed_grey_image_puts_a_page_behind_its_key() -> None:
    pixels = np.zeros((8, 8), np.uint8)
    pixels[2:6, 2:6] = 60  # dark grey ink on black, and black is the transparent key
    img = Image.fromarray(pixels)
    img.info["transparency"] = 0
    out = luminance(img)
    assert out[0, 0] == 1.0 and out[3, 3] == pytest.approx(60 / 255)  # a white page behind


def test_exif_orientation_2_mirrors_the_image() -> None:
    pixels = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    exif = Image.Exif()
    exif[0x0112] = 2  # mirrored horizontally
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", exif=exif)
    np.testing.assert_array_equal(np.asarray(decode_image(buf.getvalue())), np.fliplr(pixels))


def test_despeckle_keeps_the_digit_s_box_and_drops_lone_specks() -> None:
    ink = np.zeros((40, 40), np.float32)
    ink[10:20, 25:35] = 1.0  # the digit: off the diagonal, so rows and columns differ
    ink[36, 3] = 1.0  # a lone speck: its 3x3 mean is 1/9, under SPECK_LEVEL
    expected = np.zeros_like(ink)
    expected[10:20, 25:35] = 1.0
    np.testing.assert_array_equal(despeckle(ink[None])[0], expected)
