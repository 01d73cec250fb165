"""A digit's ink -> the MNIST frame: its box, fitted to BOX px, centred by mass in 28 x 28.

The steps take a stack of ink maps (N x h x w float32, white on black, peak 1) from a crop
(app/digits/ink.py) or a page (app/digits/page.py), a single one being a stack of one. MNIST's
own digits (a box of 19-20 px) are placed as they are; only other boxes are resampled.
"""

import math

import numpy as np
from PIL import Image

from models.framing import BOX, COM_TARGET, FRAME, FULL_SCALE, TIGHT

INTERMEDIATE = 4 * BOX  # big crops go through 80 px, where thin strokes are measured and grown
# Stroke width / digit size, estimated as in stroke_width: MNIST's median is 0.16, its 1st
# percentile 0.08. Far below that (pen strokes on a big canvas) the strokes would vanish.
THIN_STROKE, TARGET_STROKE = 0.09, 0.14
MNIST_SIDES = (BOX - 1, BOX)  # MNIST: 9,996 test digits are 20 px, 4 are 19
_MOMENTS = np.stack([np.arange(FRAME), np.ones(FRAME)], axis=1)  # first and zeroth moment
# Ink above TIGHT (the box), above 0 (any ink), and at FULL_SCALE or more (as float32 compares).
_LEVELS = np.array([TIGHT, 0, np.nextafter(np.float32(FULL_SCALE), 0)], np.float32)[
    :, None, None, None
]


Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (one past the end)
# Per image: the box of its ink above TIGHT (the digit's), the box of any ink, and whether its
# ink reaches FULL_SCALE; a box starts at max(h, w) where there is no such ink.
Extents = tuple[list[Box], list[Box], list[bool]]


def extents(ink: np.ndarray) -> Extents:
    """Each image's extents, from its row and column peaks: a handful of whole-stack calls
    (the shorter profile zero-padded; a last position above every level stands for none)."""
    n, h, w = ink.shape
    length = max(h, w)
    peaks = np.zeros((2, n, length + 1), np.float32)
    peaks[..., length] = 2
    np.maximum.reduce(ink, 2, out=peaks[0, :, :h])
    np.maximum.reduce(ink, 1, out=peaks[1, :, :w])
    above = peaks > _LEVELS  # level, axis (rows, columns), image, position
    starts = above.argmax(3).tolist()
    ends = (length - above[..., length - 1 :: -1].argmax(3)).tolist()
    (box, any_ink) = (
        list(zip(y0, y1, x0, x1, strict=True))
        for (y0, x0), (y1, x1) in zip(starts[:2], ends[:2], strict=True)
    )
    return box, any_ink, [y0 < length for y0 in starts[2][0]]


def crop_boxes(boxes: list[Box], inked: list[Box]) -> tuple[list[Box], list[int]]:
    """Each image's window around its digit, and the side of the digit's box that must fit
    BOX px (0 where no ink is above TIGHT): the box widened by fainter ink up to 4 output
    pixels around it (anti-aliasing, which MNIST has inside its frame, so scaled to BOX px the
    window still fits FRAME)."""
    windows, sides = [], []
    for (y0, y1, x0, x1), (ly0, ly1, lx0, lx1) in zip(boxes, inked, strict=True):
        side = max(y1 - y0, x1 - x0) if y1 > y0 else 0
        pad = side * 4 // BOX
        windows.append(
            (max(y0 - pad, ly0), min(y1 + pad, ly1), max(x0 - pad, lx0), min(x1 + pad, lx1))
        )
        sides.append(side)
    return windows, sides


def stroke_width(a: np.ndarray) -> float:
    """Mean run length of ink across rows or columns, whichever is shorter: ~ the pen width."""
    b = np.pad(a > 0.5, 1)
    runs = max(int((b[:, 1:] & ~b[:, :-1]).sum()), int((b[1:] & ~b[:-1]).sum()))
    return float(b.sum()) / max(runs, 1)


