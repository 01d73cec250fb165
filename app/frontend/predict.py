"""POST /predict/{model}: uploads -> digits -> engine -> JSON, on a lean path FastAPI documents.

The route is declared once, as a FastAPI endpoint (``predict``): its signature, body and
responses make the OpenAPI document, and FastAPI can run it as any endpoint (the documented
behaviour). In the service the route is a :class:`LeanRoute`: FastAPI routes to it, but the
request goes straight to :class:`LeanPredict`, which reads the body and the query itself and
answers with orjson, skipping the dependency, form and validation machinery. Both call
:func:`answer` for everything past the parsing, and tests send the same requests to both.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

import numpy as np
import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from app.catalog import Loaded
from app.frontend.digits import Rejection, plain_gray_png, to_digits
from app.frontend.preprocess import ImageLimits
from app.frontend.uploads import (
    Upload,
    media_type,
    parse_multipart,
    raw_image,
    read_uploads,
    unsupported,
)
from app.frontend.zoo import Zoo
from app.metrics import Metrics
from app.problems import ProblemError, problem_response, validation_problem
from app.schemas import PredictResponse

TOP_K_DEFAULT, TOP_K_MAX = 3, 10
_TOP_K = TypeAdapter(Annotated[int, Field(ge=1, le=TOP_K_MAX)])
# Requests whose images are all small plain PNGs with at most this many pixels in total decode
# on the event loop (tens of microseconds each); anything bigger decodes in a thread.
INLINE_PIXELS = 256 * 28 * 28

_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One or more images as multipart parts named `files`, or one raw image.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "properties": {
                    "files": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string", "format": "binary"},
                    }
                },
            },
        },
        "image/png": _IMAGE_BODY,
        "image/jpeg": _IMAGE_BODY,
        "image/*": _IMAGE_BODY,
    },
}
EXAMPLE = {
    "model": "lenet",
    "device": "cpu",
    "predictions": [
        {
            "filename": "seven.png",
            "label": "7",
            "confidence": 0.9981,
            "probabilities": [
                1e-05,
                2e-05,
                0.0011,
                2e-04,
                1e-05,
                3e-05,
                1e-06,
                0.9981,
                1e-05,
                5e-04,
            ],
            "top_k": [
                {"label": "7", "probability": 0.9981},
                {"label": "2", "probability": 0.0011},
                {"label": "9", "probability": 0.0005},
            ],
        }
    ],
}


def _rejected(uploads: list[Upload], rejection: Rejection) -> ProblemError:
    """The problem for an upload that could not be used, naming the file."""
    up = uploads[rejection.index]
    invalid = rejection.status_code == 422
    return ProblemError(
        rejection.status_code,
        f"{up.filename}: {rejection.detail}",
        slug="invalid-image" if invalid else None,
        title="Invalid image" if invalid else None,
        filename=up.filename,
        index=rejection.index,
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


def encode(model: str, card: Loaded, uploads: list[Upload], probs: np.ndarray, top_k: int) -> bytes:
    """The 200 body: per image its label, confidence, probabilities and top k, in order."""
    labels = card.labels
    order = np.argsort(-probs, axis=1, kind="stable")[:, : min(top_k, probs.shape[1])].tolist()
    rows = probs.tolist()
    predictions = [
        {
            "filename": up.filename,
            "label": labels[top[0]],
            "confidence": row[top[0]],
            "probabilities": row,
            "top_k": [{"label": labels[j], "probability": row[j]} for j in top],
        }
        for up, row, top in zip(uploads, rows, order, strict=True)
    ]
    return orjson.dumps({"model": model, "device": card.device, "predictions": predictions})


async def answer(
    zoo: Zoo,
    metrics: Metrics,
    model: str,
    read: Callable[[], Awaitable[list[Upload]]],
    top_k: int,
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
        if rejections:
            raise _rejected(uploads, rejections[0])
        probs = await zoo.classify(model, digits)
        body = encode(model, card, uploads, probs, top_k)
        status = 200
        return body
    except ProblemError as exc:
        status = exc.status
        raise
    finally:
        metrics.requests.labels(label, str(status)).inc()
        metrics.images.labels(label, str(status)).inc(n_images)
        metrics.request_latency.labels(label).observe(time.perf_counter() - started)


async def predict(
    model: str,
    request: Request,
    top_k: Annotated[
        int, Query(ge=1, le=TOP_K_MAX, description="how many labels to rank")
    ] = TOP_K_DEFAULT,
) -> Response:
    """Classify the uploaded images with ``model``."""
    state = request.app.state
    body = await answer(
        state.zoo,
        state.metrics,
        model,
        lambda: read_uploads(request, state.settings.max_files),
        top_k,
    )
    return Response(body, media_type="application/json")


def _top_k(query_string: bytes) -> int:
    """``top_k`` from the query, validated exactly as FastAPI validates the declared parameter."""
    raw = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)).get("top_k")
    if raw is None:
        return TOP_K_DEFAULT
    try:
        return _TOP_K.validate_python(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("query", "top_k", *e["loc"])} for e in exc.errors()]
        raise validation_problem(RequestValidationError(errors)) from None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class LeanPredict:
    """The predict route as a plain ASGI app: direct query and body parsing, orjson out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        settings = state.settings
        headers = dict(scope["headers"])
        content_type = headers.get(b"content-type", b"").decode("latin-1")

        async def read() -> list[Upload]:
            media = media_type(content_type)
            if media.startswith("image/"):
                name = headers.get(b"x-filename", b"").decode("latin-1") or None
                if name is None:
                    qs = scope["query_string"].decode("latin-1")
                    query = dict(parse_qsl(qs, keep_blank_values=True))
                    name = query.get("filename")
                return raw_image(await _read_body(receive), name)
            if media != "multipart/form-data":
                raise unsupported(media)
            return parse_multipart(await _read_body(receive), content_type, settings.max_files)

        try:
            top_k = _top_k(scope["query_string"])
            body = await answer(
                state.zoo, state.metrics, scope["path_params"]["model"], read, top_k
            )
        except ProblemError as exc:
            await problem_response(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class LeanRoute(APIRoute):
    """Documented by FastAPI from its endpoint like any route; served by :class:`LeanPredict`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = LeanPredict()


def add_predict_route(app: FastAPI, responses: dict[int | str, dict[str, Any]], lean: bool) -> None:
    """Add POST /predict/{model}, served by the lean path unless ``lean`` is False."""
    app.router.add_api_route(
        "/predict/{model}",
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        summary="Classify uploaded digit images",
        description="Each image is turned into an MNIST-style digit (any polarity, size, "
        "position, transparency or orientation), queued with other requests' images, and "
        "classified in dynamic batches. Predictions come back in upload order.",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={200: {"content": {"application/json": {"example": EXAMPLE}}}, **responses},
        tags=["predict"],
        route_class_override=LeanRoute if lean else APIRoute,
    )
