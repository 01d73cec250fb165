"""Training images that are not one digit: the two classes a model learns beside the ten digits
(outlier exposure), framed as MNIST frames a digit.

- ``not-a-digit``: letters, words and symbols from fonts, and shapes and scribbles drawn here.
  Letters that hands write like digits (O o l I S Z B b g q, and s z i) are never drawn: they
  are digits to a reader too, and out of scope.
- ``several-digits``: 2 to 6 MNIST training digits side by side, with uneven gaps (touching or
  overlapping at times), a wandering baseline and uneven sizes, framed as one image: what the
  service's preprocessing makes of a number.

The benchmark's own suites (benchmarks/outliers.py) are made apart from these: other fonts
(DkgHandwriting, Z003), other generators, MNIST test digits, photographed: a model is never
measured on what it was trained on.
"""

import itertools
import math
import subprocess
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from models.framing import BOX, FRAME

NOT_A_DIGIT, SEVERAL_DIGITS = "not-a-digit", "several-digits"
OUTLIER_LABELS = (NOT_A_DIGIT, SEVERAL_DIGITS)
# Letters a hand writes like a digit (0, 1, 5, 2, 8, 6, 9): digits to a reader, out of scope.
LOOK_LIKE_DIGITS = frozenset("OolISZBbgqszi")
LETTERS = "".join(c for c in "ABCDEFGHJKLMNPQRTUVWXYacdefhkmnprtuvwxy" if c not in LOOK_LIKE_DIGITS)
SYMBOLS = "+=#@&%?!*$<>~^{}\u00d7\u00f7\u00a3\u20ac"  # not ( ) [ ] / |: a hand's 1
WORDS = ("hello", "the", "cat", "yes", "no", "ok", "read", "mark", "find", "word", "hand", "paper",
         "map", "key", "ten", "red", "next", "draw", "new", "fun")  # fmt: skip
# Fonts the training draws from; the benchmark's are DkgHandwriting and Z003 (kept apart).
TRAIN_FONTS = ("dejavu", "liberation", "humor", "comic", "nimbus", "urw", "p052", "c059")
HELD_OUT_FONTS = ("dkg", "z003")
SIDE = 96  # glyphs and shapes are drawn this tall, then framed down to MNIST's size


@lru_cache(maxsize=1)
def training_fonts() -> tuple[str, ...]:
    """Font files for training's letters (none where fontconfig finds none: shapes only)."""
    try:
        out = subprocess.run(["fc-list", "--format", "%{file}\n"], capture_output=True,
                             text=True, check=True, timeout=30).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return ()
    files = sorted({f for f in out.splitlines() if f.lower().endswith((".ttf", ".otf"))})
    keep = [f for f in files if any(k in Path(f).name.lower() for k in TRAIN_FONTS)]
    return tuple(f for f in keep if not any(k in f.lower() for k in HELD_OUT_FONTS))


def frame(ink: np.ndarray) -> np.ndarray:
    """White-on-black ink of any size -> 28x28 uint8 with its box fitted to BOX pixels on its
    longer side (aspect kept) and its centre of mass in the middle, as MNIST frames digits."""
    ys, xs = np.nonzero(ink > 0.1 * ink.max())
    if len(ys) == 0:
        return np.zeros((FRAME, FRAME), np.uint8)
    box = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = BOX / max(box.shape)
    h, w = max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale))
    resample = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    small = np.asarray(Image.fromarray(box.astype(np.float32)).resize((w, h), resample))
    out = np.zeros((FRAME + 2 * BOX, FRAME + 2 * BOX), np.float32)
    mass = small.sum()
    cy = (small.sum(1) * np.arange(h)).sum() / mass if mass else h / 2
    cx = (small.sum(0) * np.arange(w)).sum() / mass if mass else w / 2
    top, left = BOX + round(FRAME / 2 - cy), BOX + round(FRAME / 2 - cx)
    out[top : top + h, left : left + w] = small
    core = out[BOX : BOX + FRAME, BOX : BOX + FRAME]
    return np.clip(core / max(float(core.max()), 1e-6) * 255, 0, 255).astype(np.uint8)


def _text(text: str, font: str | None, rng: np.random.Generator) -> np.ndarray:
    """``text`` in ``font`` (PIL's own without one), slanted, as white ink on black."""
    face = ImageFont.truetype(font, SIDE) if font else ImageFont.load_default(SIDE)
    left, top, right, bottom = face.getbbox(text)
    pad = SIDE // 4
    img = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), text, fill=255, font=face,
                             stroke_width=int(rng.integers(0, 4)), stroke_fill=255)  # fmt: skip
    shear = float(rng.uniform(-0.3, 0.3))
    skew = (1, shear, -shear * img.size[1] / 2, 0, 1, 0)
    img = img.transform(img.size, Image.Transform.AFFINE, skew, Image.Resampling.BILINEAR)
    ink = np.asarray(img, np.float32) / 255
    return _as_pen(ink, rng) if rng.random() < 0.6 else ink


