"""POST /predict/{model}: the HTTP adapter of the serving core's answer, on the lean path.

The route is served by :class:`LeanPredict`, a plain ASGI app (app/frontend/lean.py) that reads
the query and the body itself and answers with orjson; FastAPI documents it from
:func:`predict_declaration`, whose signature (the path, the query model, the answer's
TypedDict) is the route's contract; the query is validated with that same model.
"""

import asyncio
import base64
import io
from typing import Annotated, Any, Literal, cast

import numpy as np
import orjson
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Receive, Scope, Send

from app.failures import Failure, ServiceError
from app.frontend.lean import lean_route, query, send_bytes, unless_client_leaves
from app.frontend.problems import (
    problem_body,
    problem_response,
    problem_responses,
    validation_error,
)
from app.frontend.schemas import ImageProblem, Prediction, PredictResponse, TopK
from app.frontend.uploads import read_body, uploads_of
from app.serving.answer import Answer, Upload, failures, rejected, served, top_k
from app.serving.catalog import CheckpointInfo, Loaded
from models.framing import DIGIT_LABELS


class PredictQuery(BaseModel):
    """The predict route's query parameters (unknown ones are ignored)."""

    top_k: int = Field(3, ge=1, le=10, description="how many labels to rank")
    version: int | None = Field(
        None,
        ge=1,
        le=999_999_999,
        description="the model's version to run (see `GET /models/{name}`); default: the "
        "model's default version",
    )
    include: Literal["digit"] | None = Field(
        None,
        description="`digit`: add to each prediction the 28x28 digit the model saw, as a base64 "
        "PNG, to tell a preprocessing miss from a model miss",
    )


def digit_png(digit: np.ndarray) -> str:
    """A 28x28 uint8 digit as a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode(result: Answer, k: int) -> bytes:
    """The 200 body: per upload, in order, its label, confidence, probabilities and top k (and,
    when the answer kept them, the digit the model saw), or the problem with that image."""
    labels, probs = result.model.labels, result.probabilities
    rows = iter(zip(probs.tolist(), top_k(probs, k), strict=True))
    seen = iter(result.digits) if result.digits is not None else None
    refused = {r.index: r for r in result.rejections}
    predictions: list[Prediction | ImageProblem] = []
    for i, up in enumerate(result.uploads):
        if i in refused:
            predictions.append(cast(ImageProblem, problem_body(rejected(up, refused[i]))))
            continue
        row, top = next(rows)
        prediction = Prediction(
            filename=up.filename,
            label=labels[top[0]],
            confidence=row[top[0]],
            probabilities=row,
            top_k=[TopK(label=labels[j], probability=row[j]) for j in top],
        )
        if seen is not None:
            prediction["digit"] = digit_png(next(seen))
        predictions.append(prediction)
    body = PredictResponse(model=result.model.name, version=result.model.version,
                           device=result.model.device, predictions=predictions)  # fmt: skip
    return orjson.dumps(body)


def _example() -> dict[str, Any]:
    """The documented 200: the encoder's own output for two uploads, one of them unusable."""
    from app.digits.pipeline import Rejection

    probs = np.array([[1e-05, 2e-05, 0.0011, 2e-04, 1e-05, 3e-05, 1e-06, 0.9981, 1e-05, 5e-04]])
    model = Loaded(
        name="lenet", parameters=61610, input=(1, 28, 28), version=1, device="cpu",
        dtype="float32",
        labels=tuple(DIGIT_LABELS), test_accuracy=0.9945, test_loss=0.02, max_batch_size=64,
        checkpoint=CheckpointInfo(path="lenet.safetensors", sha256="", created_at="",
                                  train_command="", torch_version="", dataset_fingerprint=""),
    )  # fmt: skip
    detail = Failure.INVALID_IMAGE.kind.message.removeprefix("notes.png: ")
    result = Answer(
        model,
        probs.astype(np.float32),
        [Upload("seven.png", b""), Upload("notes.png", b"")],
        [Rejection(1, detail, Failure.INVALID_IMAGE)],
        None,
    )
    return cast(dict[str, Any], orjson.loads(encode(result, 3)))


def _validated(raw: dict[str, str]) -> PredictQuery:
    """The query parameters, validated with the declared model (errors as FastAPI's)."""
    try:
        return PredictQuery.model_validate(raw)
    except ValidationError as exc:
        found = [{**e, "loc": ("query", *e["loc"])} for e in exc.errors()]
        raise validation_error(RequestValidationError(found)) from None


class LeanPredict:
    """The predict route as a plain ASGI app: direct query and body parsing, orjson out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        settings = state.settings
        body_read = asyncio.Event()

        async def predict() -> tuple[bytes, int]:
            async with served(state.zoo, state.metrics, scope["path_params"]["model"]) as ticket:
                raw = query(scope)
                asked = _validated(raw)
                ticket.admit(asked.version)  # before the body is read
                body = await read_body(receive)
                body_read.set()
                uploads = uploads_of(scope, body, settings.max_files, raw.get("filename"))
                result = await ticket.answer(uploads, keep_digits=asked.include == "digit")
                return encode(result, asked.top_k), result.model.version

        try:
            done = await unless_client_leaves(receive, body_read, predict)
        except ServiceError as exc:
            await problem_response(exc, settings.retry_after_s)(scope, receive, send)
            return
        if done is None:
            return
        body, version = done[0]
        headers = ((b"x-model-version", str(version).encode()),)
        await send_bytes(send, body, b"application/json", headers)


async def predict_declaration(
    model: str, query: Annotated[PredictQuery, Query()]
) -> PredictResponse:
    """Classify the uploaded images with ``model``."""
    raise AssertionError("documentation only: LeanPredict serves this route")


_IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "One or more images as multipart parts named `files`, or one image as the "
    "raw body (`image/*` or `application/octet-stream`; its name from the `X-Filename` header "
    "or the `filename` query parameter).",
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
        "application/octet-stream": _IMAGE_BODY,
    },
}
FAILURES = failures(Failure.MALFORMED_MULTIPART, Failure.INVALID_REQUEST)


def add_predict_route(app: FastAPI) -> None:
    """Add POST /predict/{model}, served by the lean path."""
    app.router.add_api_route(
        "/predict/{model}",
        predict_declaration,
        methods=["POST"],
        response_model=PredictResponse,
        summary="Classify uploaded digit images",
        description="Each image is turned into an MNIST-style digit (any polarity, size, "
        "position, transparency or orientation), queued with other requests' images, and "
        "classified in dynamic batches. Answers come back in upload order: a prediction per "
        "image, or, for an image that could not be used, a problem object naming the file "
        "and its index. The request fails (422) only when no image could be used. The "
        "model's default version answers unless `version` names another; the answer says "
        "which (`version`, and the X-Model-Version header).",
        operation_id="predict",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            200: {
                "content": {"application/json": {"example": _example()}},
                "headers": {
                    "X-Model-Version": {
                        "description": "the version that answered",
                        "schema": {"type": "integer"},
                    }
                },
            },
            **problem_responses(*FAILURES),
        },
        tags=["predict"],
        route_class_override=lean_route(LeanPredict()),
    )
