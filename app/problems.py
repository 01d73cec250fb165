"""RFC 9457 problem+json errors: one exception type, the handlers, and their OpenAPI docs."""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.schemas import Problem

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    """An error answered as problem+json; ``slug`` names its type, ``extra`` adds members."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers, self.extra = status, detail, headers or {}, extra
        phrase = HTTPStatus(status).phrase
        self.title = title or phrase
        self.slug = slug or phrase.lower().replace(" ", "-").replace("'", "")


def problem_response(exc: ProblemError) -> JSONResponse:
    """The problem+json response for ``exc``."""
    body = {
        "type": f"/problems/{exc.slug}",
        "title": exc.title,
        "status": exc.status,
        "detail": exc.detail,
        **exc.extra,
    }
    return JSONResponse(body, status_code=exc.status, headers=exc.headers, media_type=PROBLEM_JSON)


async def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return problem_response(ProblemError(exc.status_code, detail, headers=dict(exc.headers or {})))


def validation_problem(exc: RequestValidationError) -> ProblemError:
    """The 422 for a request FastAPI (or the lean predict path) found invalid."""
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return ProblemError(
        422,
        detail or "invalid request",
        slug="invalid-request",
        title="Invalid request",
        errors=errors,
    )


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_problem(exc))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        ProblemError(500, "internal error; the service is still running", slug="internal-error")
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, as problem+json."""
    app.add_exception_handler(ProblemError, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)


_EXAMPLES: dict[int, tuple[str, str, str]] = {
    400: ("bad-request", "Bad Request", "malformed multipart body: missing boundary"),
    404: ("unknown-model", "Unknown model", "no model named 'resnet'; known: lenet, mnist_cnn"),
    405: ("method-not-allowed", "Method Not Allowed", "Method Not Allowed"),
    413: ("content-too-large", "Content Too Large", "request body exceeds 20971520 bytes"),
    415: (
        "unsupported-media-type",
        "Unsupported Media Type",
        "send multipart/form-data with parts named 'files', or one image as image/*",
    ),
    422: ("invalid-image", "Invalid image", "digit.png: not a recognised image"),
    500: ("internal-error", "Internal Server Error", "inference failed for this batch"),
    503: ("queue-full", "Service Unavailable", "lenet queue is full; retry after 1 s"),
    504: ("inference-timeout", "Gateway Timeout", "no answer from lenet within 30 s"),
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries, with an example, for the given error statuses."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        slug, title, detail = _EXAMPLES[code]
        example = {"type": f"/problems/{slug}", "title": title, "status": code, "detail": detail}
        out[code] = {
            "model": Problem,
            "description": title,
            "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema(), "example": example}},
        }
    return out
