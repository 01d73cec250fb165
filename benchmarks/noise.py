"""Seeded noise for the phone-photo suite, fast enough to make a megapixel of it per photo."""

import cv2
import numpy as np
from scipy.special import ndtri

# 256 equal-probability levels of a standard normal: a sensor's or a paper's noise needs no more,
# and a table lookup on random bytes is ~10x faster than rng.standard_normal.
_LEVELS = ndtri((np.arange(256) + 0.5) / 256)
_NORMAL = (_LEVELS / _LEVELS.std()).astype(np.float32)


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of ``shape`` (at most 4 channels), quantised to 256 levels."""
    n = int(np.prod(shape))
    words = rng.integers(0, 2**64 - 1, -(-n // 8), dtype=np.uint64, endpoint=True)
    return cv2.LUT(words.view(np.uint8)[:n].reshape(shape), _NORMAL)


def field(shape: tuple[int, int], cells: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth unit noise of ``shape`` (h, w): a coarse grid of (rows, cols) cells, bicubic."""
    coarse = rng.standard_normal((cells[0] + 3, cells[1] + 3)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
