"""Upload bytes -> digits, the one entry point (:class:`DigitReader`): small plain PNGs inline,
everything else in a sandbox, a child process per frontend worker, under limits it cannot talk
its way past.

Small plain PNGs (libspng decodes exactly the size their header declares, in tens of
microseconds) are read on the event loop; every other upload is decoded and preprocessed in a
decoder process, which has

- a memory ceiling (RLIMIT_AS: what it held after start-up, plus DECODE_MEMORY_MB): a decode
  that needs more fails there with MemoryError and that image is refused (413);
- a deadline per image (DECODE_TIMEOUT_S), and the request's own: when it passes, or the
  client hangs up, the process is killed (its work stops) and a fresh one takes its place;
- one request at a time, so a worker never holds more than one decode's memory, and a
  process that kept much of it after a big decode (allocators keep what they got) is replaced;
- a replacement when it dies of something else (killed from outside: the OOM killer, an
  operator): the images it held are tried once more in a fresh one before any is refused, so
  a client is not blamed for what happened to the process.

Cheap checks before decoding (app/digits/decode.py: declared pixels, TIFF tiles, JPEG scans)
refuse known bombs in microseconds; these limits hold for whatever they did not foresee.
"""

import asyncio
import contextlib
import io
import logging
import multiprocessing
import resource
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

import numpy as np

from app.config import Settings
from app.digits.decode import ImageLimits
from app.digits.pipeline import Rejection, plain_gray_png, to_digits
from app.digits.sizes import INLINE_PIXELS
from app.failures import BY_SLUG, Failure
from models.framing import DIGIT_SHAPE

log = logging.getLogger(__name__)
RECYCLE_MB = 64  # a decoder holding this much more than after start-up is replaced
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Job:
    """A request's uploads and the limits to decode them under."""

    datas: list[bytes]
    limits: ImageLimits


def _vm_bytes(field: str) -> int:
    """This process's VmSize or VmRSS (bytes)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def guarded_digits(datas: list[bytes], limits: ImageLimits) -> tuple[np.ndarray, list[Rejection]]:
    """to_digits, with an image that runs out of memory refused as too large, the others kept."""
    try:
        return to_digits(datas, limits)
    except MemoryError:  # one of them: find it, keep the others
        digits = np.zeros((len(datas), *DIGIT_SHAPE), np.uint8)
        rejections = []
        for i, data in enumerate(datas):
            try:
                one, rejected = to_digits([data], limits)
            except MemoryError:
                detail = "the image needs more memory to decode than allowed"
                rejected = [Rejection(0, detail, Failure.IMAGE_TOO_LARGE)]
            digits[i] = one[0] if not rejected else 0
            rejections += [Rejection(i, r.detail, r.failure) for r in rejected]
        return digits, rejections


def _decode_all(job: Job) -> tuple[bytes, list[tuple[int, str, str]]]:
    """The job's digits and rejections, as they cross the pipe."""
    digits, rejections = guarded_digits(job.datas, job.limits)
    return digits.tobytes(), [(r.index, r.detail, r.failure.kind.slug) for r in rejections]


