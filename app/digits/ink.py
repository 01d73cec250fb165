"""A digit crop's luminance -> its ink: white on black, the paper at 0, noise cut, peak 1.

The crop path (frames under app/digits/sizes.py's PHOTO_MIN_SIDE) as named steps, each on a
stack of same-shape images (N x h x w float32); a single image is a stack of one. The common
steps run on the whole stack; uncommon ones (inverted side bands, a wandering paper, faint
ink, salt and pepper, noise specks, outlines) on the images that need them, through the same
function. MNIST's own digits (white full-range ink on black) take none of them but the
outline check.
"""

import cv2
import numpy as np

from app.digits.frame import Extents, extents, stroke_width
from app.digits.paper import (
    MIN_CONTRAST,
    NOISE_K,
    border_paper,
    edges,
    noise,
    opening,
    plane,
    polarity,
    quantile,
    uninvert_bands,
    wandering,
)
from app.digits.sizes import PLANE_MIN_SIDE
from models.framing import FULL_SCALE

SPECK_LEVEL = 0.15  # in noisy images, the box ignores ink whose 3x3 mean is below this
# Salt-and-pepper noise: ink pixels with no ink around them, on at least 1% of the image (and
# at least 8 of them); MNIST's test digits have at most a few.
IMPULSE_SHARE, IMPULSE_MIN = 0.01, 8
# Outline-only digits (MNIST-C's canny_edges: 1 px edges at 0 or 1) have strokes under this
# wide; the one binary MNIST test digit's are 5 px. A 5x5 disc closes the gap between a
# stroke's two edges (MNIST strokes are 2-4 px) and leaves the loops of 0, 6, 8, 9 open.
OUTLINE_STROKE = 2.5
_DISC = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _padded(stack: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Each image with a 1-pixel frame of zeros (np.pad costs ~10 us a call)."""
    n, h, w = stack.shape
    out = np.zeros((n, h + 2, w + 2), dtype)
    out[:, 1:-1, 1:-1] = stack
    return out


def _col(values: np.ndarray) -> np.ndarray:
    """Per-image values as float32, shaped to broadcast over N x h x w."""
    return values.astype(np.float32)[:, None, None]


def already_ink(found: Extents, h: int, w: int) -> list[bool]:
    """Which images are white full-range ink on a black page already (MNIST), from their
    extents (no ink on the border, some at FULL_SCALE): on a crop every ink step would leave
    them as they are (paper 0, not inverted, no noise, no stretch)."""
    return [
        full and y0 > 0 and y1 < h and x0 > 0 and x1 < w
        for (y0, y1, x0, x1), full in zip(found[1], found[2], strict=True)
    ]


def above_paper(
    stack: np.ndarray, field: np.ndarray, paper: np.ndarray, faint_means: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ink above the paper ``field`` (N x 1 x 1 levels, or N x h x w): the residual, the paper's
    level and noise on the border pixels ``paper`` marks, the noise threshold, the strongest
    ink.

    With ``faint_means`` (pages big enough to have strokes several pixels wide), faint ink
    under noise (pencil on a scan) is looked for again after a 3x3 mean, then after another
    (5x5, triangular): the noise drops by up to 3x (4x), strokes that wide stay."""
    resid = stack - field
    centre, sigma = noise(edges(resid), paper)
    thr = centre + NOISE_K * sigma
    peak = resid.reshape(len(resid), -1).max(1).astype(np.float64)
    noisy = sigma > 0
    for _ in range(2 if faint_means else 0):
        faint = np.flatnonzero(noisy & (peak - thr < MIN_CONTRAST))
        if not faint.size:
            break
        resid[faint] = mean3(resid[faint])
        centre[faint], sigma[faint] = noise(edges(resid[faint]), paper[faint])
        thr[faint] = centre[faint] + NOISE_K * sigma[faint]
        peak[faint] = resid[faint].reshape(faint.size, -1).max(1)
    return resid, centre, sigma, thr, peak


def mean3(stack: np.ndarray) -> np.ndarray:
    """3x3 box mean of each image (edges repeated)."""
    p = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode="edge")
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    return ((rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]) / np.float32(9)).astype(
        np.float32
    )


