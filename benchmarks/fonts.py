"""Digits rendered from the fonts on this machine, with pen-like distortions, as upload files.

Handwriting-like fonts are used where installed (on Debian: fonts-humor-sans,
fonts-dkg-handwriting, fonts-comic-neue, fonts-urw-base35's Z003); every other font with
digits is used too, and the benchmark reports both groups. Each rendering gets a random
rotation and shear, an elastic wobble of the strokes, a pen width change, and a size and place
on its page, then is saved as a PNG (dark ink on light paper).
"""

import re
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from scipy import ndimage

HANDWRITING = re.compile(r"humor|dkg|comic|z003|chancery|hand|script|marker|brush", re.I)
# Fonts whose digits are symbols or not Latin digits at all.
SKIP = re.compile(r"symbol|dingbat|emoji|math|d050000l|standard ?symbols", re.I)
FONT_SUFFIXES = (".ttf", ".otf", ".pfb", ".t1")
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


@dataclass(frozen=True)
class Font:
    """A font file on this machine and whether it looks handwritten."""

    path: Path
    family: str
    handwriting: bool


def _fc_list() -> list[tuple[Path, str]]:
    try:
        out = subprocess.run(
            ["fc-list", "--format", "%{file}\t%{family[0]}\n"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):  # no fontconfig: walk the usual folders
        files = [p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*")]
        return [(p, p.stem) for p in files if p.suffix.lower() in FONT_SUFFIXES]
    pairs = (line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return [(Path(f), fam) for f, fam in pairs]


def installed_fonts() -> list[Font]:
    """One font per (family, style) file that Pillow can load and that draws the ten digits."""
    seen: set[str] = set()
    fonts = []
    for path, family in sorted(_fc_list()):
        key = path.stem.lower()
        if path.suffix.lower() not in FONT_SUFFIXES or key in seen or SKIP.search(str(path)):
            continue
        seen.add(key)
        try:
            font = ImageFont.truetype(str(path), 64)
        except OSError:
            continue
        if not _draws_digits(font):
            continue
        fonts.append(Font(path, family, bool(HANDWRITING.search(f"{family} {path.stem}"))))
    return fonts


def _draws_digits(font: ImageFont.FreeTypeFont) -> bool:
    """Each digit has ink and no two digits look the same (a font without digits draws boxes)."""
    glyphs = [np.asarray(_glyph(font, str(d))) for d in range(10)]
    if any(g.max() == 0 for g in glyphs):
        return False
    sizes = {g.shape for g in glyphs}
    return len(sizes) > 1 or len({g.tobytes() for g in glyphs}) == 10


def _glyph(font: ImageFont.FreeTypeFont, text: str) -> Image.Image:
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (int(right - left) + 8, int(bottom - top) + 8), 0)
    ImageDraw.Draw(img).text((4 - left, 4 - top), text, fill=255, font=font)
    return img


def _elastic(a: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Simard et al.'s elastic distortion: a smoothed random displacement field."""
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, a.shape), sigma) * alpha
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, a.shape), sigma) * alpha
    y, x = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
    return ndimage.map_coordinates(a, (y + dy, x + dx), order=1, mode="constant")


def render_digit(font: Font, digit: int, rng: np.random.Generator) -> bytes:
    """One digit in ``font`` with pen-like distortions, as a PNG file (dark on light)."""
    face = ImageFont.truetype(str(font.path), int(rng.integers(56, 96)))
    glyph = _glyph(face, str(digit))
    pad = glyph.height // 3
    img = Image.new("L", (glyph.width + 2 * pad, glyph.height + 2 * pad), 0)
    img.paste(glyph, (pad, pad))
    # Pen width: grow or shrink the strokes by a pixel or two (a third of the renderings each).
    pen = int(rng.integers(-1, 2))
    if pen > 0:
        img = img.filter(ImageFilter.MaxFilter(2 * pen + 1))
    elif pen < 0:
        thinner = img.filter(ImageFilter.MinFilter(3))
        img = thinner if np.asarray(thinner).max() > 0 else img
    shear = float(rng.uniform(-0.25, 0.25))
    img = img.transform(
        img.size,
        Image.Transform.AFFINE,
        (1, shear, -shear * img.height / 2, 0, 1, 0),
        Image.Resampling.BILINEAR,
    )
    img = img.rotate(float(rng.uniform(-12, 12)), Image.Resampling.BILINEAR, expand=True)
    a = np.asarray(img, dtype=np.float32)
    a = _elastic(a, rng, alpha=a.shape[0] * 0.03, sigma=a.shape[0] * 0.08)
    paper = rng.uniform(200, 255)
    ink = rng.uniform(0, 80)
    page = paper - (paper - ink) * a / 255
    page += rng.normal(0, 2.0, page.shape)
    out = Image.fromarray(page.clip(0, 255).astype(np.uint8))
    buf = BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def render_suite(
    fonts: list[Font], per_digit: int, seed: int = 0
) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Every font x digit x ``per_digit`` renderings: files, labels, and the handwriting flags."""
    rng = np.random.default_rng(seed)
    files, labels, hand = [], [], []
    for font in fonts:
        for digit in range(10):
            for _ in range(per_digit):
                files.append(render_digit(font, digit, rng))
                labels.append(digit)
                hand.append(font.handwriting)
    return files, np.array(labels, np.int64), np.array(hand, bool)
