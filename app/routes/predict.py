"""POST /predict/{model}: decode -> preprocess -> batch queue -> model -> response."""

import asyncio
import time
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from app.batching import BatcherClosedError, QueueFullError
from app.decoding import Rejection
from app.preprocess import ImageLimits
from app.problems import ProblemError, problem_responses
from app.routes.deps import MetricsDep, SettingsDep, ZooDep
from app.schemas import PredictResponse
from app.uploads import Upload, read_uploads

router = APIRouter(tags=["predict"])

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
                0.0002,
                1e-05,
                3e-05,
                1e-06,
                0.9981,
                1e-05,
                0.0005,
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


def _queue_full(exc: QueueFullError, retry_after_s: int) -> ProblemError:
    return ProblemError(
        503,
        f"{exc}; retry after {retry_after_s} s",
        slug="queue-full",
        headers={"Retry-After": str(retry_after_s)},
    )


def _predictions(
    uploads: list[Upload], probs: torch.Tensor, labels: list[str], top_k: int
) -> list[dict[str, Any]]:
    k = min(top_k, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    rows = probs.tolist()
    out = []
    for up, row, tp, ti in zip(uploads, rows, top_p.tolist(), top_i.tolist(), strict=True):
        out.append(
            {
                "filename": up.filename,
                "label": labels[ti[0]],
                "confidence": tp[0],
                "probabilities": row,
                "top_k": [
                    {"label": labels[i], "probability": p} for p, i in zip(tp, ti, strict=True)
                ],
            }
        )
    return out


@router.post(
    "/predict/{model}",
    response_model=PredictResponse,
    summary="Classify uploaded digit images",
    description="Each image is turned into an MNIST-style digit (any polarity, size, position, "
    "transparency or orientation), queued with other requests' images, and classified in "
    "dynamic batches. Predictions come back in upload order.",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={
        200: {"content": {"application/json": {"example": EXAMPLE}}},
        **problem_responses(400, 404, 413, 415, 422, 500, 503, 504),
    },
)
async def predict(
    model: str,
    request: Request,
    zoo: ZooDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    top_k: Annotated[int, Query(ge=1, le=10, description="how many labels to rank")] = 3,
) -> JSONResponse:
    """Classify the uploaded images with ``model``."""
    started = time.perf_counter()
    label = model if model in zoo.models else "_unknown"  # bounded label cardinality
    status, n_images = 500, 0
    try:
        served = zoo.get(model)
        uploads = await read_uploads(request, settings.max_files)
        n_images = len(uploads)
        assert served.batcher is not None and served.ckpt is not None
        try:
            served.batcher.check_room(n_images)  # a full queue refuses before any decoding
        except QueueFullError as exc:
            raise _queue_full(exc, settings.retry_after_s) from None
        limits = ImageLimits(max_pixels=settings.max_image_pixels)
        decoded = await zoo.decoder([up.data for up in uploads], limits)
        if isinstance(decoded, Rejection):
            raise _rejected(uploads, decoded)
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                probs = await served.batcher.submit(torch.from_numpy(decoded))
        except QueueFullError as exc:
            raise _queue_full(exc, settings.retry_after_s) from None
        except BatcherClosedError:
            raise zoo.shutting_down() from None
        except TimeoutError:
            raise ProblemError(
                504,
                f"no answer from {model} within {settings.request_timeout_s} s",
                slug="inference-timeout",
            ) from None
        except Exception as exc:  # the model raised: only this batch failed
            raise ProblemError(
                500,
                f"inference failed for this batch: {type(exc).__name__}",
                slug="inference-failed",
            ) from None
        body = {
            "model": model,
            "device": str(zoo.device),
            "predictions": _predictions(uploads, probs, served.ckpt.meta.labels, top_k),
        }
        status = 200
        # Serialised here: the body is built to match PredictResponse (the documented schema,
        # which tests and schemathesis check), so a second validation pass would only cost time.
        return JSONResponse(body)
    except ProblemError as exc:
        status = exc.status
        raise
    finally:
        metrics.requests.labels(label, str(status)).inc()
        metrics.images.labels(label, str(status)).inc(n_images)
        metrics.request_latency.labels(label).observe(time.perf_counter() - started)
