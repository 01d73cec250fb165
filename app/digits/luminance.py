"""A decoded image of any mode -> float32 luminance in [0, 1]: transparency composited onto the
page that contrasts with the ink, any bit depth scaled to its true range, big images shrunk."""

import math

import numpy as np
from PIL import Image

from app.digits.decode import blank
from app.digits.sizes import PAGE_SIDE, WORK_MAX_SIDE

_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_KEYED_MODES = frozenset({"1", "L", "P", "RGB"})  # a tRNS colour key Pillow turns into alpha


def _shrink(img: Image.Image) -> Image.Image:
    """Box-average huge images down to WORK_MAX_SIDE (averaging keeps thin strokes, faintly),
    never a page below the size it is read at (PAGE_SIDE)."""
    factor = min(math.ceil(max(img.size) / WORK_MAX_SIDE), max(1, min(img.size) // PAGE_SIDE))
    return img.reduce(factor) if factor > 1 else img


def _composite(img: Image.Image) -> np.ndarray:
    """Image with alpha -> luminance composited onto the background that contrasts with the ink."""
    if img.mode not in ("LA", "La"):
        img = img.convert("RGBA").convert("LA")  # RGBA -> La directly loses alpha in Pillow
    if img.mode == "LA":
        img = img.convert("La")  # premultiplied, so box-averaging in _shrink stays correct
    arr = np.asarray(_shrink(img), dtype=np.float32) / 255
    lum, alpha = arr[..., 0], arr[..., 1]  # lum is premultiplied: L * alpha
    total = float(alpha.sum())
    if total == 0:
        raise blank()
    mean = float(lum.sum()) / total  # alpha-weighted luminance of what is drawn
    # Mostly opaque: the opaque pixels are the page itself, so extend it.
    mostly_opaque = total > 0.5 * alpha.size
    light_page = mean > 0.5 if mostly_opaque else _page_behind_strokes(lum, alpha, mean)
    return lum + (1 - alpha) if light_page else lum


def _page_behind_strokes(lum: np.ndarray, alpha: np.ndarray, mean: float) -> bool:
    """Whether strokes drawn on transparency were meant for a light page."""
    solid = alpha > 0.5
    p = np.pad(solid, 1)
    inner = solid & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]  # 4 solid neighbours
    rim = solid & ~inner
    if inner.any() and rim.any():
        straight = lum / np.maximum(alpha, np.float32(1e-6))
        core, edge = float(straight[inner].mean()), float(straight[rim].mean())
        # A GIF-style colour key (binary alpha) keeps the anti-aliasing against the page it was
        # drawn on: the rim blends from the ink towards that page.
        if abs(edge - core) > 0.25:
            return edge > core
    # Otherwise the ink has one colour (a canvas export: transparent pixels are often RGB 0,0,0,
    # anti-aliasing lives in alpha): put the contrasting page behind it.
    return mean <= 0.5


def luminance(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> float32 luminance in [0, 1], alpha composited, at most WORK_MAX_SIDE."""
    mode = img.mode
    if mode in _ALPHA_MODES or (mode in _KEYED_MODES and img.has_transparency_data):
        return _composite(img)
    if mode.startswith("I") or mode == "F":
        if mode.startswith("I;16"):
            scale = 65535.0  # the true range: a 16-bit PNG's white is 65535, not 255
        else:  # I (32-bit) or F: infer the range the data were written in
            top = float(img.getextrema()[1])  # type: ignore[arg-type]
            scale = next((s for s in (1.0, 255.0, 65535.0) if top <= s), top)
        if mode != "F":
            img = img.convert("F")
        arr = np.nan_to_num(np.asarray(_shrink(img), dtype=np.float32)) / np.float32(scale)
        return np.clip(arr, 0, 1, out=arr)
    if mode == "LAB":  # Pillow cannot convert LAB; its first band is the lightness
        img = img.getchannel(0)
    elif mode != "L":
        img = img.convert("L")
    return np.asarray(_shrink(img), dtype=np.float32) / 255
