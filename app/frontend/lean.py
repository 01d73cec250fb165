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

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Send

log = logging.getLogger(__name__)
T = TypeVar("T")


def lean_route(app: ASGIApp) -> type[APIRoute]:
    """A route class that FastAPI routes and documents like any other, served by ``app``."""

    class LeanRoute(APIRoute):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.app = app

    return LeanRoute


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