def _warm_up_photo() -> bytes:
    """A small JPEG of a ring on grey paper: one photo's way through decoding and the page
    steps, so a fresh decoder's first request pays no one-off set-up."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (320, 240), 220)
    ImageDraw.Draw(img).ellipse((120, 50, 200, 190), outline=40, width=5)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _decoder_main(conn: Connection, memory_mb: int) -> None:
    """The decoder process: jobs in, digits out, under a memory ceiling."""
    import cv2

    cv2.setNumThreads(1)  # one request at a time: threads would only reserve memory
    _decode_all(Job([_warm_up_photo()], ImageLimits()))  # first calls' set-up, before any job
    ceiling = _vm_bytes("VmSize") + memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, ceiling))
    start_rss = _vm_bytes("VmRSS")
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        result = _decode_all(job)
        grown = _vm_bytes("VmRSS") - start_rss > RECYCLE_MB * 1024 * 1024
        conn.send((result, grown))
        if grown:  # give the memory back to the system: a fresh decoder replaces this one
            return


@contextlib.contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while a child starts, so that it inherits that from its first
    instruction: a Ctrl-C reaches the whole process group, and a decoder still importing would
    die of it with a traceback. The worker ends its decoder itself (the pipe closes) once it has
    drained, so these signals are not for the decoder."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal's rule
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


class Decoder:
    """One decoder process and the pipe to it."""

    def __init__(self, memory_mb: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # no inherited threads, loop or torch
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_decoder_main, args=(child, memory_mb), name="zoo-decoder", daemon=True
        )
        with _stop_signals_ignored():
            self.process.start()
        child.close()

    def ready(self, timeout: float) -> bool:
        """Wait for it to start (blocking)."""
        try:
            return self.conn.poll(timeout) and self.conn.recv() == "ready"
        except (EOFError, OSError):  # it died starting
            return False

    def kill(self) -> None:
        """Stop it now, wherever it is."""
        with contextlib.suppress(OSError):
            self.process.kill()
        self.process.join(5)
        self.conn.close()


def _refused(n: int, exc: BaseException) -> tuple[np.ndarray, list[Rejection]]:
    """Every one of ``n`` uploads refused: it took too long to decode, or killed the decoder."""
    if isinstance(exc, TimeoutError):
        detail = "decoding took longer than allowed (DECODE_TIMEOUT_S)"
    else:
        detail = "the image could not be decoded (the decoder stopped on it)"
    rejections = [Rejection(i, detail, Failure.IMAGE_TOO_LARGE) for i in range(n)]
    return np.zeros((n, *DIGIT_SHAPE), np.uint8), rejections


class DecoderPool:
    """A frontend worker's decoder: one request at a time, replaced when killed or bloated."""

    def __init__(self, memory_mb: int, timeout_s: float) -> None:
        self.memory_mb, self.timeout_s = memory_mb, timeout_s
        self._lock = asyncio.Lock()
        self._decoder: Decoder | None = None

    async def _fresh(self) -> Decoder:
        decoder = Decoder(self.memory_mb)
        if not await asyncio.to_thread(decoder.ready, START_TIMEOUT_S):
            decoder.kill()
            raise RuntimeError("the decoder process did not start")
        return decoder

    async def start(self) -> None:
        """Start the decoder process (before the first request needs it)."""
        self._decoder = await self._fresh()

    async def digits(
        self, datas: list[bytes], limits: ImageLimits
    ) -> tuple[np.ndarray, list[Rejection]]:
        """Every upload -> N x 28 x 28 uint8 digits and the rejections, as to_digits does, in
        the decoder process. An upload that takes longer than DECODE_TIMEOUT_S is refused as too
        large (the process is killed, so its work stops: likewise when the caller is cancelled,
        its deadline passed or its client gone), and so is one that kills the process twice."""
        try:
            return await self._run(datas, limits)
        except TimeoutError as exc:
            if len(datas) == 1:
                return _refused(1, exc)
        except (EOFError, OSError) as exc:  # the process died: a culprit, or killed from outside
            if len(datas) == 1:
                return await self._again(datas, limits, exc)
        # One of them is the culprit: each on its own, so the others are still answered.
        digits = np.zeros((len(datas), *DIGIT_SHAPE), np.uint8)
        rejections: list[Rejection] = []
        for i, data in enumerate(datas):
            try:
                one, rejected = await self._run([data], limits)
            except TimeoutError as exc:
                one, rejected = _refused(1, exc)
            except (EOFError, OSError) as exc:
                one, rejected = await self._again([data], limits, exc)
            digits[i] = one[0]
            rejections += [Rejection(i, r.detail, r.failure) for r in rejected]
        return digits, rejections

    async def _again(
        self, datas: list[bytes], limits: ImageLimits, exc: BaseException
    ) -> tuple[np.ndarray, list[Rejection]]:
        """One more try in a fresh decoder for an image whose decoder died under it: a process
        killed from outside says nothing about the image; one that dies twice on it does."""
        log.warning("the decoder process died while decoding (%r); trying once more", exc)
        try:
            return await self._run(datas, limits)
        except (TimeoutError, EOFError, OSError) as again:
            return _refused(1, again)

    async def _run(
        self, datas: list[bytes], limits: ImageLimits
    ) -> tuple[np.ndarray, list[Rejection]]:
        async with self._lock:
            decoder = self._decoder
            if decoder is None or not decoder.process.is_alive():  # killed while it waited
                if decoder is not None:
                    await asyncio.to_thread(decoder.kill)
                decoder = await self._fresh()
            self._decoder = None  # until it answers, nobody else may use it
            try:
                decoder.conn.send(Job(datas, limits))
                (raw, rejections), grown = await asyncio.wait_for(
                    asyncio.to_thread(decoder.conn.recv), self.timeout_s * len(datas)
                )
            except BaseException:  # timed out, cancelled, or the process died
                await asyncio.to_thread(decoder.kill)
                raise
            if grown:
                await asyncio.to_thread(decoder.process.join, 5)
            else:
                self._decoder = decoder
        digits = np.frombuffer(raw, np.uint8).reshape(len(datas), *DIGIT_SHAPE).copy()
        return digits, [Rejection(i, detail, BY_SLUG[slug]) for i, detail, slug in rejections]

    async def close(self) -> None:
        """Stop the decoder process."""
        async with self._lock:
            if self._decoder is not None:
                await asyncio.to_thread(self._decoder.kill)
                self._decoder = None


def _inline(datas: list[bytes]) -> bool:
    """Whether every image is a small plain PNG: cheaper to decode than to hand to a process."""
    pixels = 0
    for data in datas:
        size = plain_gray_png(data)
        if size is None:
            return False
        pixels += size[0] * size[1]
    return pixels <= INLINE_PIXELS


class DigitReader:
    """Upload bytes -> digits, the one entry point: small plain PNGs inline on the event loop,
    everything else in the worker's decoder process, under the service's image limits."""

    def __init__(self, limits: ImageLimits, decoders: DecoderPool) -> None:
        self.limits, self.decoders = limits, decoders

    @classmethod
    def from_settings(cls, settings: Settings) -> "DigitReader":
        """The reader under the service's limits (MAX_IMAGE_PIXELS, DECODE_MEMORY_MB,
        DECODE_TIMEOUT_S)."""
        limits = ImageLimits(
            max_pixels=settings.max_image_pixels,
            max_decode_bytes=settings.decode_memory_mb << 20,
        )
        return cls(limits, DecoderPool(settings.decode_memory_mb, settings.decode_timeout_s))

    async def start(self) -> None:
        """Start the decoder process (before the first request needs it)."""
        await self.decoders.start()

    async def digits(self, datas: list[bytes]) -> tuple[np.ndarray, list[Rejection]]:
        """N x 28 x 28 uint8 digits for ``datas`` and the rejections, by index."""
        if _inline(datas):  # libspng decodes exactly what a plain PNG declares
            return to_digits(datas, self.limits)
        return await self.decoders.digits(datas, self.limits)

    async def close(self) -> None:
        """Stop the decoder process."""
        await self.decoders.close()
