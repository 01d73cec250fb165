"""Hostile requests against a real ``python -m app``: huge heads, trickling bodies, clients that
leave, odd headers. Memory is the service's own, read from /proc over its process tree.

Each test here failed with its guard taken out (see the README's Security section): the head
limit in app/frontend/protocol.py, the body pace in app/frontend/uploads.py, the 499 for a
client that leaves, no cache keyed on a Content-Type.
"""

import asyncio
import json
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks.harness import MemoryPeak
from benchmarks.hostile import answer, connect, stream_head
from benchmarks.wrk import CONTENT_TYPE, multipart
from models.data import MnistSplit
from tests.helpers import png
from tests.server import GRACEFUL, Server, start_service, stop_server

MB = 1024 * 1024
HEAD_LIMIT = 32 * 1024  # MAX_HEADER_BYTES's default


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "service.log"


@pytest.fixture(scope="module")
def server(log: Path) -> Iterator[Server]:
    s = start_service(log=log, MODELS="lenet", WORKERS="1")
    yield s
    assert stop_server(s) in GRACEFUL


@pytest.fixture(scope="module")
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


async def _connect(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await connect(server.url)


async def _stream_head(
    server: Server, start: bytes, total: int, within_s: float
) -> tuple[int, dict, float, int]:
    status, body, took, sent = await stream_head(server.url, start, total, within_s)
    return status, json.loads(body), took, sent


async def _probe_live(server: Server, until: asyncio.Event) -> list[float]:
    """Latencies (s) of GET /health/live, one after another on fresh connections, until set."""
    times = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        while not until.is_set() or len(times) < 3:
            started = time.monotonic()
            assert (await c.get("/health/live", headers={"connection": "close"})).status_code == 200
            times.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
    return times


@pytest.mark.parametrize(
    ("what", "start", "total"),
    [
        ("98 MB header", b"GET /health/live HTTP/1.1\r\nHost: zoo\r\nX-Big: ", 98 * MB),
        ("90 MB URL", b"GET /health/live?q=", 90 * MB),
    ],
)
async def test_a_huge_head_gets_431_at_once_and_costs_nothing(
    server: Server, what: str, start: bytes, total: int
) -> None:
    before = server.rss_mb()
    done = asyncio.Event()
    probes = asyncio.create_task(_probe_live(server, done))
    with MemoryPeak(server.proc.pid) as memory:
        status, problem, took, sent = await _stream_head(server, start, total, within_s=20)
    done.set()
    live = await probes
    print(f"{what}: {status} after {took:.3f} s and {sent / MB:.1f} MB sent; memory "
          f"{before:.0f} MB, peak +{memory.peak_mb - before:.1f} MB; /health/live median "
          f"{statistics.median(live) * 1000:.1f} ms, max {max(live) * 1000:.1f} ms")  # fmt: skip
    assert (status, problem["type"]) == (431, "/problems/headers-too-large")
    assert problem["limit_bytes"] == HEAD_LIMIT and "MAX_HEADER_BYTES" in problem["detail"]
    assert took < 3  # unguarded: 11 s and more of one worker's time
    assert memory.peak_mb - before < 30
    assert max(live) < 1


async def test_twenty_distinct_20_mb_content_types_are_refused_and_nothing_is_kept(
    server: Server,
) -> None:
    def start(i: int) -> bytes:
        head = "POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Length: 100\r\n"
        return (head + f"Content-Type: {CONTENT_TYPE}; pad={i}").encode()

    before = server.rss_mb()
    with MemoryPeak(server.proc.pid) as memory:
        answers = await asyncio.gather(
            *(_stream_head(server, start(i), 20 * MB, within_s=30) for i in range(20))
        )
    after = server.rss_mb()
    took = max(a[2] for a in answers)
    print(f"20 x 20 MB Content-Type: all answered within {took:.2f} s; memory {before:.0f} MB, "
          f"peak +{memory.peak_mb - before:.1f} MB, after +{after - before:.1f} MB")  # fmt: skip
    assert {a[0] for a in answers} == {431}
    assert took < 5
    assert memory.peak_mb - before < 50 and after - before < 10


def test_no_cache_keeps_a_content_type_that_got_through(seven: bytes) -> None:
    """With the head limit raised out of the way, distinct 4 MB Content-Types reach the parser;
    a cache keyed on them (an lru_cache of 256 once was) would keep every one."""
    s = start_service(MODELS="lenet", WORKERS="1", MAX_HEADER_BYTES=str(64 * MB))
    try:
        body = multipart([seven], 0)
        with httpx.Client(base_url=s.url, timeout=60) as c:
            for _ in range(3):  # warm: the first requests allocate what every request reuses
                r = c.post("/predict/lenet", content=body, headers={"content-type": CONTENT_TYPE})
                assert r.status_code == 200
            before = s.rss_mb()
            for i in range(20):
                content_type = f"{CONTENT_TYPE}; pad={i}{'p' * 4_000_000}"
                r = c.post("/predict/lenet", content=body, headers={"content-type": content_type})
                assert r.status_code == 200 and r.json()["predictions"][0]["label"] == "7"
        after = s.rss_mb()
    finally:
        assert stop_server(s) in GRACEFUL
    print(f"20 distinct 4 MB Content-Types parsed: {before:.0f} -> {after:.0f} MB")
    assert after - before < 20  # a cache of them: +90 MB


async def test_a_head_at_the_limit_passes_one_byte_more_does_not(server: Server) -> None:
    def request(head_bytes: int) -> bytes:
        start = b"GET /health/live HTTP/1.1\r\nHost: zoo\r\nX-Pad: "
        return start + b"p" * (head_bytes - len(start) - 4) + b"\r\n\r\n"

    for size, status in [(HEAD_LIMIT, 200), (HEAD_LIMIT + 1, 431)]:
        reader, writer = await _connect(server)
        writer.write(request(size))
        assert (await answer(reader))[0] == status, size
        writer.close()
    # The limit is per request: one keep-alive connection may carry many heads near it, and a
    # head and a body in one read are not mistaken for a long head.
    reader, writer = await _connect(server)
    for _ in range(5):
        writer.write(request(HEAD_LIMIT - 100))
        assert (await answer(reader))[0] == 200
    writer.write(request(HEAD_LIMIT // 2) * 4)  # pipelined, in one write
    assert [(await answer(reader))[0] for _ in range(4)] == [200] * 4
    post = b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n"
    writer.write(post + b"Content-Length: 200000\r\n\r\n" + b"\0" * 200000)
    status, _, body = await answer(reader)
    assert status == 422 and json.loads(body)["type"] == "/problems/invalid-image"
    writer.close()


async def test_refusals_before_the_app_are_problems_too(server: Server) -> None:
    async def refused(raw: bytes) -> tuple[int, dict[str, str], dict]:
        reader, writer = await _connect(server)
        writer.write(raw)
        status, headers, body = await answer(reader)
        writer.close()
        return status, headers, json.loads(body)

    status, headers, problem = await refused(b"NOT HTTP AT ALL\r\n\r\n")
    assert (status, problem["type"]) == (400, "/problems/bad-request")
    assert headers["content-type"] == "application/problem+json"
    twice = b"Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcd"
    status, _, problem = await refused(b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\n" + twice)
    assert (status, problem["type"]) == (400, "/problems/bad-request")
    # Repeated headers reach the app through httptools as they came: refused, never read twice.
    for name in (b"Content-Type", b"X-Filename"):
        head = b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n"
        head += b"X-Filename: a.png\r\n" + name + b": " + CONTENT_TYPE.encode() + b"\r\n"
        status, _, problem = await refused(head + b"Content-Length: 4\r\n\r\nabcd")
        assert (status, problem["type"]) == (400, "/problems/bad-request"), name
        assert f"2 {name.decode().title()} headers" in problem["detail"]


def test_no_server_header_and_a_date(server: Server) -> None:
    r = httpx.get(f"{server.url}/health/live")
    assert "server" not in r.headers and r.headers["date"].endswith(" GMT")
    r = httpx.get(f"{server.url}/metrics/", headers={"host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers


def _served(server: Server) -> dict[str, float]:
    """zoo_requests_total by status, over every model."""
    counts: dict[str, float] = {}
    text = httpx.get(f"{server.url}/metrics").text
    line = r'^zoo_requests_total\{[^}]*status="(\d+)"[^}]*\} (\S+)$'  # any labels around it
    for status, n in re.findall(line, text, re.M):
        counts[status] = counts.get(status, 0) + float(n)
    return counts


async def test_a_client_that_leaves_mid_body_is_one_info_line_and_no_5xx(
    server: Server, log: Path, seven: bytes
) -> None:
    before, logged = _served(server), len(log.read_text())
    post = "POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\n"
    leaving = [
        f"{post}Content-Type: image/png\r\nContent-Length: 10000\r\n\r\n".encode() + seven[:100],
        f"{post}Content-Type: {CONTENT_TYPE}\r\nContent-Length: 5000\r\n\r\n".encode(),
        f"{post}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n".encode()
        + b"x" * 16,
    ]
    for raw in leaving:
        _, writer = await _connect(server)
        writer.write(raw)
        await writer.drain()
        await asyncio.sleep(0.2)  # the request is in the app, reading its body
        writer.close()
    deadline = time.monotonic() + 10
    while sum((after := _served(server)).values()) - sum(before.values()) < len(leaving):
        assert time.monotonic() < deadline, "the requests were never counted"
        await asyncio.sleep(0.1)
    grew = {s: after[s] - before.get(s, 0) for s in after if after[s] > before.get(s, 0)}
    await asyncio.sleep(0.3)  # anything it would log after that
    text = log.read_text()[logged:]
    print(grew, text)
    assert "ERROR" not in text and "Traceback" not in text  # unguarded: two tracebacks each
    assert text.count("closed the connection after") == len(leaving)  # once each, at INFO
    assert grew == {"499": len(leaving)}  # unguarded: counted as 500s


def test_trickling_bodies_cannot_hold_every_connection(seven: bytes) -> None:
    """120 clients each send a body byte every 1.5 s, under BODY_TIMEOUT_S=2, to a worker of 50
    connections: without a pace, never a pause long enough, and every slot held for good."""
    body_timeout_s = 2.0
    s = start_service(
        MODELS="lenet", WORKERS="1", MAX_CONNECTIONS="50", BODY_TIMEOUT_S=str(body_timeout_s)
    )
    try:
        probes, cut = asyncio.run(_trickle_while_probing(s, seven, attack_s=8))
    finally:
        assert stop_server(s) in GRACEFUL
    statuses = [status for _, status, _ in probes]
    served = [at for at, status, _ in probes if status == 200]
    print(f"probes by status {dict((k, statuses.count(k)) for k in set(statuses))}; first 200 "
          f"{served[0] if served else None} s into the attack; trickles cut after "
          f"{min(cut, default=0):.1f}-{max(cut, default=0):.1f} s; slowest probe "
          f"{max(t for _, _, t in probes):.3f} s")  # fmt: skip
    assert served and served[0] < body_timeout_s + 2  # unguarded: 503 for as long as they trickle
    assert len(cut) >= 40  # the trickles that had a slot were cut, with a 408
    assert max(cut) < body_timeout_s + 1.5
    assert all(status == 200 for at, status, _ in probes if at > served[0])
    assert max(t for _, _, t in probes) < 1  # every probe answered within a second


async def _trickle_while_probing(
    server: Server, seven: bytes, attack_s: float
) -> tuple[list[tuple[float, int, float]], list[float]]:
    """(seconds into the attack, status, latency) per probe sent every 100 ms, and after how
    long each trickle that held a slot was answered 408."""
    head = b"POST /predict/lenet HTTP/1.1\r\nHost: zoo\r\nContent-Type: image/png\r\n"
    head += b"Content-Length: 100000\r\n\r\n"
    cut: list[float] = []

    async def trickle() -> None:
        reader, writer = await _connect(server)
        writer.write(head)
        started = time.monotonic()
        answered = asyncio.create_task(answer(reader))
        try:
            while not answered.done() and time.monotonic() - started < attack_s:
                writer.write(b"\0")
                await asyncio.wait([answered], timeout=1.5)
            if answered.done() and not answered.exception() and answered.result()[0] == 408:
                cut.append(time.monotonic() - started)
        except ConnectionError:
            pass
        finally:
            answered.cancel()
            writer.close()

    body = multipart([seven], 0)

    async def probe() -> int:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            r = await c.post("/predict/lenet", content=body, headers={"content-type": CONTENT_TYPE})
        return r.status_code

    attackers = []
    for _ in range(120):  # one after another, as their connections are taken
        attackers.append(asyncio.create_task(trickle()))
        await asyncio.sleep(0.002)
    async with asyncio.timeout(10):  # in place: the slots are taken
        while await probe() != 503:
            await asyncio.sleep(0.05)
    started, probes = time.monotonic(), []
    while time.monotonic() - started < attack_s:
        sent = time.monotonic()
        status = await probe()
        probes.append((sent - started, status, time.monotonic() - sent))
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))
    await asyncio.gather(*attackers, return_exceptions=True)
    return probes, cut
