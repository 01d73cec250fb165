"""Surfaces for the phone-photo suite: paper and the desk under it, as reflectance (0-1 RGB).

Everything is drawn in scene pixels, the page's own axes (the camera tilts and rotates the
scene later), from a scale in pixels per millimetre, so ruled lines, grids and dots have the
pitch and weight they have on real stationery: college ruled 7-9 mm with a red margin, 4-10 mm
squares, 1 mm graph paper with 5 or 10 mm major lines, 5 mm dot grids, sticky notes. Lines are
anti-aliased by their exact coverage of each pixel row or column, so a 0.2 mm line a third of a
pixel wide is a faint line rather than a missing or a 1-pixel one.
"""

import cv2
import numpy as np

from benchmarks.noise import field

RGB = tuple[float, float, float]
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in scene pixels

PAPERS = ("plain", "ruled", "squared", "graph", "dotted", "sticky")
_BLUE_LINES: tuple[RGB, ...] = ((0.55, 0.72, 0.93), (0.62, 0.78, 0.95), (0.50, 0.66, 0.88))
_GRID_LINES: tuple[RGB, ...] = (*_BLUE_LINES, (0.68, 0.70, 0.74), (0.60, 0.62, 0.66))
_GRAPH_LINES: tuple[RGB, ...] = ((0.55, 0.80, 0.60), (0.97, 0.66, 0.45), (0.52, 0.70, 0.92))
_STICKY: tuple[RGB, ...] = (
    (0.98, 0.93, 0.45),  # canary yellow
    (0.98, 0.62, 0.76),  # pink
    (0.72, 0.94, 0.56),  # green
    (0.62, 0.85, 0.97),  # blue
    (1.00, 0.74, 0.42),  # orange
)
_WOODS: tuple[RGB, ...] = (
    (0.62, 0.45, 0.28),
    (0.38, 0.25, 0.16),
    (0.78, 0.62, 0.42),
    (0.70, 0.56, 0.40),
)
_DESKS: tuple[RGB, ...] = (
    (0.20, 0.20, 0.21),  # dark grey
    (0.07, 0.07, 0.08),  # black
    (0.33, 0.40, 0.48),  # blue-grey
    (0.14, 0.38, 0.30),  # green cutting mat
    (0.70, 0.63, 0.52),  # beige laminate
    (0.55, 0.18, 0.16),  # red
)
_LIGHT_DESKS: tuple[RGB, ...] = ((0.86, 0.86, 0.85), (0.74, 0.75, 0.76))


def _pick(rng: np.random.Generator, colours: tuple[RGB, ...]) -> np.ndarray:
    return np.array(colours[int(rng.integers(len(colours)))], np.float32)


def _offsets(n: int, phase: float, pitch: float) -> np.ndarray:
    """Each of ``n`` pixels' signed distance to the nearest of lines at phase + k * pitch."""
    d = np.arange(n, dtype=np.float32) - np.float32(phase)
    return (d + pitch / 2) % pitch - pitch / 2


def coverage(n: int, phase: float, width: float, pitch: float | None = None) -> np.ndarray:
    """How much of each of ``n`` pixels (0-1) lines ``width`` px wide at ``phase`` (+ k * pitch)
    cover: the overlap of the pixel [i - 0.5, i + 0.5] with the line."""
    if pitch is None:
        d = np.arange(n, dtype=np.float32) - np.float32(phase)
    else:
        d = _offsets(n, phase, pitch)
    half = np.float32(width / 2)
    return np.clip(np.minimum(d + 0.5, half) - np.maximum(d - 0.5, -half), 0, 1)


def paper_colour(rng: np.random.Generator) -> np.ndarray:
    """Off-white: a little grey, a little warm or cool, as copier and notebook paper are."""
    base = rng.uniform(0.84, 0.95)
    return (
        base * np.array([1 + rng.uniform(-0.01, 0.03), 1, 1 - rng.uniform(-0.02, 0.06)])
    ).astype(np.float32)