def stretch(resid: np.ndarray, centre: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Ink from its paper level (``centre``) to its peak spans 0 to 1; full-range ink (a peak
    of FULL_SCALE or more) on paper at 0 is left alone. In place."""
    top = np.where(peak >= FULL_SCALE, 1.0, peak)
    moved = np.flatnonzero((centre != 0) | (top != 1.0))
    if moved.size:
        scale = 1 / (top[moved] - centre[moved])
        resid[moved] = (resid[moved] - _col(centre[moved])) * _col(scale)
    return resid


def impulses(ink: np.ndarray) -> np.ndarray:
    """Per image of N x h x w ink maps: whether salt-and-pepper noise is sprinkled over it
    (many lone pixels: at least half ink, every one of their 8 neighbours under a quarter)."""
    h, w = ink.shape[1:]
    # Neighbours all under a quarter = the pixel is the only one of its 3x3 window at a quarter
    # or more: a separable count of uint8 flags, 3x cheaper than a maximum over 8 shifts.
    faint = _padded(ink >= 0.25, np.uint8)
    rows = faint[:, :-2] + faint[:, 1:-1] + faint[:, 2:]
    window = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    lone = ((ink >= 0.5) & (window == 1)).sum((1, 2))
    return np.asarray(lone >= max(IMPULSE_MIN, IMPULSE_SHARE * h * w))


def median3(stack: np.ndarray) -> np.ndarray:
    """3x3 median filter: takes the salt off the page and the pepper out of the strokes."""
    windows = np.lib.stride_tricks.sliding_window_view(_padded(stack), (3, 3), axis=(1, 2))
    return np.median(windows, axis=(-2, -1)).astype(np.float32)


def _between(mask: np.ndarray) -> np.ndarray:
    """Per row of a boolean matrix: True from its first True to its last (none if none)."""
    return np.logical_or.accumulate(mask, 1) & np.logical_or.accumulate(mask[:, ::-1], 1)[:, ::-1]


def despeckle(ink: np.ndarray) -> np.ndarray:
    """Noisy images: zero everything outside the box of the ink that has ink around it (its
    3x3 mean at least SPECK_LEVEL): all of an image where no ink does."""
    p = _padded(ink)
    rows = p[:, :-2] + p[:, 1:-1] + p[:, 2:]
    inked = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:] > 9 * SPECK_LEVEL
    box = _between(inked.any(2))[:, :, None] & _between(inked.any(1))[:, None, :]
    return np.where(box, ink, np.float32(0))


def _field(
    stack: np.ndarray, level: np.ndarray, across: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The paper under each image: a plane through its edges on pages (64 px and up), a grey
    opening on small crops whose paper wanders, else its level; one level wherever ink crosses
    the border (its edges are not all paper). Also which images got a plane or an opening."""
    small = min(stack.shape[1:]) < PLANE_MIN_SIDE
    shaped = np.flatnonzero(~across)
    if small and shaped.size:
        shaped = shaped[wandering(stack[shaped])]
    if not shaped.size:
        return _col(level), shaped
    field = np.broadcast_to(_col(level), stack.shape).copy()
    field[shaped] = opening(stack[shaped]) if small else plane(stack[shaped])
    return field, shaped


def cut_noise(
    resid: np.ndarray, centre: np.ndarray, sigma: np.ndarray, thr: np.ndarray, peak: np.ndarray
) -> np.ndarray:
    """Residuals of images with a digit -> their ink: noise under ``thr`` cut, stretched to a
    peak of 1, salt and pepper filtered, specks off the digit's box dropped (all of it where
    no ink has ink around it)."""
    noisy = sigma > 0
    # Hard threshold: noise goes, but the anti-aliased skirts of strokes above it keep their
    # values (a soft threshold would thin every stroke by the noise level).
    cut = noisy[:, None, None] & (resid <= _col(thr))
    ink = stretch(resid, centre, peak)
    ink[cut] = 0
    np.clip(ink, 0, 1, out=ink)
    busy = np.flatnonzero(impulses(ink))
    if busy.size:
        ink[busy] = median3(ink[busy])
    speckled = np.flatnonzero(noisy)
    if speckled.size:
        ink[speckled] = despeckle(ink[speckled])
    return ink


def outlines(ink: np.ndarray) -> np.ndarray:
    """Per ink map: whether it is a digit's outline rather than its strokes (edges only: every
    pixel 0 or 1, the lines under OUTLINE_STROKE wide)."""
    binary = np.asarray(~((ink > 0) & (ink < 1)).any((1, 2)))
    for i in np.flatnonzero(binary).tolist():
        binary[i] = 0 < stroke_width(ink[i]) < OUTLINE_STROKE  # blank pages are no outline
    return binary


def fill_outlines(ink: np.ndarray) -> np.ndarray:
    """Outlined digits -> filled strokes: a grey closing by a 5x5 disc of each ink map."""
    return np.stack([cv2.morphologyEx(a, cv2.MORPH_CLOSE, _DISC) for a in ink])


def _from_paper(stack: np.ndarray) -> np.ndarray:
    """Luminance -> ink (zeros where none stands out), for images that need every step."""
    small = min(stack.shape[1:]) < PLANE_MIN_SIDE
    stack = uninvert_bands(stack)
    border = edges(stack)
    on_paper = border_paper(border)
    paper = quantile(border, 0.5, on_paper)
    inverted = polarity(stack, paper)
    stack = np.where(inverted[:, None, None], 1 - stack, stack)
    level = np.where(inverted, 1 - paper, paper)
    field, shaped = _field(stack, level, ~np.all(on_paper, axis=1))
    measured = above_paper(stack, field, on_paper, not small)
    thr, peak = measured[3:]
    if small and shaped.size:
        # The opening took the strokes for paper (a marker stroke wider than its square, the
        # border all anti-aliased edge): measure against one paper level, as before.
        lost = shaped[peak[shaped] - thr[shaped] < MIN_CONTRAST]
        if lost.size:
            redone = above_paper(stack[lost], _col(level[lost]), on_paper[lost], False)
            for whole, part in zip(measured, redone, strict=True):
                whole[lost] = part
    found = peak - thr >= MIN_CONTRAST
    if found.all():
        return cut_noise(*measured)
    ink = np.zeros_like(stack)
    rows = np.flatnonzero(found)
    if rows.size:
        ink[rows] = cut_noise(*(m[rows] for m in measured))
    return ink


def crop_ink(stack: np.ndarray) -> tuple[np.ndarray, Extents]:
    """N x h x w luminance of digit crops (float32 in [0, 1]) -> N ink maps, white on black
    with the paper at 0 and the ink's peak at 1 (all zeros where no digit stands out), and
    their extents (app/digits/frame.py)."""
    h, w = stack.shape[1:]
    if min(h, w) >= PLANE_MIN_SIDE:
        ink = _from_paper(stack)
        return ink, extents(ink)
    found = extents(stack)
    rest = [i for i, done in enumerate(already_ink(found, h, w)) if not done]
    ink = stack
    if rest:
        ink = stack.copy()
        ink[rest] = _from_paper(stack[rest])
    outlined = np.flatnonzero(outlines(ink)).tolist()
    if outlined:
        ink = stack.copy() if ink is stack else ink
        ink[outlined] = fill_outlines(ink[outlined])
    changed = sorted({*rest, *outlined})
    if changed:
        boxes, inked, full = found
        for i, box, any_ink, reaches in zip(changed, *extents(ink[changed]), strict=True):
            boxes[i], inked[i], full[i] = box, any_ink, reaches
    return ink, found
