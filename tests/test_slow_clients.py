"""Slow and idle clients are cut off by bounded timeouts while others are answered as usual.

Through real uvicorn (``python -m app``), with the timeouts set to one second so the tests are
quick: a slowloris trickling its headers, hundreds of idle connections, a body that stalls half
way, and more connections than MAX_CONNECTIONS.
"""

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from models.data import MnistSplit
from tests.helpers import png
from tests.server import GRACEFUL, Server, start_service, stop_server

TIMEOUT_S = 1.0
SETTINGS = {
    "MODELS": "lenet",
    "WORKERS": "1",
    "HEADER_TIMEOUT_S": str(TIMEOUT_S),
    "BODY_TIMEOUT_S": str(TIMEOUT_S),
    "KEEP_ALIVE_S": str(TIMEOUT_S),
}


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = start_service(**SETTINGS)
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


async def _latency_ms(server: Server, seven: bytes, n: int = 30) -> float:
    """Median latency of ``n`` single-image predictions, one after another, fresh connections."""
    times = []
    for _ in range(n):
        async with httpx.AsyncClient(base_url=server.url) as c:
            started = time.perf_counter()
            r = await c.post("/predict/lenet", files={"files": ("7.png", seven)})
            times.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "7"
    return statistics.median(times)


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> float:
    """Seconds until the server closes the connection (EOF or reset); fails after ``within_s``."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(within_s):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return time.monotonic() - started


async def _under_attack(
    server: Server, seven: bytes, attack: Callable[[], Awaitable[list[float]]]
) -> tuple[float, float, list[float]]:
    """Baseline latency, latency while ``attack`` runs, and what the attack returned."""
    baseline = await _latency_ms(server, seven)
    attacking = asyncio.create_task(attack())
    await asyncio.sleep(0.2)  # the attack is in place
    during = await _latency_ms(server, seven)
    return baseline, during, await attacking


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    url = httpx.URL(server.url)
    return await asyncio.open_connection(url.host, url.port)


def _as_usual(baseline: float, during: float) -> None:
    print(f"median latency: {baseline:.2f} ms alone, {during:.2f} ms under attack")  # pytest -s
    assert during < max(3 * baseline, baseline + 25), f"{during:.1f} ms vs {baseline:.1f} ms"


async def test_a_slowloris_is_cut_off_at_the_header_deadline(server: Server, seven: bytes) -> None:
    async def slowloris() -> list[float]:
        async def one(i: int) -> float:
            reader, writer = await _connect(server)
            writer.write(b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\n")
            started = time.monotonic()
            try:
                for n in range(100):  # a header line every 0.1 s: it would take 10 s
                    await asyncio.sleep(0.1)
                    if reader.at_eof():
                        break
                    writer.write(f"X-Trickle-{n}: {i}\r\n".encode())
                    await writer.drain()
            except ConnectionError:
                pass
            await _closed_by_server(reader, within_s=5)
            writer.close()
            return time.monotonic() - started

        return list(await asyncio.gather(*(one(i) for i in range(50))))

    baseline, during, cut_after = await _under_attack(server, seven, slowloris)
    _as_usual(baseline, during)
    print(f"slowloris connections closed after {min(cut_after):.2f}-{max(cut_after):.2f} s")
    assert max(cut_after) < TIMEOUT_S + 1, cut_after  # not the 10 s the trickle wanted


async def test_hundreds_of_idle_connections_are_closed_and_do_not_slow_others(
    server: Server, seven: bytes
) -> None:
    async def idle() -> list[float]:
        async def silent() -> float:  # connects and never sends a byte
            reader, writer = await _connect(server)
            took = await _closed_by_server(reader, within_s=TIMEOUT_S + 3)
            writer.close()
            return took

        async def kept_alive() -> float:  # one request, then the connection idles
            reader, writer = await _connect(server)
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: zoo\r\n\r\n")
            await writer.drain()
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            took = await _closed_by_server(reader, within_s=TIMEOUT_S + 3)
            writer.close()
            return took

        return list(
            await asyncio.gather(
                *[silent() for _ in range(150)], *[kept_alive() for _ in range(150)]
            )
        )

    baseline, during, closed_after = await _under_attack(server, seven, idle)
    _as_usual(baseline, during)
    print(f"idle connections closed after {min(closed_after):.2f}-{max(closed_after):.2f} s")
    assert len(closed_after) == 300 and max(closed_after) < TIMEOUT_S + 2


async def test_a_body_that_stalls_gets_408_and_is_closed(server: Server, seven: bytes) -> None:
    async def stall() -> list[float]:
        reader, writer = await _connect(server)
        head = b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n"
        writer.write(head + b"Content-Length: 10000\r\n\r\n" + seven[:100])  # then nothing
        await writer.drain()
        started = time.monotonic()
        async with asyncio.timeout(TIMEOUT_S + 3):  # fail, rather than wait for ever
            status = await reader.readuntil(b"\r\n")
            took = time.monotonic() - started
            rest = await reader.read()  # headers and body, then the server closes
        writer.close()
        assert status.startswith(b"HTTP/1.1 408"), status
        headers, body = rest.split(b"\r\n\r\n", 1)
        assert b"connection: close" in headers.lower()
        problem = json.loads(body)
        assert (
            problem["type"] == "/problems/request-timeout" and "BODY_TIMEOUT_S" in problem["detail"]
        )
        return [took]

    baseline, during, (took,) = await _under_attack(server, seven, stall)
    _as_usual(baseline, during)
    print(f"stalled body answered 408 after {took:.2f} s")
    assert TIMEOUT_S - 0.1 < took < TIMEOUT_S + 1


def test_connections_beyond_max_connections_get_503(seven: bytes) -> None:
    s = start_service(MODELS="lenet", WORKERS="1", MAX_CONNECTIONS="5")
    try:

        async def crowd() -> httpx.Response:
            held = [await _connect(s) for _ in range(5)]
            async with httpx.AsyncClient(base_url=s.url) as c:
                refused = await c.get("/health/live")
            for _, writer in held:
                writer.close()
            return refused

        refused = asyncio.run(crowd())
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/too-many-connections"
        assert refused.headers["connection"] == "close"
        time.sleep(0.5)  # the crowd has gone
        assert httpx.get(f"{s.url}/health/live").status_code == 200
    finally:
        assert stop_server(s) in GRACEFUL
