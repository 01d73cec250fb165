"""Readings of one GPU, the one a benchmark uses: memory in use, and the processes holding a
CUDA context on it. Both name the device as CUDA does in this process (CUDA_VISIBLE_DEVICES
applies), not as nvidia-smi numbers it; off CUDA they are None."""

import subprocess

import torch

from models.runtime import bind_thread


def memory_used_mib(device: torch.device) -> float | None:
    """Memory in use on ``device`` by every process, this one included, in MiB.

    Asked through this process's own context (made here if it is not yet), so a reading taken
    before and one taken after the service starts differ by what the service holds.
    """
    if device.type != "cuda":
        return None
    bind_thread(device)
    free, total = torch.cuda.mem_get_info(device)
    return (total - free) / 2**20


def context_pids(device: torch.device) -> list[int] | None:
    """The processes with a CUDA context on ``device``, as nvidia-smi lists them (in a
    container, maybe under other process ids: count them rather than match them)."""
    if device.type != "cuda":
        return None
    uuid = str(torch.cuda.get_device_properties(device).uuid).lower().removeprefix("gpu-")
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [line.split(",") for line in out.stdout.splitlines() if "," in line]
    return [int(pid) for pid, gpu in rows if gpu.strip().lower().removeprefix("gpu-") == uuid]
