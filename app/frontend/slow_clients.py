"""uvicorn's HTTP/1.1 protocol with a deadline for each request's line and headers.

uvicorn closes idle keep-alive connections (KEEP_ALIVE_S) and caps connections per worker
(MAX_CONNECTIONS), but a connection that sends nothing, or trickles its headers a byte at a
time (slowloris), holds its place for ever: nothing times out until the headers are complete.
Here a timer runs from the connection's start, and from the first byte of each later request,
until its headers are complete; when it fires the connection is closed. Body stalls are the
ASGI layer's (BODY_TIMEOUT_S in app/frontend/uploads.py), where a 408 can still be answered.
"""

import asyncio
import functools

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings


@functools.cache
def header_timeout_s() -> float:
    """HEADER_TIMEOUT_S, read once per worker process."""
    return Settings().header_timeout_s


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes a connection whose headers are too slow."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock: a connection that never sends a request is closed too."""
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        """A request's first byte: it has HEADER_TIMEOUT_S to finish its headers."""
        super().on_message_begin()
        if self._header_timer is None:  # the connection's first request: already running
            self._arm()

    def on_headers_complete(self) -> None:
        """Headers in time: the request goes to the app, the clock stops."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """No timer outlives its connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(header_timeout_s(), self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
