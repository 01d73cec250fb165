"""Evaluation suites of uploads that are not one digit: non-digits, and numbers of several digits.

For measuring how often the service refuses what it should (issue 27); evaluation only, kept
apart from what models/ trains its "not a digit" answer on (its negatives are made at 28x28 from
other fonts, Humor Sans, Comic Neue, its own shapes and MNIST *training* digits). Here: the
Debian handwriting fonts DkgHandwriting (fonts-dkg-handwriting) and Z003 (fonts-urw-base35),
this module's own stroke generators, and MNIST *test* digits. Everything is drawn as strokes
(benchmarks/pens.py) with a hand's wobble: a slow drift of the whole drawing, a tremor along
each line, a random turn, slant and aspect. Each is written out two ways:

- **photos**: a phone photo (benchmarks/photos.py ``shoot``) in one of photos.CONDITIONS, JPEG;
  wide ink (a word, a number) is framed smaller so that all of it stays in the frame;
- **canvas**: what the page's drawing pad exports (app/frontend/page/draw.js): a 280x280 RGBA
  PNG, black round-capped strokes a fifteenth of the pad wide on opaque white; a quarter of them
  on a transparent background instead (as other drawing pads export), to exercise alpha.

Non-digit kinds (KINDS):

- ``letters``: one letter, upper or lower case, from DkgHandwriting (its four styles) or Z003.
  Excluded (EXCLUDED): the letters hands write like digits, which issue 27 puts out of scope,
  O o (0), I l (1), S (5), Z (2), B (8), b (6), g q (9); and also s and z, written the same
  as S and Z. Every other letter is kept: i and j have their dot, D, G, T, y, a are read as letters.
- ``words``: a 2-7 letter word from WORDS in those fonts, capitalised or in capitals sometimes,
  with a writer's slant; words may contain excluded letters but none is made of them alone.
- ``symbols``: one of SYMBOLS (+ = # @ & % ? ! * $ < > ~ ^ { } and, where the font has
  them, the multiplication and division signs, £ €) from those fonts, or a drawn tick; never
  a - or a . alone (a digit's fragment), nor / | ( ) [ ] (read as a 1), nor § (Z003's reads
  as an S or a 5).
- ``shapes``: a triangle, a square (or oblong), a star, a heart, an arrow, a spiral,
  a cross-hatched patch or a cloud; never a circle or an ellipse (read as 0) nor a lone
  vertical line (read as 1).
- ``scribbles``: a doodle (a smooth pen path with several loops), a row of cursive loops,
  or a crossed-out patch (a zigzag scratched back and forth).

Numbers: 2-6 MNIST test digits side by side (their centre lines), each a little bigger or
smaller, uneven gaps with about a quarter of the neighbours touching or overlapping, on a
slanted, wandering baseline; the text they spell is returned with them.

Deterministic for a seed: each suite and condition draws from its own stream.
"""

import re
import string
from collections.abc import Callable
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from benchmarks import fonts, pens, photos
from benchmarks.pens import Strokes

KINDS: tuple[str, ...] = ("letters", "words", "symbols", "shapes", "scribbles")
EXCLUDED = frozenset("OoIlSsZzBbgq")
LETTERS = tuple(c for c in string.ascii_letters if c not in EXCLUDED)
WORDS: tuple[str, ...] = (
    "at", "my", "hi", "me", "up", "we", "ax", "yes", "cat", "duck", "pen", "map", "key", "red",
    "fun", "why", "hat", "ink", "jam", "fox", "hand", "note", "milk", "tree", "jump", "wave",
    "word", "page", "text", "name", "city", "blue", "dark", "kite", "hello", "paper", "water",
    "happy", "quick", "zebra", "mark", "draw", "write", "green", "river", "north", "apple",
    "peach", "table", "number", "letter", "yellow", "window", "market", "picture", "kitchen",
)  # fmt: skip
# Beyond ASCII, used where the font draws them: multiplication and division signs, £ €.
SYMBOLS: tuple[str, ...] = (*"+=#@&%?!*$<>~^{}", "\u00d7", "\u00f7", "\u00a3", "\u20ac")
SHAPES: tuple[str, ...] = (
    "triangle", "square", "star", "heart", "arrow", "spiral", "hatch", "cloud",
)  # fmt: skip
SCRIBBLES: tuple[str, ...] = ("doodle", "loops", "crossed")
NUMBER_DIGITS = (2, 6)  # how many digits a number has, inclusive
TOUCHING = 0.25  # the share of neighbouring digits that touch or overlap
CANVAS = 280  # the page's drawing pad, px
PEN = CANVAS / 15  # draw.js: lineWidth = canvas.width / 15
TRANSPARENT = 0.25  # the share of canvases with a transparent background
MARGIN = 0.05  # a photo keeps this share of its width and height clear around the ink
_HANDS = re.compile(r"dkg|z003", re.I)
_STREAM = 27  # this module's streams: [seed, _STREAM, suite, condition]
_NONDIGIT, _NUMBER = 0, 1

