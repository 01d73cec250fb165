"""Reading uploads: the body-size guard, and multipart or raw-image bodies -> (name, bytes).

Multipart bodies are parsed directly with python-multipart's parser (FastAPI's form machinery
costs more than the rest of a small request), with Starlette's limits: MAX_FILES files and as
many fields, 1 MiB per non-file part.
"""

import asyncio
import codecs
from urllib.parse import parse_qsl

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.failures import Failure, ServiceError
from app.frontend.problems import problem_response
from app.serving.answer import Upload

MAX_FILENAME = 255
MAX_FIELD_BYTES = 1024 * 1024  # a non-file part; Starlette's limit too


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
    """The body's guards: 413 over the limit, 408 when it stalls, and whatever the answer, the
    unread rest of the body dropped before it goes out (see LINGER_BYTES)."""

    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout_s: float) -> None:
        self.app, self.max_bytes, self.body_timeout_s = app, max_bytes, body_timeout_s

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
        seen, asked, stalled = 0, False, False

        async def guarded_receive() -> Message:
            nonlocal seen, done, asked, stalled
            asked = True  # uvicorn has now sent "100 Continue" to a client that waited
            if done:  # after the body, receive() waits for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    message = await receive()
            except TimeoutError:
                stalled = True
                detail = f"nothing arrived for {self.body_timeout_s:g} s (BODY_TIMEOUT_S)"
                raise Failure.REQUEST_TIMEOUT.error(f"the request body stalled: {detail}") from None
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


def _with_close(message: Message) -> Message:
    """A response start that tells uvicorn (and the client) the connection ends with it."""
    return {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}


def _filename(name: str | None, index: int) -> str:
    name = (name or "").strip() or f"upload-{index}"
    return name if len(name) <= MAX_FILENAME else name[:MAX_FILENAME] + "..."


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
    return [Upload(_filename(name, 0), body)]


def unsupported(media: str) -> ServiceError:
    """The 415 for a body that is neither multipart nor an image."""
    return Failure.UNSUPPORTED_MEDIA_TYPE.error(
        f"unsupported content type {media or '(none)'!r}: send "
        "multipart/form-data with parts named 'files', or one image as image/* "
        "(or application/octet-stream)"
    )


def _multipart_problem(message: str, max_files: int) -> ServiceError:
    if message.startswith(("Too many files", "Too many fields")):
        detail = f"too many files: at most {max_files} per request (MAX_FILES)"
        return Failure.TOO_MANY_FILES.error(detail, max_files=max_files)
    return Failure.MALFORMED_MULTIPART.error(f"malformed multipart body: {message}")


def _files(parts: list[tuple[str, str | None, bytes]]) -> list[Upload]:
    """The parts named 'files' that carry a filename, in order; 422 when there are none."""
    files = [
        (filename, data)
        for name, filename, data in parts
        if name == "files" and filename is not None
    ]
    if not files:
        got = sorted({name for name, _, _ in parts})
        raise Failure.NO_FILES.error(
            "no files: send one or more parts named 'files'"
            + (f" (got parts named {', '.join(map(repr, got))})" if got else "")
        )
    return [Upload(_filename(filename, i), data) for i, (filename, data) in enumerate(files)]


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


class _Parts:
    """python-multipart callbacks collecting (name, filename or None, bytes) per part."""

    def __init__(self, charset: str, max_files: int) -> None:
        self.charset, self.max_files = charset, max_files
        self.parts: list[tuple[str, str | None, bytes]] = []
        self.files = self.fields = 0
        self._header = self._value = self._disposition = b""
        self._data: list[bytes] = []
        self._name: str = ""
        self._filename: str | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.begin,
            "on_part_data": self.data,
            "on_part_end": self.end,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
        }

    def begin(self) -> None:
        self._data, self._disposition = [], b""

    def data(self, data: bytes, start: int, end: int) -> None:
        self._data.append(data[start:end])
        if self._filename is None and sum(map(len, self._data)) > MAX_FIELD_BYTES:
            raise ValueError(f"Part exceeded maximum size of {MAX_FIELD_BYTES // 1024}KB.")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise ValueError('The Content-Disposition header field "name" must be provided.')
        self._name = _decode(options[b"name"], self.charset)
        if b"filename" in options:
            self.files += 1
            if self.files > self.max_files:
                raise ValueError(f"Too many files. Maximum number of files is {self.max_files}.")
            self._filename = _decode(options[b"filename"], self.charset)
        else:
            self.fields += 1
            if self.fields > self.max_files:
                raise ValueError(f"Too many fields. Maximum number of fields is {self.max_files}.")
            self._filename = None

    def end(self) -> None:
        self.parts.append((self._name, self._filename, b"".join(self._data)))


def _multipart_params(content_type: str) -> tuple[bytes | None, str]:
    """(boundary, charset) of a multipart Content-Type."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    return params.get(b"boundary"), charset


def parse_multipart(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The images of a multipart body, parsed directly (the lean path)."""
    boundary, charset = _multipart_params(content_type)
    if not boundary:
        raise _multipart_problem("Missing boundary in multipart.", max_files)
    collector = _Parts(charset, max_files)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except ValueError as exc:
        raise _multipart_problem(str(exc), max_files) from None
    except FormParserError:
        raise _multipart_problem("Invalid multipart data.", max_files) from None
    return _files(collector.parts)


async def read_body(receive: Receive) -> bytes:
    """The whole request body (the body guards outside bound its size and pace)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    """One request header as text (UTF-8, as browsers send non-ASCII names); 400 when the
    request repeats it, since two readings of one request must never disagree."""
    values = [v for k, v in scope["headers"] if k == name]
    if len(values) > 1:
        shown = name.decode().title()
        raise Failure.BAD_REQUEST.error(f"the request has {len(values)} {shown} headers")
    return values[0].decode("utf-8", "replace") if values else None


def uploads_of(scope: Scope, body: bytes, max_files: int) -> list[Upload]:
    """The images of a request body: the parts named 'files' of a multipart body, or the one
    image of an image/* (or octet-stream) body, named by X-Filename or ``?filename=``."""
    content_type = _header(scope, b"content-type") or ""
    media = media_type(content_type)
    if is_raw_image(media):
        name = _header(scope, b"x-filename")
        if not name:
            query = scope["query_string"].decode("latin-1")
            name = dict(parse_qsl(query, keep_blank_values=True)).get("filename")
        return raw_image(body, name)
    if media != "multipart/form-data":
        raise unsupported(media)
    return parse_multipart(body, content_type, max_files)
