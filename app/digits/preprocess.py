"""Uploaded bytes -> decoded image -> MNIST-style 28x28 digit (white ink on black, COM-centred).

This is the reference pipeline, one image at a time; app/frontend/digits.py runs the common
case (small greyscale digits) vectorised over a request's images with identical results.
"""

import math

import numpy as np
from PIL import Image

from app.digits.decode import ImageLimits, ImageRejected, blank, decode_image
from app.digits.luminance import luminance
from app.digits.page import page_ink
from models.framing import BOX, COM_TARGET, FRAME, FULL_SCALE, TIGHT

PLANE_MIN_SIDE = 64  # smaller images are digit crops, not photographed pages
INTERMEDIATE = 4 * BOX  # big crops go through 80 px, where thin strokes are measured and grown
NOISE_K = 4.0  # noise threshold = K robust sigmas of the border; 0 for clean images
MIN_CONTRAST = 0.05  # ink weaker than ~13 grey levels above the paper is no digit
SPECK_LEVEL = 0.15  # in noisy images, bbox ignores ink whose 3x3 mean is below this (lone specks)
# Stroke width / digit size, estimated as in _stroke_width: MNIST's median is 0.16, its 1st
# percentile 0.08. Far below that (pen strokes on a big canvas) the strokes would vanish.
THIN_STROKE, TARGET_STROKE = 0.09, 0.14
BORDER_INK = 0.15  # tight crops (forms, USPS-like frames): ink on this share of the border
# Salt-and-pepper noise: ink pixels with no ink around them, on at least 1% of the image (and
# at least 8 of them); MNIST's test digits have at most a few.
IMPULSE_SHARE, IMPULSE_MIN = 0.01, 8
# A small image's paper wanders (fog, shadow) when the border's values spread this many times
# more than neighbouring border pixels differ; then a grey opening stands in for the paper.
WANDER = 3.0
PHOTO_MIN_SIDE = 200  # frames this big are photos or pages (app/digits/page.py), not crops
_INDEX = np.arange(FRAME, dtype=np.float64)


def _edges(a: np.ndarray) -> list[np.ndarray]:
    return [a[0], a[-1], a[:, 0], a[:, -1]] if min(a.shape) >= 3 else [a.ravel()]


