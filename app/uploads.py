"""Reading uploads: the body-size guard, and multipart or raw-image bodies -> (name, bytes)."""

from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.problems import ProblemError, problem_response

MAX_FILENAME = 255


@dataclass(frozen=True)
class Upload:
    """One uploaded image, as received."""

    filename: str
    data: bytes


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        413,
        f"request body exceeds the {limit}-byte limit (MAX_UPLOAD_BYTES)",
        slug="content-too-large",
        limit_bytes=limit,
    )


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


async def read_uploads(request: Request, max_files: int) -> list[Upload]:
    """The images of a request: multipart parts named 'files', or one raw image/* body."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type.startswith("image/"):
        body = await request.body()
        if not body:
            raise ProblemError(
                422,
                "the request body is empty: send the image bytes",
                slug="no-files",
                title="No files",
            )
        name = request.headers.get("x-filename") or request.query_params.get("filename")
        return [Upload(_filename(name, 0), body)]
    if media_type != "multipart/form-data":
        raise ProblemError(
            415,
            f"unsupported content type {media_type or '(none)'!r}: send "
            "multipart/form-data with parts named 'files', or one image as image/*",
            slug="unsupported-media-type",
        )
    try:
        form = await request.form(max_files=max_files, max_fields=max_files)
    except HTTPException as exc:
        if "Too many files" in str(exc.detail) or "Too many fields" in str(exc.detail):
            raise ProblemError(
                422,
                f"too many files: at most {max_files} per request (MAX_FILES)",
                slug="too-many-files",
                title="Too many files",
                max_files=max_files,
            ) from None
        raise ProblemError(
            400, f"malformed multipart body: {exc.detail}", slug="malformed-multipart"
        ) from None
    try:
        parts = [(k, v) for k, v in form.multi_items() if isinstance(v, UploadFile)]
        files = [v for k, v in parts if k == "files"]
        if not files:
            got = sorted({k for k, _ in form.multi_items()})
            raise ProblemError(
                422,
                "no files: send one or more parts named 'files'"
                + (f" (got parts named {', '.join(map(repr, got))})" if got else ""),
                slug="no-files",
                title="No files",
            )
        return [Upload(_filename(f.filename, i), await f.read()) for i, f in enumerate(files)]
    finally:
        await form.close()
