"""A page or a photo of one -> the digit's ink: lighting, threshold, lines and edges, components.

Images at least app/digits/sizes.py's PHOTO_MIN_SIDE on their shorter side are pages (a photo, a
scan, a canvas), not digit crops, and so are smaller ones in which no crop's digit stands out.
Each step is a named function on one luminance image (float32 in [0, 1]):

1. polarity: is the ink darker than the page (paper) or lighter (a canvas, a blackboard)?
2. lighting: the page's own brightness everywhere (a grey closing: strokes are thinner than its
   square, shadows and gradients wider), divided out, so a shadow or a lighting gradient is page.
3. threshold: ink is what stands out from the flattened page by more than its noise (texture,
   grain, JPEG), with hysteresis, so faint pencil joins the strokes it belongs to.
4. lines: ruled, squared or graph paper's lines and long straight edges (a page's edge, a
   rotated frame's corner) are found as long straight runs and taken out, except where a stroke
   of the digit crosses or runs darker than them.
5. components: the digit is the group of ink components around the biggest one that is not a
   line, a speck or something cut off at the frame's edge (a page's edge, a table, a shadow).
6. the digit's ink as a soft map (strokes solid, their edges anti-aliased), which the framing
   steps fit to MNIST's box, growing a fine pen's strokes to MNIST's width.

The page is read at PAGE_SIDE on its shorter side, and its lighting at LIGHT_SIDE.
"""

import math
from dataclasses import dataclass

import cv2
import numpy as np

from app.digits.sizes import PAGE_SIDE

