"""MNIST-C: the 15 corruptions of Mu and Gilmer (2019), arXiv:1906.02337, in numpy/scipy/skimage.

Each corruption runs at the single severity the paper's dataset used, i.e. the default ``severity``
of the function in the authors' ``corruptions.py`` (github.com/google-research/mnist-c). This is a
re-implementation, not the reference: no ImageMagick or OpenCV, and randomness comes from a
``numpy.random.Generator`` seeded by ``(seed, index of the corruption)`` and drawn for the whole
batch at once, so the output is deterministic for a given array and seed but not sample-for-sample
identical to the published dataset. All arithmetic is on floats in [0, 1]; the result is rounded
to the nearest uint8 (the reference returned unrounded float32).

Per corruption, what it does, then where it departs from the reference:

- shot_noise: Poisson noise, ``poisson(3 x) / 3`` (severity 5). Same; black stays black.
- impulse_noise: salt-and-pepper on 17% of pixels, half each (severity 4). Each pixel is flipped
  independently (modern ``skimage.util.random_noise``); the reference's old skimage drew a fixed
  count of coordinates that never hit the last row or column.
- glass_blur: blur, swap each pixel with itself or its up/left/up-left neighbour (2 passes),
  blur (severity 1: sigma 0.7, delta 1, 2 passes). Same, including the blur being vertical only:
  the reference passed a 2-D image with ``multichannel=True`` to old skimage, which made sigma
  (0.7, 0), i.e. no blur across columns. An isotropic blur would be a one-line change here.
- motion_blur: one-sided Gaussian line kernel (21 taps, sigma 3) at a random angle in [-45, 45)
  degrees (severity 1: radius 10, sigma 3). Re-implements ImageMagick's MotionBlurImage taps and
  edge-replicating border instead of calling Wand.
- shear: affine shear by 0.4 rad about the centre, random sign (severity 2). Same inverse map as
  the reference's skimage of 2019 (``[[1, -sin s], [0, cos s]]`` in x/y), built explicitly
  because newer skimage defines ``shear`` differently.
- scale: shrink to 0.7x about the centre (severity 3, inverse map scale 1/0.7). Same.
- rotate: rotate by 0.4 rad about the centre, random sign (severity 2). Same.
- brightness: +0.5 on HSV value (severity 5). For grey images that is ``clip(x + 0.5)``, computed
  directly instead of going through RGB/HSV.
- translate: shift by 3 px in x and 3 px in y, random signs (severity 3). Same; ink may leave.
- stripe: invert the 7 leftmost and 7 rightmost columns. Same.
- fog: add 3x a diamond-square plasma fractal crop, rescale by max/(max + 3) (severity 5: 3.0,
  wibble decay 1.4). Same algorithm, vectorised over images.
- spatter: mud blobs of grey 63 where blurred Gaussian noise exceeds its mean over a wide area
  (severity 4: mean 0.65, sd 0.3, sigmas 1 and 1.5). Same recipe (the reference's "mud" branch).
- dotted_line: a random left-to-right line, every other 2-column block kept. Same.
- zigzag: a zigzag (tooth length and width 2) across columns 2..25 at a random height and slope.
  Same, including the reference's odd last endpoint.
- canny_edges: ``skimage.feature.canny`` (sigma 1, thresholds 0.1/0.2) as a 0/255 image. Same.
"""

from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage import feature, transform

CORRUPTIONS: tuple[str, ...] = (
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "shear",
    "scale",
    "rotate",
    "brightness",
    "translate",
    "stripe",
    "fog",
    "spatter",
    "dotted_line",
    "zigzag",
    "canny_edges",
)

_SIDE = 28
_CENTRE = (_SIDE - 1) / 2  # 13.5: the reference keeps this point fixed in its affine maps
# Chunks bound memory: the fog's plasma fractal is 256 x 256 per image (~70 MB of float64 per
# chunk), and motion blur's padded copies and per-tap gathers grow with the batch.
_FOG_CHUNK = 128
_MOTION_CHUNK = 1024

Array = np.ndarray


