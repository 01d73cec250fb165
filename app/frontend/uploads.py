"""Reading uploads: the body's guards (size, pauses, pace, a client that leaves), and a
multipart (app/frontend/multipart.py) or raw-image body -> its uploads, named.
"""

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.failures import Failure, ServiceError
from app.frontend.lean import header
from app.frontend.multipart import parse_multipart, upload_name
from app.frontend.problems import problem_response
from app.serving.answer import Upload

log = logging.getLogger(__name__)


def _too_large(limit: int) -> ServiceError:
    detail = f"request body exceeds the {limit}-byte limit (MAX_UPLOAD_BYTES)"
    return Failure.CONTENT_TOO_LARGE.error(detail, limit_bytes=limit)


# An answer sent before the whole body was read (a 413, but also a 401 or 404 that needs none
# of it) first reads the rest and throws it away, up to these bounds: a client that sends its
# whole body before reading the answer (httpx, requests, urllib, a browser's fetch) would
# otherwise meet a connection reset instead of the problem+json. This is nginx's lingering
# close; beyond the bounds, or for a client waiting on "Expect: 100-continue", the connection
# closes after the answer instead.
LINGER_BYTES = 64 * 1024 * 1024
LINGER_S = 10.0


async def discard_body(receive: Receive, max_bytes: int = LINGER_BYTES) -> bool:
    """Read and drop the rest of a request body, within the bounds; whether it all arrived."""
    seen = 0
    try:
        async with asyncio.timeout(LINGER_S):
            while seen <= max_bytes:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                seen += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        pass
    return False


class BodyLimitMiddleware:
    """The body's guards: 413 over the limit; 408 when it pauses too long or falls behind the
    minimum pace; 499 in the metrics, and one INFO line, when the client leaves mid-body; and
    whatever the answer, the unread rest of the body dropped before it goes out (LINGER_BYTES).

    The pace is Apache's mod_reqtimeout (``body=15,MinRate=500``): a body may take
    BODY_TIMEOUT_S plus one second per MIN_BODY_RATE bytes it has sent, so a client trickling a
    byte at a time cannot hold a connection (and, with many, every connection) for longer than
    BODY_TIMEOUT_S, while a slow honest upload keeps earning time.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, body_timeout_s: float, min_body_rate: int
    ) -> None:
        self.app, self.max_bytes, self.body_timeout_s = app, max_bytes, body_timeout_s
        self.min_body_rate = min_body_rate

    def _wait_s(self, started: float, seen: int) -> float:
        """How long the next read may take: the pause limit, or less when the pace says so."""
        if not self.min_body_rate:
            return self.body_timeout_s
        earned = started + self.body_timeout_s + seen / self.min_body_rate - time.monotonic()
        return max(0.0, min(self.body_timeout_s, earned))

    def _too_slow(self, waited: float, started: float, seen: int) -> ServiceError:
        if waited >= self.body_timeout_s:
            detail = f"nothing arrived for {self.body_timeout_s:g} s (BODY_TIMEOUT_S)"
            return Failure.REQUEST_TIMEOUT.error(f"the request body stalled: {detail}")
        took = time.monotonic() - started
        return Failure.REQUEST_TIMEOUT.error(
            f"the request body is too slow: {seen} bytes in {took:.1f} s; a body may take "
            f"{self.body_timeout_s:g} s plus 1 s per {self.min_body_rate} bytes "
            "(BODY_TIMEOUT_S, MIN_BODY_RATE)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        waits = headers.get(b"expect", b"").lower() == b"100-continue"
        # A request without a length or chunked encoding has no body to read.
        done = length == 0 or (length is None and b"transfer-encoding" not in headers)
        seen, asked, stalled, started = 0, False, False, 0.0

        async def guarded_receive() -> Message:
            nonlocal seen, done, asked, stalled, started
            asked = True  # uvicorn has now sent "100 Continue" to a client that waited
            if done:  # after the body, receive() waits for a disconnect: no deadline
                return await receive()
            started = started or time.monotonic()  # the pace counts from the first read
            wait = self._wait_s(started, seen)
            try:
                async with asyncio.timeout(wait):
                    message = await receive()
            except TimeoutError:
                stalled = True
                raise self._too_slow(wait, started, seen) from None
            if message["type"] == "http.disconnect":
                done = True
                raise client_closed(seen, length)
            seen += len(message.get("body", b""))
            done = not message.get("more_body", False)
            if seen > self.max_bytes:  # chunked bodies declare no length
                raise _too_large(self.max_bytes)
            return message

        async def lingering_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not done:
                worth_reading = not stalled and not (waits and not asked)
                worth_reading = worth_reading and (length or 0) <= LINGER_BYTES
                if not (worth_reading and await discard_body(receive)):
                    message = _with_close(message)
            await send(message)

        if length is not None and length > self.max_bytes:
            await problem_response(_too_large(self.max_bytes))(scope, receive, lingering_send)
            return
        await self.app(scope, guarded_receive, lingering_send)


def client_closed(seen: int, length: int | None) -> ServiceError:
    """A client that left before its body had arrived: nobody to answer, nothing the service
    did wrong; logged once, at INFO, and counted as 499 rather than a 5xx."""
    of = f" of {length}" if length is not None else ""
    detail = f"the client closed the connection after {seen}{of} body bytes"
    log.info("%s", detail)
    return Failure.CLIENT_CLOSED.error(detail)


def _with_close(message: Message) -> Message:
    """A response start that tells uvicorn (and the client) the connection ends with it."""
    return {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}


def media_type(content_type: str) -> str:
    """``multipart/form-data; boundary=x`` -> ``multipart/form-data``."""
    return content_type.split(";")[0].strip().lower()


def is_raw_image(media: str) -> bool:
    """Whether a body of this media type is one image (image/*, or plain octets)."""
    return media.startswith("image/") or media == "application/octet-stream"


def raw_image(body: bytes, name: str | None) -> list[Upload]:
    """The one image of an ``image/*`` body."""
    if not body:
        raise Failure.NO_FILES.error("the request body is empty: send the image bytes")
    return [Upload(upload_name(name, 0), body)]


def unsupported(media: str) -> ServiceError:
    """The 415 for a body that is neither multipart nor an image."""
    return Failure.UNSUPPORTED_MEDIA_TYPE.error(
        f"unsupported content type {media or '(none)'!r}: send "
        "multipart/form-data with parts named 'files', or one image as image/* "
        "(or application/octet-stream)"
    )


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the body guards outside bound its size and pace)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":  # BodyLimitMiddleware says so first
            raise Failure.CLIENT_CLOSED.error()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def uploads_of(scope: Scope, body: bytes, max_files: int, filename: str | None) -> list[Upload]:
    """The images of a request body: the parts named 'files' of a multipart body, or the one
    image of an image/* (or octet-stream) body, named by X-Filename or else ``filename`` (the
    query's)."""
    content_type = header(scope, b"content-type") or ""
    media = media_type(content_type)
    if is_raw_image(media):
        return raw_image(body, header(scope, b"x-filename") or filename)
    if media != "multipart/form-data":
        raise unsupported(media)
    return parse_multipart(body, content_type, max_files)