# The page's brightness is estimated at this working size (shorter side), with a square this
# share of it: wider than a marker stroke, narrower than a shadow.
LIGHT_SIDE = 160
LIGHT_SQUARE = 1 / 6
THIN_SQUARE = 1 / 24
DESK = 0.25  # at the frame's edge and darker than this share of the paper: not the page
MAX_INK_SHARE = 0.35  # strokes cover less of a frame than this; a page on a desk more
SAMPLE = 16384  # pixels a quantile of the whole image is taken from
NOISE_K = 4.0  # ink stands out from the flattened page by this many robust sigmas
MIN_INK = 0.06  # ... and by at least this much (6% darker than its paper)
LOW_SHARE, HIGH_SHARE = 0.3, 0.55  # hysteresis: of the ink's own level (its 95th percentile)
WIDE_LOW_SHARE = 0.5  # ... under the wide square (markers: dark ink)
LINE_SHARE = 0.45  # a straight run at least this share of the frame's side is a line, not a stroke
LINE_WIDTH = 3  # pixels taken out along each line found
LINE_DISC = 5  # pixels: thin structures are those an opening by this disc removes
LINE_K = 3.0  # lines are looked for among pixels this many noise sigmas above the page
EDGE_GAP = 2  # pixels: a component this close to the frame's edge touches it
SPECK_SHARE = 0.02  # components under this share of the biggest one's ink are specks
JOIN = 0.35  # components within this share of the digit's size of its box join it
NARROW_FIT = 0.8  # strokes wider than this share of the narrow square are read with the wide one
HOLLOW = 0.5  # enclosed areas less than this far from the ink towards the paper are ink
PALER = 0.5  # ... unless they are paler than this share of the main one's darkness (a shadow)
# A number's other digits: components at least this share of the digit's height (and at most
# its inverse), overlapping its rows by this share, within this many digit heights of it.
MATE_HEIGHT = 0.5
MATE_OVERLAP = 0.5
MATE_GAP = 1.5
MATE_DARK = 0.8  # ... as dark as the digit, within this share
MATE_INK = 0.15  # ... with at least this share of its ink (area times darkness squared)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    if r <= 0:
        return mask
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def _resized(a: np.ndarray, side: int) -> np.ndarray:
    """``a`` area-averaged down to ``side`` on its shorter side (as it is when smaller)."""
    f = side / min(a.shape)
    if f >= 1:
        return a
    size = (max(1, round(a.shape[1] * f)), max(1, round(a.shape[0] * f)))
    return cv2.resize(a, size, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Page:
    """A page's luminance at PAGE_SIDE, at LIGHT_SIDE (where its lighting is estimated), and
    the two squares the lighting is estimated over, in LIGHT_SIDE pixels: a narrow one (wider
    than a pen, narrower than a finger's shadow) and a wide one for a marker's strokes."""

    gray: np.ndarray
    small: np.ndarray
    narrow: int
    wide: int

    @classmethod
    def of(cls, gray: np.ndarray) -> "Page":
        """The page of a luminance image of any size."""
        gray = _resized(gray, PAGE_SIDE)
        small = _resized(gray, LIGHT_SIDE)
        side = min(small.shape)
        narrow = max(3, round(side * THIN_SQUARE)) | 1
        return cls(gray, small, narrow, max(5, round(side * LIGHT_SQUARE)) | 1)

    @property
    def scale(self) -> float:
        """LIGHT_SIDE pixels per PAGE_SIDE pixel."""
        return self.small.shape[0] / self.gray.shape[0]

    def inverted(self) -> "Page":
        """The same page in the other polarity."""
        return Page(1 - self.gray, 1 - self.small, self.narrow, self.wide)


def _uniform_border(gray: np.ndarray) -> float | None:
    """The border's level when nearly all of it is one level (a canvas, a clean scan), else
    None (a photo: lighting, shadows, a table, lines)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    counts, edges = np.histogram(border, bins=64, range=(0.0, 1.0))
    level = float(edges[int(counts.argmax())]) + 0.5 / 64
    return level if float((np.abs(border - level) <= 0.04).mean()) >= 0.9 else None


def ink_is_dark(page: Page) -> bool:
    """Polarity. A uniform border is the page (a canvas, a clean scan), and the ink lies on the
    side whose 0.1% tail is farther from it, the mean deciding between alike tails (unless
    that side covers too much of the frame to be strokes: a note on a dark desk). Anything
    else is a photo of paper, which carries dark ink: its median may be a shadow or a desk,
    its brightest parts glare, its thin bright bits a note's corners, and none of them is ink."""
    small = page.small
    level = _uniform_border(small)
    if level is None:
        return True
    lo, hi = np.quantile(small, (0.001, 0.999))
    dark, light = level - float(lo), float(hi) - level
    if abs(dark - light) <= 0.25 * max(dark, light):  # alike (or no ink): the mean leans
        return float(small.mean()) < level
    if dark > light:
        return True
    # Light "ink" covering much of the frame is a page on a dark desk (a sticky note), whose
    # own ink is dark: strokes cover a small share of a frame.
    return float((small > level + light / 2).mean()) > MAX_INK_SHARE


def off_page(page: Page) -> np.ndarray:
    """What lies around the page rather than on it: regions at the frame's edge far darker than
    the paper (a desk, a rotated frame's filled corner), grown by the narrow square, in which
    the closing's corners would otherwise leave ink. A shadow keeps far more of the paper's
    light than this, and stays page."""
    small = page.small
    paper = _quantile(_sample(small), 0.9)
    low = (small < DESK * paper).astype(np.uint8)
    if not low.any():  # most photos: nothing that dark
        return np.zeros(page.gray.shape, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(low, connectivity=8)
    h, w = small.shape
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    edge = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
    keep = np.zeros(n, bool)
    keep[1:] = edge & (area >= 0.02 * h * w)
    desk = keep[labels].astype(np.uint8)
    desk = cv2.dilate(desk, cv2.getStructuringElement(cv2.MORPH_RECT, (page.narrow,) * 2))
    size = (page.gray.shape[1], page.gray.shape[0])
    return cv2.resize(desk, size, interpolation=cv2.INTER_NEAREST) > 0


def flatten(page: Page, square: int) -> np.ndarray:
    """Dark-on-light luminance -> ink darkness relative to the local page, in [0, 1]: 0 is
    paper wherever it is lit or shaded, 1 is black ink. The page's own brightness is a grey
    closing over ``square`` (LIGHT_SIDE pixels), smoothed (its square's corners would show on
    a lighting gradient): anything narrower is ink. A closing keeps a shadow's or a page's
    edge where it is (max then min over the same square moves a straight step out and back)."""
    gray, small = page.gray, page.small
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (square, square))
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, kernel)
    paper = cv2.GaussianBlur(paper, (0, 0), max(1.0, square / 6))
    if paper.shape != gray.shape:
        paper = cv2.resize(paper, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    ink = 1 - gray / np.maximum(paper, np.float32(1e-3))
    return np.clip(ink, 0, 1, out=ink)


def stroke_width(mask: np.ndarray) -> float:
    """The pen's width in pixels: four times the mean distance of ink to the page (a stroke
    of width w has distances 0 to w/2 across it)."""
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    return 4 * float(dist[mask].mean())


def _sample(a: np.ndarray) -> np.ndarray:
    """About SAMPLE pixels of ``a``, evenly spread: plenty for its quantiles."""
    step = max(1, math.ceil(math.sqrt(a.size / SAMPLE)))
    return a[::step, ::step].ravel()


def _quantile(a: np.ndarray, q: float) -> float:
    """Nearest-rank quantile by partition (np.quantile sorts: ~10x slower)."""
    k = int(q * (a.size - 1))
    return float(np.partition(a, k)[k])


def _noise_sigma(ink: np.ndarray) -> float:
    """The flattened page's noise: a robust sigma of the whole image (ink is a small share)."""
    sample = _sample(ink)
    med = _quantile(sample, 0.5)
    return 1.4826 * _quantile(np.abs(sample - med), 0.5)


def threshold(ink: np.ndarray, sigma: float, low_share: float) -> np.ndarray | None:
    """The ink mask: hysteresis between a low and a high threshold set by the ink's own level
    and the page's noise ``sigma``; None when nothing stands out (a blank page)."""
    floor = max(NOISE_K * sigma, MIN_INK)
    # The ink's level: a high percentile of the pixels that stand out, smoothed over 3x3 so a
    # few noisy pixels cannot set it.
    smooth = cv2.blur(ink, (3, 3))
    strong = smooth[smooth > floor]
    if strong.size < 8:
        return None
    level = _quantile(strong, 0.95)
    high = max(floor, HIGH_SHARE * level)
    # Glare washes ink out where it falls: the low threshold follows the ink's level nearby
    # (the strongest ink within a tenth of the frame), so a stroke fading into a bright patch
    # stays joined to its stronger part.
    window = max(3, round(min(ink.shape) / 10)) | 1
    nearby = cv2.dilate(smooth, cv2.getStructuringElement(cv2.MORPH_RECT, (window, window)))
    low = np.maximum(floor, low_share * np.minimum(nearby, level))
    weak = (smooth > low).astype(np.uint8)
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.bincount(labels[smooth > high], minlength=n) > 0
    keep[0] = False
    return keep[labels]


def _segments(thin: np.ndarray, span: float) -> np.ndarray:
    """Straight runs of at least ``span`` pixels among thin structures: N x 4 (x0, y0, x1, y1).

    Looked for at half size (a pixel there is set when any of its four is): the transform's
    cost grows with the points it votes for, and a paper's grid has many."""
    h, w = thin.shape
    t = thin[: h - h % 2, : w - w % 2]
    half = t[0::2, 0::2] | t[1::2, 0::2] | t[0::2, 1::2] | t[1::2, 1::2]  # (.any: 15x slower)
    points = np.where(half, np.uint8(255), np.uint8(0))
    found = cv2.HoughLinesP(
        points, 1, np.pi / 180, threshold=max(8, int(span * 0.25)),
        minLineLength=int(span / 2), maxLineGap=max(2, int(span / 20)),
    )  # fmt: skip
    return np.zeros((0, 4), np.int32) if found is None else found.reshape(-1, 4) * 2 + 1


def _lines(segments: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which segments are paper lines or edges: those spanning most of the frame, and those
    with parallel company (ruled and squared paper repeat theirs), never a lone shorter one
    (a 1's or a 7's stroke)."""
    h, w = shape
    dx, dy = segments[:, 2] - segments[:, 0], segments[:, 3] - segments[:, 1]
    length = np.hypot(dx, dy)
    angle = np.degrees(np.arctan2(dy, dx)) % 180
    extent = np.where(np.abs(np.sin(np.radians(angle))) < 0.5, w, h)  # along its direction
    spans = length >= 0.8 * extent
    # Both ends at the frame's edge: a page's or a shadow's edge cutting across, or a corner.
    near = EDGE_GAP + 3

    def at_edge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x <= near) | (y <= near) | (x >= w - 1 - near) | (y >= h - 1 - near)

    spans |= at_edge(segments[:, 0], segments[:, 1]) & at_edge(segments[:, 2], segments[:, 3])
    diff = np.abs(angle[:, None] - angle[None, :])
    parallel = (np.minimum(diff, 180 - diff) < 3).sum(1) - 1  # not counting itself
    return spans | (parallel >= 2)


def find_lines(mask: np.ndarray, ink: np.ndarray, sigma: float) -> np.ndarray:
    """The mask's pixels that belong to paper lines or long straight edges, except where the
    ink runs darker along them than the lines themselves are (a stroke on a line)."""
    h, w = mask.shape
    # Lines are looked for in everything above the page's noise (a faint line breaks into
    # dashes at the ink's threshold), among thin structures only: those an opening by a disc
    # a little wider than a printed line removes, so a filled blob never yields a "line".
    faint = ink > max(LINE_K * sigma, MIN_INK / 2)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LINE_DISC, LINE_DISC))
    opened = cv2.morphologyEx(faint.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
    thin = faint & ~opened
    none = np.zeros_like(mask)
    segments = _segments(thin, LINE_SHARE * min(h, w))
    if not len(segments):
        return none
    segments = segments[_lines(segments, (h, w))]
    if not len(segments):
        return none
    lines = np.zeros((h, w), np.uint8)
    for x0, y0, x1, y1 in segments:
        cv2.line(lines, (int(x0), int(y0)), (int(x1), int(y1)), 255, LINE_WIDTH)
    on_line = (lines > 0) & mask & ~opened
    if not on_line.any():
        return none
    # A line's own darkness: its typical pixel. Ink clearly darker than that is a stroke.
    line_level = _quantile(ink[on_line], 0.5)
    darker = ink > line_level + max(0.15, 0.5 * line_level)
    return on_line & ~darker


def heal(digit: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Give back the line pixels that bridge the digit's strokes across a removed line."""
    square = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (LINE_WIDTH + 4, LINE_WIDTH + 4))
    closed = cv2.morphologyEx(digit.astype(np.uint8), cv2.MORPH_CLOSE, square).astype(bool)
    return digit | (lines & closed)


def digit_mask(mask: np.ndarray, ink: np.ndarray) -> np.ndarray | None:
    """The digit's components: the one with the most ink (its area times its darkness squared:
    a pen's stroke outweighs a bigger, paler shadow) that is not cut off at the frame's edge
    (unless every sizeable one is: a tight crop), and those close enough to it and dark enough
    to belong."""
    h, w = mask.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    darkness = np.array(
        [ink[y0 : y0 + hh, x0 : x0 + ww][labels[y0 : y0 + hh, x0 : x0 + ww] == i + 1].mean()
         for i, (x0, y0, ww, hh) in enumerate(stats[1:, :4])]
    )  # fmt: skip
    weight = area * darkness**2
    touches = (
        (x <= EDGE_GAP) | (y <= EDGE_GAP) | (x + bw >= w - EDGE_GAP) | (y + bh >= h - EDGE_GAP)
    )
    sizeable = weight >= SPECK_SHARE * weight.max()
    inside = sizeable & ~touches
    pool = (
        inside
        if inside.any() and weight[inside].sum() >= 0.15 * weight[sizeable].sum()
        else sizeable
    )
    main = int(np.argmax(np.where(pool, weight, -1)))
    pool &= darkness >= PALER * darkness[main]
    box = [x[main], y[main], x[main] + bw[main], y[main] + bh[main]]
    chosen = {main}
    grown = True
    while grown:
        grown = False
        reach = JOIN * max(box[2] - box[0], box[3] - box[1])
        for i in np.flatnonzero(pool):
            if i in chosen:
                continue
            gap_x = max(box[0] - (x[i] + bw[i]), x[i] - box[2], 0)
            gap_y = max(box[1] - (y[i] + bh[i]), y[i] - box[3], 0)
            if max(gap_x, gap_y) <= reach:
                chosen.add(int(i))
                box = [min(box[0], x[i]), min(box[1], y[i]),
                       max(box[2], x[i] + bw[i]), max(box[3], y[i] + bh[i])]  # fmt: skip
                grown = True
    # As dark as the digit and with a fair share of its ink: not a page's edge, a shadow or a
    # pale line beside a lone digit.
    mates = pool & (darkness >= MATE_DARK * darkness[main]) & (weight >= MATE_INK * weight[main])
    _line_mates(chosen, mates, box, (x, y, bw, bh))
    keep = np.zeros(n, bool)
    keep[[i + 1 for i in chosen]] = True
    return keep[labels]


def _line_mates(
    chosen: set[int], pool: np.ndarray, box: list[int], stats: tuple[np.ndarray, ...]
) -> None:
    """Add to ``chosen`` (in place) the components written on the same line as the digit, as
    tall as a digit and near it: a number's other digits, however wide its gaps. The model then
    sees the whole number (and refuses it as several digits) rather than one digit of it."""
    x, y, bw, bh = stats
    height = box[3] - box[1]
    grown = True
    while grown:
        grown = False
        for i in np.flatnonzero(pool):
            if i in chosen or bh[i] < MATE_HEIGHT * height or bh[i] > height / MATE_HEIGHT:
                continue
            overlap = min(box[3], y[i] + bh[i]) - max(box[1], y[i])
            gap = max(box[0] - (x[i] + bw[i]), x[i] - box[2], 0)
            if overlap >= MATE_OVERLAP * min(bh[i], height) and gap <= MATE_GAP * height:
                chosen.add(int(i))
                box[:] = [min(box[0], x[i]), min(box[1], y[i]),
                          max(box[2], x[i] + bw[i]), max(box[3], y[i] + bh[i])]  # fmt: skip
                grown = True


def hollow(digit: np.ndarray, dark: np.ndarray) -> bool:
    """Whether the digit's strokes are outlines of wider ones (a marker's stroke under a square
    narrower than it): what they enclose is as dark as they are, where a loop holds paper."""
    flood = np.pad(digit.astype(np.uint8), 1)
    cv2.floodFill(flood, None, (0, 0), 2)
    holes = flood[1:-1, 1:-1] == 0
    if holes.sum() < 0.05 * digit.sum():
        return False
    ring = _dilate(digit, 2) & ~digit & ~holes  # the paper just outside the strokes
    stroke, enclosed, paper = (float(dark[m].mean()) for m in (digit, holes, ring))
    return enclosed - stroke < HOLLOW * (paper - stroke)


def page_ink(gray: np.ndarray) -> np.ndarray | None:
    """A page's luminance -> the digit's ink (float32, white on black, peak 1) with everything
    else zeroed, at PAGE_SIDE; None when no digit stands out."""
    page = Page.of(gray)
    sample = _sample(page.gray)
    if _quantile(sample, 0.999) - _quantile(sample, 0.001) < MIN_INK:
        return None  # one level: nothing stands out
    if not ink_is_dark(page):
        page = page.inverted()
    desk = off_page(page)
    for square in (page.narrow, page.wide):
        ink = flatten(page, square)
        ink[desk] = 0
        sigma = _noise_sigma(ink)
        # A marker's ink is dark: under the wide square, a paler shadow narrower than it (a
        # finger's) must not join the strokes it touches.
        mask = threshold(ink, sigma, LOW_SHARE if square == page.narrow else WIDE_LOW_SHARE)
        if mask is None:
            continue
        lines = find_lines(mask, ink, sigma)
        digit = digit_mask(mask & ~lines, ink)
        if digit is None:
            continue
        digit = heal(digit, lines)
        # Strokes not comfortably narrower than the square were taken for page in part (a
        # marker's): read the page again with the wide square.
        if square == page.narrow and (
            stroke_width(digit) * page.scale > NARROW_FIT * square or hollow(digit, page.gray)
        ):
            continue
        # The ink's own level inside the digit: strokes come out solid, their edges soft.
        level = _quantile(ink[digit], 0.9)
        soft = _dilate(digit, 1)
        return np.where(soft, np.clip(ink / max(level, 1e-3), 0, 1), 0).astype(np.float32)
    return None
