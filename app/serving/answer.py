"""The serving core's one request shape: open, admit, answer.

Every protocol adapter (``/predict``, the v2 protocol's infer) decodes its own protocol and
encodes the answer; in between it does the same three things here, and nothing here calls back
into it:

1. ``async with served(zoo, metrics, name) as ticket``: the request is counted in the metrics
   by model, the version that answered and outcome, however it ends (answered, refused at any
   step, adapter's own refusals included, or left by its client);
2. ``ticket.admit(version)``: the version that will answer, resolved once, before the body is
   read: an unknown model or version (404), or one not loaded or stopping (503), is refused
   here;
3. ``await ticket.answer(uploads)`` (image files: decoding and preprocessing) or
   ``await ticket.answer_digits(digits)`` (MNIST-style digits as they are): the queue bound,
   the deadline (REQUEST_TIMEOUT_S), the model call. Per upload in order, its probabilities or
   why that one image could not be used, the model's verdict included: an image that is not one
   digit (app/serving/verdict.py) is refused with the model's best guess; the request fails
   only when no image could be used.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from app.digits.pipeline import Rejection
from app.failures import Failure, ServiceError
from app.metrics import UNKNOWN, Metrics
from app.serving.catalog import Loaded, Model
from app.serving.verdict import Refusal, judge
from app.serving.zoo import Zoo

T = TypeVar("T")

# The failures of every request the core answers; each adapter adds its own protocol's rows.
FAILURES = (
    Failure.UNKNOWN_MODEL,
    Failure.UNKNOWN_VERSION,
    Failure.REQUEST_TIMEOUT,
    Failure.CONTENT_TOO_LARGE,
    Failure.IMAGE_TOO_LARGE,
    Failure.UNSUPPORTED_MEDIA_TYPE,
    Failure.NO_FILES,
    Failure.TOO_MANY_FILES,
    Failure.INVALID_IMAGE,
    Failure.NOT_A_DIGIT,
    Failure.SEVERAL_DIGITS,
    Failure.INFERENCE_FAILED,
    Failure.INTERNAL_ERROR,
    Failure.MODEL_NOT_LOADED,
    Failure.QUEUE_FULL,
    Failure.SHUTTING_DOWN,
    Failure.INFERENCE_TIMEOUT,
)


def failures(*own: Failure) -> tuple[Failure, ...]:
    """The core's failures and an adapter's ``own``, in the table's order (as the docs list
    them)."""
    rows = set(FAILURES) | set(own)
    return tuple(f for f in Failure if f in rows)


@dataclass(frozen=True)
class Upload:
    """One uploaded image, as received."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Classified:
    """What the model made of a request's digits."""

    model: Loaded  # the version that answered
    probabilities: np.ndarray  # over the ten digits: a row per answered image, in order


@dataclass(frozen=True)
class Answer(Classified):
    """What the model made of a request's uploads."""

    uploads: list[Upload]
    rejections: list[Rejection]  # the unusable ones and those refused as not a digit, by index
    digits: np.ndarray | None  # the answered uploads' digits as the model saw them, if asked


def top_k(probabilities: np.ndarray, k: int) -> list[list[int]]:
    """Each row's ``k`` most probable classes (never more than it has), best first; ties keep
    the lower class first."""
    k = min(k, probabilities.shape[1])
    return np.argsort(-probabilities, axis=1, kind="stable")[:, :k].tolist()


def rejected(upload: Upload, rejection: Rejection) -> ServiceError:
    """The failure of one unusable upload, naming the file (and for one that is not a digit,
    the model's best guess and its score)."""
    name = upload.filename
    guess = rejection.guess if isinstance(rejection, Refusal) else {}
    return rejection.failure.error(f"{name}: {rejection.detail}", filename=name,
                                   index=rejection.index, **guess)  # fmt: skip


def _refuse_whole(uploads: list[Upload], rejections: list[Rejection], all_or_nothing: bool) -> None:
    """The request's own error, when no image can be used, or (``all_or_nothing``) any cannot:
    the first's."""
    if len(rejections) == len(uploads):
        raise _nothing_usable(uploads, rejections)
    if rejections and all_or_nothing:
        first = rejections[0]
        raise rejected(uploads[first.index], first)


def _nothing_usable(uploads: list[Upload], rejections: list[Rejection]) -> ServiceError:
    """The error when no image could be used: a lone image's own, else 422 listing them all."""
    if len(uploads) == 1:
        return rejected(uploads[0], rejections[0])
    first = rejected(uploads[rejections[0].index], rejections[0])
    return Failure.INVALID_IMAGE.error(
        f"none of the {len(uploads)} images could be used; the first: {first.detail}",
        problems=[rejected(uploads[r.index], r) for r in rejections],
    )


def record(
    zoo: Zoo, metrics: Metrics, name: str, version: str, status: int, images: int, started: float
) -> None:
    """Count one request in the metrics, by model (any name the zoo does not list as
    ``_unknown``: bounded label cardinality), the version that answered and status."""
    label = name if name in zoo.models else UNKNOWN
    metrics.requests.labels(label, str(status), version).inc()
    metrics.images.labels(label, str(status), version).inc(images)
    metrics.request_latency.labels(label).observe(time.perf_counter() - started)