def _as_pen(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A typed glyph as a hand writes it: its centre line, drawn with a round pen of some
    width (scikit-image's thinning; the glyph as it is where that is not installed)."""
    try:
        from skimage.morphology import skeletonize
    except ImportError:  # pragma: no cover - training runs with the dev extras
        return ink
    line = skeletonize(ink > 0.5).astype(np.uint8)
    radius = int(rng.integers(1, 6))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    pen = cv2.dilate(line, disc).astype(np.float32)
    return cv2.GaussianBlur(pen, (0, 0), 1.0)


def _polyline(points: np.ndarray, width: int, size: int = SIDE * 2) -> np.ndarray:
    """A pen path (points in [0, 1]^2) drawn ``width`` wide, white on black."""
    img = Image.new("L", (size, size), 0)
    pts = [(float(x) * (size - 20) + 10, float(y) * (size - 20) + 10) for x, y in points]
    ImageDraw.Draw(img).line(pts, fill=255, width=width, joint="curve")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1)), np.float32) / 255


def _wobble(points: np.ndarray, rng: np.random.Generator, amount: float = 0.015) -> np.ndarray:
    """A hand's tremor on a path: smooth noise along it."""
    noise = rng.normal(0, amount, points.shape)
    kernel = np.ones(5) / 5
    smooth = np.stack([np.convolve(noise[:, i], kernel, mode="same") for i in (0, 1)], 1)
    return points + smooth


def _shape(rng: np.random.Generator) -> np.ndarray:
    """A drawn shape that is no digit: triangle, square, star, heart, arrow, spiral, zigzag,
    cross-hatch or a scribble (never a circle or a lone line: those read as 0 and 1)."""
    kind = int(rng.integers(15))
    t = np.linspace(0, 1, 200)
    if kind == 0:  # triangle
        corners = np.array([[0.5, 0.05], [0.95, 0.9], [0.05, 0.9], [0.5, 0.05]])
    elif kind == 1:  # square
        corners = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9], [0.1, 0.1]])
    elif kind == 2:  # five-pointed star
        angles = -math.pi / 2 + np.arange(6) * 4 * math.pi / 5
        corners = np.stack([0.5 + 0.45 * np.cos(angles), 0.5 + 0.45 * np.sin(angles)], 1)
    elif kind == 3:  # heart
        a = t * 2 * math.pi
        x, y = 16 * np.sin(a) ** 3, -(13 * np.cos(a) - 5 * np.cos(2 * a) - 2 * np.cos(3 * a))
        corners = np.stack([(x + 17) / 34, (y + 17) / 30], 1)
    elif kind == 4:  # arrow
        corners = np.array([[0.05, 0.5], [0.9, 0.5], [0.65, 0.25], [0.9, 0.5], [0.65, 0.75]])
    elif kind == 5:  # spiral of two or three turns
        a = t * rng.uniform(4, 6) * math.pi
        r = 0.05 + 0.42 * t
        corners = np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], 1)
    elif kind == 6:  # zigzag
        k = int(rng.integers(4, 8))
        corners = np.stack([np.linspace(0.05, 0.95, k), np.where(np.arange(k) % 2, 0.2, 0.8)], 1)
    elif kind == 7:  # cross-hatch: a crossed-out patch
        k = int(rng.integers(3, 6))
        lines = [[(i / k, 0.05), (i / k + 0.3, 0.95)] for i in range(k)]
        lines += [[(0.05, i / k), (0.95, i / k + 0.2)] for i in range(k)]
        corners = np.array([p for line in lines for p in line])
    elif kind == 9:  # a cloud: a ring of bumps
        a = t * 2 * math.pi
        r = 0.35 + 0.06 * np.abs(np.sin(a * int(rng.integers(5, 9)) / 2))
        corners = np.stack([0.5 + r * 1.3 * np.cos(a), 0.5 + r * 0.8 * np.sin(a)], 1)
    elif kind == 10:  # a tick, or a chevron either way
        corners = np.array([[0.05, 0.55], [0.35, 0.9], [0.95, 0.1]])
        if rng.random() < 0.5:
            corners = np.array([[0.9, 0.1], [0.1, 0.5], [0.9, 0.9]])[:: int(rng.choice([-1, 1]))]
    elif kind == 11:  # a wave or an infinity sign
        a = t * 2 * math.pi
        if rng.random() < 0.5:
            corners = np.stack([t, 0.5 + 0.2 * np.sin(a * rng.uniform(1, 3))], 1)
        else:
            corners = np.stack([0.5 + 0.45 * np.sin(a), 0.5 + 0.25 * np.sin(2 * a)], 1)
    elif kind == 12:  # a smiley: a face's eyes and mouth, no ring
        mouth = np.stack([0.2 + 0.6 * t, 0.65 + 0.2 * np.sin(t * math.pi)], 1)
        eyes = [np.array([[0.3, 0.2], [0.3, 0.35]]), np.array([[0.7, 0.2], [0.7, 0.35]])]
        corners = np.concatenate([eyes[0], eyes[1], mouth])
    elif kind == 13:  # a house, a lightning bolt or a rectangle crossed
        corners = [np.array([[0.1, 0.95], [0.1, 0.4], [0.5, 0.05], [0.9, 0.4], [0.9, 0.95],
                             [0.1, 0.95]]),
                   np.array([[0.6, 0.0], [0.25, 0.55], [0.6, 0.5], [0.3, 1.0]]),
                   np.array([[0.1, 0.2], [0.9, 0.2], [0.9, 0.8], [0.1, 0.8], [0.1, 0.2],
                             [0.9, 0.8]])][int(rng.integers(3))]  # fmt: skip
    elif kind == 14:  # a random polygon, open or closed
        k = int(rng.integers(4, 9))
        corners = rng.uniform(0.05, 0.95, (k, 2))
    else:  # a scribble: a smooth random walk with loops
        steps = rng.normal(0, 1, (60, 2)).cumsum(0)
        corners = (steps - steps.min(0)) / np.ptp(steps, 0).clip(1e-6)
    dense = np.concatenate([np.linspace(a, b, 20) for a, b in itertools.pairwise(corners)])
    return _polyline(_wobble(np.clip(dense, 0, 1), rng), int(rng.integers(4, 18)))


