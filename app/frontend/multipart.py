"""multipart/form-data bodies -> the uploads in their parts named 'files', on a lean path.

Parsed directly with python-multipart's parser (FastAPI's form machinery costs more than the
rest of a small request), with Starlette's limits: MAX_FILES files and as many fields, 1 MiB
per non-file part, python-multipart's 4 KiB and 8 headers per part. Every refusal is in the
service's words: the parser's own messages (and its offsets' wording) stay in the log.
"""

import codecs
import re
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import FormParserError, ParseError
from python_multipart.multipart import (
    MAX_BOUNDARY_LENGTH,
    MultipartParser,
    parse_options_header,
)

from app.failures import Failure, ServiceError
from app.serving.answer import Upload

MAX_FILENAME = 255
MAX_FIELD_BYTES = 1024 * 1024  # a non-file part; Starlette's limit too
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')
_EXTENDED_FILENAME = re.compile(rb"(?:^|;)\s*filename\*\s*=\s*([^\s;]+)", re.I)
# python-multipart's words for the limits it enforces, and ours for them.
_PARSER_LIMITS = {
    "header size": "a part's headers are over 4 KiB",
    "header count": "a part has more than 8 headers",
}


def upload_name(name: str | None, index: int) -> str:
    """The name an upload is known by in the answer: as sent (cut at 255), or upload-<index>."""
    name = (name or "").strip() or f"upload-{index}"
    return name if len(name) <= MAX_FILENAME else name[:MAX_FILENAME] + "..."


def malformed(what: str) -> ServiceError:
    """The 400 for a multipart body whose framing is broken, saying what is wrong."""
    return Failure.MALFORMED_MULTIPART.error(f"malformed multipart body: {what}")


def _too_many(max_files: int) -> ServiceError:
    detail = f"too many files: at most {max_files} per request (MAX_FILES)"
    return Failure.TOO_MANY_FILES.error(detail, max_files=max_files)


def _decode(raw: bytes, charset: str) -> str:
    try:
        return raw.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return raw.decode("latin-1")


def extended_filename(disposition: bytes) -> str | None:
    """RFC 8187's ``filename*=UTF-8''%E2%82%AC.png`` in a Content-Disposition, decoded; None
    when absent or unreadable. RFC 7578 tells senders not to use it, but some do (older
    urllib3, some mail-style encoders), and RFC 6266 has it win over ``filename``."""
    if b"filename*" not in disposition.lower():  # the common case: one scan, nothing more
        return None
    # A quoted filename="a; filename*=..." is text, not a parameter: blank quoted strings.
    found = _EXTENDED_FILENAME.search(_QUOTED.sub(b'""', disposition))
    if found is None:
        return None
    charset, _, rest = found.group(1).partition(b"'")
    _language, _, encoded = rest.partition(b"'")
    if charset.lower() not in (b"utf-8", b"iso-8859-1") or not encoded:
        return None
    try:
        return unquote_to_bytes(encoded).decode(charset.decode())
    except UnicodeDecodeError:
        return None


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
            raise malformed(f"a part without a filename is over {MAX_FIELD_BYTES >> 20} MiB")

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
            raise malformed("a part has no name in its Content-Disposition")
        self._name = _decode(options[b"name"], self.charset)
        extended = extended_filename(self._disposition)
        if extended is not None or b"filename" in options:
            self.files += 1
            if self.files > self.max_files:
                raise _too_many(self.max_files)
            self._filename = extended or _decode(options.get(b"filename", b""), self.charset)
        else:
            self.fields += 1
            if self.fields > self.max_files:
                raise _too_many(self.max_files)
            self._filename = None

    def end(self) -> None:
        self.parts.append((self._name, self._filename, b"".join(self._data)))


def _multipart_params(content_type: str) -> tuple[bytes | None, str]:
    """(boundary, charset) of a multipart Content-Type; nothing cached (the header is the
    client's: a cache keyed on it held 20 MB a request)."""
    _, params = parse_options_header(content_type)
    charset = params.get(b"charset", b"utf-8").decode("latin-1")
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        charset = "latin-1"
    return params.get(b"boundary"), charset


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
    return [Upload(upload_name(filename, i), data) for i, (filename, data) in enumerate(files)]


def _parser_error(exc: FormParserError) -> ServiceError:
    """python-multipart's refusal, in our words: which limit, or where the framing broke."""
    said = str(exc).lower()
    for words, ours in _PARSER_LIMITS.items():
        if words in said:
            return malformed(ours)
    offset = exc.offset if isinstance(exc, ParseError) else -1
    return malformed(
        "the body breaks multipart framing" + (f" at byte {offset}" if offset >= 0 else "")
    )


def parse_multipart(body: bytes, content_type: str, max_files: int) -> list[Upload]:
    """The images of a multipart body, parsed directly (the lean path)."""
    boundary, charset = _multipart_params(content_type)
    if not boundary:
        raise malformed("no boundary in the Content-Type")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise malformed(f"the boundary is over {MAX_BOUNDARY_LENGTH} characters")
    collector = _Parts(charset, max_files)
    try:
        parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise _parser_error(exc) from None
    return _files(collector.parts)