class Ticket:
    """One request on the core: the version admitted to answer it, and what it brought."""

    def __init__(self, zoo: Zoo, name: str) -> None:
        self.zoo, self.name = zoo, name
        self.images = 0
        self.version = UNKNOWN  # the metrics' label: bounded, a version in the catalogue
        self._requested: int | None = None
        self._model: Loaded | None = None
        self._catalog: dict[str, Model] | None = None

    def admit(self, version: int | str | None = None) -> Loaded:
        """The version that will answer (``version``: a number, a v2 path's text, or None for
        the default), ready to take work, or the error that says why not."""
        self._model = self.zoo.admit(self.name, version)
        self._requested = None if version is None else self._model.version
        self._catalog = self.zoo.models
        self.version = str(self._model.version)
        return self._model

    def _current(self) -> Loaded:
        """The admitted version, unless a reload has changed the catalogue since: then what the
        request asked for, resolved in the new one (the default moved on, or the version it
        named is gone). Called right before queueing, with no pause in between."""
        if self._model is None:
            raise RuntimeError("admit() the request before answering it")
        if self.zoo.models is not self._catalog:
            self._model = self.zoo.admit(self.name, self._requested)
            self._catalog = self.zoo.models
        return self._model

    async def answer(
        self, uploads: list[Upload], *, keep_digits: bool = False, all_or_nothing: bool = False
    ) -> Answer:
        """Image files -> per upload, in order, its probabilities or why it could not be used.
        ``all_or_nothing``: one unusable image fails the request (for protocols without
        per-image results), with that image's own error."""
        self.images = len(uploads)
        self.zoo.check_room(self._current(), len(uploads))  # a full queue refuses before decoding
        found = await self._in_time(self._classify(uploads, keep_digits, all_or_nothing))
        self.version = str(found.model.version)  # a reload meanwhile may have moved it on
        return found

    async def answer_digits(self, digits: np.ndarray) -> Classified:
        """N x 28 x 28 uint8 digits that are MNIST-style already (white ink on black, centred):
        the model's probabilities, with no decoding or preprocessing."""
        self.images = len(digits)
        self.zoo.check_room(self._current(), len(digits))
        found, refusals = await self._in_time(self._run(digits))
        self.version = str(found.model.version)
        if refusals:  # a tensor of digits has no per-item results: its first refusal fails it
            first = refusals[0]
            raise rejected(Upload(f"digit[{first.index}]", b""), first)
        return found

    async def _run(self, digits: np.ndarray) -> tuple[Classified, list[Refusal]]:
        """The model's digit probabilities for every row, and the rows it refuses."""
        model = self._current()
        found = await self.zoo.classify(model, digits)
        probabilities, refusals = judge(model.labels, model.refuse_at, found)
        return Classified(model, probabilities), refusals

    async def _classify(
        self, uploads: list[Upload], keep_digits: bool, all_or_nothing: bool
    ) -> Answer:
        digits, rejections = await self.zoo.reader.digits([up.data for up in uploads])
        _refuse_whole(uploads, rejections, all_or_nothing)
        unusable = [r.index for r in rejections]
        if unusable:
            digits = np.delete(digits, unusable, axis=0)
        found, refusals = await self._run(digits)
        probabilities = found.probabilities
        if refusals:  # rows of the usable uploads -> the uploads' own indices
            usable = np.delete(np.arange(len(uploads)), unusable)
            rows = [r.index for r in refusals]
            rejections = sorted(
                [*rejections, *(replace(r, index=int(usable[r.index])) for r in refusals)],
                key=lambda r: r.index,
            )
            _refuse_whole(uploads, rejections, all_or_nothing)
            probabilities = np.delete(probabilities, rows, axis=0)
            digits = np.delete(digits, rows, axis=0)
        kept = digits if keep_digits else None
        return Answer(found.model, probabilities, uploads, rejections, kept)

    async def _in_time(self, work: Awaitable[T]) -> T:
        """``work`` within REQUEST_TIMEOUT_S, else the 504."""
        timeout = self.zoo.settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await work
        except TimeoutError:
            detail = f"no answer from {self.name} within {timeout:g} s"
            raise Failure.INFERENCE_TIMEOUT.error(detail) from None


@asynccontextmanager
async def served(zoo: Zoo, metrics: Metrics, name: str) -> AsyncIterator[Ticket]:
    """A request for model ``name``, recorded in the metrics however it ends: answered, refused
    (by the core or by its adapter), or left by its client."""
    started, ticket = time.perf_counter(), Ticket(zoo, name)
    status = Failure.INTERNAL_ERROR.kind.status
    try:
        yield ticket
        status = 200
    except ServiceError as exc:
        status = exc.failure.kind.status
        raise
    except asyncio.CancelledError:  # the client left: nothing was answered
        status = Failure.CLIENT_CLOSED.kind.status
        raise
    finally:
        record(zoo, metrics, name, ticket.version, status, ticket.images, started)
