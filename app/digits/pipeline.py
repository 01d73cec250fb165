"""A request's uploads -> N x 28 x 28 uint8 digits: the reference pipeline, fast where it can be.

Two things make the common case (small greyscale digits, the way MNIST-like images are sent)
cost a few microseconds per image instead of a hundred:

- PNG files that are 8-bit greyscale without transparency or EXIF are decoded by libspng
  (pyspng), ~5x faster than Pillow for a 28x28 file; everything else goes through Pillow.
- Images of the same small shape (under PLANE_MIN_SIDE, so no page gradient to remove) run
  through the ink, crop and centring steps of app/digits/preprocess.py as whole-array numpy
  operations over the request. Each step repeats the reference's arithmetic in the reference's
  dtypes, so the digits are identical (tests compare them on every MNIST test digit and on
  odd inputs). What it does not cover, it hands to the reference: noisy borders (despeckling),
  digits whose box is not 19-20 px (resizing), and centres of mass within 1e-9 of a rounding
  boundary.

The model gets the digits as uint8 (what the model owner takes through shared memory); MNIST
digits are k/255 exactly, so they survive that rounding unchanged.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.digits.decode import (
    ImageLimits,
    ImageRejected,
    blank,
    check_pixels,
    decode_image,
    png_size,
)
from app.digits.luminance import WORK_MAX_SIDE, luminance
from app.digits.preprocess import (
    BOX,
    COM_TARGET,
    FRAME,
    FULL_SCALE,
    MIN_CONTRAST,
    NOISE_K,
    PLANE_MIN_SIDE,
    TIGHT,
    _centre,
    _fit_box,
    digit_from_gray,
    impulses,
)
from app.failures import Failure

try:  # the fast decoder is an optimisation: without its wheel, Pillow decodes everything
    import pyspng
except ImportError:  # pragma: no cover
    pyspng = None

_MAX_FAST_PIXELS = 1 << 16  # a 1% quantile over up to 65,536 pixels reads all of them
_ROUNDING_MARGIN = 1e-9
MIN_BATCH = 3  # below this, the reference's per-image calls cost less than the array set-up


@dataclass(frozen=True)
class Rejection:
    """An upload that could not be used: its index, why, and which failure that is."""

    index: int
    detail: str
    failure: Failure


def plain_gray_png(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a complete 8-bit greyscale PNG without tRNS or eXIf, else None.

    The chunk names are looked for anywhere in the file: a false match inside compressed
    pixels only sends that file to Pillow, which handles every PNG.
    """
    size = png_size(data)
    if size is None or data[-8:-4] != b"IEND" or data[24:26] != b"\x08\x00":  # 8-bit grey
        return None
    return None if b"tRNS" in data or b"eXIf" in data else size


def gray(data: bytes, limits: ImageLimits) -> np.ndarray:
    """One upload's luminance: uint8 when decoded by the fast path, else float32 in [0, 1]."""
    size = plain_gray_png(data)
    if size is not None and pyspng is not None:
        check_pixels(*size, limits)
        try:
            pixels: np.ndarray = pyspng.load(data)
        except Exception:  # corrupt: Pillow gives the error message users know
            pixels = np.empty((0, 0), np.uint8)
        if pixels.shape == (size[1], size[0]):
            return pixels
    return luminance(decode_image(data, limits))


def _as_float(g: np.ndarray) -> np.ndarray:
    """The reference's luminance of a fast-decoded image (Pillow shrinks big ones first)."""
    if g.dtype != np.uint8:
        return g
    if max(g.shape) > WORK_MAX_SIDE:
        return luminance(Image.fromarray(g))
    return g.astype(np.float32) / 255


def to_uint8(digit: np.ndarray) -> np.ndarray:
    """A float digit in [0, 1] as the uint8 the model takes."""
    return np.rint(digit * 255).astype(np.uint8)


