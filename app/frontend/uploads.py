"""Reading uploads: the body-size guard, and multipart or raw-image bodies -> (name, bytes).

Two readers give the same uploads and the same errors: the lean one parses the body directly
with python-multipart (the predict route's hot path), the other through Starlette's form
parser (FastAPI's documented behaviour, which tests hold the lean one to).
"""

import codecs
import functools
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import errors
from app.problems import problem_response

MAX_FILENAME = 255
MAX_FIELD_BYTES = 1024 * 1024  # a non-file part; Starlette's limit too


@dataclass(frozen=True)
class Upload:
    """One uploaded image, as received."""

    filename: str
    data: bytes


def _too_large(limit: int) -> errors.BodyTooLarge:
    detail = f"request body exceeds the {limit}-byte limit (MAX_UPLOAD_BYTES)"
    return errors.BodyTooLarge(detail, limit_bytes=limit)


class BodyLimitMiddleware:
    """413 before reading when Content-Length is too big; else stop reading at the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await problem_response(_too_large(self.max_bytes))(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # chunked bodies declare no length
                    raise _too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


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
        raise errors.NoFiles("the request body is empty: send the image bytes")
    return [Upload(_filename(name, 0), body)]


def unsupported(media: str) -> errors.UnsupportedMediaType:
    """The 415 for a body that is neither multipart nor an image."""
    return errors.UnsupportedMediaType(
        f"unsupported content type {media or '(none)'!r}: send "
        "multipart/form-data with parts named 'files', or one image as image/* "
        "(or application/octet-stream)"
    )


def _multipart_problem(message: str, max_files: int) -> errors.ServiceError:
    if message.startswith(("Too many files", "Too many fields")):
        detail = f"too many files: at most {max_files} per request (MAX_FILES)"
        return errors.TooManyFiles(detail, max_files=max_files)
    return errors.MalformedMultipart(f"malformed multipart body: {message}")


def _files(parts: list[tuple[str, str | None, bytes]]) -> list[Upload]:
    """The parts named 'files' that carry a filename, in order; 422 when there are none."""
    files = [
        (filename, data)
        for name, filename, data in parts
        if name == "files" and filename is not None
    ]
    if not files:
        got = sorted({name for name, _, _ in parts})
        raise errors.NoFiles(
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


@functools.lru_cache(maxsize=256)
def _multipart_params(content_type: str) -> tuple[bytes | None, str]:
    """(boundary, charset) of a multipart Content-Type; clients reuse theirs, so cached."""
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


async def read_uploads(request: Request, max_files: int) -> list[Upload]:
    """The images of a request through Starlette's parsers (FastAPI's documented behaviour)."""
    media = media_type(request.headers.get("content-type", ""))
    if is_raw_image(media):
        name = request.headers.get("x-filename") or request.query_params.get("filename")
        return raw_image(await request.body(), name)
    if media != "multipart/form-data":
        raise unsupported(media)
    try:
        form = await request.form(max_files=max_files, max_fields=max_files)
    except HTTPException as exc:
        raise _multipart_problem(str(exc.detail), max_files) from None
    try:
        parts = [
            (k, v.filename if isinstance(v, UploadFile) else None, v) for k, v in form.multi_items()
        ]
        return _files(
            [(k, f, await v.read() if isinstance(v, UploadFile) else b"") for k, f, v in parts]
        )
    finally:
        await form.close()
