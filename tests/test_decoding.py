"""Hostile images: refused before decoding when their files say so, and bounded in time and
memory by the decoder process when they do not."""

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app.digits import sandbox
from app.digits.decode import ImageLimits, ImageRejected, decode_image, jpeg_scans, webp_size
from app.digits.sandbox import Decoder, DecoderPool
from app.failures import Failure
from app.main import create_app
from benchmarks import hostile_files
from benchmarks.harness import process_tree
from benchmarks.hostile import connect
from models.data import MnistSplit
from tests.helpers import png, settings
from tests.server import Server, start_service

ROOT = Path(__file__).resolve().parents[1]
PEAK_SCRIPT = """
import re, sys, time
from app.digits.pipeline import to_digits
from app.digits.decode import ImageLimits
def peak_kib():
    return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
data = open(sys.argv[1], "rb").read()
before, started = peak_kib(), time.perf_counter()
digits, rejections = to_digits([data], ImageLimits())
print((peak_kib() - before) / 1024, time.perf_counter() - started, [r.detail for r in rejections])
"""


def _in_fresh_process(path: Path) -> tuple[float, float, list[str]]:
    """Peak memory growth (MiB), seconds and rejections of to_digits on one file, measured in a
    fresh interpreter (in-process high-water marks would carry other tests' peaks)."""
    out = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(path)],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    grown, seconds, details = out.stdout.strip().split(" ", 2)
    return float(grown), float(seconds), json.loads(details.replace("'", '"'))


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (hostile_files.tiff_tile_bomb, "TIFF tiles of 46336x46336 for a 28x28 image"),
        (hostile_files.progressive_jpeg_scan_bomb, "JPEG with 406 scans"),
        (hostile_files.lossless_webp, "decoding the image needs about"),
    ],
    ids=["tiff-tile", "jpeg-scans", "webp-36mp"],
)
def test_bombs_are_refused_from_their_files_before_decoding(
    tmp_path: Path, make: object, words: str
) -> None:
    path = tmp_path / "bomb"
    path.write_bytes(make())  # type: ignore[operator]
    grown, seconds, details = _in_fresh_process(path)
    assert len(details) == 1 and words in details[0]
    assert seconds < 0.5, f"{seconds:.2f} s: decoded before refusing"
    assert grown < 30, f"peak memory grew {grown:.0f} MiB: decoded before refusing"


def test_jpeg_scans_are_counted_in_the_image_not_its_thumbnail() -> None:
    img = Image.new("RGB", (64, 48), "white")
    plain, progressive, with_thumb = io.BytesIO(), io.BytesIO(), io.BytesIO()
    img.save(plain, "JPEG")
    img.save(progressive, "JPEG", progressive=True)
    thumb = io.BytesIO()
    img.save(thumb, "JPEG", progressive=True)
    exif = Image.Exif()
    exif[0x0112] = 1
    img.save(with_thumb, "JPEG", exif=exif.tobytes() + thumb.getvalue())
    assert jpeg_scans(plain.getvalue()) == 1
    assert 2 <= jpeg_scans(progressive.getvalue()) <= 12
    assert jpeg_scans(with_thumb.getvalue()) == 1  # the thumbnail's scans are not the image's


def test_webp_sizes_come_from_the_header() -> None:
    for lossless, mode, size in ((True, "RGB", (6000, 7)), (False, "RGB", (123, 45)),
                                 (False, "RGBA", (300, 200))):  # fmt: skip
        buf = io.BytesIO()
        Image.new(mode, size).save(buf, "WEBP", lossless=lossless)
        assert webp_size(buf.getvalue()) == size
    assert webp_size(b"RIFF....WEBPVP8 ") is None  # too short to hold a size


def test_a_tiff_tile_no_bigger_than_a_megapixel_is_fine() -> None:
    buf = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buf, "TIFF", tiffinfo={322: 256, 323: 256})
    assert decode_image(buf.getvalue()).size == (28, 28)


def test_decode_memory_is_a_limit() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (3000, 3000), "white").save(buf, "WEBP", lossless=True)
    with pytest.raises(ImageRejected) as refused:
        decode_image(buf.getvalue(), ImageLimits(max_decode_bytes=64 << 20))
    assert refused.value.failure is Failure.IMAGE_TOO_LARGE and "64 MB" in refused.value.detail
    assert decode_image(buf.getvalue(), ImageLimits(max_decode_bytes=128 << 20)).size == (
        3000,
        3000,
    )


def _slow_jpeg() -> bytes:
    """A 36 MP progressive JPEG of 61 scans: within every limit, and over a second to decode."""
    return hostile_files.progressive_jpeg_scan_bomb(size=6000, repeats=55, stroke=40)


