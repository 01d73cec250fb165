"""uvicorn's HTTP/1.1 protocol with the limits a front proxy puts on a request's line and headers.

uvicorn closes idle keep-alive connections (KEEP_ALIVE_S) and caps connections per worker
(MAX_CONNECTIONS), but nothing bounds a request's head: a connection that sends nothing, or
trickles its headers (slowloris), holds its place for ever, and httptools keeps a header of any
size, copying the value again with every chunk (a 98 MB header took a worker 11 s). Here, as
nginx and h11 do:

- time: a timer runs from the connection's start, and from the first byte of each later
  request, until its headers are complete (HEADER_TIMEOUT_S); then the connection is closed;
- size: the bytes of a request's line and headers are counted as they arrive, before the parser
  sees them; beyond MAX_HEADER_BYTES the request gets 431 and the parser never sees the rest.

uvicorn's own refusals (a request it cannot parse, 400; a worker at MAX_CONNECTIONS, 503) are
problem+json too. A refusal written before the request was read is followed by a lingering
close: the client sees the answer, not a reset. Body stalls and pace are the ASGI layer's
(app/frontend/uploads.py), where a 408 can still be answered.
"""

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app.config import get_settings
from app.failures import Failure, ServiceError
from app.frontend.problems import PROBLEM_JSON, problem_body, problem_response
from app.frontend.uploads import LINGER_BYTES, LINGER_S

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

log = logging.getLogger(__name__)


async def too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    """What uvicorn answers a request beyond MAX_CONNECTIONS, as problem+json."""
    settings = get_settings()
    detail = f"this worker holds its {settings.max_connections} connections (MAX_CONNECTIONS)"
    response = problem_response(Failure.TOO_MANY_CONNECTIONS.error(detail), settings.retry_after_s)
    response.headers["connection"] = "close"
    await response(scope, receive, send)


class GuardedHttpProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` bounding each request's head in time and in bytes."""

    _timer: asyncio.TimerHandle | None = None  # the header deadline, then the lingering close
    _in_head = True  # the bytes arriving belong to a request's line and headers
    _head_left = 0  # how many more of them that request may send
    _heads = 0  # requests on this connection whose headers were complete
    _refused = False  # answered before it was read: what arrives is dropped
    _dropped = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a connection that never sends a request is closed too."""
        super().connection_made(transport)
        self._head_left = get_settings().max_header_bytes
        self._arm(get_settings().header_timeout_s)

    def data_received(self, data: bytes) -> None:
        """Count a head's bytes before the parser sees them (a compare for body bytes)."""
        if self._refused:
            self._drop(len(data))
            return
        while self._in_head and len(data) > self._head_left:
            # This read would take the head past the limit: parse up to the limit (a view, no
            # copy); unless the head ended there, the request is refused, the rest unparsed.
            view, room, heads = memoryview(data), self._head_left, self._heads
            self._head_left = 0
            super().data_received(view[:room])  # type: ignore[arg-type]  # httptools takes views
            if self._refused:  # uvicorn could not parse it: refused already
                return
            if self._heads == heads:
                limit = get_settings().max_header_bytes
                detail = f"the request line and headers are over {limit} bytes (MAX_HEADER_BYTES)"
                self._refuse(Failure.HEADERS_TOO_LARGE.error(detail, limit_bytes=limit))
                return
            data = view[room:]  # type: ignore[assignment]  # the body, or the next request
        if self._in_head:
            # A head that starts in the read where the previous request ended (pipelining)
            # goes uncounted to the end of that read: one socket read, bounded all the same.
            self._head_left -= len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        """A request's first byte: it has HEADER_TIMEOUT_S to finish its headers."""
        super().on_message_begin()
        if self._timer is None:  # the connection's first request: already running
            self._arm(get_settings().header_timeout_s)

    def on_headers_complete(self) -> None:
        """Headers in time and in size: the request goes to the app, the clock stops."""
        self._disarm()
        self._in_head, self._heads = False, self._heads + 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """What arrives next is the next request's head, with a budget of its own."""
        super().on_message_complete()
        self._in_head, self._head_left = True, get_settings().max_header_bytes

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse, answered as problem+json."""
        self._refuse(Failure.BAD_REQUEST.error("the request is not valid HTTP/1.1"))

    def _start_asgi_task(self, cycle: "RequestResponseCycle", app: "ASGI3Application") -> None:
        if app is service_unavailable:  # uvicorn's plain-text 503 at MAX_CONNECTIONS
            app = too_many_connections  # type: ignore[assignment]
        super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection."""
        self._disarm()
        super().connection_lost(exc)

    def _refuse(self, exc: ServiceError) -> None:
        """Answer ``exc`` before the request was read, then drop whatever the client still sends
        until it closes, within the bounds of the body's lingering close."""
        log.info("refused a request before reading it: %s", exc.detail)
        self._refused = True
        self._disarm()
        self._unset_keepalive_if_required()
        if self.cycle is not None and not self.cycle.response_complete:
            if self._in_head:  # pipelined behind a request still being answered: let that
                self.cycle.keep_alive = False  # answer finish, then close; never write into it
            else:  # the body of the request in progress is broken: nothing can answer it
                self.transport.close()
            return
        body = orjson.dumps(problem_body(exc))
        head = [STATUS_LINE[exc.failure.kind.status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: ", PROBLEM_JSON.encode(), b"\r\n"]
        head += [b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the answer, then the end
        self._arm(LINGER_S)

    def _drop(self, n: int) -> None:
        self._dropped += n
        if self._dropped > LINGER_BYTES:
            self._close()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._close)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()
