"""``python -m app`` as deployed: several worker processes behave as one service."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from benchmarks.harness import (
    ROOT,
    Server,
    free_port,
    process_tree,
    service_command,
    start_server,
)
from models.data import MnistSplit
from tests.helpers import WEIGHTS, png


def _start(tmp_path: Path, **env: str) -> Server:
    port = free_port()
    settings = {"WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", "MODELS": "lenet", **env}
    log = tmp_path / "service.log"
    return start_server(
        "service", service_command(port), settings, "/health/ready", port=port, log=log
    )


def _alive(pids: list[int], wait_s: float = 5) -> list[int]:
    """The processes still running (zombies waiting to be reaped are gone) after ``wait_s``."""

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + wait_s
    while (left := [p for p in pids if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _logged(server: Server, pattern: str) -> str:
    assert server.log is not None
    match = re.search(pattern, server.log.read_text())
    assert match, f"{pattern!r} not in the log"
    return match.group(1)


@pytest.fixture
def seven(mnist_test: MnistSplit) -> bytes:
    return png(mnist_test.images[0, 0].numpy())


def _count(metrics: str) -> float:
    pattern = r'^zoo_requests_total\{model="lenet",status="200",version="1"\} (\S+)$'
    m = re.search(pattern, metrics, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_every_worker_s_requests(tmp_path: Path, seven: bytes) -> None:
    server = _start(tmp_path, WORKERS="2", ENGINE="worker")
    try:
        workers = [p for p in process_tree(server.proc.pid) if p != server.proc.pid]
        assert len(workers) >= 2  # uvicorn's workers (and the resource tracker, if any)
        for i in range(100):  # a new connection each: the two workers share them out
            with httpx.Client(base_url=server.url) as c:
                r = c.post("/predict/lenet", files={"files": (f"{i}.png", seven)})
                assert r.status_code == 200
        for _ in range(10):  # whichever worker answers /metrics counts all of them
            with httpx.Client(base_url=server.url) as c:
                assert _count(c.get("/metrics").text) == 100
        served = _served_per_process(Path(_logged(server, r"run folder (\S+)")) / "metrics")
        assert sum(served.values()) == 100
        assert len([pid for pid, n in served.items() if n > 0 and pid in workers]) >= 2, served
    finally:
        server.stop()


def _served_per_process(metrics_dir: Path) -> dict[int, float]:
    """Successful lenet requests per process id, read from each process's own metrics file."""
    served = {}
    for db in metrics_dir.glob("counter_*.db"):
        with tempfile.TemporaryDirectory() as alone:
            shutil.copy(db, alone)
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=alone)
            served[int(db.stem.split("_")[1])] = _count(generate_latest(registry).decode())
    return served


def test_losing_the_model_owner_stops_the_service_with_an_error(
    tmp_path: Path, seven: bytes
) -> None:
    server = _start(tmp_path, WORKERS="2", ENGINE="shared")
    try:
        assert httpx.post(server.url + "/predict/lenet", files={"files": seven}).status_code == 200
        owner = int(_logged(server, r"model owner ready \(pid (\d+)"))
        family = process_tree(server.proc.pid)
        assert owner in family
        os.kill(owner, signal.SIGKILL)
        assert server.proc.wait(60) == 1  # an orchestrator restarts it whole
        assert not _alive(family), "processes left behind"
    finally:
        server.stop()


def _start_losing(tmp_path: Path, fault: str = "lost", **env: str) -> Server:
    """The service of tests/device_lost_service.py: lenet loses its device on 3 images (or,
    ``fault="hang"``, its batch of 3 never completes and the watchdog takes it for lost)."""
    port = free_port()
    command = [sys.executable, str(ROOT / "tests" / "device_lost_service.py"), "--port", str(port)]
    settings = {"WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", "MODELS": "lenet"}
    settings |= {"FAULT": fault, "PYTHONPATH": str(ROOT), **env}
    return start_server(
        "service", command, settings, "/health/ready", port=port, log=tmp_path / "service.log"
    )


def _three(seven: bytes) -> list[tuple[str, tuple[str, bytes]]]:
    return [("files", (f"{i}.png", seven)) for i in range(3)]


