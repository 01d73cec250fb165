"""The model call the batcher makes: 28x28 uint8 digits in, class probabilities out.

On the CPU a call computes and returns the probabilities. On CUDA it only launches: the digits
go into a pinned staging buffer, are copied to the GPU on a copy stream, and the model runs on a
compute stream that waits for that copy; the call returns a Pending at once, so the batcher's
model thread stages and launches the next batch (its host-to-device copy overlapping this
batch's compute) while another thread waits for this one's probabilities.
"""

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from app.engine.batching import Pending
from models.checkpoint import LoadedCheckpoint
from models.framing import DIGIT_SHAPE

log = logging.getLogger(__name__)

RING = 3  # staging buffers: the batcher keeps at most 2 batches in flight
CALIBRATE_UP_TO = 8  # above this batch size, channels_last with oneDNN always won here
CALIBRATE_BUDGET_S = 0.02  # models slower than this per image skip calibration (VGG on a CPU)


@dataclass(frozen=True)
class Placement:
    """One way to run a model on the CPU: its memory format, and whether oneDNN runs it."""

    model: nn.Module
    channels_last: bool
    onednn: bool


def _best_of(fn: Callable[[], object], rounds: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


class Predictor:
    """One model placed on its device, called with N x 1 x 28 x 28 uint8 digits."""

    def __init__(
        self, ckpt: LoadedCheckpoint, device: torch.device, dtype: torch.dtype, max_batch: int
    ) -> None:
        self.device, self.dtype = device, dtype
        self.transform = ckpt.transform
        # channels_last is faster on CUDA, and on the CPU for batches (lenet 45 -> 31 us/image
        # at batch 64, mnist_cnn 342 -> 224, one thread, oneDNN); for a single image on the
        # CPU the plain layout without oneDNN can be faster (lenet 171 -> 102 us): see calibrate.
        model = ckpt.model.to(device=device, dtype=dtype).eval()
        self.model: nn.Module = copy.deepcopy(model).to(memory_format=torch.channels_last)
        self.placements = [Placement(self.model, True, True)]
        if device.type == "cpu":
            self.placements.append(Placement(model, False, False))
        self._by_size = [self.placements[0]] * (max_batch + 1)  # batch size -> placement
        classes = len(ckpt.meta.labels)
        self._cuda = _CudaStaging(device, max_batch, classes) if device.type == "cuda" else None

    def calibrate(self) -> dict[int, str]:
        """Time each CPU placement on small batches and use the faster one for each size."""
        chosen: dict[int, str] = {}
        if len(self.placements) == 1:
            return chosen
        size = 1
        while size <= min(CALIBRATE_UP_TO, len(self._by_size) - 1):
            x = torch.randint(0, 256, (size, 1, *DIGIT_SHAPE), dtype=torch.uint8)
            times = [_best_of(lambda p=p, x=x: self._run(p, x)) for p in self.placements]  # type: ignore[misc]
            if times[0] > CALIBRATE_BUDGET_S * size:
                break
            best = self.placements[times.index(min(times))]
            for n in range(size, min(2 * size, len(self._by_size))):
                self._by_size[n] = best
            chosen[size] = "channels_last+oneDNN" if best.onednn else "contiguous, no oneDNN"
            size *= 2
        return chosen

    @torch.inference_mode()
    def _run(self, placement: Placement, digits: Tensor) -> Tensor:
        x = self.transform(digits).to(self.dtype)
        if placement.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if placement.onednn:
            return torch.softmax(placement.model(x).float(), dim=1)
        # oneDNN on/off is a process-wide switch: CPU models share one thread (see host.py).
        was = torch.backends.mkldnn.set_flags(False, None, None, None)[0]
        try:
            return torch.softmax(placement.model(x).float(), dim=1)
        finally:
            torch.backends.mkldnn.set_flags(was, None, None, None)

    @property
    def depth(self) -> int:
        """Batches the batcher may keep in flight: two on CUDA (copy overlaps compute), else one."""
        return 1 if self._cuda is None else 2

    def probabilities(self, digits: Tensor) -> Tensor:
        """Digits already on the model's device -> float32 probabilities there."""
        n = digits.shape[0]
        return self._run(self._by_size[n] if n < len(self._by_size) else self.placements[0], digits)

    def launch(self, digits: Tensor) -> Tensor | Pending:
        """Start one batch: the probabilities (CPU), or a Pending for them (CUDA)."""
        try:
            if self._cuda is None or digits.shape[0] > self._cuda.capacity:
                return self.probabilities(digits.to(self.device)).cpu()
            return self._cuda.launch(digits, self.probabilities)
        except torch.OutOfMemoryError:
            if digits.shape[0] == 1:
                raise
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            log.warning("out of memory on a batch of %d; retrying in halves", digits.shape[0])
            half = digits.shape[0] // 2
            return torch.cat([self(digits[:half]), self(digits[half:])])

    def __call__(self, digits: Tensor) -> Tensor:
        """Run one batch to the end: N x classes probabilities on the CPU."""
        out = self.launch(digits)
        return out if isinstance(out, Tensor) else out.wait()


class _CudaPending:
    def __init__(self, done: torch.cuda.Event, rows: Tensor) -> None:
        self.done, self.rows = done, rows

    def wait(self) -> Tensor:
        self.done.synchronize()
        return self.rows.clone()  # the pinned buffer is reused by a later batch


class _CudaStaging:
    """Pinned in/out buffers in a ring, a copy stream and a compute stream."""

    def __init__(self, device: torch.device, capacity: int, classes: int) -> None:
        self.device, self.capacity = device, capacity
        self.copy_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        self.inputs = [
            torch.empty((capacity, 1, *DIGIT_SHAPE), dtype=torch.uint8).pin_memory()
            for _ in range(RING)
        ]
        self.outputs = [
            torch.empty((capacity, classes), dtype=torch.float32).pin_memory() for _ in range(RING)
        ]
        self.done: list[torch.cuda.Event | None] = [None] * RING
        self.next = 0

    def launch(self, digits: Tensor, probabilities: Callable[[Tensor], Tensor]) -> _CudaPending:
        k, self.next = self.next, (self.next + 1) % RING
        previous = self.done[k]
        if previous is not None:
            previous.synchronize()  # that batch's copies are over: its buffers are free
        n = int(digits.shape[0])
        staged = self.inputs[k][:n]
        staged.copy_(digits)
        with torch.cuda.stream(self.copy_stream):
            x = staged.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        self.compute_stream.wait_event(copied)
        with torch.cuda.stream(self.compute_stream):
            x.record_stream(self.compute_stream)  # made on the copy stream, used here
            probs = probabilities(x)
            out = self.outputs[k][:n]
            out.copy_(probs, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.compute_stream)
        self.done[k] = done
        return _CudaPending(done, out)