def _quantile(a: np.ndarray, q: float) -> float:
    """Nearest-rank quantile via partition: np.percentile costs ~30 us even on 28 pixels."""
    k = int(q * (a.size - 1))
    return float(np.partition(a, k)[k])


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` in [0, 1] (64 bins): the most between-class variance."""
    counts, edges = np.histogram(values, bins=64, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1].astype(np.float64)
    s0 = np.cumsum(counts * centres)[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = s0 / w0 - (float(counts @ centres) - s0) / (values.size - w0)
    between = np.nan_to_num(w0 * (values.size - w0) * gap**2)
    return float(edges[int(between.argmax()) + 1])


def _paper_on_border(border: np.ndarray) -> np.ndarray | None:
    """Which border pixels are paper when much ink crosses the border; None when little does.

    A tight crop puts ink on a third or more of its border, so the border's median (the paper
    level everywhere else) lands between ink and paper, and its spread looks like heavy noise
    that hides the digit. Split the border into two levels instead: the paper is the level
    holding the border's most common value, and the other level must stand out from the
    paper's own noise (two halves of a light gradient do not).
    """
    threshold = _otsu(border)
    high = border > threshold
    share = float(high.mean())
    if min(share, 1 - share) < BORDER_INK:
        return None
    counts, edges = np.histogram(border, bins=64, range=(0.0, 1.0))
    paper = high if edges[int(counts.argmax())] >= threshold else ~high
    level, sigma = _noise(border, paper)
    other = _quantile(border[~paper], 0.5)
    return paper if abs(other - level) >= NOISE_K * sigma + 2 * MIN_CONTRAST else None


def _ink(gray: np.ndarray) -> np.ndarray:
    """Luminance -> ink map: white ink on black, background 0, noise suppressed, ink peak 1."""
    border = np.concatenate(_edges(gray))
    if min(gray.shape) < PLANE_MIN_SIDE and not border.any() and gray.max() >= FULL_SCALE:
        # Already white full-range ink on a black page (MNIST): every step below would leave
        # it as it is (paper 0, not inverted, no noise, no stretch), so skip them.
        return gray
    on_paper = _paper_on_border(border)  # None: the border is paper (the usual case)
    paper = _quantile(border if on_paper is None else border[on_paper], 0.5)
    # Polarity: ink lies on the side of the paper whose 1%/99% tail is farther away; when the
    # tails are alike (thin strokes under 1% of pixels, or only noise) the mean decides.
    step = math.ceil(math.sqrt(gray.size / 65536))  # ~65k samples are plenty for 1% tails
    sample = gray[::step, ::step].ravel()
    klo, khi = int(0.01 * (sample.size - 1)), int(0.99 * (sample.size - 1))
    part = np.partition(sample, (klo, khi))
    dark, light = paper - float(part[klo]), float(part[khi]) - paper
    tie = abs(dark - light) <= 0.25 * max(dark, light)
    inverted = float(gray.mean()) < paper if tie else dark > light
    if inverted:
        gray, border = 1 - gray, 1 - border
    h, w = gray.shape
    level = 1 - paper if inverted else paper
    field: float | np.ndarray = level
    if min(h, w) >= PLANE_MIN_SIDE and on_paper is None:
        # A plane through the four edges' 25th percentiles (robust to ink crossing an edge)
        # removes a linear light gradient across a photographed page.
        top, bottom, left, right = (_quantile(e, 0.25) for e in _edges(gray))
        gy, gx = (bottom - top) / (h - 1), (right - left) / (w - 1)
        ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2) * np.float32(gy)
        xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2) * np.float32(gx)
        field = np.float32((top + bottom + left + right) / 4) + ys[:, None] + xs[None, :]
    elif on_paper is None and _wandering(gray):
        field = _background(gray)
    resid, centre, sigma, thr, peak = _above_paper(gray, border, field, on_paper)
    if peak - thr < MIN_CONTRAST and isinstance(field, np.ndarray) and min(h, w) < PLANE_MIN_SIDE:
        # The opening took the strokes for paper (a marker stroke wider than its square, the
        # border all anti-aliased edge): measure against one paper level, as before.
        resid, centre, sigma, thr, peak = _above_paper(gray, border, level, on_paper)
    if peak - thr < MIN_CONTRAST:
        raise blank()
    top_level = 1.0 if peak >= FULL_SCALE else peak  # stretch faint ink; leave full-range alone
    ink: np.ndarray = resid  # clean full-range input (MNIST) stays untouched
    if centre != 0 or top_level != 1.0:
        ink = resid - np.float32(centre)
        ink *= np.float32(1 / (top_level - centre))
    if sigma > 0:
        # Hard threshold: noise goes, but the anti-aliased skirts of strokes above it keep
        # their values (a soft threshold would thin every stroke by the noise level).
        ink[resid <= thr] = 0
    np.clip(ink, 0, 1, out=ink)
    if impulses(ink[None])[0]:
        ink = _median3(ink)
    return _despeckle(ink) if sigma > 0 else ink


def _above_paper(
    gray: np.ndarray, border: np.ndarray, field: float | np.ndarray, on_paper: np.ndarray | None
) -> tuple[np.ndarray, float, float, float, float]:
    """Ink above the paper ``field``: the residual, the paper's level and noise on the border,
    the noise threshold and the strongest ink."""
    resid = gray - field
    rb = np.concatenate(_edges(resid)) if isinstance(field, np.ndarray) else border - field
    centre, sigma = _noise(rb, on_paper)
    thr = centre + NOISE_K * sigma
    peak = float(resid.max())
    for _ in range(2 if sigma > 0 and min(gray.shape) >= PLANE_MIN_SIDE else 0):
        if peak - thr >= MIN_CONTRAST:
            break
        # Faint ink under noise (pencil on a scan): a 3x3 mean (twice: 5x5, triangular) cuts
        # the noise by up to 3x (4x) and keeps strokes several pixels wide, which is what a
        # page at this size has.
        resid = _mean3(resid)
        centre, sigma = _noise(np.concatenate(_edges(resid)), on_paper)
        thr = centre + NOISE_K * sigma
        peak = float(resid.max())
    return resid, centre, sigma, thr, peak


def _noise(rb: np.ndarray, on_paper: np.ndarray | None) -> tuple[float, float]:
    """The paper's level (median) and noise (MAD as a standard deviation) from border values."""
    if on_paper is not None:  # ink across the border: from the paper alone
        rb = rb[on_paper]
    centre = _quantile(rb, 0.5)
    return centre, 1.4826 * _quantile(np.abs(rb - centre), 0.5)  # 0 on clean (MNIST) borders


def _mean3(a: np.ndarray) -> np.ndarray:
    """3x3 box mean (edges repeated)."""
    p = np.pad(a, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return ((rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / np.float32(9)).astype(np.float32)


def impulses(ink: np.ndarray) -> np.ndarray:
    """Per image of N x h x w ink maps: whether salt-and-pepper noise is sprinkled over it
    (many lone pixels: at least half ink, every one of their 8 neighbours under a quarter)."""
    h, w = ink.shape[1:]
    # Neighbours all under a quarter = the pixel is the only one of its 3x3 window at a quarter
    # or more: a separable count of uint8 flags, 3x cheaper than a maximum over 8 shifts (this
    # runs on every image of the vectorised path).
    faint = np.pad(ink >= 0.25, ((0, 0), (1, 1), (1, 1))).view(np.uint8)
    rows = faint[:, :-2] + faint[:, 1:-1] + faint[:, 2:]
    window = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    lone = ((ink >= 0.5) & (window == 1)).sum((1, 2))
    return np.asarray(lone >= max(IMPULSE_MIN, IMPULSE_SHARE * h * w))


def _median3(ink: np.ndarray) -> np.ndarray:
    """3x3 median filter: takes the salt off the page and the pepper out of the strokes."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(ink, 1), (3, 3))
    return np.median(windows, axis=(-2, -1)).astype(np.float32)


def _wandering(gray: np.ndarray) -> bool:
    """Whether the paper's level wanders smoothly (fog, a shadow, a stain) along the border:
    its values spread far more than neighbouring border pixels differ (which is the noise)."""
    edges = _edges(gray)
    steps = np.abs(np.concatenate([np.diff(e) for e in edges]))
    if steps.size == 0:  # a single pixel has no border to wander along
        return False
    border = np.concatenate(edges)
    spread = _quantile(np.abs(border - _quantile(border, 0.5)), 0.5)
    return spread > max(WANDER * _quantile(steps, 0.5), MIN_CONTRAST / 2)


def _background(gray: np.ndarray) -> np.ndarray:
    """The page without the strokes: a grey opening (min then max over a square wider than a
    stroke), which follows a smoothly varying background and drops anything thinner."""
    k = max(5, min(gray.shape) // 4) | 1
    out = gray
    for reduce in (np.minimum, np.maximum):
        for axis in (0, 1):
            pad = [(k // 2, k // 2) if a == axis else (0, 0) for a in (0, 1)]
            padded = np.pad(out, pad, mode="edge")
            windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=axis)
            out = reduce.reduce(windows, axis=-1)
    return out.astype(np.float32)


def _span(mask: np.ndarray) -> tuple[int, int]:
    """First True, and one past the last True, of a boolean vector; blank when none is."""
    first = int(mask.argmax())
    if not mask[first]:
        raise blank()
    return first, mask.size - int(mask[::-1].argmax())


def _extent(rows: np.ndarray, cols: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of the True entries of row / column profiles."""
    return *_span(rows), *_span(cols)


def _despeckle(ink: np.ndarray) -> np.ndarray:
    """Noisy images: zero everything outside the bbox of ink that has ink neighbours."""
    pad = np.pad(ink, 1)
    rows3 = pad[:-2] + pad[1:-1] + pad[2:]
    inked = rows3[:, :-2] + rows3[:, 1:-1] + rows3[:, 2:] > 9 * SPECK_LEVEL
    y0, y1, x0, x1 = _extent(inked.any(1), inked.any(0))
    out = np.zeros_like(ink)
    out[y0:y1, x0:x1] = ink[y0:y1, x0:x1]
    return out


def _crop(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Crop to the ink; also return the side of the box that must fit 20 px (ink > TIGHT)."""
    row_peak, col_peak = ink.max(1), ink.max(0)
    y0, y1, x0, x1 = _extent(row_peak > TIGHT, col_peak > TIGHT)
    side = max(y1 - y0, x1 - x0)
    # Keep fainter ink up to 4 output pixels around that box (anti-aliasing, which MNIST has
    # inside its box), so scaled to 20 px the crop still fits 28.
    pad = int(side * 4 / BOX)
    ly0, ly1, lx0, lx1 = _extent(row_peak > 0, col_peak > 0)
    window = ink[max(y0 - pad, ly0) : min(y1 + pad, ly1), max(x0 - pad, lx0) : min(x1 + pad, lx1)]
    return window, side


def _stroke_width(a: np.ndarray) -> float:
    """Mean run length of ink across rows or columns, whichever is shorter: ~ the pen width."""
    b = np.pad(a > 0.5, 1)
    runs = max(int((b[:, 1:] & ~b[:, :-1]).sum()), int((b[1:] & ~b[:-1]).sum()))
    return float(b.sum()) / max(runs, 1)


def _restretch(a: np.ndarray) -> np.ndarray:
    """Resampling spreads thin strokes and lowers their peak: bring the peak back to 1."""
    a = np.clip(a, 0, 1)  # Lanczos overshoots both ways
    peak = float(a.max())
    if peak == 0:
        raise blank()
    return a / np.float32(peak) if peak < FULL_SCALE else a


def _resize(a: np.ndarray, scale: float, resample: Image.Resampling) -> np.ndarray:
    size = (max(1, round(a.shape[1] * scale)), max(1, round(a.shape[0] * scale)))
    return _restretch(np.asarray(Image.fromarray(a).resize(size, resample)))


def _dilate(a: np.ndarray, radius: int) -> np.ndarray:
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


def _fit_box(crop: np.ndarray, side: int) -> np.ndarray:
    """Scale so the digit's box (side px) becomes 20 px, anti-aliased; MNIST is left alone."""
    if side in (BOX - 1, BOX):  # MNIST: 9,996 test digits are 20 px, 4 are 19
        return crop
    a, span = crop, float(side)  # span: the digit's box, in pixels of a
    if side > INTERMEDIATE:
        a, span = _resize(a, INTERMEDIATE / side, Image.Resampling.BOX), INTERMEDIATE
    if side > BOX:
        stroke = _stroke_width(a)
        if stroke < THIN_STROKE * span:  # pen lines on a big canvas: grow them before shrinking
            radius = round((TARGET_STROKE * span - stroke) / (2 * (1 - TARGET_STROKE)))
            if radius >= 1:
                a, span = _dilate(a, radius), span + 2 * radius

    return _resize(a, BOX / span, Image.Resampling.LANCZOS)


def _centre(digit: np.ndarray) -> np.ndarray:
    """Place the digit in 28x28 with its centre of mass at COM_TARGET, kept inside the frame."""
    h, w = digit.shape
    rows, cols = digit.sum(1, dtype=np.float64), digit.sum(0, dtype=np.float64)
    mass = float(rows.sum())
    cy, cx = float(rows @ _INDEX[:h]) / mass, float(cols @ _INDEX[:w]) / mass
    top = min(max(math.floor(COM_TARGET - cy + 0.5), 0), FRAME - h)
    left = min(max(math.floor(COM_TARGET - cx + 0.5), 0), FRAME - w)
    out = np.zeros((FRAME, FRAME), dtype=np.float32)
    out[top : top + h, left : left + w] = digit
    return out


def digit_from_gray(gray: np.ndarray) -> np.ndarray:
    """Luminance (float32 in [0, 1]) -> float32 28x28 digit, white ink on black, MNIST-style.

    A frame at least PHOTO_MIN_SIDE on its shorter side is a photo or a page, read by
    app/digits/page.py; smaller images are crops of a digit, read by the steps here, and a
    crop in which they find no digit is read as a page too (a small photo)."""
    if min(gray.shape) >= PHOTO_MIN_SIDE:
        return _centre(_fit_box(*_crop(_page(gray))))
    try:
        return _centre(_fit_box(*_crop(_ink(gray))))
    except ImageRejected:
        if min(gray.shape) < PLANE_MIN_SIDE:
            raise
        return _centre(_fit_box(*_crop(_page(gray))))


def _page(gray: np.ndarray) -> np.ndarray:
    ink = page_ink(gray)
    if ink is None:
        raise blank()
    return ink


def to_mnist_digit(img: Image.Image) -> np.ndarray:
    """Any decoded image -> float32 28x28 array in [0, 1], white ink on black, MNIST-normalised."""
    return digit_from_gray(luminance(img))


def preprocess(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """decode_image + to_mnist_digit."""
    return to_mnist_digit(decode_image(data, limits))
