"""How the service lays itself out on this machine: device, where models run, how many processes.

``python -m app`` resolves every ``auto`` here once and hands the concrete values to the
processes it starts, through the environment, so they all agree and none needs to probe again.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from app.config import Settings

Engine = Literal["shared", "worker"]
# Where prometheus_client's multi-process mode keeps each process's metrics.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
MAX_DEFAULT_WORKERS = 16


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, so a container's cpuset counts)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cuda_available() -> bool:
    """Whether PyTorch sees a GPU, asked without importing it here when it is not imported yet:
    the launcher and the frontends of the shared layout run no model and stay without torch
    (it would cost each of them ~500 MB of memory)."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    probe = "import torch; print(int(torch.cuda.is_available()))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip() == "1"


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    if name != "auto":
        return name
    return "cuda" if cuda_available() else "cpu"


@dataclass(frozen=True)
class Layout:
    """The resolved shape of one deployment."""

    device: str
    engine: Engine
    workers: int
    torch_threads: int

    def environment(self) -> dict[str, str]:
        """The settings that make every child process resolve to this same layout."""
        return {
            "DEVICE": self.device,
            "ENGINE": self.engine,
            "WORKERS": str(self.workers),
            "TORCH_THREADS": str(self.torch_threads),
        }


def plan(settings: Settings, cores: int | None = None) -> Layout:
    """Resolve DEVICE, ENGINE, WORKERS and TORCH_THREADS for ``cores`` cores (default: ours)."""
    cores = cores or usable_cores()
    device = resolve_device(settings.device)
    cuda = device.startswith("cuda")
    # Measured (README, "Serving architecture"): on a GPU one model owner batching for every
    # worker wins; on the CPU a model copy per worker does, since the hop to another process
    # costs more than the bigger batches save there.
    engine: Engine = (
        settings.engine if settings.engine != "auto" else ("shared" if cuda else "worker")
    )
    # Frontends are Python: one per core does HTTP, parsing and preprocessing in parallel. On
    # CUDA two cores stay with the model owner (its event loop, and its model thread).
    default_workers = max(1, cores - 2) if cuda and engine == "shared" else cores
    workers = settings.workers or min(default_workers, MAX_DEFAULT_WORKERS)
    if settings.torch_threads:
        threads = settings.torch_threads
    elif cuda:
        threads = 1  # the GPU computes; CPU threads would only contend with the frontends
    elif engine == "worker":
        threads = max(1, cores // (2 * workers))  # half of each worker's share of the cores
    else:
        threads = max(1, cores // 2)
    return Layout(device, engine, workers, threads)