def to_digits(datas: list[bytes], limits: ImageLimits) -> tuple[np.ndarray, list[Rejection]]:
    """Every upload -> N x 28 x 28 uint8 digits (zeros where rejected), and the rejections."""
    if len(datas) == 1:  # the common single-image request: straight through the reference
        try:
            return to_uint8(digit_from_gray(_as_float(gray(datas[0], limits))))[None], []
        except ImageRejected as exc:
            return np.zeros((1, FRAME, FRAME), np.uint8), [Rejection(0, exc.detail, exc.failure)]
    digits = np.zeros((len(datas), FRAME, FRAME), np.float32)
    rejections: list[Rejection] = []
    # Same-shape small images run together; fast-decoded (uint8) ones convert all at once.
    groups: dict[tuple[int, int, bool], list[tuple[int, np.ndarray]]] = {}
    others: list[tuple[int, np.ndarray]] = []
    for i, data in enumerate(datas):
        try:
            g = gray(data, limits)
        except ImageRejected as exc:
            rejections.append(Rejection(i, exc.detail, exc.failure))
            continue
        h, w = g.shape
        if 3 <= min(h, w) < PLANE_MIN_SIDE and h * w <= _MAX_FAST_PIXELS:
            groups.setdefault((h, w, g.dtype == np.uint8), []).append((i, g))
        else:
            others.append((i, g))
    for key in [k for k, members in groups.items() if len(members) < MIN_BATCH]:
        others += groups.pop(key)
    for (_, _, fast), members in groups.items():
        index = [i for i, _ in members]
        stack = np.stack([g for _, g in members])
        batch, rejected = batch_digits(stack.astype(np.float32) / 255 if fast else stack)
        digits[index] = batch
        rejections += [Rejection(index[j], e.detail, e.failure) for j, e in rejected.items()]
    for i, g in sorted(others, key=lambda item: item[0]):
        try:
            digits[i] = digit_from_gray(_as_float(g))
        except ImageRejected as exc:
            rejections.append(Rejection(i, exc.detail, exc.failure))
    rejections.sort(key=lambda r: r.index)
    return to_uint8(digits), rejections


