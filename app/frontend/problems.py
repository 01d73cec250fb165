"""RFC 9457 problem+json: the failure table (app/failures.py) as HTTP, and its OpenAPI docs.

Every error the service answers is a row of the failure table; the handlers here turn a
:class:`~app.failures.ServiceError` (or Starlette's and FastAPI's own errors) into
problem+json, and the OpenAPI document lists the same rows, so the docs cannot drift from what
the service sends.
"""

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.failures import BY_SLUG, Failure, ServiceError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_BY_STATUS = {404: Failure.NOT_FOUND, 405: Failure.METHOD_NOT_ALLOWED}


def _member(value: Any) -> Any:
    """An extra member of a problem object: nested failures become problem objects too."""
    if isinstance(value, ServiceError):
        return problem_body(value)
    if isinstance(value, list):
        return [_member(v) for v in value]
    return value


def problem_body(exc: ServiceError) -> dict[str, Any]:
    """The problem object of a failure."""
    kind = exc.failure.kind
    return {
        "type": f"/problems/{kind.slug}",
        "title": kind.title,
        "status": kind.status,
        "detail": exc.detail,
        **{k: _member(v) for k, v in exc.extra.items()},
    }


def problem_response(exc: ServiceError, retry_after_s: int | None = None) -> JSONResponse:
    """The problem+json response for ``exc``; Retry-After where retrying can help."""
    headers = {}
    if exc.failure.kind.retry and retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(
        problem_body(exc),
        status_code=exc.failure.kind.status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def validation_error(exc: RequestValidationError) -> ServiceError:
    """The 422 for a request FastAPI (or the lean predict path) found invalid."""
    found = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in found)
    return Failure.INVALID_REQUEST.error(detail or "invalid request", errors=found)


def _retry_after(request: Request) -> int:
    return int(request.app.state.settings.retry_after_s)


async def _service(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(exc, _retry_after(request))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    failure = _BY_STATUS.get(
        exc.status_code,
        Failure.BAD_REQUEST if exc.status_code < 500 else Failure.INTERNAL_ERROR,
    )
    body = {**problem_body(failure.error(detail)), "status": exc.status_code}
    headers = dict(exc.headers or {})
    return JSONResponse(body, status_code=exc.status_code, headers=headers, media_type=PROBLEM_JSON)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(validation_error(exc))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(Failure.INTERNAL_ERROR.error())


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, as problem+json."""
    app.add_exception_handler(ServiceError, _service)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)


def problem_responses(*failures: Failure) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these failures: one entry per status, the shared Problem
    schema, one example per type, and Retry-After where it is sent."""
    out: dict[int | str, dict[str, Any]] = {}
    for failure in failures:
        kind = failure.kind
        entry = out.setdefault(
            kind.status,
            {"description": "", "content": {PROBLEM_JSON: {"schema": PROBLEM_REF, "examples": {}}}},
        )
        entry["description"] = "; ".join(
            filter(None, [entry["description"], f"{kind.title}: {kind.when}"])
        )
        example = problem_body(failure.error())
        examples = entry["content"][PROBLEM_JSON]["examples"]
        examples[kind.slug] = {"summary": kind.title, "value": example}
        if kind.retry:
            retried = ", ".join(f.kind.slug for f in Failure if f.kind.retry)
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds after which the same request may succeed "
                    f"({retried} only)",
                    "schema": {"type": "integer"},
                }
            }
    return out


def markdown_table() -> str:
    """The table as the README shows it."""
    rows = ["| type | status | when | Retry-After |", "|---|---|---|---|"]
    for failure in Failure:
        kind = failure.kind
        retry = "yes" if kind.retry else ""
        rows.append(f"| `/problems/{kind.slug}` | {kind.status} | {kind.when} | {retry} |")
    return "\n".join(rows)


__all__ = ["BY_SLUG", "markdown_table", "problem_body", "problem_response", "problem_responses"]
