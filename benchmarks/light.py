"""Light for the phone-photo suite: how brightly each part of the frame is lit, and glare.

Light varies slowly, so it is computed at a quarter of the frame's resolution and enlarged
(a shadow's hardest edge is then ~4 px wide, about what a phone sees of a hand or a phone held
a hand's width above the page). Every photo gets an exposure, a colour cast the white balance
left, a gradient across the page, sometimes a hot spot from a lamp, and vignetting. The
``shadow`` condition adds a cast shadow 30-60% darker (and a little bluer: the shade is lit by
the sky or the room, not the lamp): a straight edge, a blob, or a hand with its fingers; the
``glare`` condition a specular reflection that washes out part of the page; ``dim`` a dark, warm
exposure (a desk lamp at night; the sensor's noise is turned up elsewhere).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks.noise import field

LOW = 4  # light is computed at 1/LOW of the frame's resolution
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Light:
    """Which of the condition-specific lights a photo gets."""

    shadow: bool = False
    glare: bool = False
    dim: bool = False


def _half_plane(
    x: np.ndarray, y: np.ndarray, centre: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Everything past a straight edge (a person, a wall, a lamp arm), 25-60% of the frame."""
    a = rng.uniform(0, 2 * np.pi)
    s = x * np.cos(a) + y * np.sin(a)
    t = float(np.quantile(s, 1 - rng.uniform(0.25, 0.6)))
    if rng.random() < 0.45:  # over the digit: the edge moves past the digit's middle
        t = min(t, float(centre[0] * np.cos(a) + centre[1] * np.sin(a)) - rng.uniform(0, 8))
    return np.clip(s - t + 0.5, 0, 1).astype(np.float32)