Digits = tuple[np.ndarray, np.ndarray]  # N x 28 x 28 uint8 (MNIST test), N labels


# --- fonts ------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def letter_fonts() -> tuple[Path, ...]:
    """DkgHandwriting's styles and Z003 on this machine (empty where neither is installed)."""
    return tuple(
        f.path for f in fonts.installed_fonts() if _HANDS.search(f"{f.family} {f.path.stem}")
    )


@lru_cache(maxsize=4096)
def _text_lines(path: str, text: str) -> Strokes:
    """The centre lines of ``text`` in the font at ``path`` (96 px), in the glyphs' pixels."""
    face = ImageFont.truetype(path, 96)
    left, top, right, bottom = face.getbbox(text)
    pad = 8
    glyph = Image.new("L", (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad), 0)
    ImageDraw.Draw(glyph).text((pad - left, pad - top), text, fill=255, font=face)
    return pens.centre_lines(np.asarray(glyph), upsample=1)


@lru_cache(maxsize=64)
def _has_glyph(path: str, char: str) -> bool:
    """Whether the font draws ``char`` itself (not its missing-glyph box, not nothing)."""
    face = ImageFont.truetype(path, 48)
    mask = face.getmask(char)
    if mask.getbbox() is None:
        return False
    missing = face.getmask("\ue000")  # a private-use point: no font here draws one
    return bytes(mask) != bytes(missing) or mask.size != missing.size


def _font(rng: np.random.Generator) -> str:
    """DkgHandwriting (one of its styles) or Z003, as often as each other."""
    found = letter_fonts()
    if not found:
        raise RuntimeError("no DkgHandwriting or Z003: install fonts-dkg-handwriting, -urw-base35")
    families = sorted({"z003" in p.stem.lower() for p in found})
    z003 = families[int(rng.integers(len(families)))]
    styles = [p for p in found if ("z003" in p.stem.lower()) == z003]
    return str(styles[int(rng.integers(len(styles)))])


# --- a hand's wobble --------------------------------------------------------------------------


