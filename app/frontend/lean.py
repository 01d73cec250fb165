"""The lean path's plumbing: routes served by plain ASGI apps, answers sent as raw bytes, and
work stopped when its client leaves.

FastAPI's generic body, dependency and validation machinery costs more than the rest of a small
request, so the inference routes (``/predict``, the v2 protocol's ``infer``) are plain ASGI apps
that read the body themselves and answer with orjson. FastAPI still routes to them and
documents them from a declaration function whose signature is the route's contract.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.failures import Failure

log = logging.getLogger(__name__)
T = TypeVar("T")


def lean_route(app: ASGIApp) -> type[APIRoute]:
    """A route class that FastAPI routes and documents like any other, served by ``app``."""

    class LeanRoute(APIRoute):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.app = app

    return LeanRoute


def header(scope: Scope, name: bytes, repeated: Failure = Failure.BAD_REQUEST) -> str | None:
    """One request header as text (UTF-8, as browsers send non-ASCII file names), stripped;
    the ``repeated`` failure (400) when the request repeats it, since two readings of one
    request must never disagree."""
    values = [v for k, v in scope["headers"] if k == name]
    if len(values) > 1:
        raise repeated.error(f"the request has {len(values)} {name.decode().title()} headers")
    return values[0].decode("utf-8", "replace").strip() if values else None


def query(scope: Scope) -> dict[str, str]:
    """The query parameters (the last of a repeated one), blank values kept."""
    return dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))


async def send_bytes(
    send: Send, body: bytes, content_type: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """A 200 with ``body``, its type and length, and any other ``headers``."""
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def unless_client_leaves(
    receive: Receive, body_read: asyncio.Event, work: Callable[[], Awaitable[T]]
) -> tuple[T] | None:
    """``work``'s result (in a 1-tuple), or None when the client hung up first: then nobody is
    left to answer, and the work (decoding, queueing) is cancelled. ``work`` reads the body
    and sets ``body_read`` when it has; until then, the body's reader hears a disconnect."""

    async def client_gone() -> None:
        await body_read.wait()
        while (await receive())["type"] != "http.disconnect":
            pass

    task = asyncio.ensure_future(work())
    watch = asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if not task.done():
        task.cancel()
        log.info("the client left before its answer; its work was stopped")
        return None
    return (task.result(),)
