"""Servers under test as real processes on loopback: start, wait until ready, stop, CPU time.

One harness for the tests (tests/server.py) and the benchmarks: the service is started the way
people run it (``python -m app``), baselines by their own command lines.
"""

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def git_state() -> dict[str, object]:
    """The commit a result was made at, and whether tracked files differed from it."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        except OSError:  # no git (the lent GPU machine may have none)
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:  # not a repository, or no git: the commit the GPU bundle was made at
        marker = ROOT / ".gpu-bundle" / "COMMIT"
        bundled = marker.read_text().strip() if marker.exists() else ""
        return {"commit": bundled or "unknown", "dirty": None}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def provenance(module: str) -> dict[str, object]:
    """What a results file records of how it was made: the commit, whether the tree differed,
    and the command (``python -m module`` and this process's arguments)."""
    return {**git_state(), "command": shlex.join(["python", "-m", module, *sys.argv[1:]])}


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_command(port: int) -> list[str]:
    """Our service, as ``python -m app`` runs it, on ``port`` of loopback."""
    return [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(port)]


def children_by_parent() -> dict[int, list[int]]:
    """Every process's children, by parent pid (Linux /proc)."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descended from it (Linux /proc)."""
    tree, out, todo = children_by_parent(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += tree.get(p, [])
    return out


def started_at(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None once it has gone or is a zombie (a
    zombie holds no memory and uses no CPU); with the pid, it names one process for good."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds these processes have used so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_kb(pid: int) -> int:
    """Resident memory of one process in KiB (0 once it has gone)."""
    try:
        return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory (MB) of ``pid`` and every process descended from it, read from /proc."""
    return sum(rss_kb(p) for p in process_tree(pid)) / 1024


class MemoryPeak:
    """The highest resident memory of a process tree while the ``with`` block runs, sampled
    from outside every ``every_s`` (the tree itself re-read every second: a respawned worker
    counts too). Past ``ceiling_mb``, ``on_ceiling`` is called once (a benchmark that sends
    memory bombs kills the service there, before it takes the host's memory)."""

    def __init__(
        self,
        pid: int,
        every_s: float = 0.02,
        ceiling_mb: float | None = None,
        on_ceiling: Callable[[float], None] | None = None,
    ) -> None:
        self.pid, self.every_s = pid, every_s
        self.ceiling_mb, self.on_ceiling = ceiling_mb, on_ceiling
        self.peak_mb = 0.0
        self.over = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        pids, listed = process_tree(self.pid), time.monotonic()
        while True:
            if time.monotonic() - listed > 1:
                pids, listed = process_tree(self.pid), time.monotonic()
            now = sum(rss_kb(p) for p in pids) / 1024
            self.peak_mb = max(self.peak_mb, now)
            if self.ceiling_mb is not None and now > self.ceiling_mb and not self.over:
                self.over = True
                if self.on_ceiling is not None:
                    self.on_ceiling(now)
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> "MemoryPeak":
        self.peak_mb = tree_rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))


@dataclass
class Server:
    """A server process (and whatever it starts) listening on ``url``."""

    name: str
    proc: "subprocess.Popen[bytes]"
    url: str
    log: Path | None = None
    meta: dict[str, object] = field(default_factory=dict)

    def rss_mb(self) -> float:
        """Resident memory of the whole process tree, in MB."""
        return tree_rss_mb(self.proc.pid)

    def cpu_seconds(self) -> float:
        """CPU time of the whole process tree: frontend workers, model owner, baselines' workers."""
        return cpu_seconds(process_tree(self.proc.pid))

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (graceful), SIGKILL if it lingers; then anything left in its session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return code

    def stop_tree(self, timeout: float = 60) -> int:
        """:meth:`stop`, then wait until every process of its tree is gone (one that left its
        session is killed by pid): the next server measured shares the cores with none of it."""
        tree = {p: started_at(p) for p in process_tree(self.proc.pid)}
        code = self.stop(timeout)
        deadline = time.monotonic() + 10
        while left := [p for p, t in tree.items() if t is not None and started_at(p) == t]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: processes {left} outlived SIGKILL")
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        return code


def start_server(
    name: str,
    command: list[str],
    env: dict[str, str],
    ready: str,
    *,
    port: int,
    log: Path | None = None,
    timeout: float = 600,
) -> Server:
    """Run ``command`` (listening on ``port``) and wait until GET ``ready`` answers 200."""
    out = log.open("wb") if log else None
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,  # its own group: stop() can reach every process it started
    )
    if out:
        out.close()
    server = Server(name, proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(server.url + ready, timeout=5).status_code == 200:
                return server
        time.sleep(0.2)
    code = server.stop()
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise RuntimeError(f"{name} did not become ready (exit code {code}):\n{tail}")