def _random_signs(rng: np.random.Generator, shape: int | tuple[int, ...]) -> Array:
    """Independent -1/+1 draws, as the reference's ``np.random.choice([-1, 1])``."""
    return rng.integers(0, 2, size=shape) * 2 - 1


def _warp_grouped(x: Array, matrices: list[Array], which: Array) -> Array:
    """Warp image ``i`` by the inverse map ``matrices[which[i]]`` (bilinear, black outside)."""
    out = np.zeros_like(x)
    for k, matrix in enumerate(matrices):
        idx = np.flatnonzero(which == k)
        if idx.size == 0:
            continue
        # warp treats a trailing axis as channels, so one call handles every image of the group.
        stack = np.moveaxis(x[idx], 0, -1)
        warped = transform.warp(stack, transform.AffineTransform(matrix=matrix), order=1)
        out[idx] = np.moveaxis(warped.reshape(_SIDE, _SIDE, idx.size), -1, 0)
    return out


def _about_centre(linear: Array) -> Array:
    """The 3x3 affine matrix applying ``linear`` (2x2, in x/y) while keeping the centre fixed."""
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = _CENTRE - linear @ np.array([_CENTRE, _CENTRE])
    return matrix


def _shot_noise(x: Array, rng: np.random.Generator) -> Array:
    """Poisson noise with 3 photons at full brightness."""
    photons = 3.0
    return rng.poisson(x * photons) / photons


def _impulse_noise(x: Array, rng: np.random.Generator) -> Array:
    """Salt and pepper on 17% of the pixels."""
    flipped = rng.random(x.shape) < 0.17
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out


def _glass_blur(x: Array, rng: np.random.Generator) -> Array:
    """Vertical Gaussian blur, local pixel shuffling, blur again."""
    # (images, rows, cols): the reference's effective sigma was (0.7, 0), see the module docstring.
    sigma = (0.0, 0.7, 0.0)
    delta, passes = 1, 2
    n = x.shape[0]
    # The reference stores the first blur as uint8 (truncating) before shuffling.
    blurred = np.floor(ndimage.gaussian_filter(x, sigma, mode="nearest") * 255)
    flat = blurred.reshape(n, -1)
    span = range(_SIDE - delta, delta, -1)
    steps = passes * len(span) ** 2
    # int8 draws: there are 1352 steps per image, so 64-bit ones would cost ~100 MB per 10k.
    swap = rng.integers(0, 2, size=(steps, n), dtype=np.int8)
    # randint(-delta, delta) excludes +delta, so partners lie up/left; combined with the
    # descending scan a value can travel far in one pass. Kept: it is what MNIST-C contains.
    dy = rng.integers(-delta, delta, size=(steps, n), dtype=np.int8) * swap
    dx = rng.integers(-delta, delta, size=(steps, n), dtype=np.int8) * swap
    rows = np.arange(n)
    # Sequential by nature (later swaps see earlier ones), so loop over pixels, vectorise images.
    step = 0
    for _ in range(passes):
        for h in span:
            for w in span:
                here = h * _SIDE + w
                there = here + dy[step].astype(np.intp) * _SIDE + dx[step]
                a = flat[rows, here]
                flat[rows, here] = flat[rows, there]
                flat[rows, there] = a
                step += 1
    return ndimage.gaussian_filter(blurred / 255, sigma, mode="nearest")


