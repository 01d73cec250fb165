"""POST /v2/models/{model}[/versions/{version}]/infer: the v2 protocol's inference, on the lean
path (app/frontend/lean.py), answered by the same serving core as /predict.

The request is admitted by the core (app/serving/answer.py) before its body is read. An
``image`` input is answered as /predict's uploads are (decoding in the sandbox, preprocessing,
the queue bound, the deadline, the metrics), except that one unusable image fails the whole
request: the protocol has no per-item results. A ``digit`` input is answered as it is (no
decoding). Errors leave as problem+json and become the protocol's ``{"error"}`` in
:class:`~app.frontend.v2.errors.V2ErrorMiddleware`.
"""

import asyncio
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header
from starlette.types import Receive, Scope, Send

from app.failures import Failure, ServiceError
from app.frontend.lean import header, lean_route, send_bytes, unless_client_leaves
from app.frontend.problems import problem_response
from app.frontend.uploads import read_body
from app.frontend.v2.errors import v2_error_responses
from app.frontend.v2.schemas import InferRequestBody, InferResponseBody
from app.frontend.v2.tensors import InferRequest, encode, invalid, parse, raw_image
from app.serving.answer import Classified, failures, served

HEADER = b"inference-header-content-length"
_HEADER_OUT = b"Inference-Header-Content-Length"


def _single(scope: Scope, name: bytes) -> str | None:
    return header(scope, name, Failure.INVALID_INFERENCE_REQUEST)


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
        settings, params = state.settings, scope["path_params"]
        body_read = asyncio.Event()

        async def infer() -> tuple[bytes, int | None]:
            async with served(state.zoo, state.metrics, params["model"]) as ticket:
                ticket.admit(params.get("version"))  # before the body is read
                body = await read_body(receive)
                body_read.set()
                request = read_request(scope, body, settings.max_files)
                found: Classified
                if request.uploads is not None:
                    found = await ticket.answer(request.uploads, all_or_nothing=True)
                else:
                    assert request.digits is not None
                    found = await ticket.answer_digits(request.digits)
                model = found.model
                return encode(request, model.name, str(model.version), model.labels,
                              found.probabilities)  # fmt: skip

        try:
            done = await unless_client_leaves(receive, body_read, infer)
        except ServiceError as exc:
            await problem_response(exc, settings.retry_after_s)(scope, receive, send)
            return
        if done is None:
            return
        body, head = done[0]
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
FAILURES = failures(Failure.INVALID_INFERENCE_REQUEST)
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