@pytest.mark.parametrize(
    ("engine", "workers", "fault"),
    [("shared", "2", "lost"), ("worker", "1", "lost"), ("shared", "2", "hang")],
)
def test_a_lost_device_stops_the_service_with_an_error(
    tmp_path: Path, seven: bytes, engine: str, workers: str, fault: str
) -> None:
    server = _start_losing(tmp_path, fault, ENGINE=engine, WORKERS=workers)
    try:
        family = process_tree(server.proc.pid)
        r = httpx.post(server.url + "/predict/lenet", files=_three(seven), timeout=30)
        assert r.status_code == 500 and r.json()["type"] == "/problems/inference-failed"
        assert server.proc.wait(60) == 1  # an orchestrator restarts it whole
        assert not _alive(family), "processes left behind"
    finally:
        server.stop()


def test_a_worker_whose_device_is_lost_is_replaced(tmp_path: Path, seven: bytes) -> None:
    server = _start_losing(tmp_path, ENGINE="worker", WORKERS="2")
    try:
        workers = set(process_tree(server.proc.pid)) - {server.proc.pid}
        r = httpx.post(server.url + "/predict/lenet", files=_three(seven), timeout=30)
        assert r.status_code == 500
        # uvicorn's supervisor starts a new worker, with a new device context, in its place.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if "died" in (server.log.read_text() if server.log else "") and (
                set(process_tree(server.proc.pid)) - workers - {server.proc.pid}
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail("no worker replaced the one that lost its device")
        for _ in range(20):  # whichever worker answers: the old one is gone, the new one serves
            with httpx.Client(base_url=server.url, timeout=60) as c:
                assert c.post("/predict/lenet", files={"files": seven}).status_code == 200
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_ctrl_c_stops_every_process_cleanly(tmp_path: Path) -> None:
    server = _start(tmp_path, WORKERS="2", ENGINE="shared")
    run_dir = Path(_logged(server, r"run folder (\S+) "))
    family = process_tree(server.proc.pid)
    assert run_dir.is_dir()
    os.killpg(server.proc.pid, signal.SIGINT)  # what a terminal sends the whole group
    try:
        code = server.proc.wait(60)
    except subprocess.TimeoutExpired:
        server.stop()
        raise
    assert code == 0
    assert not run_dir.exists()  # sockets, slabs and metrics files are gone
    assert not _alive(family), "processes left behind"
    assert "Traceback" not in (server.log.read_text() if server.log else "")


@pytest.mark.parametrize("keys", ["file", " , "])
def test_keys_that_name_no_key_stop_start_up_with_one_clear_line(tmp_path: Path, keys: str) -> None:
    secret = tmp_path / "api_keys"
    secret.write_text("\n")
    env = {**os.environ, "WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", "MODELS": "lenet"}
    env |= {"WORKERS": "2", "ENGINE": "worker"}
    env |= {"API_KEYS_FILE": str(secret)} if keys == "file" else {"API_KEYS": keys}
    done = subprocess.run(
        service_command(free_port()), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    said = f"API_KEYS_FILE {secret} holds no key" if keys == "file" else "API_KEYS is set but"
    assert done.stderr.startswith("python -m app: ") and said in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_a_draining_service_refuses_new_connections_at_once(tmp_path: Path) -> None:
    """Once stopping, a new connection is refused, not queued unanswered until the drain ends.

    docker stop while clients keep sending: a connection left in the listening socket's queue
    through the drain (up to 30 s) was reset at the end; refused, a client or balancer goes
    elsewhere at once. A request still arriving holds the drain open meanwhile.
    """
    server = _start(tmp_path, WORKERS="2", ENGINE="worker", BODY_TIMEOUT_S="60")
    port = int(server.url.rsplit(":", 1)[1].split("/")[0])
    slow = socket.create_connection(("127.0.0.1", port))
    try:
        slow.sendall(
            b"POST /predict/lenet HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"\x89PNG"  # the rest never comes: in flight
        )
        time.sleep(0.5)  # the worker is reading the body
        server.proc.send_signal(signal.SIGTERM)
        refused = False
        deadline = time.monotonic() + 10
        while not refused and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.1)
            except ConnectionRefusedError:
                refused = True
        assert server.proc.poll() is None, "the drain must still be waiting for the slow request"
        assert refused, "new connections were still taken in while draining"
    finally:
        slow.close()
        server.stop()
