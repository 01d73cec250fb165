"""Pens for the phone-photo suite: a digit's centre line as strokes, redrawn with a chosen pen.

A handwritten digit (an MNIST digit, or a font's glyph) is enlarged, thinned to its skeleton
(skimage.morphology.skeletonize) and walked into smoothed polylines, so it can be drawn again
at any size with a round, anti-aliased pen of any width: a 0.5 mm ballpoint and a felt tip a
fifth of the digit wide both keep the writer's shape. ``as_mnist`` frames the same strokes the
way MNIST framed its digits (the photo suite's control).
"""

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from benchmarks.noise import normal

Strokes = tuple[np.ndarray, ...]  # each k x 2 float32 (x, y) points, in the source's pixels
Pixel = tuple[int, int]

MNIST_UP = 4  # MNIST digits are thinned at 4x: at 28 px a skeleton is too coarse to smooth
_FOUR = ((-1, 0), (0, 1), (1, 0), (0, -1))
_DIAGONAL = ((-1, -1), (-1, 1), (1, 1), (1, -1))
_SHIFT = 4  # cv2 fixed-point bits: strokes are placed to 1/16 px, not snapped to pixels
RING = np.array(
    [(np.cos(a), np.sin(a)) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)], np.float32
)


@dataclass(frozen=True)
class Pen:
    """How a stroke looks: kind (ballpoint, pencil, marker), ink reflectance, width in scene px."""

    kind: str
    colour: tuple[float, float, float]
    width: float
    opacity: float


def _adjacency(skeleton: np.ndarray) -> dict[Pixel, list[Pixel]]:
    """Skeleton pixels and their neighbours; a diagonal step only where no 4-connected path
    joins the two pixels (otherwise every staircase corner would look like a junction)."""
    on = {(int(y), int(x)) for y, x in zip(*np.nonzero(skeleton), strict=True)}
    adj = {}
    for y, x in on:
        near = [(y + dy, x + dx) for dy, dx in _FOUR if (y + dy, x + dx) in on]
        near += [
            (y + dy, x + dx)
            for dy, dx in _DIAGONAL
            if (y + dy, x + dx) in on and (y + dy, x) not in on and (y, x + dx) not in on
        ]
        adj[(y, x)] = near
    return adj


def _trace(adj: dict[Pixel, list[Pixel]]) -> list[list[Pixel]]:
    """Walk the skeleton graph into paths between ends and junctions, then the loops left."""
    seen: set[tuple[Pixel, Pixel]] = set()

    def edge(a: Pixel, b: Pixel) -> tuple[Pixel, Pixel]:
        return (a, b) if a < b else (b, a)

    def walk(start: Pixel, nxt: Pixel) -> list[Pixel]:
        path, prev, cur = [start, nxt], start, nxt
        seen.add(edge(start, nxt))
        while len(adj[cur]) == 2:
            step = adj[cur][0] if adj[cur][0] != prev else adj[cur][1]
            if edge(cur, step) in seen:
                break
            seen.add(edge(cur, step))
            path.append(step)
            prev, cur = cur, step
        return path

    paths = []
    nodes = sorted(p for p, near in adj.items() if len(near) != 2)
    for p in nodes:
        if not adj[p]:
            paths.append([p])  # a dot
        paths += [walk(p, q) for q in adj[p] if edge(p, q) not in seen]
    for p in sorted(adj):  # what is left are closed loops (an 0 or an 8's rings)
        paths += [walk(p, q) for q in adj[p] if edge(p, q) not in seen]
    return paths


