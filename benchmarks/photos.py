"""Phone photos of one handwritten digit on paper, made up from seeds: the suite behind
``python -m benchmarks.robustness --only photos``.

Each photo is built the way a phone takes one. A scene in the page's own axes: paper
(benchmarks/paper.py) with the digit written on it by a pen (benchmarks/pens.py: the MNIST
digit's centre line, or a handwriting font's, redrawn with a ballpoint, a pencil or a felt tip),
sometimes lying on a desk. A camera a few degrees rolled and mildly tilted frames part of it
(benchmarks/framing.py), so the corners show more paper or desk, never black. Light
(benchmarks/light.py): exposure, a colour cast, a gradient, a hot spot, vignetting, the sheet's
unevenness, and by condition a cast shadow or a specular glare. The phone
(benchmarks/sensor.py): defocus or motion blur, noise stronger in the dark, a tone curve,
sharpening, JPEG at quality 60-92, and for 15% of the photos the pixels stored sideways or upside
down with the EXIF Orientation that undoes it. Frames are 480-1200 px on the long side, either
way up; the digit's ink is 20-55% of the frame's height, anywhere in it.

Conditions (CONDITIONS, in table order) each add one thing to ``plain``'s photo of a ballpoint
digit (black or blue, 0.5-1.0 mm) on plain paper: ``ruled``, ``squared``, ``graph`` (1 or 2 mm
with major lines) and ``dotted`` paper; a ``shadow`` (a straight edge, a blob, or a hand, 30-60%
darker, sometimes over the digit); ``pencil``; a ``marker`` up to ~22% of the digit wide; a
``table`` around the page (one edge or a corner); ``glare``; a coloured ``sticky`` note, often
with the desk around it; and ``dim`` light (dark, warm, noisy, shakier).

The control, ``strokes_as_mnist``, is the same strokes framed as MNIST framed its digits. All
output is deterministic for a seed, each condition drawing from its own stream
(``[seed, index of the condition]``, as benchmarks/styles.py does).
"""

from dataclasses import dataclass, field, replace
from functools import lru_cache
from io import BytesIO

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks import fonts, framing, light, paper, pens, sensor
from benchmarks.framing import DIGIT_SHARE, Box
from benchmarks.light import Light
from benchmarks.pens import Pen, Strokes

CONDITIONS: tuple[str, ...] = (
    "plain",
    "ruled",
    "squared",
    "graph",
    "dotted",
    "shadow",
    "pencil",
    "marker",
    "table",
    "glare",
    "sticky",
    "dim",
)
EXIF_SHARE = 0.15
# Phones mostly store a portrait shot as landscape pixels turned a quarter (6) or three (8).
ORIENTATIONS = (6, 8, 3, 2, 4, 5, 7)
_ORIENTATION_P = (0.45, 0.33, 0.14, 0.02, 0.02, 0.02, 0.02)
_INKS = {
    "ballpoint": ((0.13, 0.13, 0.17), (0.16, 0.22, 0.55), (0.10, 0.12, 0.30)),
    "marker": ((0.07, 0.07, 0.08), (0.08, 0.18, 0.55), (0.80, 0.10, 0.12)),
}


@dataclass(frozen=True)
class Recipe:
    """What a condition puts in the photo besides the nuisances every photo gets."""

    paper: str = "plain"
    pen: str = "ballpoint"
    table: bool = False
    light: Light = field(default_factory=Light)


RECIPES = {
    "plain": Recipe(),
    "ruled": Recipe(paper="ruled"),
    "squared": Recipe(paper="squared"),
    "graph": Recipe(paper="graph"),
    "dotted": Recipe(paper="dotted"),
    "shadow": Recipe(light=Light(shadow=True)),
    "pencil": Recipe(pen="pencil"),
    "marker": Recipe(pen="marker"),
    "table": Recipe(table=True),
    "glare": Recipe(light=Light(glare=True)),
    "sticky": Recipe(paper="sticky"),
    "dim": Recipe(light=Light(dim=True)),
}