def _motion_blur(x: Array, rng: np.random.Generator) -> Array:
    """ImageMagick-style motion blur: a one-sided Gaussian line kernel at a random angle."""
    radius, sigma = 10, 3.0
    taps = 2 * radius + 1  # ImageMagick's GetOptimalKernelWidth1D for a positive radius
    i = np.arange(taps)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    weights /= weights.sum()
    angle = np.deg2rad(rng.uniform(-45, 45, size=x.shape[0]))
    # ImageMagick rounds each tap to a whole pixel (ceil(v - 0.5)), column along cos, row along sin.
    dcol = np.ceil(i[None, :] * np.cos(angle)[:, None] - 0.5).astype(np.intp)
    drow = np.ceil(i[None, :] * np.sin(angle)[:, None] - 0.5).astype(np.intp)
    # Pad by exactly the reach of the taps (columns only ever look right, cos >= 0.7).
    reach_r, reach_c = int(np.abs(drow).max()), int(dcol.max())
    out = np.empty_like(x)
    for start in range(0, x.shape[0], _MOTION_CHUNK):
        part = slice(start, start + _MOTION_CHUNK)
        padded = np.pad(x[part], ((0, 0), (reach_r, reach_r), (0, reach_c)), mode="edge")
        images = np.arange(padded.shape[0])[:, None, None]
        acc = np.zeros_like(x[part])
        # A gather per tap: the kernel differs per image, so a shared convolution cannot be used.
        for t in range(taps):
            r = (np.arange(_SIDE)[None, :] + reach_r + drow[part, t : t + 1])[:, :, None]
            c = (np.arange(_SIDE)[None, :] + dcol[part, t : t + 1])[:, None, :]
            acc += weights[t] * padded[images, r, c]
        out[part] = acc
    return out