def not_a_digit(rng: np.random.Generator, fonts: tuple[str, ...]) -> np.ndarray:
    """One 28x28 uint8 image of something that is not a digit."""
    pick = rng.random()
    font = fonts[int(rng.integers(len(fonts)))] if fonts else None
    if pick < 0.35:
        ink = _text(LETTERS[int(rng.integers(len(LETTERS)))], font, rng)
    elif pick < 0.5:
        word = WORDS[int(rng.integers(len(WORDS)))]
        ink = _text("".join(c for c in word if c not in LOOK_LIKE_DIGITS) or "ha", font, rng)
    elif pick < 0.65:
        ink = _text(SYMBOLS[int(rng.integers(len(SYMBOLS)))], font, rng)
    else:
        ink = _shape(rng)
    return frame(ink)


def _ink_box(digit: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(digit > 25)
    return digit[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] if len(ys) else digit


def several_digits(rng: np.random.Generator, digits: np.ndarray) -> np.ndarray:
    """One 28x28 uint8 image of 2-6 of ``digits`` (N x 28 x 28 uint8) written side by side."""
    k = int(rng.choice([2, 3, 4, 5, 6], p=[0.35, 0.25, 0.2, 0.12, 0.08]))
    parts = []
    for i in rng.integers(len(digits), size=k):
        part = Image.fromarray(_ink_box(digits[int(i)]))
        s = rng.uniform(0.8, 1.2)
        size = (max(1, round(part.width * s)), max(1, round(part.height * s)))
        parts.append(np.asarray(part.resize(size, Image.Resampling.BILINEAR)))
    height = max(p.shape[0] for p in parts) + 16
    width = sum(p.shape[1] for p in parts) + 12 * k + 16
    canvas = np.zeros((height, width), np.float32)
    x, drift = 4, 0.0
    for p in parts:
        drift += rng.normal(0, 1.5)
        y = int(np.clip(8 + height // 2 - p.shape[0] // 2 - 8 + drift, 0, height - p.shape[0]))
        canvas[y : y + p.shape[0], x : x + p.shape[1]] = np.maximum(
            canvas[y : y + p.shape[0], x : x + p.shape[1]], p)  # fmt: skip
        gap = int(rng.integers(-3, 9)) if rng.random() > 0.25 else int(rng.integers(-5, 1))
        x = max(0, x + p.shape[1] + gap)
    return frame(canvas[:, : x + 4])


def outliers(n: int, digits: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` training images, three in five not a digit (class 10) and the others several
    digits (class 11), as N x 28 x 28 uint8 and their classes; deterministic for ``seed``."""
    rng, fonts = np.random.default_rng(seed), training_fonts()
    images = np.zeros((n, FRAME, FRAME), np.uint8)
    classes = np.where(np.arange(n) % 5 < 3, 10, 11).astype(np.int64)
    for i in range(n):
        images[i] = not_a_digit(rng, fonts) if classes[i] == 10 else several_digits(rng, digits)
    return images, classes