@dataclass(frozen=True)
class Shot:
    """One photo and where things are in it, upright (as a viewer shows it after EXIF)."""

    jpeg: bytes
    size: tuple[int, int]  # width, height
    box: Box  # the digit's ink
    orientation: int  # the EXIF Orientation stored (1: none)
    page: float  # the share of the frame that is paper


def _pen(kind: str, digit_mm: float, rng: np.random.Generator) -> tuple[float, Pen]:
    """A pen of ``kind`` for a digit ``digit_mm`` tall: its width over the digit's height, and
    its look (its width in pixels is set once the digit's size in the frame is known)."""
    if kind == "marker":
        colour = _INKS["marker"][int(rng.integers(3))]
        return rng.uniform(0.07, 0.22), Pen(kind, colour, 0.0, rng.uniform(0.92, 1.0))
    if kind == "pencil":
        grey = rng.uniform(0.22, 0.42)  # graphite: a grey, faintly bluish sheen
        pen = Pen(kind, (grey, grey, grey * 1.04), 0.0, rng.uniform(0.4, 0.8))
        return rng.uniform(0.45, 1.0) / digit_mm, pen
    colour = _INKS["ballpoint"][int(rng.choice(3, p=[0.5, 0.35, 0.15]))]
    return rng.uniform(0.5, 1.0) / digit_mm, Pen(kind, colour, 0.0, rng.uniform(0.85, 1.0))


def _write(
    scene: np.ndarray, strokes: Strokes, spot: framing.Placement, pen: Pen, rng: np.random.Generator
) -> None:
    """The digit written on the scene's paper (in place): ink darkens what is under it."""
    ch, cw = scene.shape[:2]
    x0, y0 = (max(0, int(v) - 3) for v in spot.scene_box[:2])
    x1, y1 = min(cw, int(spot.scene_box[2]) + 4), min(ch, int(spot.scene_box[3]) + 4)
    cover = pens.draw(strokes, spot.scale, spot.offset - (x0, y0), pen.width, (y1 - y0, x1 - x0))
    amount = pens.ink(cover, pen, rng)[..., None]
    scene[y0:y1, x0:x1] *= 1 - amount * (1 - np.array(pen.colour, np.float32))


