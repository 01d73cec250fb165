"""Uploaded bytes -> decoded image -> MNIST-style 28x28 digit (white ink on black, COM-centred).

One image at a time, for callers that hold a single file or image (tests, benchmarks, scripts).
It is a stack of one through app/digits/pipeline.py's routing and the same steps a request's
uploads take (app/digits/paper.py, ink.py, frame.py; page.py for photos), so there is nothing
here to keep equal to anything.
"""

import numpy as np
from PIL import Image

from app.digits.decode import ImageLimits, blank, decode_image
from app.digits.luminance import luminance
from app.digits.pipeline import digits_from_luminance

__all__ = ["ImageLimits", "digit_from_gray", "preprocess", "to_mnist_digit"]


def digit_from_gray(gray: np.ndarray) -> np.ndarray:
    """Luminance (float32 in [0, 1]) -> float32 28x28 digit, white ink on black, MNIST-style."""
    digits, missing = digits_from_luminance([gray])
    if missing:
        raise blank()
    return digits[0]


def to_mnist_digit(img: Image.Image) -> np.ndarray:
    """Any decoded image -> float32 28x28 array in [0, 1], white ink on black, MNIST-normalised."""
    return digit_from_gray(luminance(img))


def preprocess(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """decode_image + to_mnist_digit."""
    return to_mnist_digit(decode_image(data, limits))