def _prune(skeleton: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Drop spurs: branches from a junction to a free end shorter than the stroke is wide there
    (thinning grows them into a stroke's corners; a real short stroke is longer)."""
    for _ in range(3):
        adj = _adjacency(skeleton)
        spurs = [
            path
            for path in _trace(adj)
            if len(path) > 1
            and sorted((len(adj[path[0]]), len(adj[path[-1]])))[0] == 1
            and max(len(adj[path[0]]), len(adj[path[-1]])) >= 3
            and len(path) < 1.5 * max(dist[path[0]], dist[path[-1]])
        ]
        if not spurs:
            break
        for path in spurs:
            inner = path[1:] if len(adj[path[0]]) >= 3 else path[:-1]
            for y, x in inner:
                skeleton[y, x] = False
    return skeleton


def _smooth(points: np.ndarray, closed: bool, window: int = 5) -> np.ndarray:
    """A moving average along the path (ends kept where they are): pixel steps become curves."""
    if len(points) < window:
        return points
    half = window // 2
    padded = (
        np.concatenate([points[-half - 1 : -1], points, points[1 : half + 1]])
        if closed
        else np.concatenate(
            [np.repeat(points[:1], half, 0), points, np.repeat(points[-1:], half, 0)]
        )
    )
    kernel = np.ones(window) / window
    out = np.stack([np.convolve(padded[:, i], kernel, "valid") for i in (0, 1)], 1)
    if not closed:
        out[0], out[-1] = points[0], points[-1]
    return out


def centre_lines(image: np.ndarray, upsample: int = MNIST_UP) -> Strokes:
    """The centre lines of the ink of a 2-D uint8 image (white on black) as (x, y) polylines,
    in the image's own pixel coordinates."""
    big = cv2.resize(
        image.astype(np.float32),
        (image.shape[1] * upsample, image.shape[0] * upsample),
        interpolation=cv2.INTER_CUBIC,
    )
    big = cv2.GaussianBlur(np.pad(big, upsample), (0, 0), 0.35 * upsample)
    ink = big > 0.45 * big.max()
    # Pinholes inside a stroke would become tiny loops: fill holes smaller than ~2 source px.
    holes, count = ndimage.label(~ink)
    sizes = ndimage.sum_labels(np.ones_like(ink), holes, range(count + 1))
    ink |= (sizes < 2 * upsample * upsample)[holes] & (holes > 0)
    dist = cv2.distanceTransform(ink.astype(np.uint8), cv2.DIST_L2, 5)
    skeleton = _prune(skeletonize(ink), dist)
    adj = _adjacency(skeleton)
    strokes = []
    for path in _trace(adj):
        pts = np.array([(x, y) for y, x in path], np.float32)
        closed = len(path) > 2 and path[0] == path[-1]
        pts = _smooth(pts, closed)
        # Thinning stops about a half-width short of a free end: give the pen that back.
        for end, step in ((0, 1), (-1, -1)):
            if not closed and len(adj[path[end]]) == 1 and len(pts) > 1:
                back = pts[end + step * min(4, len(pts) - 1)]  # up to 4 points in
                direction = pts[end] - back
                norm = float(np.hypot(*direction))
                if norm > 0:
                    reach = 0.8 * float(dist[path[end]])
                    pts = pts.copy()
                    pts[end] = pts[end] + direction / norm * reach
        pts = pts[np.unique(np.r_[np.arange(0, len(pts), 2), len(pts) - 1])]  # half the points
        strokes.append(((pts + 0.5) / upsample - 0.5 - 1).astype(np.float32))
    return tuple(strokes)


@lru_cache(maxsize=20_000)
def _mnist_strokes(raw: bytes) -> Strokes:
    return centre_lines(np.frombuffer(raw, np.uint8).reshape(28, 28))


def mnist_strokes(digit: np.ndarray) -> Strokes:
    """The centre lines of a 28x28 MNIST digit (cached: every condition redraws the same digit)."""
    return _mnist_strokes(np.ascontiguousarray(digit, np.uint8).tobytes())


def points(strokes: Strokes) -> np.ndarray:
    """Every point of every stroke, k x 2 (x, y)."""
    return np.concatenate(strokes)


def length(strokes: Strokes) -> float:
    """The strokes' total length, in their own pixels."""
    return float(sum(np.hypot(*np.diff(s, axis=0).T).sum() for s in strokes))


def draw(
    strokes: Strokes,
    scale: float,
    offset: np.ndarray,
    width: float,
    shape: tuple[int, int],
    supersample: int = 2,
) -> np.ndarray:
    """Coverage (0-1 float32 of ``shape``) of the strokes drawn with a round anti-aliased pen
    ``width`` px wide, each point p placed at p * scale + offset (output pixels)."""
    ss = supersample
    h, w = shape
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    thick = max(1, round(width * ss))
    faint = min(1.0, width * ss / thick)  # a pen under a pixel wide: a fainter 1-pixel line
    for stroke in strokes:
        p = ((stroke * scale + offset + 0.5) * ss - 0.5) * (1 << _SHIFT)
        p = np.round(p).astype(np.int32)
        if (p == p[0]).all():
            centre = (int(p[0, 0]), int(p[0, 1]))
            radius = max(1, thick * (1 << _SHIFT) // 2)
            cv2.circle(canvas, centre, radius, 255, -1, cv2.LINE_AA, _SHIFT)
        else:
            cv2.polylines(canvas, [p.reshape(-1, 1, 2)], False, 255, thick, cv2.LINE_AA, _SHIFT)
    out = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA) if ss > 1 else canvas
    return out.astype(np.float32) * np.float32(faint / 255)


def as_mnist(strokes: Strokes, width: float) -> np.ndarray:
    """The strokes framed as MNIST framed its digits: a pen ``width`` px wide on 28x28, the ink's
    box fitted to 20 px (aspect kept), the centre of mass at (14, 14); uint8 white on black."""
    pts = points(strokes)
    lo, hi = pts.min(0), pts.max(0)
    scale = (20 - width) / max(float((hi - lo).max()), 1e-3)
    offset = 14 - scale * (lo + hi) / 2
    coverage = draw(strokes, scale, offset, width, (28, 28), supersample=8)
    cy, cx = ndimage.center_of_mass(coverage)
    coverage = draw(
        strokes, scale, offset + np.array([14 - cx, 14 - cy]), width, (28, 28), supersample=8
    )
    return np.round(coverage * 255).astype(np.uint8)


def _smooth_noise(shape: tuple[int, int], cell: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-ish noise varying over ``cell`` pixels (a coarse grid enlarged bicubically)."""
    rows, cols = max(2, int(shape[0] / cell) + 2), max(2, int(shape[1] / cell) + 2)
    coarse = rng.standard_normal((rows, cols)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def ink(coverage: np.ndarray, pen: Pen, rng: np.random.Generator) -> np.ndarray:
    """How much ink each pixel holds (0-1) where the pen passed: a ballpoint's pressure varies
    along the line; graphite sits on the paper's tooth in grains; a felt tip is flat and bleeds."""
    if not coverage.any():
        return coverage
    pressure = _smooth_noise(coverage.shape, max(4.0, 6 * pen.width), rng)
    if pen.kind == "pencil":
        grain = cv2.GaussianBlur(normal(rng, coverage.shape), (0, 0), 0.7)
        amount = np.clip(0.7 + 0.55 * grain + 0.15 * pressure, 0.0, 1.0)
        # Graphite catches on the paper's tooth unevenly: ragged edges, lighter patches.
        blotchy = cv2.GaussianBlur(normal(rng, coverage.shape), (0, 0), max(1.0, pen.width / 3))
        patches = blotchy / (float(blotchy.std()) + 1e-6)
        coverage = np.clip(coverage * (1.15 + 0.35 * patches) - 0.15, 0.0, 1.0)
    elif pen.kind == "marker":
        coverage = cv2.GaussianBlur(coverage, (0, 0), 0.6)
        amount = np.clip(1 + 0.03 * pressure, 0.0, 1.0)
    else:
        amount = np.clip(0.93 + 0.07 * pressure, 0.0, 1.0)
    return coverage * amount * np.float32(pen.opacity)
