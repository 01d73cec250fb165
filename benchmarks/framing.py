"""Framing for the phone-photo suite: the camera's view of the page, and where things are in it.

A phone is held over the page a few degrees rolled and a little tilted, so the frame sees a
slightly rotated, keystoned piece of the scene (the page in its own axes, in scene pixels). The
frame is cut from that scene by a perspective warp, so its corners show more paper (or desk),
never black. Everything placed in the scene (the digit, a page edge, a sticky note) is measured
back in the frame through the same homography, so the suite knows where the digit's ink is.
"""

from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks import pens
from benchmarks.pens import Strokes

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
DIGIT_SHARE = (0.21, 0.54)  # the ink's height over the frame's (the box lands within 20-55%)


@dataclass(frozen=True)
class Camera:
    """A frame of ``size`` looking at a scene canvas of ``canvas`` (w, h) through ``h``."""

    size: tuple[int, int]
    canvas: tuple[int, int]
    h: np.ndarray  # scene -> frame homography
    view: np.ndarray  # the frame's corners in the scene, clockwise from top-left

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        """Scene points (k x 2) -> frame points."""
        return cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), self.h)[:, 0]

    def to_scene(self, pts: np.ndarray) -> np.ndarray:
        """Frame points (k x 2) -> scene points."""
        inv = np.linalg.inv(self.h)
        return cv2.perspectiveTransform(pts.reshape(-1, 1, 2).astype(np.float64), inv)[:, 0]


def frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """480-1200 px on the long side, 4:3 mostly (16:9, 3:2, square), landscape or portrait."""
    long = int(rng.integers(480, 1201))
    aspect = float(rng.choice([4 / 3, 16 / 9, 3 / 2, 1.0], p=[0.65, 0.15, 0.12, 0.08]))
    short = round(long / aspect)
    return (long, short) if rng.random() < 0.5 else (short, long)


def camera(size: tuple[int, int], rng: np.random.Generator) -> Camera:
    """Up to 5 degrees of roll and a mild tilt (the far side up to ~7% smaller on each axis)."""
    w, h = size
    sx, sy = np.array([-1.0, 1, 1, -1]), np.array([-1.0, -1, 1, 1])
    kx, ky = rng.uniform(-0.07, 0.07, 2)
    # The scene the frame sees: wider where the page is farther from the lens.
    grow = 1 + kx * sx + ky * sy + rng.uniform(-0.01, 0.01, 4)
    quad = np.stack([sx * w / 2 * grow, sy * h / 2 * grow], 1)
    a = np.radians(rng.uniform(-5, 5))
    quad = quad @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    quad -= quad.min(0) - 2
    canvas = (int(np.ceil(quad[:, 0].max())) + 3, int(np.ceil(quad[:, 1].max())) + 3)
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    homography = cv2.getPerspectiveTransform(quad.astype(np.float32), corners)
    return Camera(size, canvas, homography, quad)


def _ink_outline(pts: np.ndarray, scale: float, offset: np.ndarray, radius: float) -> np.ndarray:
    """Points around the pen's disc at every stroke point, in the scene."""
    centres = pts * scale + offset
    return (centres[:, None, :] + radius * pens.RING[None]).reshape(-1, 2)


def _extent(pts: np.ndarray) -> Box:
    lo, hi = pts.min(0), pts.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


@dataclass(frozen=True)
class Placement:
    """Where the digit is written: scene px per stroke unit, offset, and its ink's boxes."""

    scale: float
    offset: np.ndarray
    scene_box: Box
    frame_box: Box


def place(
    strokes: Strokes,
    pen_share: float,
    cam: Camera,
    where: np.ndarray,
    share: float,
    least: float = DIGIT_SHARE[0],
    margin: float = 0.01,
) -> Placement:
    """Size and place the digit so its ink is ``share`` of the frame's height and its box sits at
    ``where`` (0-1 along each axis of the room the frame leaves around it). Ink too wide for the
    frame is made smaller to fit across, but never under ``least`` of the frame's height (a wide
    stroke set, a word or a number, passes 0 so that all of it stays in the frame), and kept
    ``margin`` of the frame's width and height clear of its sides."""
    w, h = cam.size
    pts = pens.points(strokes).astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    tall = max(float(hi[1] - lo[1]), 1e-3)
    middle = (lo + hi) / 2
    scale = share * h / (tall * (1 + pen_share))
    anchor = cam.to_scene(np.array([w / 2, h / 2]))[0]  # the scene point under the digit's middle
    edge = np.array([margin * w, margin * h])

    def frame_box(scale: float, anchor: np.ndarray) -> np.ndarray:
        outline = _ink_outline(pts, scale, anchor - scale * middle, pen_share * scale * tall / 2)
        return np.array(_extent(cam.to_frame(outline)))

    # The camera's warp is nearly a similarity: a few corrections of size and place converge.
    for _ in range(4):
        box = frame_box(scale, anchor)
        tall_now, wide_now = box[3] - box[1], box[2] - box[0]
        # A wide digit in a portrait frame is written (framed) smaller so that it fits across.
        fit = min(share * h / tall_now, (w - 2 * edge[0]) / wide_now)
        scale *= max(fit, least * h / tall_now)
        box = frame_box(scale, anchor)
        extent = box[2:] - box[:2]
        room = np.maximum(np.array([w, h]) - extent - 2 * edge, 0)
        target = edge + extent / 2 + where * room
        anchor = anchor + cam.to_scene(target)[0] - cam.to_scene((box[:2] + box[2:]) / 2)[0]
    offset = anchor - scale * middle
    outline = _ink_outline(pts, scale, offset, pen_share * scale * tall / 2)
    return Placement(scale, offset, _extent(outline), _extent(cam.to_frame(outline)))


