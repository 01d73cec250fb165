"""Answering a prediction request: model lookup, the queue check, digits, the model call.

Whichever protocol carried the request (``/predict``, the v2 protocol), it reaches here as a
model name, an optional version and a way to read its uploads; what comes back is the version
that answered and, per upload in order, its probabilities or why that one image could not be
used. The request fails only when no image
could be used. REQUEST_TIMEOUT_S covers everything after the body: decoding, preprocessing,
queueing and inference.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from app.digits.pipeline import Rejection, plain_gray_png, to_digits
from app.digits.preprocess import ImageLimits
from app.failures import Failure, ServiceError
from app.metrics import UNKNOWN, Metrics
from app.serving.catalog import Loaded
from app.serving.zoo import Zoo
from models.framing import FRAME

# Requests whose images are all small plain PNGs with at most this many pixels in total decode
# on the event loop (tens of microseconds each); anything bigger decodes in a thread.
INLINE_PIXELS = 256 * FRAME * FRAME


@dataclass(frozen=True)
class Upload:
    """One uploaded image, as received."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Answer:
    """What the model made of a request's uploads."""

    model: Loaded  # the version that answered
    uploads: list[Upload]
    probabilities: np.ndarray  # a row per usable upload, in upload order
    rejections: list[Rejection]  # the unusable ones, by index
    digits: np.ndarray | None  # the usable uploads' digits as the model saw them, if asked


def rejected(upload: Upload, rejection: Rejection) -> ServiceError:
    """The failure of one unusable upload, naming the file."""
    name = upload.filename
    return rejection.failure.error(f"{name}: {rejection.detail}", filename=name,
                                   index=rejection.index)  # fmt: skip


def _nothing_usable(uploads: list[Upload], rejections: list[Rejection]) -> ServiceError:
    """The error when no image could be used: a lone image's own, else 422 listing them all."""
    if len(uploads) == 1:
        return rejected(uploads[0], rejections[0])
    first = rejected(uploads[rejections[0].index], rejections[0])
    return Failure.INVALID_IMAGE.error(
        f"none of the {len(uploads)} images could be used; the first: {first.detail}",
        problems=[rejected(uploads[r.index], r) for r in rejections],
    )


def _decode_inline(uploads: list[Upload]) -> bool:
    """Whether every image is a small plain PNG: cheaper to decode than to hand to a thread."""
    pixels = 0
    for up in uploads:
        size = plain_gray_png(up.data)
        if size is None:
            return False
        pixels += size[0] * size[1]
    return pixels <= INLINE_PIXELS


async def _classify(
    zoo: Zoo, name: str, version: int | None, uploads: list[Upload], keep_digits: bool
) -> tuple[Loaded, np.ndarray, list[Rejection], np.ndarray | None]:
    limits = ImageLimits(
        max_pixels=zoo.settings.max_image_pixels,
        max_decode_bytes=zoo.settings.decode_memory_mb << 20,
    )
    datas = [up.data for up in uploads]
    if _decode_inline(uploads):  # small plain PNGs: libspng decodes exactly what they declare
        digits, rejections = to_digits(datas, limits)
    else:
        digits, rejections = await zoo.decoders.digits(datas, limits)
    if len(rejections) == len(uploads):
        raise _nothing_usable(uploads, rejections)
    if rejections:
        digits = np.delete(digits, [r.index for r in rejections], axis=0)
    model, probabilities = await zoo.classify(name, version, digits)
    return model, probabilities, rejections, digits if keep_digits else None


async def answer(
    zoo: Zoo,
    metrics: Metrics,
    name: str,
    read: Callable[[], Awaitable[list[Upload]]],
    *,
    version: int | None = None,
    keep_digits: bool = False,
) -> Answer:
    """Everything past the parsing, counted in the metrics by model, version and outcome."""
    started = time.perf_counter()
    label = name if name in zoo.models else UNKNOWN  # bounded label cardinality
    answered_by = UNKNOWN  # likewise: a version in the catalogue, once one is resolved
    status, n_images = Failure.INTERNAL_ERROR.kind.status, 0
    timeout = zoo.settings.request_timeout_s
    try:
        model = zoo.get(name, version)  # unknown or unloaded: refused before the body is read
        answered_by = str(model.version)
        uploads = await read()
        n_images = len(uploads)
        zoo.check_room(model, n_images)  # a full queue refuses before any decoding
        try:
            async with asyncio.timeout(timeout):
                model, probabilities, rejections, digits = await _classify(
                    zoo, name, version, uploads, keep_digits
                )
                answered_by = str(model.version)  # a reload meanwhile may have moved it on
        except TimeoutError:
            raise Failure.INFERENCE_TIMEOUT.error(
                f"no answer from {name} within {timeout:g} s"
            ) from None
        status = 200
        return Answer(model, uploads, probabilities, rejections, digits)
    except ServiceError as exc:
        status = exc.failure.kind.status
        raise
    except asyncio.CancelledError:  # the client left: nothing was answered
        status = Failure.CLIENT_CLOSED.kind.status
        raise
    finally:
        metrics.requests.labels(label, str(status), answered_by).inc()
        metrics.images.labels(label, str(status), answered_by).inc(n_images)
        metrics.request_latency.labels(label).observe(time.perf_counter() - started)
