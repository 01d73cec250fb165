"""The paper under a crop's ink, measured on its border: level, noise, polarity and shape.

Every function takes a stack (N x h x w float32 luminance in [0, 1], or N rows of border values)
and answers per image; a single image is a stack of one. Quantiles are nearest-rank (the value
at index int(q * (n - 1)) of the sorted values), which on a handful of border pixels is what a
median should be and costs a sort instead of an interpolation.
"""

import math

import numpy as np

NOISE_K = 4.0  # noise threshold = K robust sigmas of the border; 0 for clean images
MIN_CONTRAST = 0.05  # ink weaker than ~13 grey levels above the paper is no digit
BORDER_INK = 0.15  # tight crops (forms, USPS-like frames): ink on this share of the border
# A small image's paper wanders (fog, shadow) when the border's values spread this many times
# more than neighbouring border pixels differ; then a grey opening stands in for the paper.
WANDER = 3.0
# Side bands of inverted polarity (MNIST-C's stripe): only in images this big, and only where
# the band and the paper between differ by this much (a photo's dark margins are softer).
BAND_MIN_SIDE, BAND_CONTRAST = 16, 0.5
POLARITY_SAMPLES = 65536  # ~65k pixels are plenty for the 1% tails that decide the polarity
_BINS = np.linspace(0.0, 1.0, 65)  # Otsu's and the mode's histogram: 64 fixed bins of [0, 1]
_CENTRES = (_BINS[:-1] + _BINS[1:]) / 2
_SORT_MAX = 2048  # longer rows are partitioned: a full sort of 40k pixels costs ~10x more


def edges(stack: np.ndarray) -> np.ndarray:
    """N x h x w -> each image's border as a row (top, bottom, left, right edge); the whole
    image when it is under 3 px on a side."""
    n, h, w = stack.shape
    if min(h, w) < 3:
        return stack.reshape(n, h * w)
    return np.concatenate([stack[:, 0], stack[:, -1], stack[:, :, 0], stack[:, :, -1]], axis=1)


def kth(rows: np.ndarray, ks: tuple[int, ...]) -> list[np.ndarray]:
    """The ks-th smallest value of each row of N x m, as float64 (exact)."""
    if rows.shape[1] <= _SORT_MAX:
        ordered = np.sort(rows, axis=1)
    else:
        ordered = np.partition(rows, ks, axis=1)
    return [ordered[:, k].astype(np.float64) for k in ks]


