"""Every way a request can fail, as one table; the errors the service's code raises name a row.

Each row is a kind of failure: its slug, the HTTP status it answers with, a title, when it
happens, a message (the detail of a failure whose words never vary, and the example the docs
show), and whether retrying the same request later can succeed. HTTP problem+json
(app/frontend/problems.py), the model owner's wire codes and any other protocol's errors are
derived from these rows; the code that raises one names the row, never a status.
"""

from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(frozen=True)
class Kind:
    """One row of the table: ``type`` is ``/problems/<slug>``."""

    slug: str
    status: int
    title: str
    when: str
    message: str
    retry: bool = False  # retrying the same request later can succeed (Retry-After)


class Failure(Enum):
    """The kinds of failure, in the order the docs list them."""

    BAD_REQUEST = Kind("bad-request", 400, "Bad request", "the request could not be read",
                       "Bad Request")
    MALFORMED_MULTIPART = Kind(
        "malformed-multipart", 400, "Malformed multipart body",
        "the multipart framing is broken: no boundary, a part without a name, a part header "
        "over 4 KiB",
        "malformed multipart body: no boundary in the Content-Type")
    INVALID_INFERENCE_REQUEST = Kind(
        "invalid-inference-request", 400, "Invalid inference request",
        "a v2 inference request whose JSON, input, datatype, shape, data or outputs do not fit "
        "the protocol or the model's metadata (the detail names the field)",
        "input 'digit': shape [2, 28, 28] holds 1568 values, the data has 784")
    UNAUTHORIZED = Kind(
        "unauthorized", 401, "Unauthorized",
        "API_KEYS is set and the request has no valid `Authorization: Bearer` key (sent with "
        "`WWW-Authenticate: Bearer`)",
        "this service needs an API key: send Authorization: Bearer <key>")
    NOT_FOUND = Kind("not-found", 404, "Not found", "no such path", "Not Found")
    UNKNOWN_MODEL = Kind(
        "unknown-model", 404, "Unknown model",
        "the path names a model the service does not list (the known ones are listed)",
        "no model named 'resnet'; known models: lenet, mnist_cnn")
    UNKNOWN_VERSION = Kind(
        "unknown-version", 404, "Unknown version",
        "`?version=N` (or a v2 path's `/versions/<v>`) names a version the model does not have "
        "in WEIGHTS_DIR (the known ones are listed)",
        "lenet has no version 99; known versions: 1, 2")
    METHOD_NOT_ALLOWED = Kind("method-not-allowed", 405, "Method not allowed",
                              "the path exists but not for this method", "Method Not Allowed")
    REQUEST_TIMEOUT = Kind(
        "request-timeout", 408, "Request timeout",
        "the request body stopped arriving for BODY_TIMEOUT_S seconds, or fell behind "
        "MIN_BODY_RATE (the connection is then closed)",
        "the request body stalled: nothing arrived for 15 s (BODY_TIMEOUT_S)")
    CONTENT_TOO_LARGE = Kind(
        "content-too-large", 413, "Content too large", "the body is bigger than MAX_UPLOAD_BYTES",
        "request body exceeds the 20971520-byte limit (MAX_UPLOAD_BYTES)")
    IMAGE_TOO_LARGE = Kind(
        "image-too-large", 413, "Image too large",
        "an image declares more than MAX_IMAGE_PIXELS pixels, or decoding it would take more "
        "than its budget: DECODE_MEMORY_MB, DECODE_TIMEOUT_S, a TIFF tile bigger than the "
        "image, a JPEG of more than 64 scans (read from the file before decoding where it can)",
        "huge.png: image declares 60000x60000 = 3,600,000,000 pixels; the limit is 40,000,000")
    UNSUPPORTED_MEDIA_TYPE = Kind(
        "unsupported-media-type", 415, "Unsupported media type",
        "the body is neither multipart/form-data nor one image",
        "unsupported content type 'text/plain': send multipart/form-data with parts named "
        "'files', or one image as image/* (or application/octet-stream)")
    INVALID_REQUEST = Kind("invalid-request", 422, "Invalid request",
                           "a query parameter is out of range",
                           "query.top_k: Input should be less than or equal to 10")
    NO_FILES = Kind("no-files", 422, "No files", "no part named 'files', or an empty image body",
                    "no files: send one or more parts named 'files' (got parts named 'image')")
    TOO_MANY_FILES = Kind("too-many-files", 422, "Too many files", "more files than MAX_FILES",
                          "too many files: at most 256 per request (MAX_FILES)")
    INVALID_IMAGE = Kind(
        "invalid-image", 422, "Invalid image",
        "an image is undecodable, in a format not allowed, or blank; a request answers 422 only "
        "when none of its images could be used",
        "notes.png: not a recognised image (allowed formats: BMP, GIF, JPEG, PNG, TIFF, WEBP)")
    NOT_A_DIGIT = Kind(
        "not-a-digit", 422, "Not a digit",
        "an image whose ink is not a digit (a letter, a symbol, a word, a shape, a scribble), as "
        "the model's outlier classes judge it at its operating point; the problem carries the "
        "best guess among the digits (`label`, `confidence`) and `score`, how sure the service "
        "is that the image is not one digit",
        "hello.png: not a digit (score 0.98); the best guess among digits is 2 at 0.61")
    SEVERAL_DIGITS = Kind(
        "several-digits", 422, "Several digits",
        "an image that holds several digits side by side (a number): /predict reads one digit "
        "per image; like not-a-digit, it carries the best guess and the score",
        "meter.jpg: several digits side by side (score 0.99): one digit per image here; send "
        "each digit as its own image; the best guess among digits is 8 at 0.74")
    HEADERS_TOO_LARGE = Kind(
        "headers-too-large", 431, "Request header fields too large",
        "the request line and headers together are over MAX_HEADER_BYTES (the connection is "
        "then closed)",
        "the request line and headers are over 32768 bytes (MAX_HEADER_BYTES)")
    CLIENT_CLOSED = Kind(
        "client-closed", 499, "Client closed request",
        "the client closed the connection before its body had arrived: nothing is sent, and "
        "the metrics count it as 499 (nginx's code for it), not as a server error",
        "the client closed the connection after 4096 of 65536 body bytes")
    INFERENCE_FAILED = Kind(
        "inference-failed", 500, "Inference failed",
        "the model raised on the batch that held these images (the log has why)",
        "inference failed for this batch (the log has why)")
    INTERNAL_ERROR = Kind("internal-error", 500, "Internal error",
                          "anything else that went wrong (the log has why)",
                          "internal error; the service is still running")
    MODEL_NOT_LOADED = Kind(
        "model-not-loaded", 503, "Model not loaded",
        "the model has no usable checkpoint or could not start (the detail says how to fix it); "
        "retrying does not help until someone does",
        "model 'vgg16' is not loaded: no checkpoint vgg16.safetensors in WEIGHTS_DIR; make it "
        "with: python -m models.train --model vgg16 --data-dir ../shared/data")
    WEIGHTS_UNREADABLE = Kind(
        "weights-unreadable", 503, "Weights folder unreadable",
        "`POST /models/reload`: WEIGHTS_DIR cannot be listed (a volume not mounted?); nothing "
        "was changed, and what served before still serves",
        "WEIGHTS_DIR cannot be listed (No such file or directory); nothing was changed")
    QUEUE_FULL = Kind("queue-full", 503, "Queue full", "the model's queue holds MAX_QUEUE images",
                      "lenet queue is full (2040 of 2048 images waiting)", retry=True)
    TOO_MANY_CONNECTIONS = Kind(
        "too-many-connections", 503, "Too many connections",
        "the worker that took the connection holds MAX_CONNECTIONS connections and requests "
        "(the connection is then closed)",
        "this worker holds its 1000 connections (MAX_CONNECTIONS)", retry=True)
    SHUTTING_DOWN = Kind("shutting-down", 503, "Shutting down",
                         "the service is stopping (another replica can answer)",
                         "the service is shutting down", retry=True)
    INFERENCE_TIMEOUT = Kind("inference-timeout", 504, "Inference timeout",
                             "no answer within REQUEST_TIMEOUT_S",
                             "no answer from lenet within 30 s")  # fmt: skip

    @property
    def kind(self) -> Kind:
        """The row."""
        return self.value

    def error(self, detail: str | None = None, **extra: Any) -> "ServiceError":
        """This failure for one request: ``detail`` says what happened (default: the message),
        ``extra`` adds members to the problem object."""
        return ServiceError(self, self.kind.message if detail is None else detail, **extra)


BY_SLUG = {f.kind.slug: f for f in Failure}


class ServiceError(Exception):
    """A request the service refuses or cannot finish, and which row of the table says why."""

    def __init__(self, failure: Failure, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.failure, self.detail, self.extra = failure, detail, extra


def queue_full(name: str, queued: int, limit: int) -> ServiceError:
    """The 503 for images that would not fit ``name``'s queue."""
    return Failure.QUEUE_FULL.error(f"{name} queue is full ({queued} of {limit} images waiting)")