def _rows(refl: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    """Horizontal lines: only the rows they touch are changed (cheap at a 7 mm pitch)."""
    rows = np.nonzero(cover)[0]
    refl[rows] *= 1 - cover[rows, None, None] * (1 - colour)


def _cols(refl: np.ndarray, cover: np.ndarray, colour: np.ndarray) -> None:
    cols = np.nonzero(cover)[0]
    refl[:, cols] *= 1 - cover[None, cols, None] * (1 - colour)


def sheet(
    kind: str, shape: tuple[int, int], mm: float, digit: Box, rng: np.random.Generator
) -> np.ndarray:
    """A page of ``kind`` (see PAPERS), ``shape`` (h, w) scene pixels at ``mm`` px per millimetre,
    its rulings placed the way the writer's digit at ``digit`` sits on them."""
    h, w = shape
    colour = _pick(rng, _STICKY) if kind == "sticky" else paper_colour(rng)
    if kind == "ruled" and rng.random() < 0.15:
        colour = colour * np.array([1.0, 0.98, 0.78], np.float32)  # a yellow legal pad
    refl = np.empty((h, w, 3), np.float32)
    refl[:] = colour
    x0, _, _, y1 = digit
    if kind == "ruled":
        pitch = rng.uniform(7.0, 9.0) * mm
        # Digits are written on a line: the ink's foot a little above or below one.
        phase = y1 + rng.uniform(-0.2, 0.12) * pitch
        line = coverage(h, phase, rng.uniform(0.15, 0.3) * mm, pitch) * rng.uniform(0.6, 1.0)
        _rows(refl, line, _pick(rng, _BLUE_LINES))
        if x0 > 6 * mm:  # the margin is to the left of the writing, when the frame shows it
            at = rng.uniform(max(0.0, x0 - 45 * mm), x0 - 3 * mm)
            lw = rng.uniform(0.25, 0.5) * mm
            margin = coverage(w, at, lw)
            if rng.random() < 0.3:
                margin = np.maximum(margin, coverage(w, at - rng.uniform(0.8, 1.5) * mm, lw))
            _cols(refl, margin * rng.uniform(0.6, 0.95), np.array([0.92, 0.42, 0.48], np.float32))
    elif kind == "squared":
        pitch = rng.choice([4.0, 5.0, 5.0, 5.0, 6.0, 7.0, 8.0, 10.0]) * mm
        lw = rng.uniform(0.1, 0.25) * mm
        strength, ink = rng.uniform(0.55, 0.95), _pick(rng, _GRID_LINES)
        _rows(refl, coverage(h, rng.uniform(0, pitch), lw, pitch) * strength, ink)
        _cols(refl, coverage(w, rng.uniform(0, pitch), lw, pitch) * strength, ink)
    elif kind == "graph":
        minor, every = rng.choice([1.0, 2.0], p=[0.7, 0.3]) * mm, int(rng.choice([5, 10]))
        thin, thick = rng.uniform(0.06, 0.14) * mm, rng.uniform(0.25, 0.4) * mm
        strength, ink = rng.uniform(0.6, 0.95), _pick(rng, _GRAPH_LINES)
        for axis, n in ((0, h), (1, w)):
            at = rng.uniform(0, minor * every)
            lines = np.maximum(
                coverage(n, at, thin, minor) * 0.6, coverage(n, at, thick, minor * every)
            )
            (_rows if axis == 0 else _cols)(refl, lines * strength, ink)
    elif kind == "dotted":
        pitch, radius = 5.0 * mm, rng.uniform(0.18, 0.3) * mm
        # Round dots: each pixel's distance to the nearest dot centre, from the row's and the
        # column's; only the rows and columns within a dot's reach are touched.
        dy = _offsets(h, rng.uniform(0, pitch), pitch)
        dx = _offsets(w, rng.uniform(0, pitch), pitch)
        rows, cols = np.nonzero(np.abs(dy) < radius + 1)[0], np.nonzero(np.abs(dx) < radius + 1)[0]
        dist = np.sqrt(dy[rows, None] ** 2 + dx[None, cols] ** 2)
        # A dot under a pixel wide: its area's worth of grey on the pixel it falls in.
        strength = min(1.0, np.pi * radius**2) * rng.uniform(0.7, 1.0)
        dots = np.clip(radius + 0.5 - dist, 0, 1) * np.float32(strength)
        refl[np.ix_(rows, cols)] *= 1 - dots[..., None] * np.float32(1 - rng.uniform(0.45, 0.65))
    return refl


def desk(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A table top: wood with its grain half the time, else a plain (sometimes light) colour."""
    h, w = shape
    kind = rng.random()
    if kind < 0.5:
        colour = _pick(rng, _WOODS)
        along_x = rng.random() < 0.5
        n_across, n_along = (h, w) if along_x else (w, h)

        # Grain: fine fibres and broader bands running along the board, gently bent, and the
        # growth rings' slow light-dark alternation.
        def lengthwise(cells: int) -> np.ndarray:
            grid = (cells, max(2, n_along // 400))
            return field(shape, grid if along_x else grid[::-1], rng)

        bend = field(shape, (2, 2), rng) * rng.uniform(3, 15)
        across = np.arange(n_across, dtype=np.float32)
        bent = (across[:, None] if along_x else across[None, :]) + bend
        rings = np.sin(bent * np.float32(2 * np.pi / rng.uniform(40, 160)))
        fibres, bands = lengthwise(max(2, n_across // 3)), lengthwise(max(2, n_across // 40))
        shade = 1 + 0.05 * fibres + 0.07 * bands + 0.04 * rings
    else:
        colour = _pick(rng, _DESKS if kind < 0.85 else _LIGHT_DESKS)
        shade = 1 + 0.04 * field(shape, (3, 4), rng)
    return np.clip(shade[..., None] * colour, 0, 1).astype(np.float32)


def on_desk(page: np.ndarray, rect: Box, mm: float, rng: np.random.Generator) -> np.ndarray:
    """The page (the part of the scene inside ``rect``) lying on a desk, with the thin soft
    shadow its edges cast on the desk."""
    h, w = page.shape[:2]
    # Sides beyond the canvas stay beyond it; clamped so float32 keeps sub-pixel precision.
    x0, x1 = max(rect[0], -50.0), min(rect[2], w + 50.0)
    y0, y1 = max(rect[1], -50.0), min(rect[3], h + 50.0)
    # The desk is out of focus beside the page and has no fine detail: made at half size.
    half = (-(-h // 2), -(-w // 2))
    table = desk(half, rng)
    # The sheet is lifted a fraction of a millimetre: a soft shadow just past its edges.
    soft = rng.uniform(0.5, 2.0) * mm / 2
    dx, dy = rng.uniform(-1.0, 1.0, 2) * mm

    def ramp(n: int, lo: float, hi: float) -> np.ndarray:
        off = np.abs(np.arange(n, dtype=np.float32) - (lo + hi) / 4) - (hi - lo) / 4
        return np.clip(1 - off / soft, 0, 1)

    shadow = np.outer(ramp(half[0], y0 + dy, y1 + dy), ramp(half[1], x0 + dx, x1 + dx))
    table *= (1 - np.float32(rng.uniform(0.15, 0.4)) * shadow)[..., None]
    table = cv2.resize(table, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = np.outer(coverage(h, (y0 + y1) / 2, y1 - y0), coverage(w, (x0 + x1) / 2, x1 - x0))
    return cv2.blendLinear(page, table, mask, 1 - mask)
