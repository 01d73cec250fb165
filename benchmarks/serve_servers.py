"""The servers of the serving benchmark: the load shapes, how each server starts, and the starts
of a round (benchmarks/serve_bench.py measures them)."""

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from app.layout import Layout
from benchmarks.harness import Server, free_port, service_command, start_server


@dataclass(frozen=True)
class Scenario:
    """One load shape: ``connections`` keep-alive clients sending ``images`` per request, to
    /predict (multipart) or, ``v2``, to the v2 protocol's infer (binary tensor data in and
    out, as tritonclient sends by default; our service only)."""

    name: str
    connections: int
    images: int
    v2: bool = False

    def path(self, model: str) -> str:
        """Where its requests go."""
        return f"/v2/models/{model}/infer" if self.v2 else f"/predict/{model}"


SCENARIOS = (
    Scenario("c1", 1, 1),
    Scenario("c32", 32, 1),
    Scenario("c8x64", 8, 64),
    Scenario("c8x64v2", 8, 64, v2=True),
)


@dataclass(frozen=True)
class Start:
    """One start of a server: the scenarios measured while it runs, and how it differs from the
    server's usual command (``extra`` arguments)."""

    server: str  # its name in --servers and the table
    label: str  # its name in the accuracy and memory reports
    scenarios: tuple[Scenario, ...]
    extra: tuple[str, ...] = ()


def plan_starts(servers: list[str], scenarios: list[str]) -> list[Start]:
    """The starts of a round, in ``servers`` order: one per server, LitServe's one-connection
    scenarios apart and unbatched (a 2 ms batch wait on every request is not how one would
    serve one connection); v2 scenarios for ours only."""
    out = []
    for name in servers:
        mine = [
            sc
            for sc in SCENARIOS
            if sc.name in scenarios and (name.startswith("ours") or not sc.v2)
        ]
        if name == "litserve":
            batched = tuple(sc for sc in mine if sc.connections > 1)
            one = tuple(sc for sc in mine if sc.connections == 1)
            unbatched = Start(name, "litserve-unbatched", one, ("--max-batch-size", "1"))
            out += [s for s in (Start(name, name, batched), unbatched) if s.scenarios]
        elif mine:
            out.append(Start(name, name, tuple(mine)))
    return out


def _command(args: argparse.Namespace, layout: Layout, name: str, port: int) -> list[str]:
    """How a server starts: ours as people run it, the baselines by their own scripts."""
    if name.startswith("ours"):
        return service_command(port)
    if name == "litserve":
        return [
            *(sys.executable, "-m", "benchmarks.litserve_server", "--port", str(port)),
            *("--model", args.model, "--device", args.device),
            *("--api-servers", str(layout.workers), "--workers", str(layout.workers)),
            *("--weights-dir", str(args.weights_dir.resolve())),
        ]
    naive = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.naive_server:create_app"]
    naive += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    return [*naive, "--workers", "1" if name == "naive-1" else str(layout.workers)]


def _env(args: argparse.Namespace, layout: Layout, name: str) -> dict[str, str]:
    """A server's environment: the model and device; ours' settings; LitServe ours' threads."""
    base = {"WEIGHTS_DIR": str(args.weights_dir.resolve()), "MODELS": args.model}
    if name == "litserve":  # the naive server picks its own (benchmarks/naive_server.py)
        return {**base, "TORCH_THREADS": str(layout.torch_threads)}
    if not name.startswith("ours"):
        return {**base, "DEVICE": args.device}
    ours = {**base, "DEVICE": args.device, **dict(kv.split("=", 1) for kv in args.server_env)}
    return {**ours, "ENGINE": name.split("-", 1)[1]} if "-" in name else ours


@contextmanager
def running(
    start: Start, args: argparse.Namespace, layout: Layout, logs: Path
) -> Iterator[tuple[Server, int]]:
    """The server of ``start``, ready, and its port; stopped on leaving, its whole tree gone."""
    port = free_port()
    command = [*_command(args, layout, start.server, port), *start.extra]
    ready = "/health/ready" if start.server.startswith("ours") else "/health"
    log = logs / f"{start.label}.log"
    server = start_server(
        start.label, command, _env(args, layout, start.server), ready, port=port, log=log
    )
    try:
        yield server, port
    finally:
        server.stop_tree()
