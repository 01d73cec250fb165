"""Images with alpha: which page goes behind the ink, pixel for pixel."""

import numpy as np
import pytest
from PIL import Image

from app.digits.decode import ImageRejected
from app.digits.luminance import luminance

SIDE = 20


def _image(lum: np.ndarray, alpha: np.ndarray, mode: str) -> Image.Image:
    """An LA image from 0-255 arrays, converted to ``mode`` (RGBA keeps grey as R=G=B)."""
    img = Image.fromarray(np.stack([lum, alpha], axis=-1).astype(np.uint8), "LA")
    return img if mode == "LA" else img.convert(mode)


def _strokes(ink: int) -> tuple[np.ndarray, np.ndarray]:
    """A solid block of ``ink`` on transparent black, plus one faint, anti-aliased black pixel."""
    lum, alpha = np.zeros((SIDE, SIDE)), np.zeros((SIDE, SIDE))
    lum[5:15, 5:15], alpha[5:15, 5:15] = ink, 255
    alpha[2, 2] = 51  # 20% opaque black: a canvas's anti-aliasing lives in alpha
    return lum, alpha


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_dark_ink_on_transparency_goes_onto_a_white_page(mode: str) -> None:
    out = luminance(_image(*_strokes(ink=102), mode))  # ink 0.4: darker than mid-grey
    expected = np.ones((SIDE, SIDE), np.float32)
    expected[5:15, 5:15] = 0.4
    expected[2, 2] = 0.8  # 20% black over white
    np.testing.assert_allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_light_ink_on_transparency_goes_onto_a_black_page(mode: str) -> None:
    lum, alpha = _strokes(ink=153)  # ink 0.6: lighter than mid-grey
    lum[2, 2] = 255  # the faint pixel is white ink here
    out = luminance(_image(lum, alpha, mode))
    expected = np.zeros((SIDE, SIDE), np.float32)
    expected[5:15, 5:15] = 0.6
    expected[2, 2] = 0.2  # 20% white over black
    np.testing.assert_allclose(out, expected, atol=1e-6)


def _keyed(core: int, rim: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary-alpha (GIF colour key) block: its 1-px rim keeps anti-aliasing towards a page."""
    lum, alpha = np.zeros((SIDE, SIDE)), np.zeros((SIDE, SIDE))
    lum[7:13, 7:13], alpha[7:13, 7:13] = rim, 255
    lum[8:12, 8:12] = core
    return lum, alpha


def test_a_colour_keyed_rim_blending_to_white_means_a_white_page() -> None:
    # 16 black core pixels, 20 rim pixels at 0.95: the mean (0.53) alone would say a black page.
    out = luminance(_image(*_keyed(core=0, rim=242), "LA"))
    assert out[0, 0] == 1.0 and out[10, 10] == 0.0


def test_a_colour_keyed_rim_blending_to_black_means_a_black_page() -> None:
    # 16 white core pixels, 20 rim pixels at 0.05: the mean (0.47) alone would say a white page.
    out = luminance(_image(*_keyed(core=255, rim=13), "LA"))
    assert out[0, 0] == 0.0 and out[10, 10] == 1.0


def test_a_mostly_opaque_page_is_extended_into_its_transparent_corner() -> None:
    lum, alpha = np.full((SIDE, SIDE), 255), np.full((SIDE, SIDE), 255)
    lum[8:12, 5:15] = 0  # a dark bar on the white page
    lum[:4, :4], alpha[:4, :4] = 0, 0  # a transparent (black) corner: 16 of 400 pixels
    out = luminance(_image(lum, alpha, "LA"))
    expected = np.ones((SIDE, SIDE), np.float32)
    expected[8:12, 5:15] = 0
    np.testing.assert_array_equal(out, expected)


def test_nothing_opaque_is_blank() -> None:
    with pytest.raises(ImageRejected, match="blank"):
        luminance(_image(np.full((SIDE, SIDE), 255), np.zeros((SIDE, SIDE)), "LA"))