def _blob(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A rounded polygon reaching in from an edge (a phone, a head)."""
    h, w = shape
    side = int(rng.integers(4))
    along = rng.uniform(0.2, 0.8)
    edge = [(along * w, 0), (w, along * h), (along * w, h), (0, along * h)][side]
    radius = rng.uniform(0.5, 0.8) * min(w, h)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(5, 9))))
    reach = radius * rng.uniform(0.75, 1.15, len(angles))
    poly = np.stack([edge[0] + reach * np.cos(angles), edge[1] + reach * np.sin(angles)], 1)
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255


def _hand(shape: tuple[int, int], centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A hand's shadow: an arm and palm from an edge of the frame, four fingers and a thumb."""
    h, w = shape
    m = min(w, h)
    side = int(rng.integers(4))
    along = rng.uniform(0.2, 0.8)
    base = np.array(
        [
            (along * w, -0.05 * h),
            (1.05 * w, along * h),
            (along * w, 1.05 * h),
            (-0.05 * w, along * h),
        ][side]
    )
    aim = (
        centre
        if rng.random() < 0.5
        else np.array([rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h])
    )
    d = (aim - base) / max(float(np.hypot(*(aim - base))), 1e-6)
    perp = np.array([-d[1], d[0]])
    palm_len, palm_w = rng.uniform(0.3, 0.45) * m, rng.uniform(0.28, 0.4) * m
    palm = base + d * rng.uniform(0.15, 0.45) * m
    mask = np.zeros(shape, np.uint8)

    def pt(p: np.ndarray) -> tuple[int, int]:
        return round(float(p[0]) * 16), round(float(p[1]) * 16)

    def limb(start: np.ndarray, direction: np.ndarray, length: float, width: float) -> None:
        cv2.line(
            mask,
            pt(start),
            pt(start + direction * length),
            255,
            max(1, round(width)),
            cv2.LINE_AA,
            4,
        )

    angle = float(np.degrees(np.arctan2(d[1], d[0])))
    cv2.ellipse(
        mask,
        pt(palm),
        (round(palm_len / 2 * 16), round(palm_w / 2 * 16)),
        angle,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        4,
    )
    limb(palm, -d, m, palm_w * 0.8)  # the arm, out of the frame
    finger, thick, fan = rng.uniform(0.28, 0.4) * m, rng.uniform(0.07, 0.1) * m, rng.uniform(4, 12)
    for k, reach in enumerate((0.8, 1.0, 0.95, 0.75)):
        turn = np.radians((k - 1.5) * fan)
        rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        start = palm + d * palm_len * 0.38 + perp * (k - 1.5) / 1.5 * palm_w * 0.36
        limb(start, rot @ d, finger * reach, thick)
    sign = 1 if rng.random() < 0.5 else -1
    turn = np.radians(sign * rng.uniform(40, 70))
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    limb(palm + perp * sign * palm_w * 0.4, rot @ d, rng.uniform(0.2, 0.3) * m, thick * 1.2)
    return mask.astype(np.float32) / 255


def _glare(
    x: np.ndarray, y: np.ndarray, size: tuple[int, int], digit: Box, rng: np.random.Generator
) -> np.ndarray:
    """A lamp's or a window's reflection: a bright core fading into a wide halo, its outline
    uneven as the paper's surface is; half the time on the edge of the digit's box."""
    w, h = size
    if rng.random() < 0.5:
        x0, y0, x1, y1 = digit
        t = rng.uniform(0, 1)
        edges = [(x0 + t * (x1 - x0), y0), (x1, y0 + t * (y1 - y0))]
        edges += [(x0 + t * (x1 - x0), y1), (x0, y0 + t * (y1 - y0))]
        cx, cy = edges[int(rng.integers(4))]
    else:
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    rx = rng.uniform(0.1, 0.35) * min(w, h)
    ry = rx * rng.uniform(0.3, 1.0)  # a tube light's reflection is long and thin
    a = rng.uniform(0, np.pi)
    u = ((x - cx) * np.cos(a) + (y - cy) * np.sin(a)) / rx
    v = (-(x - cx) * np.sin(a) + (y - cy) * np.cos(a)) / ry
    q = (u * u + v * v) * np.exp(0.25 * field(u.shape, (4, 4), rng))
    core = np.exp(-(q ** rng.uniform(0.8, 1.6)))
    return (rng.uniform(0.35, 1.0) * (core + 0.25 * np.exp(-q / 8))).astype(np.float32)


def lighting(
    size: tuple[int, int], light: Light, digit: Box, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Illumination (multiplying reflectance) and glare (added on top, or None), both h x w x 3
    at 1/LOW of a frame of ``size`` (w, h) whose digit's ink is at ``digit`` (frame pixels)."""
    w, h = size
    lw, lh = -(-w // LOW), -(-h // LOW)
    x = ((np.arange(lw, dtype=np.float32) + 0.5) * LOW)[None, :]
    y = ((np.arange(lh, dtype=np.float32) + 0.5) * LOW)[:, None]
    half_diag = float(np.hypot(w, h)) / 2
    a = rng.uniform(0, 2 * np.pi)
    slope = rng.uniform(0, 0.3) / half_diag
    level = 1 + slope * ((x - w / 2) * np.cos(a) + (y - h / 2) * np.sin(a))
    if rng.random() < 0.4:  # a lamp's hot spot
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = 2 * (rng.uniform(0.2, 0.6) * half_diag) ** 2
        spot = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / spread)
        level = level * (1 + rng.uniform(0.05, 0.25) * spot)
    corner = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / half_diag**2
    level = level * (1 - rng.uniform(0.05, 0.3) * corner)  # vignetting
    # A sheet is never flat: its cockles and waves catch the light a little unevenly.
    cells = (max(2, lh // 40), max(2, lw // 40))
    level = level * (1 + field((lh, lw), cells, rng) * rng.uniform(0.004, 0.015))
    level = level * (1 + field((lh, lw), (lh // 6, lw // 6), rng) * rng.uniform(0.002, 0.006))
    level = level / level.max()  # auto exposure: the brightest paper is at the exposure
    if light.dim:
        exposure = rng.uniform(0.36, 0.58)
        cast = np.array([1.0, rng.uniform(0.84, 0.94), rng.uniform(0.6, 0.8)])
    else:
        exposure = rng.uniform(0.82, 1.08)
        # What auto white balance leaves: mostly along warm-cool, a little green-magenta.
        warm, green = rng.normal(0.01, 0.03), rng.normal(0.003, 0.008)
        cast = np.array([1 + warm, 1 + green, 1 - warm])
    illum = (exposure * level)[..., None] * cast.astype(np.float32)
    centre = np.array([(digit[0] + digit[2]) / 2, (digit[1] + digit[3]) / 2]) / LOW
    if light.shadow:
        kind = rng.random()
        if kind < 0.4:
            mask = _half_plane(x / LOW, y / LOW, centre, rng)
        elif kind < 0.65:
            mask = _blob((lh, lw), rng)
        else:
            mask = _hand((lh, lw), centre, rng)
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 5.0))
        depth = rng.uniform(0.3, 0.6)
        illum *= 1 - depth * mask[..., None] * np.array([1.04, 1.0, 0.9], np.float32)
    glare = None
    if light.glare:
        tint = np.array([1.0, 0.99, 0.95], np.float32) * np.float32(exposure)
        glare = _glare(x, y, size, digit, rng)[..., None] * tint
    return illum.astype(np.float32), glare


def enlarge(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A map made at 1/LOW resolution, at the frame's ``size`` (w, h)."""
    return cv2.resize(low, size, interpolation=cv2.INTER_LINEAR)