def _shear(x: Array, rng: np.random.Generator) -> Array:
    """Shear by 0.4 rad about the centre, in a random direction."""
    s = 0.4
    # Old skimage's AffineTransform(shear=s): x' = x - sin(s) y, y' = cos(s) y.
    matrices = [_about_centre(np.array([[1.0, -np.sin(v)], [0.0, np.cos(v)]])) for v in (-s, s)]
    return _warp_grouped(x, matrices, (_random_signs(rng, x.shape[0]) + 1) // 2)


def _scale(x: Array, rng: np.random.Generator) -> Array:
    """Shrink to 0.7 of the size about the centre (the inverse map scales by 1/0.7)."""
    del rng  # deterministic
    matrix = _about_centre(np.eye(2) / 0.7)
    return _warp_grouped(x, [matrix], np.zeros(x.shape[0], dtype=np.intp))


def _rotate(x: Array, rng: np.random.Generator) -> Array:
    """Rotate by 0.4 rad about the centre, in a random direction."""
    r = 0.4
    matrices = [
        _about_centre(np.array([[np.cos(v), -np.sin(v)], [np.sin(v), np.cos(v)]])) for v in (-r, r)
    ]
    return _warp_grouped(x, matrices, (_random_signs(rng, x.shape[0]) + 1) // 2)


def _brightness(x: Array, rng: np.random.Generator) -> Array:
    """Raise HSV value by 0.5, which for a grey pixel is its intensity."""
    del rng  # deterministic
    return x + 0.5


def _translate(x: Array, rng: np.random.Generator) -> Array:
    """Shift by 3 px horizontally and 3 px vertically, each in a random direction."""
    d = 3.0
    signs = _random_signs(rng, (x.shape[0], 2))
    matrices = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            matrix = np.eye(3)
            matrix[:2, 2] = (d * sx, d * sy)
            matrices.append(matrix)
    which = (signs[:, 0] + 1) + (signs[:, 1] + 1) // 2  # index into the (sx, sy) order above
    return _warp_grouped(x, matrices, which)


def _stripe(x: Array, rng: np.random.Generator) -> Array:
    """Invert the 7 leftmost and 7 rightmost columns."""
    del rng  # deterministic
    out = x.copy()
    out[:, :, :7] = 1.0 - out[:, :, :7]
    out[:, :, 21:] = 1.0 - out[:, :, 21:]
    return out


def _plasma_fractal(n: int, rng: np.random.Generator, size: int, decay: float) -> Array:
    """The top-left 28 x 28 of ``n`` diamond-square height maps, ``size`` x ``size``, in [0, 1]."""
    # The reference fills one strided array in place; here each level's four point sets (corners,
    # edge midpoints, centres) are computed as contiguous arrays and interleaved, which is the
    # same recurrence (toroidal neighbours included) but several times faster.
    grid = np.zeros((n, 1, 1))
    wibble = 100.0

    def wibbled_mean(total: Array) -> Array:
        # The reference's noise amplitude is wibble squared; kept, it sets the fog's texture.
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    step = size
    while True:
        centres = wibbled_mean(
            grid
            + np.roll(grid, -1, axis=1)
            + np.roll(grid, -1, axis=2)
            + np.roll(grid, (-1, -1), axis=(1, 2))
        )
        row_mids = wibbled_mean(
            centres + np.roll(centres, 1, axis=1) + grid + np.roll(grid, -1, axis=2)
        )
        col_mids = wibbled_mean(
            centres + np.roll(centres, 1, axis=2) + grid + np.roll(grid, -1, axis=1)
        )
        step //= 2
        wibble /= decay
        if step < 2:
            break
        k = grid.shape[1]
        finer = np.empty((n, k, 2, k, 2))
        finer[:, :, 0, :, 0] = grid
        finer[:, :, 0, :, 1] = row_mids
        finer[:, :, 1, :, 0] = col_mids
        finer[:, :, 1, :, 1] = centres
        grid = finer.reshape(n, 2 * k, 2 * k)
    # Finest level: only the crop is needed as an image, but the min/max are over the whole map.
    parts = (grid, row_mids, col_mids, centres)
    low = np.min([p.min(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
    high = np.max([p.max(axis=(1, 2)) for p in parts], axis=0)[:, None, None]
    half = _SIDE // 2
    crop = np.empty((n, half, 2, half, 2))
    for (dr, dc), part in zip(((0, 0), (0, 1), (1, 0), (1, 1)), parts, strict=True):
        crop[:, :, dr, :, dc] = part[:, :half, :half]
    return (crop.reshape(n, _SIDE, _SIDE) - low) / (high - low)


def _fog(x: Array, rng: np.random.Generator) -> Array:
    """Add a plasma-fractal fog of weight 3, then rescale so the digit's peak stays bounded."""
    weight, decay = 3.0, 1.4
    out = np.empty_like(x)
    for start in range(0, x.shape[0], _FOG_CHUNK):
        chunk = x[start : start + _FOG_CHUNK]
        # The whole 256 map is needed: its global min/max set the scale of the 28 x 28 crop.
        fog = _plasma_fractal(chunk.shape[0], rng, 256, decay)
        peak = chunk.max(axis=(1, 2), keepdims=True)
        out[start : start + _FOG_CHUNK] = (chunk + weight * fog) * peak / (peak + weight)
    return out


def _spatter(x: Array, rng: np.random.Generator) -> Array:
    """Mud: grey blobs where smoothed noise stays above its mean over a wide neighbourhood."""
    mean, sd, sigma_noise, threshold, sigma_mask = 0.65, 0.3, 1.0, 0.65, 1.5
    mud_grey = 63 / 255
    liquid = rng.normal(mean, sd, size=x.shape)
    liquid = ndimage.gaussian_filter(liquid, (0, sigma_noise, sigma_noise), mode="nearest")
    wet = (liquid > threshold).astype(np.float64)
    mask = ndimage.gaussian_filter(wet, (0, sigma_mask, sigma_mask), mode="nearest")
    # Only the cores of large wet regions survive, which makes blobs rather than speckle.
    mask[mask < 0.8] = 0.0
    return x * (1 - mask) + mud_grey * mask


def _line_from_points(c0: Array, r0: Array, c1: Array, r1: Array) -> Array:
    """Per image, an anti-aliased line through (c0, r0)-(c1, r1) drawn over its column span."""
    cols = rows = np.arange(_SIDE, dtype=np.float64)
    c0, r0, c1, r1 = (np.asarray(v, dtype=np.float64)[:, None] for v in (c0, r0, c1, r1))
    centre_row = (r1 - r0) / (c1 - c0) * (cols[None, :] - c0) + r0  # (n, cols)
    # Vertical distance to the line, fading as 1 + log(1 - d / 2.3): full at d = 0, gone at 2.3.
    dist = np.abs(rows[None, :, None] - centre_row[:, None, :])  # (n, rows, cols)
    dist = np.minimum(dist, 2.3 - 1e-10)
    ink = np.clip(np.log(1 - dist / 2.3) + 1, 0, 1)
    inside = (cols[None, :] >= np.floor(c0)) & (cols[None, :] < np.ceil(c1))
    return ink * inside[:, None, :]


def _dotted_line(x: Array, rng: np.random.Generator) -> Array:
    """A random line across the whole width, drawn in 2-column dots."""
    r0, r1 = rng.integers(0, _SIDE - 1, size=(2, x.shape[0]))
    line = _line_from_points(np.zeros(x.shape[0]), r0, np.full(x.shape[0], 27.0), r1)
    # Columns 0-1, 4-5, ... are dropped, 2-3, 6-7, ... kept, as in the reference.
    keep = (np.arange(_SIDE) // 2) % 2 == 1
    return x + line * keep


def _zigzag(x: Array, rng: np.random.Generator) -> Array:
    """A zigzag of 2-px teeth from column 2 to 25 at a random height and tilt."""
    n = x.shape[0]
    a = b = 2.0  # tooth length and width
    c0, c1 = 2.0, 25.0
    r0 = np.asarray(rng.integers(0, _SIDE - 1, size=n), dtype=np.float64)
    r1 = r0 + rng.integers(-5, 5, size=n)
    theta = np.asarray(np.arctan((r1 - r0) / (c1 - c0)))
    length = np.asarray((c1 - c0) / np.cos(theta))
    # The tilt is at most atan(5/23), so length is in [23, 23.6]: every image gets the same
    # number of teeth, which lets all images share one (n, points) layout.
    teeth = {int((v - a) // (2 * a)) + 1 for v in length}
    if len(teeth) != 1:
        raise AssertionError(f"zigzags with different tooth counts: {teeth}")
    k = np.arange(teeth.pop())
    cs = np.concatenate([np.zeros((n, 1)), np.broadcast_to((2 * k + 1) * a, (n, k.size))], axis=1)
    rs = np.concatenate([np.zeros((n, 1)), np.broadcast_to((-1.0) ** k * b, (n, k.size))], axis=1)
    last_c = 2 * a * (length // (2 * a))
    tail = length != last_c
    if not tail.all():
        raise AssertionError("a zigzag ends exactly on a tooth")
    # The reference's closing point: (length, last tooth height / (2 * leftover length)).
    cs = np.concatenate([cs, length[:, None]], axis=1)
    rs = np.concatenate([rs, (rs[:, -1] / (2 * (length - last_c)))[:, None]], axis=1)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    cs, rs = cs * cos - rs * sin + c0, cs * sin + rs * cos + r0[:, None]
    ink = np.zeros_like(x)
    for s in range(cs.shape[1] - 1):
        ink += _line_from_points(cs[:, s], rs[:, s], cs[:, s + 1], rs[:, s + 1])
    return x + ink


def _canny_edges(x: Array, rng: np.random.Generator) -> Array:
    """Canny edge map (sigma 1, hysteresis 0.1/0.2) as white edges on black."""
    del rng  # deterministic
    # skimage's canny takes one 2-D image at a time.
    return np.stack([feature.canny(img) for img in x]).astype(np.float64)


_IMPLEMENTATIONS: dict[str, Callable[[Array, np.random.Generator], Array]] = {
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "glass_blur": _glass_blur,
    "motion_blur": _motion_blur,
    "shear": _shear,
    "scale": _scale,
    "rotate": _rotate,
    "brightness": _brightness,
    "translate": _translate,
    "stripe": _stripe,
    "fog": _fog,
    "spatter": _spatter,
    "dotted_line": _dotted_line,
    "zigzag": _zigzag,
    "canny_edges": _canny_edges,
}


def corrupt(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """N x 28 x 28 uint8 MNIST digits (white ink on black) -> the same shape, uint8, corrupted."""
    if name not in _IMPLEMENTATIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    if not isinstance(images, np.ndarray):
        raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
    if images.ndim != 3 or images.shape[1:] != (_SIDE, _SIDE):
        raise ValueError(f"images must be N x {_SIDE} x {_SIDE}, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if images.shape[0] == 0:
        return images.copy()
    # One stream per (seed, corruption), so corruptions do not share random draws.
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name)])
    x = images.astype(np.float64) / 255
    out = _IMPLEMENTATIONS[name](x, rng)
    return np.rint(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
