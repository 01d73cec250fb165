"""Resident memory of a server, process by process, each named by its role in the layout.

Roles come from what /proc shows: the command line (``python -m app``, uvicorn, the LitServe
script, multiprocessing's spawn and resource tracker), the parent's role, whether the process
holds the server's listening socket (HTTP workers do; model owners, decoders and inference
workers do not) and whether it listens on a Unix socket (a multiprocessing Manager's server).
RSS counts the pages a process shares with others (a forked LitServe API server shares most of
its parent's torch) in each of them, so PSS is given beside it: shared pages split among the
processes that map them, so that PSS adds up to what the layout costs.
"""

import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import children_by_parent

# A root process, by the module it runs.
ROOTS = {"app": "launcher", "benchmarks.litserve_server": "LitServe main"}
# A child holding the listening socket, by its parent's role.
HTTP = {
    "launcher": "frontend worker",
    "LitServe main": "API server",
    "uvicorn supervisor": "uvicorn worker",
}
# A multiprocessing child started by spawn that serves no HTTP, by its parent's role.
SPAWNED = {
    "launcher": "model owner",
    "frontend worker": "zoo-decoder",
    "LitServe main": "inference worker",
}


@dataclass(frozen=True)
class ProcessMemory:
    """One process of a server: its role, resident and proportional memory."""

    pid: int
    role: str
    rss_mb: float
    pss_mb: float


def role(argv: list[str], parent: str | None, http: bool, unix_listener: bool) -> str:
    """The role of a process from its command line, its parent's role (None: the server's own
    process), whether it holds the server's listening socket and whether it listens on a Unix
    socket."""
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    code = argv[argv.index("-c") + 1] if "-c" in argv[:-1] else ""
    if parent is None:
        if module == "uvicorn":  # one worker: it serves in this process, else it supervises
            workers = argv[argv.index("--workers") + 1] if "--workers" in argv[:-1] else "1"
            return "uvicorn supervisor" if int(workers) > 1 else "uvicorn server"
        return ROOTS.get(module, "main")
    if "multiprocessing.resource_tracker" in code:
        return "resource tracker"
    spawned = "multiprocessing.spawn" in code
    if unix_listener and not spawned:  # LitServe's queues: forked after the port was bound
        return "multiprocessing manager"
    if http:
        return HTTP.get(parent, "HTTP worker")
    return SPAWNED.get(parent, "spawned child") if spawned else "child"


def _listening_inodes(port: int) -> tuple[set[str], set[str]]:
    """Inodes of the sockets listening on TCP ``port`` (IPv4 or IPv6), and of every listening
    Unix socket."""
    tcp = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    tcp.add(f[9])
    unix = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "00010000":  # __SO_ACCEPTCON: listening
                unix.add(f[6])
    return tcp, unix


def _holds(pid: int, inodes: set[str]) -> bool:
    """Whether one of ``pid``'s open files is one of these sockets."""
    with contextlib.suppress(OSError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(fd.path).removeprefix("socket:[").rstrip("]") in inodes:
                    return True
    return False


def _kb(pid: int, file: str, key: str) -> int:
    """One ``key:  N kB`` line of /proc/<pid>/<file> (0 once the process has gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/{file}").read_text().split(f"\n{key}:")[1].split()[0])
    return 0


def sample(root: int, port: int) -> list[ProcessMemory]:
    """Every process of the server started as ``root`` (listening on ``port``), parents first."""
    children, (tcp, unix) = children_by_parent(), _listening_inodes(port)
    out: list[ProcessMemory] = []
    todo: list[tuple[int, str | None]] = [(root, None)]
    while todo:
        pid, parent = todo.pop(0)
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        mine = role(argv, parent, _holds(pid, tcp), _holds(pid, unix))
        rss, pss = _kb(pid, "status", "VmRSS"), _kb(pid, "smaps_rollup", "Pss")
        out.append(ProcessMemory(pid, mine, rss / 1024, pss / 1024))
        todo += [(child, mine) for child in sorted(children.get(pid, []))]
    return out


def report(processes: list[ProcessMemory]) -> dict[str, Any]:
    """The processes and their totals, for the results JSON."""
    return {
        "processes": [asdict(p) for p in processes],
        "total_rss_mb": sum(p.rss_mb for p in processes),
        "total_pss_mb": sum(p.pss_mb for p in processes),
    }


def print_memory(samples: dict[str, dict[str, Any]]) -> None:
    """One line per process of each server, then the server's total."""
    print(f"\n{'server':<22} {'process':<24} {'pid':>8} {'RSS MB':>8} {'PSS MB':>8}")
    for name, s in samples.items():
        for p in s["processes"]:
            print(
                f"{name:<22} {p['role']:<24} {p['pid']:>8} {p['rss_mb']:>8.1f} {p['pss_mb']:>8.1f}"
            )
        total = f"total, {len(s['processes'])} processes"
        print(f"{name:<22} {total:<24} {'':>8} {s['total_rss_mb']:>8.1f} {s['total_pss_mb']:>8.1f}")
