"""Failures as the v2 protocol speaks them: ``{"error": "<detail>"}`` with the failure's status.

Every refusal of the service is a row of the failure table, answered as problem+json by
whichever part refuses (the API-key check, the body guards, routing, the handlers). Under
``/v2`` this middleware turns each such answer into the protocol's error object, keeping the
status and headers (Retry-After, WWW-Authenticate), so the protocol's clients (tritonclient,
the KServe SDK) raise the service's own words. One translation for every source of errors;
a 431 or 400 refused before the request line was read (app/frontend/protocol.py) cannot know
its path and stays problem+json.
"""

from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.failures import Failure
from app.frontend.problems import PROBLEM_JSON, problem_responses
from app.frontend.security import route_path

V2_ERROR_REF = {"$ref": "#/components/schemas/V2Error"}
_PROBLEM = PROBLEM_JSON.encode()


def speaks_v2(path: str) -> bool:
    """Whether a path is the v2 protocol's."""
    return path == "/v2" or path.startswith("/v2/")


def error_body(detail: str) -> bytes:
    """The protocol's error object."""
    return orjson.dumps({"error": detail})


class V2ErrorMiddleware:
    """Under /v2, problem+json answers become ``{"error": detail}`` (application/json)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not speaks_v2(route_path(scope)):
            await self.app(scope, receive, send)
            return
        start: Message | None = None  # a problem's response start, held until its body is in
        chunks: list[bytes] = []

        async def translating_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if (b"content-type", _PROBLEM) in message.get("headers", []):
                    start = message
                    return
            elif start is not None and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = error_body(orjson.loads(b"".join(chunks)).get("detail", ""))
                kept = [
                    (k, v)
                    for k, v in start.get("headers", [])
                    if k not in (b"content-type", b"content-length")
                ]
                headers = [
                    *kept,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({**start, "headers": headers})
                message = {"type": "http.response.body", "body": body}
            await send(message)

        await self.app(scope, receive, translating_send)


def v2_error_responses(*failures: Failure) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for these failures in the v2 protocol's words: the problem
    responses' descriptions, headers and examples, with the V2Error schema."""
    out = problem_responses(*failures)
    for entry in out.values():
        problem = entry["content"][PROBLEM_JSON]
        examples = {
            slug: {"summary": ex["summary"], "value": {"error": ex["value"]["detail"]}}
            for slug, ex in problem["examples"].items()
        }
        entry["content"] = {"application/json": {"schema": V2_ERROR_REF, "examples": examples}}
    return out
