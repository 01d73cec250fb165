"""The load process of ``benchmarks/serve_bench.py``: drive one server, print one JSON object.

    python -m benchmarks.serve_load --url http://127.0.0.1:8000/predict/lenet \\
        --payloads payloads.npz --concurrency 32 --images 1 --duration 8 --server-pid PID

Closed-loop clients on keep-alive connections (a minimal HTTP/1.1 client unless ``--client
httpx``) send prebuilt multipart bodies of MNIST test digits, check every answer's labels and
record latencies; the result includes the CPU time the server and this process spent per image.
The payload file (``write_payloads``) is written here too, so its layout lives in one place.
"""

import argparse
import asyncio
import io
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

BOUNDARY = "serve-bench-7d1f0c"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
PAYLOAD_IMAGES = 512

Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


def write_payloads(path: Path, data_dir: Path, n: int = PAYLOAD_IMAGES) -> bool:
    """PNGs of the first n MNIST test digits (True), or synthetic strokes without MNIST (False)."""
    from PIL import Image, ImageDraw

    from models.data import MnistNotFoundError, load_mnist

    try:
        split = load_mnist(data_dir, train=False, download=False).head(n)
        digits, labels, real = split.images[:, 0].numpy(), split.labels.numpy(), True
    except MnistNotFoundError:  # e.g. on a GPU host without the data: labels are unchecked
        rng = np.random.default_rng(0)
        digits = np.zeros((n, 28, 28), np.uint8)
        for d in digits:
            img = Image.fromarray(d)
            ImageDraw.Draw(img).line([tuple(rng.integers(6, 22, 2)) for _ in range(3)], 255, 3)
            d[:] = np.asarray(img)
        labels, real = np.full(n, -1), False
    pngs = []
    for d in digits:
        buf = io.BytesIO()
        Image.fromarray(d).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    np.savez(
        path,
        blob=np.frombuffer(b"".join(pngs), np.uint8),
        offsets=np.cumsum([0, *map(len, pngs)]),
        labels=labels,
    )
    return real


def multipart_bodies(payloads: Path, images: int) -> list[tuple[bytes, list[str]]]:
    """Multipart bodies of ``images`` PNG parts each, with the MNIST labels of their digits."""
    data = np.load(payloads)
    blob, offsets, labels = data["blob"].tobytes(), data["offsets"], data["labels"]
    n = len(labels)
    out = []
    for r in range(max(1, n // images)):
        idx = [(r * images + j) % n for j in range(images)]
        parts = [
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
                f'filename="{i}.png"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + blob[offsets[i] : offsets[i + 1]]
            + b"\r\n"
            for i in idx
        ]
        body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
        out.append((body, [str(labels[i]) for i in idx]))
    return out


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    images: int = 0
    correct: int = 0
    errors: int = 0
    first_error: str | None = None


class RawConnection:
    """One keep-alive HTTP/1.1 connection parsed by hand.

    Measured on a 2-core host: httpx.AsyncClient spent ~3 ms of client CPU per request, more
    than the server under test, and that CPU comes out of the server's share; this costs ~0.1 ms.
    """

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        target = u.path + (f"?{u.query}" if u.query else "")
        self.head = (
            f"POST {target} HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: "
            f"{CONTENT_TYPE}\r\nContent-Length: %d\r\n\r\n"
        ).encode()
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send one request; the status and body of its answer."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        try:
            writer.write(self.head % len(body) + body)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            length = int(head.split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
            data = await reader.readexactly(length)
        except BaseException:
            writer.close()  # the stream is in an unknown state: reconnect next time
            self.streams = None
            raise
        if b"\r\nconnection: close" in head:
            writer.close()
            self.streams = None
        return int(head[9:12]), data


async def _drive(
    posts: list[Post], bodies: list[tuple[bytes, list[str]]], seconds: float, tally: _Tally
) -> float:
    """One closed-loop client per ``posts`` for ``seconds``; returns the wall time they took."""
    deadline = time.perf_counter() + seconds

    async def client_loop(k: int) -> None:
        i = k
        while time.perf_counter() < deadline:
            body, labels = bodies[i % len(bodies)]
            i += len(posts)
            t0 = time.perf_counter()
            try:
                status, data = await posts[k](body)
                got = [p["label"] for p in json.loads(data)["predictions"]] if status == 200 else []
                problem = None if len(got) == len(labels) else f"HTTP {status}: {data[:200]!r}"
            except Exception as exc:  # any failure is an error to count, not a reason to stop
                problem = f"{type(exc).__name__}: {exc}"
            if problem is not None:
                tally.errors += 1
                tally.first_error = tally.first_error or problem
                await asyncio.sleep(0.01)  # a failing server is not hammered in a tight loop
                continue
            tally.latencies.append(time.perf_counter() - t0)
            tally.images += len(labels)
            tally.correct += sum(a == b for a, b in zip(got, labels, strict=True))

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(k) for k in range(len(posts))))
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


async def _load(args: argparse.Namespace) -> dict[str, Any]:
    bodies = multipart_bodies(args.payloads, args.images)
    client = None
    if args.client == "httpx":
        client = httpx.AsyncClient(
            timeout=60,
            headers={"content-type": CONTENT_TYPE},
            limits=httpx.Limits(max_connections=args.concurrency),
        )

        async def post(body: bytes) -> tuple[int, bytes]:
            r = await client.post(args.url, content=body)
            return r.status_code, r.content

        posts: list[Post] = [post] * args.concurrency
    else:
        posts = [RawConnection(args.url).post for _ in range(args.concurrency)]
    try:
        # Warm-up, discarded: connections open, thread pools and allocator caches fill.
        await _drive(posts, bodies, args.warmup, _Tally())
        tally = _Tally()
        cpu0, server0 = time.process_time(), cpu_seconds(args.server_pid)
        seconds = await _drive(posts, bodies, args.duration, tally)
        cpu, server = time.process_time() - cpu0, cpu_seconds(args.server_pid) - server0
    finally:
        if client is not None:
            await client.aclose()
    lat = np.array(tally.latencies or [float("nan")]) * 1e3
    per_image = 1e3 / max(tally.images, 1)
    return {
        "requests": len(tally.latencies),
        "errors": tally.errors,
        "first_error": tally.first_error,
        "seconds": seconds,
        "req_s": len(tally.latencies) / seconds,
        "images_s": tally.images / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "accuracy": tally.correct / tally.images if tally.images else None,
        "server_cpu_ms_per_image": server * per_image,
        "client_cpu_ms_per_image": cpu * per_image,
    }


def main(argv: list[str] | None = None) -> int:
    """The load process: drive one server, print one JSON object."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve_load")
    p.add_argument("--url", required=True)
    p.add_argument("--payloads", type=Path, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--images", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--server-pid", type=int, default=0, help="whose CPU time to report")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import uvloop  # the client's own CPU cost comes off the server's share: keep it low
    except ImportError:
        result = asyncio.run(_load(args))
    else:
        result = uvloop.run(_load(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
