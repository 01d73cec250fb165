"""Why a request cannot be answered as asked: typed exceptions the service's code raises.

Each names its problem type (a slug of the table in app/problems.py, which maps it to HTTP);
``detail`` says what happened to this request, ``extra`` adds members to the problem object.
Nothing here knows about HTTP.
"""

from typing import Any, ClassVar


class ServiceError(Exception):
    """A request the service refuses or cannot finish; ``slug`` names its problem type."""

    slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail, self.retry_after, self.extra = detail, retry_after, extra


class MalformedMultipart(ServiceError):
    """The multipart framing is broken."""

    slug = "malformed-multipart"


class Unauthorized(ServiceError):
    """API keys are on and the request has no valid one."""

    slug = "unauthorized"


class UnknownModel(ServiceError):
    """The path names a model the service does not list."""

    slug = "unknown-model"


class BodyTooLarge(ServiceError):
    """The body is bigger than MAX_UPLOAD_BYTES."""

    slug = "content-too-large"


class BodyStalled(ServiceError):
    """The client stopped sending its request body for longer than BODY_TIMEOUT_S."""

    slug = "request-timeout"


class ImageTooLarge(ServiceError):
    """An image declares more pixels than MAX_IMAGE_PIXELS."""

    slug = "image-too-large"


class UnsupportedMediaType(ServiceError):
    """The body is neither multipart nor an image."""

    slug = "unsupported-media-type"


class InvalidRequest(ServiceError):
    """A parameter is out of its range."""

    slug = "invalid-request"


class NoFiles(ServiceError):
    """The request carries no image."""

    slug = "no-files"


class TooManyFiles(ServiceError):
    """More files than MAX_FILES."""

    slug = "too-many-files"


class InvalidImage(ServiceError):
    """No file of the request could be used (undecodable, a format not allowed, blank)."""

    slug = "invalid-image"


class InferenceFailed(ServiceError):
    """The model raised on the batch that held these images."""

    slug = "inference-failed"


class ModelNotLoaded(ServiceError):
    """The model is listed but has no usable checkpoint, or could not start."""

    slug = "model-not-loaded"


class QueueFull(ServiceError):
    """The model's queue cannot take these images now."""

    slug = "queue-full"


class ShuttingDown(ServiceError):
    """The service is stopping, or lost its model owner."""

    slug = "shutting-down"


class InferenceTimeout(ServiceError):
    """No answer within REQUEST_TIMEOUT_S."""

    slug = "inference-timeout"