def _resample(stroke: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` along the polyline (its ends kept)."""
    if len(stroke) < 2:
        return stroke
    seg = np.hypot(*np.diff(stroke, axis=0).T)
    along = np.r_[0, np.cumsum(seg)]
    if along[-1] <= step:
        return stroke
    at = np.r_[np.arange(0, along[-1], step), along[-1]]
    return np.stack([np.interp(at, along, stroke[:, i]) for i in (0, 1)], 1)


def _waves(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return rng.uniform(0.5, 1.6, count), rng.uniform(0, 2 * np.pi, count), rng.normal(0, 1, count)


def wobble(strokes: Strokes, rng: np.random.Generator, amount: float = 1.0) -> Strokes:
    """The strokes as a hand redraws them: turned, slanted and stretched a little, drifting
    slowly (a smooth field over the drawing) and trembling along each line."""
    pts = pens.points(strokes).astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    size = max(float((hi - lo).max()), 1e-3)
    middle = (lo + hi) / 2
    a = np.radians(rng.uniform(-8, 8) * amount)
    turn = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shape = np.array([[1, rng.uniform(-0.15, 0.15) * amount], [0, 1]]) @ np.diag(
        [np.exp(rng.uniform(-0.12, 0.12) * amount), 1.0]
    )
    affine = turn @ shape
    # The drift: a few plane waves over the drawing, ~2.5% of its size.
    k = rng.normal(0, 1, (4, 2))
    k = k / np.linalg.norm(k, axis=1, keepdims=True) * rng.uniform(2.5, 7.0, (4, 1)) / size
    phase = rng.uniform(0, 2 * np.pi, (4, 2))
    push = rng.normal(0, 0.025 * size * amount / 2, (4, 2))
    out = []
    for stroke in strokes:
        s = _resample(stroke.astype(np.float64), size / 80)
        rel = s - middle
        drift = sum(np.sin(rel @ k[j][:, None] + phase[j]) * push[j] for j in range(4))
        moved = rel @ affine.T + drift
        if len(s) > 3:  # tremor: faster, smaller, across and along the line
            along = np.r_[0, np.cumsum(np.hypot(*np.diff(s, axis=0).T))] / size
            freq, ph, amp = _waves(rng, 3)
            shake = sum(
                np.sin(2 * np.pi * 2 * f * along + p)[:, None] * (m * 0.0025 * size * amount)
                for f, p, m in zip(freq, ph, amp, strict=True)
            )
            moved = moved + shake * rng.normal(0, 1, 2)
        out.append((moved + middle).astype(np.float32))
    return tuple(out)


def _slant(strokes: Strokes, shear: float) -> Strokes:
    """Strokes sheared about their middle height (positive leans right)."""
    middle = float(pens.points(strokes)[:, 1].mean())
    return tuple(
        (s + np.stack([(middle - s[:, 1]) * shear, np.zeros(len(s))], 1)).astype(np.float32)
        for s in strokes
    )


# --- non-digits -------------------------------------------------------------------------------


def letter(rng: np.random.Generator) -> tuple[Strokes, str]:
    """One letter not in EXCLUDED, from a letter font, and the letter."""
    char = LETTERS[int(rng.integers(len(LETTERS)))]
    return _slant(_text_lines(_font(rng), char), rng.uniform(-0.15, 0.15)), char


def word(rng: np.random.Generator) -> tuple[Strokes, str]:
    """A word from WORDS (as is, capitalised or in capitals) with a slant, and the word."""
    text = WORDS[int(rng.integers(len(WORDS)))]
    case = rng.random()
    text = text.capitalize() if case < 0.25 else text.upper() if case < 0.4 else text
    return _slant(_text_lines(_font(rng), text), rng.uniform(-0.1, 0.35)), text


def symbol(rng: np.random.Generator) -> tuple[Strokes, str]:
    """A symbol from SYMBOLS that the chosen font draws, or a drawn tick, and which."""
    if rng.random() < 0.08:
        x = np.array([[0, 0.55], [0.32, 1.0], [1.0, 0.0]], np.float32) * 60
        return (x,), "tick"
    path = _font(rng)
    usable = [c for c in SYMBOLS if c.isascii() or _has_glyph(path, c)]
    char = usable[int(rng.integers(len(usable)))]
    return _slant(_text_lines(path, char), rng.uniform(-0.15, 0.15)), char


def _closed(pts: np.ndarray) -> np.ndarray:
    return np.concatenate([pts, pts[:1]]).astype(np.float32)


def _polygon(count: int, rng: np.random.Generator, jitter: float = 0.12) -> np.ndarray:
    start = rng.uniform(0, 2 * np.pi)
    angles = start + np.arange(count) * 2 * np.pi / count + rng.uniform(-jitter, jitter, count)
    return np.stack([np.cos(angles), np.sin(angles)], 1)


def shape(rng: np.random.Generator, name: str | None = None) -> tuple[Strokes, str]:
    """One of SHAPES (``name``, or a random one), 100 units across, and its name."""
    name = name or SHAPES[int(rng.integers(len(SHAPES)))]
    t = np.linspace(0, 2 * np.pi, 120)
    if name == "triangle":
        lines: list[np.ndarray] = [_closed(_polygon(3, rng, 0.3))]
    elif name == "square":
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [rng.uniform(0.7, 1.3), 1]
        a = rng.uniform(-0.3, 0.3)
        corners = corners @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        lines = [_closed(corners)]
    elif name == "star":
        tips = _polygon(5, rng, 0.05)
        if rng.random() < 0.5:  # one stroke, a pentagram
            lines = [_closed(tips[[0, 2, 4, 1, 3]])]
        else:  # the outline
            a = np.arctan2(tips[:, 1], tips[:, 0]) + np.pi / 5
            inner = np.stack([np.cos(a), np.sin(a)], 1) * rng.uniform(0.35, 0.5)
            lines = [_closed(np.stack([tips, inner], 1).reshape(-1, 2))]
    elif name == "heart":
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        lines = [np.stack([x, y], 1) / 16]
    elif name == "arrow":
        a = rng.uniform(0, 2 * np.pi)
        way = np.array([np.cos(a), np.sin(a)])
        tail, tip = -way, way
        bend = rng.uniform(-0.3, 0.3) * np.array([-way[1], way[0]])
        u = np.linspace(0, 1, 30)[:, None]
        shaft = (1 - u) * tail + u * tip + 4 * u * (1 - u) * bend
        head_len, spread = rng.uniform(0.5, 0.8), np.radians(rng.uniform(25, 40))
        back = -(shaft[-1] - shaft[-4]) / np.linalg.norm(shaft[-1] - shaft[-4])
        wings = [
            np.array([[np.cos(s), -np.sin(s)], [np.sin(s), np.cos(s)]]) @ back * head_len
            for s in (spread, -spread)
        ]
        if rng.random() < 0.5:  # the head in one stroke
            lines = [shaft, np.stack([tip + wings[0], tip, tip + wings[1]])]
        else:
            lines = [shaft, np.stack([tip, tip + wings[0]]), np.stack([tip, tip + wings[1]])]
    elif name == "spiral":
        turns = rng.uniform(2.5, 4.0)
        u = np.linspace(0, turns * 2 * np.pi, int(60 * turns))
        r = u / u[-1]
        way = 1 if rng.random() < 0.5 else -1
        lines = [np.stack([r * np.cos(way * u), r * np.sin(way * u)], 1)]
    elif name == "hatch":
        lines = []
        for a in (rng.uniform(-0.5, 0.5), rng.uniform(1.1, 2.0)):
            d = np.array([np.cos(a), np.sin(a)])
            n = np.array([-d[1], d[0]])
            for off in np.linspace(-0.8, 0.8, int(rng.integers(3, 7))):
                lines.append(np.stack([n * off - d, n * off + d]) + rng.normal(0, 0.05, (2, 2)))
    elif name == "cloud":
        bumps = int(rng.integers(5, 10))
        r = 1 + rng.uniform(0.15, 0.3) * np.abs(np.sin(bumps * t / 2))
        lines = [np.stack([r * np.cos(t) * rng.uniform(1.3, 1.8), r * np.sin(t)], 1)]
    else:
        raise ValueError(f"no shape {name!r}")
    return tuple((np.asarray(s) * 50).astype(np.float32) for s in lines), name


def _smooth_path(rng: np.random.Generator, steps: int, curl: float) -> np.ndarray:
    """A pen path of constant speed whose turning rate wanders (enough to loop)."""
    knots = rng.normal(0, curl, steps // 25 + 3)
    turning = np.interp(np.linspace(0, len(knots) - 1, steps), np.arange(len(knots)), knots)
    turning += rng.choice([-1, 1]) * curl * 0.5
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(turning)
    return np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1), axis=0)


def scribble(rng: np.random.Generator, name: str | None = None) -> tuple[Strokes, str]:
    """One of SCRIBBLES (``name``, or a random one), and its name."""
    name = name or SCRIBBLES[int(rng.integers(len(SCRIBBLES)))]
    if name == "doodle":
        lines = [_smooth_path(rng, int(rng.integers(250, 500)), rng.uniform(0.06, 0.12))]
        if rng.random() < 0.3:
            lines.append(_smooth_path(rng, 150, 0.1) + lines[0][-1])
    elif name == "loops":
        count = rng.uniform(3, 7)
        u = np.linspace(0, count * 2 * np.pi, int(40 * count))
        r = rng.uniform(0.6, 1.0)
        lines = [np.stack([u / np.pi * rng.uniform(0.5, 0.8) - r * np.sin(u), -r * np.cos(u)], 1)]
    elif name == "crossed":
        rows = int(rng.integers(4, 8))
        wide = rng.uniform(1.5, 3.0)
        ys = np.linspace(0, rng.uniform(0.5, 1.0) * wide, rows * 2)
        xs = np.where(np.arange(rows * 2) % 2 == 0, 0, wide) + rng.normal(0, 0.08, rows * 2)
        lines = [np.stack([xs, ys + rng.normal(0, 0.03, rows * 2)], 1)]
        if rng.random() < 0.5:  # scratched over again the other way
            back = np.stack([ys, xs], 1)
            lines.append(back + rng.normal(0, 0.03, back.shape))
    else:
        raise ValueError(f"no scribble {name!r}")
    return tuple((np.asarray(s) * 40).astype(np.float32) for s in lines), name


_MAKERS: dict[str, Callable[[np.random.Generator], tuple[Strokes, str]]] = {
    "letters": letter,
    "words": word,
    "symbols": symbol,
    "shapes": shape,
    "scribbles": scribble,
}


def non_digit(kind: str, rng: np.random.Generator) -> tuple[Strokes, str]:
    """A non-digit of ``kind`` (one of KINDS) as wobbly strokes, and what it is."""
    strokes, what = _MAKERS[kind](rng)
    return wobble(strokes, rng), what


def non_digit_kinds(count: int, start: int = 0) -> list[str]:
    """The kind of each of ``count`` non-digit files: KINDS in turn, from KINDS[start % 5]."""
    return [KINDS[(start + i) % len(KINDS)] for i in range(count)]


# --- numbers ----------------------------------------------------------------------------------


def number(digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[Strokes, str]:
    """2-6 digits drawn from ``digits`` (N x 28 x 28 uint8) written side by side as one number
    (in the digits' 28 px units), and its text."""
    count = int(rng.integers(NUMBER_DIGITS[0], NUMBER_DIGITS[1] + 1))
    picks = rng.integers(len(digits), size=count)
    slope = np.tan(np.radians(rng.uniform(-7, 7)))  # the baseline's slant
    drift = np.cumsum(rng.normal(0, 1.2, count))  # and its wander
    x = 0.0
    out: list[np.ndarray] = []
    for i, pick in enumerate(picks):
        lines = pens.mnist_strokes(digits[pick])
        pts = pens.points(lines)
        lo, hi = pts.min(0), pts.max(0)
        size = float(np.exp(rng.uniform(-0.15, 0.15)))
        height = 20 * size
        scale = height / max(float(hi[1] - lo[1]), 1e-3)
        wide = float(hi[0] - lo[0]) * scale
        if i:
            if rng.random() < TOUCHING:  # touching, or running into its neighbour
                x -= rng.uniform(0.0, 0.2) * min(wide, 14.0) + 1.0
            else:
                x += rng.uniform(0.1, 0.6) * 20
        base = 20 + x * slope + drift[i] - rng.uniform(-1, 1)
        at = np.array([x - lo[0] * scale, base - hi[1] * scale], np.float32)
        out += [(s * scale + at).astype(np.float32) for s in lines]
        x += wide
    text = "".join(str(int(labels[p])) for p in picks)
    return _slant(tuple(out), rng.uniform(-0.12, 0.25)), text


# --- files ------------------------------------------------------------------------------------


def canvas(strokes: Strokes, rng: np.random.Generator) -> bytes:
    """The strokes as the page's pad exports them: a 280x280 RGBA PNG, black, a fifteenth of the
    pad wide, drawn to fill much of it (wide ink across it); a transparent background sometimes."""
    pts = pens.points(strokes)
    lo, hi = pts.min(0), pts.max(0)
    extent = np.maximum(hi - lo, 1e-3)
    room = CANVAS - PEN - 6
    wide = extent[0] > 1.5 * extent[1]  # a word, a number: written across the pad
    scale = rng.uniform(0.8, 0.98) if wide else rng.uniform(0.5, 0.95)
    scale *= room / float(extent.max())
    spare = np.maximum(room - extent * scale, 0)
    offset = PEN / 2 + 3 + spare * rng.uniform(0, 1, 2) - lo * scale
    cover = pens.draw(strokes, scale, offset, PEN, (CANVAS, CANVAS))
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    if rng.random() < TRANSPARENT:
        rgba[..., 3] = np.round(cover * 255)
    else:
        rgba[..., :3] = np.round((1 - cover) * 255)[..., None]
        rgba[..., 3] = 255
    buf = BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def _stream(seed: int, suite: int, condition: str | None) -> np.random.Generator:
    where = len(photos.CONDITIONS) if condition is None else photos.CONDITIONS.index(condition)
    return np.random.default_rng([seed, _STREAM, suite, where])


def _photo(condition: str, strokes: Strokes, rng: np.random.Generator) -> bytes:
    return photos.shoot(condition, strokes, rng, least=0.0, margin=MARGIN).jpeg


def _as_images(digits: np.ndarray) -> np.ndarray:
    images = np.asarray(digits, np.uint8)
    return images[:, 0] if images.ndim == 4 else images


def non_digit_photos(condition: str, count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEG phone photos of non-digits in ``condition``; file i is of kind
    ``non_digit_kinds(count, CONDITIONS.index(condition))[i]``."""
    rng = _stream(seed, _NONDIGIT, condition)
    kinds = non_digit_kinds(count, photos.CONDITIONS.index(condition))
    return [_photo(condition, non_digit(kind, rng)[0], rng) for kind in kinds]


def non_digit_canvases(count: int, seed: int = 0) -> list[bytes]:
    """``count`` drawing-pad PNGs of non-digits; file i is of kind ``non_digit_kinds(count)[i]``."""
    rng = _stream(seed, _NONDIGIT, None)
    return [canvas(non_digit(kind, rng)[0], rng) for kind in non_digit_kinds(count)]


def number_photos(
    condition: str, count: int, seed: int, digits: np.ndarray, labels: np.ndarray
) -> tuple[list[bytes], list[str]]:
    """``count`` JPEG phone photos of numbers made of ``digits`` (MNIST test) in ``condition``,
    and the numbers' texts."""
    rng = _stream(seed, _NUMBER, condition)
    images, files, texts = _as_images(digits), [], []
    for _ in range(count):
        strokes, text = number(images, np.asarray(labels), rng)
        files.append(_photo(condition, strokes, rng))
        texts.append(text)
    return files, texts


def number_canvases(
    count: int, seed: int, digits: np.ndarray, labels: np.ndarray
) -> tuple[list[bytes], list[str]]:
    """``count`` drawing-pad PNGs of numbers made of ``digits`` (MNIST test), and their texts."""
    rng = _stream(seed, _NUMBER, None)
    images, files, texts = _as_images(digits), [], []
    for _ in range(count):
        strokes, text = number(images, np.asarray(labels), rng)
        strokes = wobble(strokes, rng, amount=0.3)
        files.append(canvas(strokes, rng))
        texts.append(text)
    return files, texts


SUITES: tuple[str, ...] = (
    "nondigits/photos",
    "nondigits/canvas",
    "numbers/photos",
    "numbers/canvas",
)


def _split(count: int) -> list[int]:
    """``count`` spread over CONDITIONS as evenly as can be (the first ones get the extra)."""
    n = len(photos.CONDITIONS)
    return [count // n + (i < count % n) for i in range(n)]


def suite(
    name: str, count: int, seed: int = 0, mnist_test: Digits | None = None
) -> tuple[list[bytes], list[str]]:
    """The files of suite ``name`` (one of SUITES) and each file's kind (non-digits) or text
    (numbers); photos spread evenly over photos.CONDITIONS, in their order. Numbers need
    ``mnist_test``: (N x 28 x 28 uint8 MNIST test digits, their labels)."""
    if name not in SUITES:
        raise ValueError(f"no suite {name!r}: one of {', '.join(SUITES)}")
    what, how = name.split("/")
    files: list[bytes] = []
    tags: list[str] = []
    if what == "numbers":
        if mnist_test is None:
            raise ValueError("the numbers suites need mnist_test (digits, labels)")
        digits, labels = mnist_test
        if how == "canvas":
            return number_canvases(count, seed, digits, labels)
        for condition, n in zip(photos.CONDITIONS, _split(count), strict=True):
            got, texts = number_photos(condition, n, seed, digits, labels)
            files += got
            tags += texts
        return files, tags
    if how == "canvas":
        return non_digit_canvases(count, seed), non_digit_kinds(count)
    for i, (condition, n) in enumerate(zip(photos.CONDITIONS, _split(count), strict=True)):
        files += non_digit_photos(condition, n, seed)
        tags += non_digit_kinds(n, i)
    return files, tags
