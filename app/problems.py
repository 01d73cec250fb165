"""RFC 9457 problem+json: the one table of problem types, the handlers, and their OpenAPI docs.

Every error the service answers is a row of PROBLEMS (its slug, status, title, when it happens
and an example); the service's code raises the typed exceptions of app/errors.py, and the
handlers here turn them into problem+json. The OpenAPI document lists the same rows, so the
docs cannot drift from what the service sends.
"""

import logging
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import errors

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@dataclass(frozen=True)
class ProblemType:
    """One kind of error: its ``type`` is ``/problems/<slug>``."""

    slug: str
    status: int
    title: str
    when: str
    example: str
    retry: bool = False  # Retry-After is sent: retrying the same request later can succeed


PROBLEMS: tuple[ProblemType, ...] = (
    ProblemType("bad-request", 400, "Bad request", "the request could not be read",
                "Bad Request"),
    ProblemType("malformed-multipart", 400, "Malformed multipart body",
                "the multipart framing is broken: no boundary, a part without a name, "
                "a part header over 4 KiB",
                "malformed multipart body: Missing boundary in multipart."),
    ProblemType("unauthorized", 401, "Unauthorized",
                "API_KEYS is set and the request has no valid `Authorization: Bearer` key "
                "(sent with `WWW-Authenticate: Bearer`)",
                "this service needs an API key: send Authorization: Bearer <key>"),
    ProblemType("not-found", 404, "Not found", "no such path", "Not Found"),
    ProblemType("unknown-model", 404, "Unknown model",
                "the path names a model the service does not list (the known ones are listed)",
                "no model named 'resnet'; known models: lenet, mnist_cnn"),
    ProblemType("method-not-allowed", 405, "Method not allowed",
                "the path exists but not for this method", "Method Not Allowed"),
    ProblemType("request-timeout", 408, "Request timeout",
                "the request body stopped arriving for BODY_TIMEOUT_S seconds (the connection "
                "is then closed)",
                "the request body stalled: nothing arrived for 15 s (BODY_TIMEOUT_S)"),
    ProblemType("content-too-large", 413, "Content too large",
                "the body is bigger than MAX_UPLOAD_BYTES",
                "request body exceeds the 20971520-byte limit (MAX_UPLOAD_BYTES)"),
    ProblemType("image-too-large", 413, "Image too large",
                "an image declares more than MAX_IMAGE_PIXELS pixels (read from its header)",
                "huge.png: image declares 60000x60000 = 3,600,000,000 pixels; "
                "the limit is 40,000,000"),
    ProblemType("unsupported-media-type", 415, "Unsupported media type",
                "the body is neither multipart/form-data nor one image",
                "unsupported content type 'text/plain': send multipart/form-data with parts named "
                "'files', or one image as image/*"),
    ProblemType("invalid-request", 422, "Invalid request", "a query parameter is out of range",
                "query.top_k: Input should be less than or equal to 10"),
    ProblemType("no-files", 422, "No files",
                "no part named 'files', or an empty image body",
                "no files: send one or more parts named 'files' (got parts named 'image')"),
    ProblemType("too-many-files", 422, "Too many files", "more files than MAX_FILES",
                "too many files: at most 256 per request (MAX_FILES)"),
    ProblemType("invalid-image", 422, "Invalid image",
                "an image is undecodable, in a format not allowed, or blank; a request answers "
                "422 only when none of its images could be used",
                "notes.png: not a recognised image "
                "(allowed formats: BMP, GIF, JPEG, PNG, TIFF, WEBP)"),
    ProblemType("inference-failed", 500, "Inference failed",
                "the model raised on the batch that held these images (the log has why)",
                "inference failed for this batch (the log has why)"),
    ProblemType("internal-error", 500, "Internal error",
                "anything else that went wrong (the log has why)",
                "internal error; the service is still running"),
    ProblemType("model-not-loaded", 503, "Model not loaded",
                "the model has no usable checkpoint or could not start (the detail says how to "
                "fix it); retrying does not help until someone does",
                "model 'vgg16' is not loaded: no checkpoint at weights/vgg16.safetensors"),
    ProblemType("queue-full", 503, "Queue full", "the model's queue holds MAX_QUEUE images",
                "lenet queue is full (2040 of 2048 images waiting); retry after 1 s", retry=True),
    ProblemType("shutting-down", 503, "Shutting down",
                "the service is stopping (another replica can answer)",
                "the service is shutting down", retry=True),
    ProblemType("inference-timeout", 504, "Inference timeout",
                "no answer within REQUEST_TIMEOUT_S", "no answer from lenet within 30.0 s"),
)  # fmt: skip
BY_SLUG = {p.slug: p for p in PROBLEMS}
_BY_STATUS = {404: "not-found", 405: "method-not-allowed"}


def problem_body(slug: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The problem object of a row of the table."""
    p = BY_SLUG[slug]
    return {
        "type": f"/problems/{slug}",
        "title": p.title,
        "status": p.status,
        "detail": detail,
        **extra,
    }


def problem_response(exc: errors.ServiceError) -> JSONResponse:
    """The problem+json response for ``exc`` (Retry-After where retrying can help)."""
    p = BY_SLUG[exc.slug]
    headers = {}
    if p.retry and exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    body = problem_body(exc.slug, exc.detail, **exc.extra)
    return JSONResponse(body, status_code=p.status, headers=headers, media_type=PROBLEM_JSON)


def validation_error(exc: RequestValidationError) -> errors.InvalidRequest:
    """The 422 for a request FastAPI (or the lean predict path) found invalid."""
    found = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found)
    return errors.InvalidRequest(detail or "invalid request", errors=found)


async def _service(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ServiceError)
    return problem_response(exc)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    slug = _BY_STATUS.get(
        exc.status_code, "bad-request" if exc.status_code < 500 else "internal-error"
    )
    body = {**problem_body(slug, detail), "status": exc.status_code}
    headers = dict(exc.headers or {})
    return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=PROBLEM_JSON)


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_error(exc))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(errors.ServiceError("internal error; the service is still running"))


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, as problem+json."""
    app.add_exception_handler(errors.ServiceError, _service)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*slugs: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these problem types: one entry per status, the shared Problem
    schema, one example per type, and Retry-After where it is sent."""
    out: dict[int | str, dict[str, Any]] = {}
    for slug in slugs:
        p = BY_SLUG[slug]
        entry = out.setdefault(
            p.status,
            {"description": "", "content": {PROBLEM_JSON: {"schema": PROBLEM_REF, "examples": {}}}},
        )
        entry["description"] = "; ".join(
            filter(None, [entry["description"], f"{p.title}: {p.when}"])
        )
        example = problem_body(slug, p.example)
        entry["content"][PROBLEM_JSON]["examples"][slug] = {"summary": p.title, "value": example}
        if p.retry:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds after which the same request may succeed "
                    f"({', '.join(q.slug for q in PROBLEMS if q.retry)} only)",
                    "schema": {"type": "integer"},
                }
            }
    return out


def markdown_table() -> str:
    """The table as the README shows it."""
    rows = ["| type | status | when | Retry-After |", "|---|---|---|---|"]
    for p in PROBLEMS:
        rows.append(
            f"| `/problems/{p.slug}` | {p.status} | {p.when} | {'yes' if p.retry else ''} |"
        )
    return "\n".join(rows)