def shoot(
    condition: str,
    strokes: Strokes,
    rng: np.random.Generator,
    exif: bool = True,
    least: float = DIGIT_SHARE[0],
    margin: float = 0.01,
) -> Shot:
    """One phone photo of ``strokes`` in ``condition``. With ``exif`` False the pixels are stored
    upright even where the photo would have had an orientation (the same draws otherwise).
    ``least``: the smallest share of the frame's height the ink may shrink to so that it fits
    across (framing.place; 0 for wide ink, a number or a word, which must stay in the frame),
    ``margin`` the share of the frame's width and height kept clear around the ink."""
    recipe = RECIPES[condition]
    cam = framing.camera(framing.frame_size(rng), rng)
    digit_mm = float(np.exp(rng.uniform(np.log(12), np.log(45))))  # the digit's height on paper
    pen_share, pen = _pen(recipe.pen, digit_mm, rng)
    sides = framing.desk_sides(rng) if recipe.table else ()
    where = framing.where(sides, rng)
    spot = framing.place(strokes, pen_share, cam, where, rng.uniform(*DIGIT_SHARE), least, margin)
    pts = pens.points(strokes)
    tall = spot.scale * float(pts[:, 1].max() - pts[:, 1].min())  # the centre line's height
    mm = tall / digit_mm  # scene pixels per millimetre of paper
    pen = replace(pen, width=pen_share * tall)
    scene = paper.sheet(recipe.paper, (cam.canvas[1], cam.canvas[0]), mm, spot.scene_box, rng)
    _write(scene, strokes, spot, pen, rng)
    rect: Box | None = None
    if recipe.table:
        rect = framing.page_edges(sides, cam, spot.scene_box, rng)
    elif recipe.paper == "sticky":
        rect = framing.note(spot.scene_box, mm, rng)
    if rect is not None:
        scene = paper.on_desk(scene, rect, mm, rng)
    frame = cv2.warpPerspective(
        scene, cam.h, cam.size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    frame = sensor.blur(frame, recipe.light.dim, rng)
    illum, glare = light.lighting(cam.size, recipe.light, spot.frame_box, rng)
    frame *= light.enlarge(illum, cam.size)
    if glare is not None:
        frame += light.enlarge(glare, cam.size)
    pixels = sensor.develop(frame, recipe.light.dim, rng)
    quality = int(rng.integers(60, 93))
    turned = rng.random() < EXIF_SHARE
    orientation = int(rng.choice(ORIENTATIONS, p=_ORIENTATION_P)) if turned else 1
    orientation = orientation if exif else 1  # drawn all the same: the next photos don't change
    page = 1.0 if rect is None else framing.page_share(rect, cam)
    return Shot(
        sensor.encode(pixels, quality, orientation), cam.size, spot.frame_box, orientation, page
    )


def shots(condition: str, digits: np.ndarray, seed: int = 0, exif: bool = True) -> list[Shot]:
    """Every digit of N x 28 x 28 uint8 (MNIST) photographed in ``condition``, with geometry
    (what render() returns, and where things are; ``exif`` as in shoot())."""
    rng = np.random.default_rng([seed, CONDITIONS.index(condition)])
    return [shoot(condition, pens.mnist_strokes(d), rng, exif) for d in digits]


def render(condition: str, digits: np.ndarray, seed: int = 0) -> list[bytes]:
    """Every digit of N x 28 x 28 uint8 (MNIST, white on black) as a JPEG phone photo in
    ``condition``."""
    return [s.jpeg for s in shots(condition, digits, seed)]


def strokes_as_mnist(digits: np.ndarray, seed: int = 0) -> list[bytes]:
    """The same pen strokes as render() draws, framed as 28x28 MNIST PNGs (the control)."""
    rng = np.random.default_rng([seed, len(CONDITIONS)])
    files = []
    for d in digits:
        strokes = pens.mnist_strokes(d)
        # MNIST's own pen: the writer's stroke width (ink over length), a little jitter.
        own = float(d.sum()) / 255 / max(pens.length(strokes), 1.0)
        width = float(np.clip(own * rng.uniform(0.9, 1.1), 1.5, 4.0))
        buf = BytesIO()
        Image.fromarray(pens.as_mnist(strokes, width)).save(buf, "PNG")
        files.append(buf.getvalue())
    return files


@lru_cache(maxsize=1)
def handwriting_fonts() -> tuple[fonts.Font, ...]:
    """The handwriting-like fonts on this machine (none where Debian's are not installed)."""
    return tuple(f for f in fonts.installed_fonts() if f.handwriting)


@lru_cache(maxsize=512)
def _glyph_lines(path: str, digit: int) -> Strokes:
    face = ImageFont.truetype(path, 96)
    left, top, right, bottom = face.getbbox(str(digit))
    pad = 8
    glyph = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(glyph).text((pad - left, pad - top), str(digit), fill=255, font=face)
    return pens.centre_lines(np.asarray(glyph), upsample=1)


def font_strokes(font: fonts.Font, digit: int, rng: np.random.Generator) -> Strokes:
    """The centre lines of ``digit`` in ``font`` (at 96 px), slanted a little either way."""
    lines = _glyph_lines(str(font.path), digit)
    middle = float(pens.points(lines)[:, 1].mean())
    shear = np.float32(rng.uniform(-0.2, 0.2))  # the writer's slant, right or left
    return tuple(
        s + np.stack([(middle - s[:, 1]) * shear, np.zeros(len(s), np.float32)], 1) for s in lines
    )


def font_photos(condition: str, count: int, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """Handwriting-font digits photographed in ``condition``, and their labels (empty when no
    such font)."""
    found = handwriting_fonts()
    if not found:
        return [], np.zeros(0, np.int64)
    rng = np.random.default_rng([seed, CONDITIONS.index(condition), 1])
    labels = np.arange(count, dtype=np.int64) % 10
    files = []
    for i, label in enumerate(labels):
        font = found[(i // 10) % len(found)]
        files.append(shoot(condition, font_strokes(font, int(label), rng), rng).jpeg)
    return files, labels
