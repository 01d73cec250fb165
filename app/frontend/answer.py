"""Everything a prediction request does past its parsing, shared by both ways of reading it.

Model lookup, the queue check (before any decoding), decoding, the model call, and the JSON
answer: per image in upload order, its prediction, or a problem object naming the file when
that one image could not be used; 422 only when no image could.
"""

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import orjson
from PIL import Image

from app import errors
from app.catalog import Loaded
from app.frontend.digits import Rejection, plain_gray_png, to_digits
from app.frontend.preprocess import ImageLimits
from app.frontend.uploads import Upload
from app.frontend.zoo import Zoo
from app.metrics import Metrics
from app.problems import BY_SLUG, problem_body

# Requests whose images are all small plain PNGs with at most this many pixels in total decode
# on the event loop (tens of microseconds each); anything bigger decodes in a thread.
INLINE_PIXELS = 256 * 28 * 28


def _slug(rejection: Rejection) -> str:
    return "image-too-large" if rejection.status_code == 413 else "invalid-image"


def image_problem(uploads: list[Upload], rejection: Rejection) -> dict[str, Any]:
    """The problem object that stands in an unusable image's place, naming the file."""
    name = uploads[rejection.index].filename
    return problem_body(
        _slug(rejection), f"{name}: {rejection.detail}", filename=name, index=rejection.index
    )


def _nothing_usable(uploads: list[Upload], rejections: list[Rejection]) -> errors.ServiceError:
    """The error when no image could be used: a lone image's own, else 422 listing them all."""
    if len(uploads) == 1:
        (r,) = rejections
        name = uploads[0].filename
        error = errors.ImageTooLarge if r.status_code == 413 else errors.InvalidImage
        return error(f"{name}: {r.detail}", filename=name, index=0)
    problems = [image_problem(uploads, r) for r in rejections]
    return errors.InvalidImage(
        f"none of the {len(uploads)} images could be used; the first: {problems[0]['detail']}",
        problems=problems,
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


def digit_png(digit: np.ndarray) -> str:
    """A 28x28 uint8 digit as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode(
    model: str,
    card: Loaded,
    uploads: list[Upload],
    probs: np.ndarray,
    top_k: int,
    rejections: list[Rejection] | None = None,
    digits: np.ndarray | None = None,
) -> bytes:
    """The 200 body: per image its label, confidence, probabilities and top k (and, given
    ``digits``, the digit the model saw), or its problem, in upload order (``probs`` and
    ``digits`` have a row per usable image)."""
    labels = card.labels
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(top_k, probs.shape[1])].tolist()
    rows = iter(zip(probs.tolist(), order, strict=True))
    seen = iter(digits) if digits is not None else None
    rejected = {r.index: r for r in rejections or []}
    predictions = []
    for i, up in enumerate(uploads):
        if i in rejected:
            predictions.append(image_problem(uploads, rejected[i]))
            continue
        row, top = next(rows)
        prediction = {
            "filename": up.filename,
            "label": labels[top[0]],
            "confidence": row[top[0]],
            "probabilities": row,
            "top_k": [{"label": labels[j], "probability": row[j]} for j in top],
        }
        if seen is not None:
            prediction["digit"] = digit_png(next(seen))
        predictions.append(prediction)
    return orjson.dumps({"model": model, "device": card.device, "predictions": predictions})


async def answer(
    zoo: Zoo,
    metrics: Metrics,
    model: str,
    read: Callable[[], Awaitable[list[Upload]]],
    top_k: int,
    *,
    include_digit: bool = False,
) -> bytes:
    """Everything past the parsing: model lookup, uploads, queue check, decode, classify, JSON."""
    started = time.perf_counter()
    label = model if model in zoo.models else "_unknown"  # bounded label cardinality
    status, n_images = 500, 0
    try:
        card = zoo.get(model)
        uploads = await read()
        n_images = len(uploads)
        zoo.check_room(model, n_images)  # a full queue refuses before any decoding
        limits = ImageLimits(max_pixels=zoo.settings.max_image_pixels)
        datas = [up.data for up in uploads]
        if _decode_inline(uploads):
            digits, rejections = to_digits(datas, limits)
        else:
            digits, rejections = await asyncio.to_thread(to_digits, datas, limits)
        if len(rejections) == len(uploads):
            raise _nothing_usable(uploads, rejections)
        if rejections:
            digits = np.delete(digits, [r.index for r in rejections], axis=0)
        probs = await zoo.classify(model, digits)
        body = encode(
            model, card, uploads, probs, top_k, rejections, digits if include_digit else None
        )
        status = 200
        return body
    except errors.ServiceError as exc:
        status = BY_SLUG[exc.slug].status
        raise
    finally:
        metrics.requests.labels(label, str(status)).inc()
        metrics.images.labels(label, str(status)).inc(n_images)
        metrics.request_latency.labels(label).observe(time.perf_counter() - started)
