"""Where models run: the device (CUDA when asked for and present) and training precision."""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def inference_dtype(device: torch.device, name: str) -> torch.dtype:
    """The dtype a model serves in: ``name`` (float32, bfloat16, float16) on CUDA; CPU: float32."""
    return INFERENCE_DTYPES[name] if device.type == "cuda" else torch.float32


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first CUDA device when there is one, else the CPU; refuse absent CUDA."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} asked for, but CUDA is not available")
    return device


@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int
    world: int
    amp: torch.dtype | None
    channels_last: bool


def setup_runtime(device_arg: str, amp: str) -> Runtime:
    """Pick the device (joining the torchrun process group if there is one) and precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(device_arg)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    bf16_ok = device.type == "cuda" or bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    use_bf16 = amp == "bf16" or (amp == "auto" and bf16_ok)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(device, rank, world, torch.bfloat16 if use_bf16 else None, use_bf16)
