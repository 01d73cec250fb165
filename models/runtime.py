"""Where models run: the device (CUDA when asked for and present) and the precision."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BF16_FROM = (8, 0)  # compute capability: Ampere and later compute bfloat16 natively


def bf16_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively: CUDA from compute capability 8.0 (a T4
    or V100 emulates it slowly, if cuDNN takes it at all); CPUs with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= BF16_FROM
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def inference_dtype(device: torch.device, name: str = "auto") -> torch.dtype:
    """The dtype a model serves in on CUDA: ``name`` (float32, bfloat16, float16), or for
    ``auto`` bfloat16 where it is native, else float16. The CPU serves float32."""
    if device.type != "cuda":
        return torch.float32
    if name == "auto":
        return torch.bfloat16 if bf16_native(device) else torch.float16
    return INFERENCE_DTYPES[name]


def training_amp(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for training: bfloat16 when asked (``bf16``), or for ``auto`` where
    it is native; else None, float32 (float16 would need a gradient scaler)."""
    if amp == "bf16" or (amp == "auto" and bf16_native(device)):
        return torch.bfloat16
    return None


def set_tf32(allowed: bool) -> None:
    """Whether float32 convolutions and matmuls on CUDA may round their inputs to TF32
    (process-wide; cuDNN allows it by default)."""
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed


@contextmanager
def exact_float32() -> Iterator[None]:
    """float32 on CUDA computed as float32 (no TF32) within, as on the CPU."""
    was = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    set_tf32(False)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = was


def bind_thread(device: torch.device) -> None:
    """Make ``device`` this thread's CUDA device (each thread has its own, GPU 0 until set):
    a thread left on GPU 0 makes a context there as soon as it touches CUDA, and leaving a
    ``torch.cuda.stream`` of another GPU switches it back to 0. Nothing on the CPU."""
    if device.type == "cuda" and device.index is not None:  # no index: the current one
        torch.cuda.set_device(device)


def release_cached_memory(device: torch.device) -> None:
    """Hand memory PyTorch freed back to a CUDA device (its caching allocator keeps it else, and
    nvidia-smi shows every model a reload dropped as still there). Nothing on the CPU."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.empty_cache()


def resolve_device(name: str) -> torch.device:
    """'auto' -> the first CUDA device when there is one, else the CPU; refuse absent CUDA.

    A CUDA device always comes with its index ("cuda" is the current one), so that every
    thread that binds itself to it (``bind_thread``) binds to the same GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name} asked for, but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda" and device.index >= (count := torch.cuda.device_count()):
        # Else the first CUDA call fails later with "invalid device ordinal", far from why.
        raise RuntimeError(f"device {name} asked for, but there are {count} CUDA device(s)")
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
    autocast = training_amp(device, amp)
    if device.type == "cuda":
        bind_thread(device)
        torch.backends.cudnn.benchmark = True
        set_tf32(True)
    return Runtime(device, rank, world, autocast, autocast is not None)
