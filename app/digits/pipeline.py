"""A request's uploads -> N x 28 x 28 uint8 digits, and why any of them could not be used.

Each upload is decoded to its luminance (8-bit greyscale PNGs without transparency or EXIF by
libspng, ~5x faster than Pillow for a 28x28 file; everything else by Pillow). Frames at least
PHOTO_MIN_SIDE on their shorter side are photos or pages, read one by one by app/digits/page.py;
smaller ones are digit crops, grouped by shape into stacks that go through app/digits/ink.py's
steps together (a request of 64 MNIST-like digits costs a few microseconds per image). A crop
in which no digit stands out is read as a page too when it is big enough to be one (a small
photo). Both end in app/digits/frame.py's MNIST framing.

The model gets the digits as uint8 (what the model owner takes through shared memory); MNIST
digits are k/255 exactly, so they survive that rounding unchanged.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from app.digits.decode import (
    ImageLimits,
    ImageRejected,
    blank,
    check_pixels,
    decode_image,
    png_size,
)
from app.digits.frame import frame
from app.digits.ink import crop_ink
from app.digits.luminance import luminance
from app.digits.page import page_ink
from app.digits.sizes import PHOTO_MIN_SIDE, PLANE_MIN_SIDE, WORK_MAX_SIDE
from app.failures import Failure
from models.framing import FRAME

try:  # the fast decoder is an optimisation: without its wheel, Pillow decodes everything
    import pyspng
except ImportError:  # pragma: no cover
    pyspng = None


@dataclass(frozen=True)
class Rejection:
    """An upload that could not be used: its index, why, and which failure that is."""

    index: int
    detail: str
    failure: Failure


def plain_gray_png(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a complete 8-bit greyscale PNG without tRNS or eXIf, else None.

    The chunk names are looked for anywhere in the file: a false match inside compressed
    pixels only sends that file to Pillow, which handles every PNG.
    """
    size = png_size(data)
    if size is None or data[-8:-4] != b"IEND" or data[24:26] != b"\x08\x00":  # 8-bit grey
        return None
    return None if b"tRNS" in data or b"eXIf" in data else size


def gray(data: bytes, limits: ImageLimits) -> np.ndarray:
    """One upload's luminance: uint8 when decoded by the fast path, else float32 in [0, 1]."""
    size = plain_gray_png(data)
    if size is not None and pyspng is not None:
        check_pixels(*size, limits)
        try:
            pixels: np.ndarray = pyspng.load(data)
        except Exception:  # corrupt: Pillow gives the error message users know
            pixels = np.empty((0, 0), np.uint8)
        if pixels.shape == (size[1], size[0]):
            return pixels
    return luminance(decode_image(data, limits))


def _as_float(g: np.ndarray) -> np.ndarray:
    """Fast-decoded (uint8) images as float32 luminance, as Pillow's path makes it."""
    return g.astype(np.float32) / 255 if g.dtype == np.uint8 else g


def to_uint8(digit: np.ndarray) -> np.ndarray:
    """A float digit in [0, 1] as the uint8 the model takes."""
    return np.rint(digit * 255).astype(np.uint8)


def _stacked(images: list[np.ndarray], members: list[int]) -> np.ndarray:
    """The same-shape ``images[members]`` as one float32 stack (uint8 ones converted at once;
    np.stack costs more than the rest of a 28x28 digit's steps, so one image is a view)."""
    if len(members) == 1:
        return _as_float(images[members[0]][None])
    return _as_float(np.stack([images[i] for i in members]))


def _crops(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same-shape crops -> their digits and which were found."""
    return frame(*crop_ink(stack))


def _page(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """A page -> its digit, and whether one was found."""
    ink = page_ink(gray)
    if ink is None:
        return np.zeros((FRAME, FRAME), np.float32), False
    digits, found = frame(ink[None])
    return digits[0], bool(found[0])


def digits_from_luminance(grays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Luminance images (uint8 as decoded fast, or float32 in [0, 1]) -> N x FRAME x FRAME
    float32 digits (zeros where none), and the indices of the images with no digit."""
    images = [
        luminance(Image.fromarray(g)) if g.dtype == np.uint8 and max(g.shape) > WORK_MAX_SIDE
        else g  # Pillow's path shrinks big images first: so does this one
        for g in grays
    ]  # fmt: skip
    groups: dict[tuple[int, ...] | None, list[int]] = {}  # crops by shape and dtype; pages
    for i, g in enumerate(images):
        small = min(g.shape) < PHOTO_MIN_SIDE
        groups.setdefault((*g.shape, g.dtype == np.uint8) if small else None, []).append(i)
    pages = groups.pop(None, [])
    crops = [(members, *_crops(_stacked(images, members))) for members in groups.values()]
    if len(crops) == 1 and len(crops[0][0]) == len(images):  # one stack, in order
        digits = crops[0][1]
    else:
        digits = np.zeros((len(images), FRAME, FRAME), np.float32)
        for members, found_digits, _ in crops:
            digits[members] = found_digits
    for members, _, found in crops:  # no digit in a crop: perhaps a small photo
        pages += [i for i, ok in zip(members, found.tolist(), strict=True) if not ok]
    missing: list[int] = []
    for i in sorted(pages):
        if min(images[i].shape) < PLANE_MIN_SIDE:  # a crop too small to be a page
            missing.append(i)
            continue
        digits[i], ok = _page(_as_float(images[i]))
        if not ok:
            missing.append(i)
    return digits, missing


def to_digits(datas: list[bytes], limits: ImageLimits) -> tuple[np.ndarray, list[Rejection]]:
    """Every upload -> N x 28 x 28 uint8 digits (zeros where rejected), and the rejections."""
    grays: list[np.ndarray] = []
    decoded: list[int] = []
    rejections: list[Rejection] = []
    for i, data in enumerate(datas):
        try:
            grays.append(gray(data, limits))
            decoded.append(i)
        except ImageRejected as exc:
            rejections.append(Rejection(i, exc.detail, exc.failure))
    if not grays:
        return np.zeros((len(datas), FRAME, FRAME), np.uint8), rejections
    found, missing = digits_from_luminance(grays)
    if len(grays) == len(datas):
        digits = to_uint8(found)
    else:
        digits = np.zeros((len(datas), FRAME, FRAME), np.uint8)
        digits[decoded] = to_uint8(found)
    if missing:
        none = blank()
        rejections += [Rejection(decoded[j], none.detail, none.failure) for j in missing]
        rejections.sort(key=lambda r: r.index)
    return digits, rejections