def _resize(a: np.ndarray, scale: float, resample: Image.Resampling) -> np.ndarray | None:
    """``a`` resampled by ``scale``, clipped (Lanczos overshoots both ways) and, where the
    resampling spread thin strokes and lowered their peak, brought back to 1; None when no
    ink is left."""
    size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
    out = np.clip(np.asarray(Image.fromarray(a).resize(size, resample)), 0, 1)
    peak = float(out.max())
    if peak == 0:
        return None
    return out / np.float32(peak) if peak < FULL_SCALE else out


def dilate(a: np.ndarray, radius: int) -> np.ndarray:
    """Grey dilation by an octagon (alternate cross and square steps: round strokes), grown."""
    a = np.pad(a, radius)
    for step in range(radius):
        p = np.pad(a, 1)
        if step % 2 == 0:
            cross = [p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]
            a = np.maximum.reduce(cross)
        else:
            rows = np.maximum(np.maximum(p[:-2], p[1:-1]), p[2:])
            a = np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    return a


def fit_one(window: np.ndarray, side: int) -> np.ndarray | None:
    """Scale one window so the digit's box (``side`` px) becomes BOX px, anti-aliased; thin
    pen strokes on a big canvas are grown first so they survive; None when nothing is left."""
    a: np.ndarray | None = window
    span = float(side)  # the digit's box, in pixels of a
    if side > INTERMEDIATE:
        a, span = _resize(window, INTERMEDIATE / side, Image.Resampling.BOX), INTERMEDIATE
    if a is not None and side > BOX:
        stroke = stroke_width(a)
        if stroke < THIN_STROKE * span:
            radius = round((TARGET_STROKE * span - stroke) / (2 * (1 - TARGET_STROKE)))
            if radius >= 1:
                a, span = dilate(a, radius), span + 2 * radius
    return None if a is None else _resize(a, BOX / span, Image.Resampling.LANCZOS)


def fit(
    ink: np.ndarray, windows: list[Box], sides: list[int]
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Each digit's window, fitted to BOX px (MNIST's 19-20 px boxes as they are), at the top
    left of an N x FRAME x FRAME canvas, and its height and width (0 x 0 where there is no
    digit: no side, or nothing left after resampling)."""
    canvas = np.zeros((len(ink), FRAME, FRAME), np.float32)
    sizes = []
    for i, ((y0, y1, x0, x1), side) in enumerate(zip(windows, sides, strict=True)):
        window = ink[i, y0:y1, x0:x1]
        digit = None if not side else window if side in MNIST_SIDES else fit_one(window, side)
        if digit is None:
            sizes.append((0, 0))
            continue
        h, w = digit.shape
        canvas[i, :h, :w] = digit
        sizes.append((h, w))
    return canvas, sizes


def centre(canvas: np.ndarray, sizes: list[tuple[int, int]]) -> np.ndarray:
    """Place each digit (at the top left of its canvas, ``sizes`` h x w) in FRAME x FRAME with
    its centre of mass at COM_TARGET, kept inside the frame."""
    profiles = np.empty((2, *canvas.shape[:2]))  # row sums, column sums
    np.add.reduce(canvas, 2, np.float64, profiles[0])
    np.add.reduce(canvas, 1, np.float64, profiles[1])
    moments, (masses, _) = (profiles @ _MOMENTS).transpose(2, 0, 1).tolist()  # y and x; mass
    out = np.zeros(canvas.shape, np.float32)
    for i, (my, mx, mass, (h, w)) in enumerate(zip(*moments, masses, sizes, strict=True)):
        if h:
            top = min(max(math.floor(COM_TARGET - my / mass + 0.5), 0), FRAME - h)
            left = min(max(math.floor(COM_TARGET - mx / mass + 0.5), 0), FRAME - w)
            out[i, top : top + h, left : left + w] = canvas[i, :h, :w]
    return out


def frame(ink: np.ndarray, found: Extents | None = None) -> tuple[np.ndarray, np.ndarray]:
    """N ink maps (and their extents, where known) -> N x FRAME x FRAME MNIST digits
    (float32), and which of them hold one (zeros where not)."""
    boxes, inked, _ = extents(ink) if found is None else found
    canvas, sizes = fit(ink, *crop_boxes(boxes, inked))
    return centre(canvas, sizes), np.fromiter((h > 0 for h, _ in sizes), bool, len(sizes))