def _first_last(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a boolean matrix: the first True, and one past the last True."""
    return mask.argmax(1), mask.shape[1] - mask[:, ::-1].argmax(1)


def batch_digits(g: np.ndarray) -> tuple[np.ndarray, dict[int, ImageRejected]]:
    """N x h x w float32 luminance (3 <= min(h, w) < 64) -> N digits, as digit_from_gray makes
    them, and the rejections by index (their digits stay zero)."""
    n, h, w = g.shape
    # --- _ink: paper level, polarity, noise floor, stretch --------------------------------
    # Sorted rows give the reference's nearest-rank quantiles (np.sort beats a two-kth
    # np.partition along an axis by ~7x here).
    border = np.concatenate([g[:, 0], g[:, -1], g[:, :, 0], g[:, :, -1]], axis=1)
    mid = int(0.5 * (border.shape[1] - 1))
    paper = np.sort(border, axis=1)[:, mid].astype(np.float64)
    ordered = np.sort(g.reshape(n, -1), axis=1)
    klo, khi = int(0.01 * (ordered.shape[1] - 1)), int(0.99 * (ordered.shape[1] - 1))
    dark = paper - ordered[:, klo].astype(np.float64)
    light = ordered[:, khi].astype(np.float64) - paper
    tie = np.abs(dark - light) <= 0.25 * np.maximum(dark, light)
    inverted = dark > light
    for j in np.flatnonzero(tie).tolist():  # rare: the reference's float32 mean decides
        inverted[j] = float(g[j].mean()) < paper[j]
    original, g = g, g.copy()
    g[inverted] = 1 - g[inverted]
    border = np.where(inverted[:, None], 1 - border, border)
    field = np.where(inverted, 1 - paper, paper).astype(np.float32)
    resid = g - field[:, None, None]
    rb = border - field[:, None]
    centre = np.sort(rb, axis=1)[:, mid].astype(np.float64)
    spread = np.sort(np.abs(rb - centre.astype(np.float32)[:, None]), axis=1)[:, mid]
    sigma = 1.4826 * spread.astype(np.float64)
    peak = resid.reshape(n, -1).max(1).astype(np.float64)
    too_faint = peak - (centre + NOISE_K * sigma) < MIN_CONTRAST
    top = np.where(peak >= FULL_SCALE, 1.0, peak)
    stretch = (centre != 0) | (top != 1.0)
    offset = np.where(stretch, centre, 0.0).astype(np.float32)
    ink = resid
    ink -= offset[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"):  # blank pages: rejected below
        ink *= np.where(stretch, 1 / (top - centre), 1.0).astype(np.float32)[:, None, None]
    np.clip(ink, 0, 1, out=ink)
    # Salt and pepper: the reference's median filter. (Ink across the border needs nothing:
    # where the border has no noise, i.e. over half of it is one value, the reference's
    # two-level paper estimate is that value, as here.)
    busy = impulses(ink)
    # --- _crop: the digit's box (ink > TIGHT) and the window of any ink around it -----------
    tight = ink > TIGHT
    tight_rows, tight_cols = np.asarray(tight.any(2)), np.asarray(tight.any(1))
    ink64 = ink.astype(np.float64)
    row_mass, col_mass = ink64 @ np.ones(w), np.ones(h) @ ink64  # > 0 exactly where ink is
    y0, y1 = _first_last(tight_rows)
    x0, x1 = _first_last(tight_cols)
    ly0, ly1 = _first_last(row_mass > 0)
    lx0, lx1 = _first_last(col_mass > 0)
    side = np.maximum(y1 - y0, x1 - x0)
    pad = (side * 4) // BOX
    wy0, wy1 = np.maximum(y0 - pad, ly0), np.minimum(y1 + pad, ly1)
    wx0, wx1 = np.maximum(x0 - pad, lx0), np.minimum(x1 + pad, lx1)
    # --- _centre: centre of mass of the window, placed at COM_TARGET ------------------------
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    in_rows = ((ys >= wy0[:, None]) & (ys < wy1[:, None])).astype(np.float64)
    in_cols = ((xs >= wx0[:, None]) & (xs < wx1[:, None])).astype(np.float64)
    rows = (ink64 @ in_cols[:, :, None])[:, :, 0] * in_rows  # window row sums
    cols = (in_rows[:, None, :] @ ink64)[:, 0, :] * in_cols
    mass = rows.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ty = COM_TARGET - ((rows @ ys) / mass - wy0) + 0.5
        tx = COM_TARGET - ((cols @ xs) / mass - wx0) + 0.5
    near = np.minimum(np.abs(ty - np.round(ty)), np.abs(tx - np.round(tx))) < _ROUNDING_MARGIN
    simple = ~too_faint & (sigma == 0) & tight_rows.any(1) & ((side == BOX) | (side == BOX - 1))
    simple &= ~near & ~busy
    height, width = wy1 - wy0, wx1 - wx0
    top_ = np.clip(np.floor(np.nan_to_num(ty)), 0, FRAME - height).astype(np.int64)
    left = np.clip(np.floor(np.nan_to_num(tx)), 0, FRAME - width).astype(np.int64)
    digits = np.zeros((n, FRAME, FRAME), np.float32)
    rejected: dict[int, ImageRejected] = {}
    columns = (
        simple,
        too_faint,
        sigma > 0,
        tight_rows.any(1),
        side,
        wy0,
        wy1,
        wx0,
        wx1,
        top_,
        left,
    )
    for i, (ok, empty, noisy, inked, sd, a, b, c, d, t, lf) in enumerate(
        zip(*(v.tolist() for v in columns), strict=True)
    ):
        if ok:
            digits[i, t : t + b - a, lf : lf + d - c] = ink[i, a:b, c:d]
            continue
        try:
            if noisy or busy[i]:
                # Noise (threshold, wandering paper, despeckling) or salt and pepper (median
                # filter): the reference decides, blank pages included.
                digits[i] = digit_from_gray(original[i])
            elif empty or not inked:
                raise blank()
            else:  # resize to the 20 px box, or a centre too close to a rounding boundary
                digits[i] = _centre(_fit_box(ink[i, a:b, c:d], sd))
        except ImageRejected as exc:
            rejected[i] = exc
    return digits, rejected