def quantile(rows: np.ndarray, q: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Per row of N x m: the nearest-rank ``q`` quantile of its values (where ``mask`` holds)."""
    if mask is None or mask.all():
        return kth(rows, (int(q * (rows.shape[1] - 1)),))[0]
    k = (q * (mask.sum(1) - 1)).astype(np.intp)
    ordered = np.sort(np.where(mask, rows, np.float32(np.inf)), axis=1)
    return np.take_along_axis(ordered, k[:, None], axis=1)[:, 0].astype(np.float64)


def noise(border: np.ndarray, paper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's level (median) and noise (MAD as a standard deviation) per row of border
    values, from the pixels ``paper`` marks; a clean (MNIST) border has no noise at all."""
    centre = quantile(border, 0.5, paper)
    spread = np.abs(border - centre.astype(np.float32)[:, None])
    return centre, 1.4826 * quantile(spread, 0.5, paper)


def _histogram(rows: np.ndarray) -> np.ndarray:
    """N x 64 counts of each row's values in 64 equal bins of [0, 1] (as np.histogram bins)."""
    n = len(rows)
    inside = (rows >= 0) & (rows <= 1)
    bins = np.minimum(np.searchsorted(_BINS, rows, side="right") - 1, 63)
    flat = (np.arange(n)[:, None] * 64 + bins)[inside]
    return np.bincount(flat, minlength=64 * n).reshape(n, 64)


def otsu(counts: np.ndarray, size: int) -> np.ndarray:
    """Otsu's threshold from each row of a 64-bin histogram of [0, 1] (``size`` values, some
    perhaps outside the range): the bin edge with the most between-class variance."""
    w0 = np.cumsum(counts, axis=1)[:, :-1].astype(np.float64)
    s0 = np.cumsum(counts * _CENTRES, axis=1)[:, :-1]
    total = (counts @ _CENTRES)[:, None]  # sums of multiples of 1/128: exact in any order
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty class: 0 / 0
        gap = s0 / w0 - (total - s0) / (size - w0)
    between = np.fmax(w0 * (size - w0) * gap**2, 0)  # NaN (an empty class) counts as 0
    return _BINS[between.argmax(1) + 1]


def border_paper(border: np.ndarray) -> np.ndarray:
    """Which border pixels are paper: all of them, except where much ink crosses the border.

    A tight crop puts ink on a share of its border, so the border's median (the paper level
    everywhere else) lands between ink and paper, and its spread looks like heavy noise that
    hides the digit. Split such a border into two levels (Otsu's) instead: the paper is the
    level holding the border's most common value, and the other level must stand out from the
    paper's own noise (two halves of a light gradient do not)."""
    counts = _histogram(border)
    threshold = otsu(counts, border.shape[1])
    high = border > threshold.astype(np.float32)[:, None]
    share = high.mean(1)
    paper = np.ones_like(high)
    split = np.flatnonzero(np.minimum(share, 1 - share) >= BORDER_INK)
    if not split.size:
        return paper
    mode = _BINS[counts[split].argmax(1)]
    paper[split] = np.where((mode >= threshold[split])[:, None], high[split], ~high[split])
    level, sigma = noise(border[split], paper[split])
    other = quantile(border[split], 0.5, ~paper[split])
    apart = np.abs(other - level) >= NOISE_K * sigma + 2 * MIN_CONTRAST
    paper[split[~apart]] = True
    return paper


def polarity(stack: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """Whether each image's ink is darker than its paper (level ``paper``): the ink lies on
    the side whose 1%/99% tail is farther away; when the tails are alike (thin strokes under
    1% of pixels, or only noise) the mean decides."""
    n, h, w = stack.shape
    step = math.ceil(math.sqrt(h * w / POLARITY_SAMPLES))
    sample = stack[:, ::step, ::step].reshape(n, -1)
    size = sample.shape[1]
    lo, hi = kth(sample, (int(0.01 * (size - 1)), int(0.99 * (size - 1))))
    dark, light = paper - lo, hi - paper
    inverted = dark > light
    tie = np.abs(dark - light) <= 0.25 * np.maximum(dark, light)
    if tie.any():
        means = stack[tie].reshape(int(tie.sum()), h * w).mean(1)
        inverted[tie] = means < paper[tie]
    return inverted


def plane(stack: np.ndarray) -> np.ndarray:
    """A plane through the four edges' 25th percentiles (robust to ink crossing an edge): the
    linear light gradient across a photographed page."""
    h, w = stack.shape[1:]
    sides = (stack[:, 0], stack[:, -1], stack[:, :, 0], stack[:, :, -1])
    top, bottom, left, right = (quantile(e, 0.25) for e in sides)
    gy, gx = (bottom - top) / (h - 1), (right - left) / (w - 1)
    ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * gy.astype(np.float32)[:, None]
    xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * gx.astype(np.float32)[:, None]
    level = ((top + bottom + left + right) / 4).astype(np.float32)
    return level[:, None, None] + ys[:, :, None] + xs[:, None, :]


def wandering(stack: np.ndarray) -> np.ndarray:
    """Whether the paper's level wanders smoothly (fog, a shadow, a stain) along the border:
    its values spread far more than neighbouring border pixels differ (which is the noise)."""
    border = edges(stack)
    if border.shape[1] < 2:  # a single pixel has no border to wander along
        return np.zeros(len(stack), bool)
    steps = np.abs(np.diff(border, axis=1))
    h, w = stack.shape[1:]
    if min(h, w) >= 3:  # neighbours along each edge, not from one edge's end to the next
        steps = np.delete(steps, [w - 1, 2 * w - 1, 2 * w + h - 1], axis=1)
    median = quantile(border, 0.5).astype(np.float32)[:, None]
    spread = quantile(np.abs(border - median), 0.5)
    return spread > np.maximum(WANDER * quantile(steps, 0.5), MIN_CONTRAST / 2)


def opening(stack: np.ndarray) -> np.ndarray:
    """The page without the strokes: a grey opening (min then max over a square wider than a
    stroke), which follows a smoothly varying background and drops anything thinner."""
    k = max(5, min(stack.shape[1:]) // 4) | 1
    out = stack
    for reduce in (np.minimum, np.maximum):
        for axis in (1, 2):
            pad = [(k // 2, k // 2) if a == axis else (0, 0) for a in range(3)]
            windows = np.lib.stride_tricks.sliding_window_view(
                np.pad(out, pad, mode="edge"), k, axis=axis
            )
            out = reduce.reduce(windows, axis=-1)
    return out.astype(np.float32)


def inverted_bands(stack: np.ndarray) -> np.ndarray:
    """Per image, the width of a band of inverted polarity down each side (0 where none): both
    side columns all of one level, the top and bottom rows of that level for the same k pixels
    from each end and of a level at least BAND_CONTRAST away between them (MNIST-C's stripe).

    Strict on purpose: a digit's own strokes never make such a pattern (a tight crop's ink
    crosses an edge column somewhere, not along all of it), so ordinary crops are untouched."""
    n, h, w = stack.shape
    widths = np.zeros(n, np.intp)
    if min(h, w) < BAND_MIN_SIDE:
        return widths
    sides = np.concatenate([stack[:, :, 0], stack[:, :, -1]], axis=1)
    band = quantile(sides, 0.5).astype(np.float32)[:, None]
    ends = np.stack([stack[:, 0], stack[:, -1]], axis=1)  # N x 2 x w: the top and bottom rows
    middle = quantile(ends[:, :, w // 3 : w - w // 3].reshape(n, -1), 0.5).astype(np.float32)
    contrast = np.abs(band[:, 0] - middle)
    candidates = np.flatnonzero(contrast >= BAND_CONTRAST)
    for i in candidates.tolist():
        near = np.abs(ends[i] - band[i]) < contrast[i] / 2  # 2 x w: pixels of the band's level
        if not (np.abs(sides[i] - band[i]) < contrast[i] / 2).all():
            continue
        left, right = near.argmin(1), near[:, ::-1].argmin(1)  # runs of band from each end
        k = int(left[0])
        if k < 2 or 3 * k > w or (left != k).any() or (right != k).any():
            continue
        if not near[:, k : w - k].any():  # between the bands: the other level, all of it
            widths[i] = k
    return widths


def uninvert_bands(stack: np.ndarray) -> np.ndarray:
    """``stack`` with each image's inverted side bands (inverted_bands) inverted back; the
    same array when no image has any."""
    widths = inverted_bands(stack)
    if not widths.any():
        return stack
    out = stack.copy()
    for i, k in zip(np.flatnonzero(widths).tolist(), widths[widths > 0].tolist(), strict=True):
        out[i, :, :k] = 1 - out[i, :, :k]
        out[i, :, -k:] = 1 - out[i, :, -k:]
    return out