_FAR = 1e4  # a page side this far out is not in the picture


def desk_sides(rng: np.random.Generator) -> tuple[str, ...]:
    """Which edges of the page the frame shows: one, or two meeting at a corner."""
    across, down = ("left", "right")[int(rng.integers(2))], ("top", "bottom")[int(rng.integers(2))]
    pick = rng.random()
    return (across,) if pick < 0.35 else (down,) if pick < 0.6 else (across, down)


def where(sides: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Where the digit's box sits in the frame's room (0-1 per axis), away from a page edge."""
    where = rng.uniform(0, 1, 2)
    for side in sides:
        axis, away = {"left": (0, 1), "right": (0, 0), "top": (1, 1), "bottom": (1, 0)}[side]
        where[axis] = rng.uniform(0.6, 1.0) if away else rng.uniform(0.0, 0.4)
    return where


def page_edges(sides: tuple[str, ...], cam: Camera, ink: Box, rng: np.random.Generator) -> Box:
    """The page's rectangle in the scene: each shown edge between the digit and the frame's side."""
    v = cam.view  # top-left, top-right, bottom-right, bottom-left
    rect = [-_FAR, -_FAR, _FAR, _FAR]
    for side in sides:
        if side == "left":
            inner, gap = max(v[0, 0], v[3, 0]), ink[0] - max(v[0, 0], v[3, 0])
            rect[0] = inner + gap * rng.uniform(0.15, 0.75) if gap > 8 else ink[0] - 4
        elif side == "right":
            inner = min(v[1, 0], v[2, 0])
            gap = inner - ink[2]
            rect[2] = inner - gap * rng.uniform(0.15, 0.75) if gap > 8 else ink[2] + 4
        elif side == "top":
            inner = max(v[0, 1], v[1, 1])
            gap = ink[1] - inner
            rect[1] = inner + gap * rng.uniform(0.15, 0.75) if gap > 8 else ink[1] - 4
        else:
            inner = min(v[2, 1], v[3, 1])
            gap = inner - ink[3]
            rect[3] = inner - gap * rng.uniform(0.15, 0.75) if gap > 8 else ink[3] + 4
    return rect[0], rect[1], rect[2], rect[3]


def note(ink: Box, mm: float, rng: np.random.Generator) -> Box:
    """A sticky note (51, 76 or 100 mm square) around the digit, at least 3 mm clear of it."""
    side = float(rng.choice([51.0, 76.0, 76.0, 76.0, 100.0])) * mm
    side = max(side, ink[2] - ink[0] + 6 * mm, ink[3] - ink[1] + 6 * mm)
    # The room left in each direction is never negative (a note just big enough leaves none,
    # which rounding could otherwise make a hair below zero).
    room_x = max(0.0, side - (ink[2] - ink[0]) - 6 * mm)
    room_y = max(0.0, side - (ink[3] - ink[1]) - 6 * mm)
    x0 = ink[2] + 3 * mm - side + rng.uniform(0, room_x)
    y0 = ink[3] + 3 * mm - side + rng.uniform(0, room_y)
    return x0, y0, x0 + side, y0 + side


def page_share(rect: Box, cam: Camera) -> float:
    """How much of the frame the page covers (its rectangle seen through the camera)."""
    w, h = cam.size
    cw, ch = cam.canvas
    x0, y0, x1, y1 = (
        max(rect[0], -1.0),
        max(rect[1], -1.0),
        min(rect[2], cw + 1.0),
        min(rect[3], ch + 1.0),
    )
    corners = cam.to_frame(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])) / 8
    grid = np.zeros((-(-h // 8), -(-w // 8)), np.uint8)
    cv2.fillPoly(grid, [np.round(corners * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return float(grid.mean() / 255)
