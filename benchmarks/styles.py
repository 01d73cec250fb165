"""Upload styles that are not MNIST's: MNIST test digits re-made the way other people send them.

Each style turns one 28x28 MNIST digit (white ink on black, uint8) into the bytes of an image
file, with a seeded generator, so the robustness benchmark and the tests see the same files:

- tight_crop: dark ink on white, enlarged, cut at or into the ink on one to four sides (forms);
- low_contrast: pencil grey on tinted paper, a little noise, saved as JPEG (faded scans);
- low_res: shrunk to 8-12 px, then enlarged 12-16x with bicubic (a tiny scan, blown up);
- thick_marker: a felt tip whose stroke is a quarter to a third of the digit, framed tightly;
- filled_frame: the digit stretched to fill a 16x16 frame (USPS-like), enlarged 4x, white on
  black, its ink on the frame's edges.
"""

from collections.abc import Callable
from io import BytesIO

import numpy as np
from PIL import Image, ImageFilter

Style = Callable[[np.ndarray, np.random.Generator], bytes]


def _encode(img: Image.Image, fmt: str = "PNG", **params: int) -> bytes:
    buf = BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_file(digit: np.ndarray) -> bytes:
    """A 2-D uint8 array as a greyscale PNG file, as it is (MNIST's own style)."""
    return _encode(Image.fromarray(digit))


def _box(digit: np.ndarray, level: int = 25) -> np.ndarray:
    """The digit cropped to its ink (pixels above ``level``)."""
    ys, xs = np.nonzero(digit > level)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _enlarged(digit: np.ndarray, factor: int) -> Image.Image:
    img = Image.fromarray(digit)
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.BICUBIC)


def tight_crop(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Dark on white at 4x, cropped to the ink and then 0-6 px into it on 1-4 random sides."""
    ink = np.asarray(_enlarged(_box(digit), 4), dtype=np.float32)
    h, w = ink.shape
    cut = np.zeros(4, int)
    sides = rng.choice(4, size=int(rng.integers(1, 5)), replace=False)
    # At most 6 px (1.5 MNIST pixels), and never more than a sixth of the side (a narrow 1).
    cut[sides] = rng.integers(0, 7, size=len(sides))
    top, bottom = np.minimum(cut[:2], h // 6)
    left, right = np.minimum(cut[2:], w // 6)
    ink = ink[top : h - bottom, left : w - right]
    return _encode(Image.fromarray((255 - ink).clip(0, 255).astype(np.uint8)))


def low_contrast(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Pencil grey on tinted paper, 3x on a roomy canvas, noise, JPEG quality 80."""
    ink = np.asarray(_enlarged(digit, 3), dtype=np.float32) / 255
    ink = np.pad(ink, 12)
    paper = rng.uniform(0.72, 0.92)
    contrast = rng.uniform(0.08, 0.25)  # ink this much darker than the paper, at most
    lum = paper - contrast * ink + rng.normal(0, 0.012, ink.shape)
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.98)])
    rgb = (lum[..., None] * tint * 255).clip(0, 255).astype(np.uint8)
    return _encode(Image.fromarray(rgb, "RGB"), "JPEG", quality=80)


def low_res(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """The digit's box shrunk to 8-12 px (area average), enlarged with bicubic; dark on light."""
    box = Image.fromarray(_box(digit))
    side = int(rng.integers(8, 13))
    scale = side / max(box.size)
    small = box.resize(
        (max(1, round(box.width * scale)), max(1, round(box.height * scale))),
        Image.Resampling.BOX,
    )
    small = Image.fromarray(np.pad(np.asarray(small), 2))
    factor = int(rng.integers(12, 17))
    big = small.resize((small.width * factor, small.height * factor), Image.Resampling.BICUBIC)
    return _encode(Image.fromarray(255 - np.asarray(big)))


def thick_marker(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A felt tip: strokes grown to a quarter-third of the digit's height, dark on white, tight."""
    big = _enlarged(np.pad(digit, 4), 4)  # 144 px, the box about 80
    radius = int(rng.integers(4, 8))  # MaxFilter size 2r+1 grows a ~10 px stroke to 18-24 px
    thick = big.filter(ImageFilter.MaxFilter(2 * radius + 1))
    thick = thick.filter(ImageFilter.GaussianBlur(1.0))
    arr = _box(np.asarray(thick), 60)
    margin = int(rng.integers(0, 4))
    arr = np.pad(arr, margin)
    return _encode(Image.fromarray(255 - arr))


def filled_frame(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """USPS-like: the digit's box resized to fill 16x16 (aspect kept), 4x, white on black."""
    box = Image.fromarray(_box(digit))
    scale = 16 / max(box.size)
    w, h = max(1, round(box.width * scale)), max(1, round(box.height * scale))
    frame = np.zeros((16, 16), np.uint8)
    top, left = (16 - h) // 2, (16 - w) // 2
    frame[top : top + h, left : left + w] = np.asarray(box.resize((w, h), Image.Resampling.BOX))
    big = Image.fromarray(frame).resize((64, 64), Image.Resampling.BILINEAR)
    return _encode(big)


STYLES: dict[str, Style] = {
    "tight_crop": tight_crop,
    "low_contrast": low_contrast,
    "low_res": low_res,
    "thick_marker": thick_marker,
    "filled_frame": filled_frame,
}


def render(style: str, digits: np.ndarray, seed: int = 0) -> list[bytes]:
    """Every digit of N x 28 x 28 uint8 as an upload in ``style``, reproducibly for a seed."""
    make = STYLES[style]
    rng = np.random.default_rng([seed, list(STYLES).index(style)])
    return [make(d, rng) for d in digits]
