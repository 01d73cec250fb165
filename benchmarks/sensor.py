"""The phone's side of the phone-photo suite: lens blur, sensor noise, processing, JPEG, EXIF.

What a phone does to the light that reaches it: a lens a little out of focus and sometimes a
shaky hand; photosite noise, channel by channel, plus the blotchy colour noise and the paper's
fine grain that survive denoising (all stronger in the dark); a tone curve; 8 bits; the
sharpening phones apply; JPEG at the quality asked; and, where the phone was held sideways, the
pixels stored turned with the EXIF Orientation that turns them back.
"""

from io import BytesIO

import cv2
import numpy as np
from PIL import Image

from benchmarks import noise

# How to store an upright picture so that EXIF Orientation N shows it upright: the inverse of
# the transpose a viewer applies (quarter turns swap; flips and 180 degrees are their own).
_STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def blur(frame: np.ndarray, dim: bool, rng: np.random.Generator) -> np.ndarray:
    """The lens a little out of focus, and sometimes a shaky hand (more of both in dim light)."""
    sigma = rng.uniform(0.2, 1.8 if dim else 1.3)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    if rng.random() < (0.55 if dim else 0.2):
        length = rng.uniform(3, 10) if dim else rng.uniform(2, 6)
        k = int(np.ceil(length)) | 1
        kernel = np.zeros((k * 16, k * 16), np.float32)
        a = rng.uniform(0, np.pi)
        c, dx, dy = k * 8, np.cos(a) * length * 8, np.sin(a) * length * 8
        cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 16)
        taps = cv2.resize(kernel, (k, k), interpolation=cv2.INTER_AREA)
        frame = cv2.filter2D(frame, -1, taps / taps.sum())
    return frame


def develop(frame: np.ndarray, dim: bool, rng: np.random.Generator) -> np.ndarray:
    """Noise, tone curve, 8 bits and sharpening, as a phone's pipeline leaves them."""
    h, w = frame.shape[:2]
    level = rng.uniform(0.025, 0.05) if dim else rng.uniform(0.006, 0.02)
    grain = noise.normal(rng, (h, w, 3))  # each photosite's own noise, channel by channel
    # At half resolution: the blotchy colour noise denoising leaves, and the paper's fine grain.
    half = (-(-h // 2), -(-w // 2))
    coarse = noise.normal(rng, (*half, 3)) * np.float32(rng.uniform(0.4, 0.9))
    coarse += noise.normal(rng, half)[..., None] * np.float32(rng.uniform(0.3, 0.8))
    grain += cv2.pyrUp(coarse)[:h, :w]
    # Darker pixels are noisier: fewer photons, and the tone curve stretches the shadows.
    grain *= cv2.addWeighted(frame, -0.9 * level, frame, 0, 1.45 * level)
    frame += grain
    np.maximum(frame, 0, out=frame)
    out = cv2.convertScaleAbs(frame, alpha=255)
    v = np.arange(256) / 255
    curve = v ** rng.uniform(0.85, 1.15)
    curve = curve + rng.uniform(0, 0.35) * (curve * curve * (3 - 2 * curve) - curve)  # an S
    out = cv2.LUT(out, np.clip(np.round(curve * 255), 0, 255).astype(np.uint8))
    if rng.random() < 0.6:
        amount = rng.uniform(0.3, 1.0)
        soft = cv2.GaussianBlur(out, (0, 0), rng.uniform(1.0, 1.6))
        out = cv2.addWeighted(out, 1 + amount, soft, -amount, 0)
    return out


def encode(pixels: np.ndarray, quality: int, orientation: int) -> bytes:
    """An upright RGB picture as a JPEG file; with an orientation other than 1, its pixels stored
    turned and the EXIF Orientation tag (0x0112) that turns them back."""
    img = Image.fromarray(pixels, "RGB")
    buf = BytesIO()
    if orientation == 1:
        img.save(buf, "JPEG", quality=quality)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.transpose(_STORE[orientation]).save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()
