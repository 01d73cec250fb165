"""POST /predict/{model}: uploads -> digits -> engine -> JSON, on a lean path FastAPI documents.

The route is declared once, as a FastAPI endpoint (``predict``): its signature, body and
responses make the OpenAPI document, and FastAPI can run it as any endpoint (the documented
behaviour). In the service the route is a :class:`LeanRoute`: FastAPI routes to it, but the
request goes straight to :class:`LeanPredict`, which reads the body and the query itself and
answers with orjson, skipping the dependency, form and validation machinery. Both call
:func:`answer` for everything past the parsing, and tests send the same requests to both.
"""

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.types import Receive, Scope, Send

from app.errors import ServiceError
from app.frontend.answer import answer
from app.frontend.uploads import (
    Upload,
    is_raw_image,
    media_type,
    parse_multipart,
    raw_image,
    read_uploads,
    unsupported,
)
from app.problems import problem_response, problem_responses, validation_error
from app.schemas import PredictResponse

TOP_K_DEFAULT, TOP_K_MAX = 3, 10
Include = Literal["digit"]
# The query parameters as the endpoint declares them: (type, default), in declaration order.
_QUERY: dict[str, tuple[TypeAdapter[Any], Any]] = {
    "top_k": (TypeAdapter(Annotated[int, Field(ge=1, le=TOP_K_MAX)]), TOP_K_DEFAULT),
    "include": (TypeAdapter(Include | None), None),
}

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
        },
        {
            "type": "/problems/invalid-image",
            "title": "Invalid image",
            "status": 422,
            "detail": "notes.png: not a recognised image (allowed formats: BMP, GIF, JPEG, PNG, "
            "TIFF, WEBP)",
            "filename": "notes.png",
            "index": 1,
        },
    ],
}


async def predict(
    model: str,
    request: Request,
    top_k: Annotated[
        int, Query(ge=1, le=TOP_K_MAX, description="how many labels to rank")
    ] = TOP_K_DEFAULT,
    include: Annotated[
        Include | None,
        Query(
            description="`digit`: add to each prediction the 28x28 digit the model saw, as a "
            "base64 PNG, to tell a preprocessing miss from a model miss"
        ),
    ] = None,
) -> Response:
    """Classify the uploaded images with ``model``."""
    state = request.app.state
    body = await answer(
        state.zoo,
        state.metrics,
        model,
        lambda: read_uploads(request, state.settings.max_files),
        top_k,
        include_digit=include == "digit",
    )
    return Response(body, media_type="application/json")


def _query(query_string: bytes) -> dict[str, Any]:
    """The query parameters, validated exactly as FastAPI validates the declared ones."""
    raw = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    values, errors = {}, []
    for name, (adapter, default) in _QUERY.items():
        if name not in raw:
            values[name] = default
            continue
        try:
            values[name] = adapter.validate_python(raw[name])
        except ValidationError as exc:
            errors += [{**e, "loc": ("query", name, *e["loc"])} for e in exc.errors()]
    if errors:
        raise validation_error(RequestValidationError(errors))
    return values


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
            if is_raw_image(media):
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
            query = _query(scope["query_string"])
            body = await answer(
                state.zoo,
                state.metrics,
                scope["path_params"]["model"],
                read,
                query["top_k"],
                include_digit=query["include"] == "digit",
            )
        except ServiceError as exc:
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


PROBLEMS = (
    "malformed-multipart",
    "unknown-model",
    "request-timeout",
    "content-too-large",
    "image-too-large",
    "unsupported-media-type",
    "invalid-request",
    "no-files",
    "too-many-files",
    "invalid-image",
    "inference-failed",
    "internal-error",
    "model-not-loaded",
    "queue-full",
    "shutting-down",
    "inference-timeout",
)


def add_predict_route(app: FastAPI, lean: bool) -> None:
    """Add POST /predict/{model}, served by the lean path unless ``lean`` is False."""
    app.router.add_api_route(
        "/predict/{model}",
        predict,
        methods=["POST"],
        response_model=PredictResponse,
        summary="Classify uploaded digit images",
        description="Each image is turned into an MNIST-style digit (any polarity, size, "
        "position, transparency or orientation), queued with other requests' images, and "
        "classified in dynamic batches. Answers come back in upload order: a prediction per "
        "image, or, for an image that could not be used, a problem object naming the file "
        "and its index. The request fails (422) only when no image could be used.",
        operation_id="predict",
        openapi_extra={"requestBody": REQUEST_BODY},
        responses={
            200: {"content": {"application/json": {"example": EXAMPLE}}},
            **problem_responses(*PROBLEMS),
        },
        tags=["predict"],
        route_class_override=LeanRoute if lean else APIRoute,
    )