def _ring_png(side: int) -> bytes:
    img = Image.new("L", (side, side), 255)
    ImageDraw.Draw(img).ellipse(
        (side // 3,) * 2 + (2 * side // 3,) * 2, outline=0, width=side // 30
    )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


async def test_a_decode_past_its_deadline_is_killed_and_refused() -> None:
    pool = DecoderPool(memory_mb=256, timeout_s=0.3)
    await pool.start()
    try:
        first = pool._decoder
        assert first is not None
        digits, rejections = await pool.digits([_slow_jpeg()], ImageLimits())
        assert [r.failure for r in rejections] == [Failure.IMAGE_TOO_LARGE]
        assert "longer than allowed" in rejections[0].detail
        assert not first.process.is_alive()  # its work stopped
        digits, rejections = await pool.digits([_ring_png(300)], ImageLimits())
        assert not rejections and digits[0].max() > 0  # a fresh decoder took its place
    finally:
        await pool.close()


async def test_one_slow_image_does_not_sink_the_others() -> None:
    pool = DecoderPool(memory_mb=256, timeout_s=0.3)
    await pool.start()
    try:
        ring = _ring_png(300)
        digits, rejections = await pool.digits([ring, _slow_jpeg(), ring], ImageLimits())
        assert [(r.index, r.failure) for r in rejections] == [(1, Failure.IMAGE_TOO_LARGE)]
        assert digits[0].max() > 0 and digits[2].max() > 0 and not digits[1].any()
    finally:
        await pool.close()


async def test_a_cancelled_decode_stops_its_process() -> None:
    pool = DecoderPool(memory_mb=256, timeout_s=30)
    await pool.start()
    try:
        decoder = pool._decoder
        assert decoder is not None
        task = asyncio.ensure_future(pool.digits([_slow_jpeg()], ImageLimits()))
        await asyncio.sleep(0.05)
        task.cancel()  # the request's deadline passed, or its client left
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not decoder.process.is_alive()
    finally:
        await pool.close()


def test_a_ctrl_c_while_the_decoder_starts_is_not_for_it() -> None:
    """The terminal's SIGINT (and the supervisor's SIGTERM) reach a decoder still importing:
    it ignores them from its first instruction, and the worker keeps its own handlers."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    decoder = Decoder(memory_mb=256)
    try:
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
            os.kill(decoder.process.pid, sig)
            time.sleep(0.05)
        assert decoder.ready(60)
        assert decoder.process.is_alive()
    finally:
        decoder.kill()


async def test_the_memory_ceiling_holds_for_what_no_check_foresaw() -> None:
    # A PNG's decoder is not checked for memory before it runs: the process ceiling stops it.
    pool = DecoderPool(memory_mb=64, timeout_s=5)
    await pool.start()
    try:
        big = _ring_png(10000)  # 100 MP of L: more than 64 MB once decoded
        _, rejections = await pool.digits([big], ImageLimits(max_pixels=200_000_000))
        assert [r.failure for r in rejections] == [Failure.IMAGE_TOO_LARGE]
        assert "more memory" in rejections[0].detail
        _, rejections = await pool.digits([_ring_png(300)], ImageLimits())
        assert not rejections  # and the decoder goes on
    finally:
        await pool.close()


def test_a_bomb_among_good_images_takes_only_its_own_slot(mnist_test: MnistSplit) -> None:
    seven, two = (png(mnist_test.images[i, 0].numpy()) for i in (0, 1))
    files = [
        ("files", ("seven.png", seven)),
        ("files", ("bomb.tiff", hostile_files.tiff_tile_bomb())),
        ("files", ("two.jpg", _as_jpeg(two))),  # not a plain PNG: the decoder process reads it
    ]
    with TestClient(create_app(settings(models=("lenet",)))) as c:
        r = c.post("/predict/lenet", files=files)
    assert r.status_code == 200, r.text
    first, bomb, last = r.json()["predictions"]
    assert (first["label"], last["label"]) == ("7", "2")
    assert (bomb["status"], bomb["type"], bomb["index"]) == (413, "/problems/image-too-large", 1)


def _as_jpeg(png_bytes: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_no_detail_carries_library_words() -> None:
    corrupt = [
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        hostile_files.tiff_tile_bomb()[:200],
        b"\xff\xd8\xff\xe0" + b"\x00" * 30,
        b"RIFF\x00\x00\x00\x00WEBPVP8L" + b"\x00" * 20,
        b"GIF89a" + b"\x00" * 10,
    ]
    for data in corrupt:
        with pytest.raises(ImageRejected) as refused:
            decode_image(data)
        detail = refused.value.detail.lower()
        for phrase in ("decoder error", "errno", "chunk", "dos attack", "cannot identify", "ifd"):
            assert phrase not in detail, (data[:12], detail)


def test_decoded_digits_equal_in_and_out_of_the_decoder(mnist_test: MnistSplit) -> None:
    from app.digits.pipeline import to_digits

    datas = [_as_jpeg(png(mnist_test.images[i, 0].numpy())) for i in range(8)]

    async def run() -> tuple[np.ndarray, list]:
        pool = DecoderPool(memory_mb=256, timeout_s=5)
        await pool.start()
        try:
            return await pool.digits(datas, ImageLimits())
        finally:
            await pool.close()

    inside, rejected = asyncio.run(run())
    outside, _ = to_digits(datas, ImageLimits())
    assert not rejected and np.array_equal(inside, outside)


def _decoders(server: Server) -> set[int]:
    """The service's decoder processes: spawned children that map no torch (the worker does)."""
    found = set()
    for pid in process_tree(server.proc.pid):
        try:
            cmd, maps = Path(f"/proc/{pid}/cmdline").read_bytes(), Path(f"/proc/{pid}/maps")
            if b"spawn_main" in cmd and b"libtorch" not in maps.read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


async def test_a_client_that_leaves_stops_its_decoding(tmp_path: Path) -> None:
    slow = _slow_jpeg()
    log = tmp_path / "log"
    server = start_service(log, MODELS="lenet", WORKERS="1", DECODE_TIMEOUT_S="60",
                           REQUEST_TIMEOUT_S="60")  # fmt: skip
    try:
        before = _decoders(server)
        assert before, "no decoder process"
        _, writer = await connect(server.url)
        head = (
            "POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(slow)}\r\n\r\n"
        )
        writer.write(head.encode() + slow)
        await writer.drain()
        await asyncio.sleep(0.4)  # decoding has begun
        writer.close()
        deadline = time.monotonic() + 10
        while _decoders(server) & before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not _decoders(server) & before, "the decoder went on after its client left"
        assert "the client left before its answer" in log.read_text()
        async with httpx.AsyncClient(base_url=server.url) as c:  # a fresh decoder answers
            r = await c.post("/predict/lenet", content=_as_jpeg(_ring_png(300)),
                             headers={"content-type": "image/jpeg"})  # fmt: skip
            assert r.status_code == 200, r.text
    finally:
        server.stop()


async def test_a_decoder_killed_while_idle_is_replaced_before_the_next_image() -> None:
    pool = DecoderPool(memory_mb=256, timeout_s=5)
    await pool.start()
    try:
        assert pool._decoder is not None
        os.kill(pool._decoder.process.pid, signal.SIGKILL)  # the OOM killer, an operator
        pool._decoder.process.join(5)
        digits, rejections = await pool.digits([_ring_png(300)], ImageLimits())
        assert not rejections and digits[0].max() > 0  # not the client's fault: no 413
    finally:
        await pool.close()


class _Recorded(Decoder):
    """A decoder that the test can find: every one made is listed in ``made``."""

    made: ClassVar[list[Decoder]] = []

    def __init__(self, memory_mb: int) -> None:
        super().__init__(memory_mb)
        self.started = False
        self.made.append(self)

    def ready(self, timeout: float) -> bool:
        self.started = super().ready(timeout)
        return self.started


def _kill_decoders(pool: DecoderPool, times: int) -> list[int]:
    """Kill the decoder at work (lent out by the pool), ``times`` times, from outside, as the
    OOM killer or an operator would; the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + 30
    while len(killed) < times and time.monotonic() < deadline:
        last = _Recorded.made[-1] if _Recorded.made else None
        working = last.process if last is not None and last.started else None
        if working is not None and working.pid not in killed and pool._decoder is None:
            time.sleep(0.2)  # well into its decoding
            working.kill()
            killed.append(working.pid or 0)
        time.sleep(0.02)
    return killed


@pytest.mark.parametrize("kills", [1, 2], ids=["killed-once-tried-again", "twice-refused"])
async def test_an_image_whose_decoder_is_killed_is_tried_once_more(
    monkeypatch: pytest.MonkeyPatch, kills: int
) -> None:
    monkeypatch.setattr(sandbox, "Decoder", _Recorded)
    pool = DecoderPool(memory_mb=256, timeout_s=30)
    await pool.start()
    try:
        killer = asyncio.ensure_future(asyncio.to_thread(_kill_decoders, pool, kills))
        _, rejections = await pool.digits([_slow_jpeg()], ImageLimits())
        assert len(await killer) == kills
        too_large = [r for r in rejections if r.failure is Failure.IMAGE_TOO_LARGE]
        if kills == 1:  # killed from outside once: not the image's fault
            assert not too_large, rejections
        else:  # it died twice on this image: refused
            assert len(too_large) == 1 and "the decoder stopped on it" in too_large[0].detail
        digits, rejections = await pool.digits([_ring_png(300)], ImageLimits())
        assert not rejections and digits[0].max() > 0  # and the next image is read
    finally:
        await pool.close()
