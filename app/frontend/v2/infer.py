"""POST /v2/models/{model}[/versions/{version}]/infer: the v2 protocol's inference, on the lean
path (app/frontend/lean.py), answered by the same serving core as /predict.

An ``image`` input goes through :func:`~app.serving.answer.answer`, as /predict's uploads do
(decoding in the sandbox, preprocessing, the queue bound, the deadline, the metrics), except
that one unusable image fails the whole request: the protocol has no per-item results. A
``digit`` input goes through :func:`~app.serving.answer.answer_digits` (no decoding). Errors
leave as problem+json and become the protocol's ``{"error"}`` in
:class:`~app.frontend.v2.errors.V2ErrorMiddleware`.
"""

import asyncio
import time
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from starlette.types import Receive, Scope, Send

from app.failures import Failure, ServiceError
from app.frontend.lean import lean_route, send_bytes, unless_client_leaves
from app.frontend.problems import problem_response
from app.frontend.uploads import read_body
from app.frontend.v2.errors import v2_error_responses
from app.frontend.v2.schemas import InferRequestBody, InferResponseBody
from app.frontend.v2.tensors import InferRequest, encode, invalid, parse, raw_image
from app.metrics import UNKNOWN
from app.serving.answer import Classified, Upload, answer, answer_digits, record

HEADER = b"inference-header-content-length"
_HEADER_OUT = b"Inference-Header-Content-Length"


def _single(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope["headers"] if k == name]
    if len(values) > 1:
        raise invalid(f"the request has {len(values)} {name.decode()} headers")
    return values[0].decode("latin-1").strip() if values else None


def read_request(scope: Scope, body: bytes, max_files: int) -> InferRequest:
    """The request in a body: JSON, JSON and binary tensor data, or (with an
    Inference-Header-Content-Length of 0) one image file."""
    encoding = _single(scope, b"content-encoding")
    if encoding not in (None, "", "identity"):
        raise Failure.UNSUPPORTED_MEDIA_TYPE.error(
            f"Content-Encoding {encoding!r}: compressed request bodies are not supported"
        )
    length = _single(scope, HEADER)
    if length is not None and not (length.isascii() and length.isdigit()):
        raise invalid(f"Inference-Header-Content-Length {length!r} is not a number of bytes")
    if length is not None and int(length) == 0:
        return raw_image(body)
    return parse(body, None if length is None else int(length), max_files)


class LeanInfer:
    """The infer routes as a plain ASGI app: the body read and parsed here, orjson out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        zoo, metrics, settings = state.zoo, state.metrics, state.settings
        name, named = scope["path_params"]["model"], scope["path_params"].get("version")
        body_read = asyncio.Event()

        async def infer() -> tuple[InferRequest, Classified]:
            started = time.perf_counter()
            try:
                version = None if named is None else zoo.version_named(name, named)
                body = await read_body(receive)
                body_read.set()
                request = read_request(scope, body, settings.max_files)
            except ServiceError as exc:  # refused before the core: counted as it counts
                record(zoo, metrics, name, UNKNOWN, exc.failure.kind.status, 0, started)
                raise
            if request.uploads is not None:
                uploads = request.uploads

                async def read() -> list[Upload]:
                    return uploads

                found = await answer(
                    zoo, metrics, name, read, version=version, all_or_nothing=True
                )
                return request, found
            assert request.digits is not None
            return request, await answer_digits(
                zoo, metrics, name, request.digits, version=version
            )

        try:
            done = await unless_client_leaves(receive, body_read, infer)
            if done is None:
                return
            request, found = done[0]
            model, probabilities = found.model, found.probabilities
            version = str(model.version)
            body, head = encode(request, model.name, version, model.labels, probabilities)
        except ServiceError as exc:
            await problem_response(exc, settings.retry_after_s)(scope, receive, send)
            return
        if head is None:
            await send_bytes(send, body, b"application/json")
        else:
            extra = ((_HEADER_OUT, str(head).encode()),)
            await send_bytes(send, body, b"application/octet-stream", extra)


HeaderLength = Annotated[
    int | None,
    Header(
        alias="Inference-Header-Content-Length",
        ge=0,
        description="the binary tensor data extension: the length of the JSON that starts "
        "the body, the tensors' bytes following it; 0: the whole body is one image file",
    ),
]
RequestBody = Annotated[InferRequestBody, Body()]


async def infer_declaration(
    model: str, request: RequestBody, header_length: HeaderLength = None
) -> InferResponseBody:
    """Classify images or digits with ``model``."""
    raise AssertionError("documentation only: LeanInfer serves this route")


async def infer_version_declaration(
    model: str, version: str, request: RequestBody, header_length: HeaderLength = None
) -> InferResponseBody:
    """Classify images or digits with one version of ``model``."""
    raise AssertionError("documentation only: LeanInfer serves this route")


_BINARY = {"schema": {"type": "string", "format": "binary"}}
BINARY_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {"application/octet-stream": _BINARY},
        "description": "JSON (an InferRequestBody), or that JSON followed by the inputs' "
        "binary tensor data (with Inference-Header-Content-Length), or one image file (with "
        "Inference-Header-Content-Length: 0)",
    }
}
FAILURES = (
    Failure.INVALID_INFERENCE_REQUEST,
    Failure.UNKNOWN_MODEL,
    Failure.UNKNOWN_VERSION,
    Failure.REQUEST_TIMEOUT,
    Failure.CONTENT_TOO_LARGE,
    Failure.IMAGE_TOO_LARGE,
    Failure.UNSUPPORTED_MEDIA_TYPE,
    Failure.NO_FILES,
    Failure.TOO_MANY_FILES,
    Failure.INVALID_IMAGE,
    Failure.INFERENCE_FAILED,
    Failure.INTERNAL_ERROR,
    Failure.MODEL_NOT_LOADED,
    Failure.QUEUE_FULL,
    Failure.SHUTTING_DOWN,
    Failure.INFERENCE_TIMEOUT,
)
DESCRIPTION = (
    "The Open Inference Protocol (KServe v2) with Triton's binary tensor data and "
    "classification extensions. One input per request: `image` (BYTES [N], image files, "
    "preprocessed as /predict does; base64 strings in JSON) or `digit` (UINT8 [N, 28, 28], "
    "MNIST-style digits, white ink on black, used as they are). The output `probabilities` "
    "(FP32 [N, classes]) comes back as JSON, or binary when asked (`binary_data`, "
    "`binary_data_output`); `classification: k` on the output returns the top k of each row "
    "as BYTES `value:index:label`. One unusable image fails the request (its error names its "
    "index): the protocol has no per-item results."
)


def add_infer_routes(app: FastAPI) -> None:
    """POST /v2/models/{model}/infer and its version form, served by the lean path."""
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "JSON, or JSON followed by binary tensor data "
            "(application/octet-stream, the JSON's length in Inference-Header-Content-Length)",
            "content": {"application/octet-stream": _BINARY},
        },
        **v2_error_responses(*FAILURES),
    }
    route = lean_route(LeanInfer())
    for path, declaration, operation in (
        ("/v2/models/{model}/infer", infer_declaration, "infer"),
        ("/v2/models/{model}/versions/{version}/infer", infer_version_declaration, "inferVersion"),
    ):
        app.router.add_api_route(
            path,
            declaration,
            methods=["POST"],
            response_model=InferResponseBody,
            summary="Inference (v2 protocol)",
            description=DESCRIPTION,
            operation_id=operation,
            openapi_extra=BINARY_BODY,
            responses=responses,
            tags=["v2"],
            route_class_override=route,
        )
