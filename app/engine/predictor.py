"""The model call the batcher makes: 28x28 uint8 digits in, class probabilities out.

On the CPU a call computes and returns the probabilities. On CUDA it only launches: the digits
go into a pinned staging buffer, are copied to the GPU on a copy stream, and the model runs on a
compute stream that waits for that copy; the call returns a Pending at once, so the batcher's
model thread stages and launches the next batch (its host-to-device copy overlapping this
batch's compute) while another thread waits for this one's probabilities. A CUDA batch is padded
to the next of a few sizes (powers of two, and the largest), so that warm-up can build the
kernels and plans of every size a batch will have.

Every thread that touches CUDA makes the model's device its own first (``bind_thread``); an
error after which the device runs nothing more becomes :class:`DeviceLost`. An allocation that
fails (out of memory, or cuBLAS/cuDNN failing to allocate its workspace) runs the batch in pieces
and holds later batches to the size that fitted, until enough full batches have passed to try
twice that again.
"""

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from app.engine.batching import DeviceLost, Pending
from models.checkpoint import LoadedCheckpoint
from models.framing import DIGIT_SHAPE
from models.runtime import bind_thread

log = logging.getLogger(__name__)

RING = 3  # staging buffers; a slot whose batch was not collected yet is collected before reuse
GROW_AFTER = 64  # full batches at a shrunken size before twice that size is tried again
# What CUDA libraries raise, as a plain RuntimeError, when they cannot allocate memory (the
# caching allocator raises torch.OutOfMemoryError; cuBLAS and cuDNN allocate on their own).
ALLOCATION_FAILURES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")
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


def bucket_sizes(max_batch: int) -> list[int]:
    """The sizes a CUDA batch is padded to: the powers of two below ``max_batch``, and it."""
    return [*(1 << i for i in range(max_batch.bit_length()) if 1 << i < max_batch), max_batch]


def allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out: the batch may fit in smaller pieces."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in text for s in ALLOCATION_FAILURES)


def device_lost(
    exc: BaseException, device: torch.device, probe: Callable[[], object] | None = None
) -> bool:
    """Whether ``exc`` left ``device`` unable to run anything: a CUDA error other than out of
    memory after which the device no longer synchronises (an illegal address, a device-side
    assert poison the context). On the CPU an error only ever fails its own batch."""
    if device.type != "cuda" or allocation_failure(exc):
        return False
    if not isinstance(exc, RuntimeError):
        return False
    try:
        (probe or (lambda: torch.cuda.synchronize(device)))()
    except RuntimeError:
        return True
    return False


@contextlib.contextmanager
def _device_errors(device: torch.device) -> Iterator[None]:
    """Raise DeviceLost for an error that left the device unusable; others as they are."""
    try:
        yield
    except RuntimeError as exc:
        if device_lost(exc, device):
            raise DeviceLost(f"{device} can run nothing more: {exc}") from exc
        raise


class Predictor:
    """One model placed on its device, called with N x 1 x 28 x 28 uint8 digits."""

    def __init__(
        self, ckpt: LoadedCheckpoint, device: torch.device, dtype: torch.dtype, max_batch: int
    ) -> None:
        self.device, self.dtype = device, dtype
        self.transform = ckpt.transform
        self.temperature = ckpt.meta.temperature  # calibration: softmax(logits / temperature)
        self.max_batch = max_batch
        self.fits = max_batch  # the largest batch known to fit in memory
        self._full_since_shrink = 0  # batches of ``fits`` rows that ran since it last changed
        self.on_resize: Callable[[int], None] | None = None  # hears each new ``fits``
        bind_thread(device)
        # channels_last is faster on CUDA, and on the CPU for batches (lenet 45 -> 31 us/image
        # at batch 64, mnist_cnn 342 -> 224, one thread, oneDNN); for a single image on the
        # CPU the plain layout without oneDNN can be faster (lenet 171 -> 102 us): see calibrate.
        model = ckpt.model.to(device=device, dtype=dtype).eval()
        fast = copy.deepcopy(model) if device.type == "cpu" else model
        self.model: nn.Module = fast.to(memory_format=torch.channels_last)
        self.placements = [Placement(self.model, True, True)]
        if device.type == "cpu":
            self.placements.append(Placement(model, False, False))
        self._by_size = [self.placements[0]] * (max_batch + 1)  # batch size -> placement
        classes = len(ckpt.meta.labels)
        self._cuda = _CudaStaging(device, max_batch, classes) if device.type == "cuda" else None
        # Warm-up runs each size a batch can have on CUDA; on the CPU the two ends.
        self.sizes = bucket_sizes(max_batch) if self._cuda else sorted({1, max_batch})

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

    def warm_up(self) -> None:
        """Run a batch of every size in ``sizes``; on CUDA on the thread that will run the
        batches, since cuBLAS and cuDNN handles are made per thread. (:meth:`calibrate` follows,
        on the CPU in the thread the CPU models share.)"""
        for n in self.sizes:
            self(torch.randint(0, 256, (n, 1, *DIGIT_SHAPE), dtype=torch.uint8))

    @torch.inference_mode()
    def _run(self, placement: Placement, digits: Tensor) -> Tensor:
        x = self.transform(digits, self.dtype)
        if placement.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if placement.onednn:
            return torch.softmax(placement.model(x).float() / self.temperature, dim=1)
        # oneDNN on/off is a process-wide switch: CPU models share one thread (see host.py).
        was = torch.backends.mkldnn.set_flags(False, None, None, None)[0]
        try:
            return torch.softmax(placement.model(x).float() / self.temperature, dim=1)
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
        """Start one batch: the probabilities (CPU), or a Pending for them (CUDA).

        When an allocation fails, the batch runs in pieces of the largest size that fits, and
        later batches are held to it (``on_resize``) until GROW_AFTER full batches have run.
        """
        bind_thread(self.device)
        with _device_errors(self.device):
            slot = None if self._cuda is None else self._cuda.take()
            n = int(digits.shape[0])
            if n <= self.fits:
                try:
                    out = self._start(digits, slot)
                except RuntimeError as exc:  # torch.OutOfMemoryError is one
                    if n == 1 or not allocation_failure(exc):
                        raise
                else:
                    self._ran(n)
                    return out
                # Out of the except clause: its traceback held the failed forward's tensors.
                self._shrink(n)
            return self._in_pieces(digits, slot)

    def _ran(self, n: int) -> None:
        """A batch of ``n`` ran: after GROW_AFTER full ones, try twice the size again (the
        memory that was short may have been another model's batch, since finished)."""
        if self.fits >= self.max_batch or n < self.fits:
            return
        self._full_since_shrink += 1
        if self._full_since_shrink >= GROW_AFTER:
            self._resize(min(self.max_batch, 2 * self.fits))
            log.info("batches of up to %d on %s again", self.fits, self.device)

    def _resize(self, fits: int) -> None:
        self.fits, self._full_since_shrink = fits, 0
        if self.on_resize is not None:
            self.on_resize(fits)

    def _start(self, digits: Tensor, slot: int | None) -> Tensor | Pending:
        if slot is None or self._cuda is None:
            return self.probabilities(digits.to(self.device)).cpu()
        return self._cuda.launch(slot, digits, self.probabilities)

    def _in_pieces(self, digits: Tensor, slot: int | None) -> Tensor:
        """Run ``digits`` to the end in pieces of at most ``fits``, one after another in one
        staging slot (the other slots may hold batches still in flight)."""
        rows: list[Tensor] = []
        start = 0
        while start < digits.shape[0]:
            piece = digits[start : start + self.fits]
            try:
                out = self._start(piece, slot)
            except RuntimeError as exc:
                if piece.shape[0] == 1 or not allocation_failure(exc):
                    raise
                out = None
            if out is None:
                self._shrink(int(piece.shape[0]))
                continue
            rows.append(out if isinstance(out, Tensor) else out.wait())
            start += piece.shape[0]
        return torch.cat(rows)

    def _shrink(self, failed: int) -> None:
        """Hold batches below ``failed`` rows, a power of two, and give the memory back."""
        self._resize(min(self.fits, 1 << ((failed - 1).bit_length() - 1)))
        log.warning(
            "out of memory on a batch of %d on %s; batches of at most %d from now on",
            failed,
            self.device,
            self.fits,
        )
        if self._cuda is not None:
            torch.cuda.empty_cache()

    def __call__(self, digits: Tensor) -> Tensor:
        """Run one batch to the end: N x classes probabilities on the CPU."""
        out = self.launch(digits)
        return out if isinstance(out, Tensor) else out.wait()


class _CudaPending:
    """One launched batch: its rows, in a pinned buffer of the ring until collected."""

    def __init__(self, device: torch.device, done: "torch.cuda.Event", rows: Tensor) -> None:
        self.device, self.done, self.rows = device, done, rows
        self._lock = threading.Lock()  # the wait thread and the ring may collect at once
        self._collected: Tensor | None = None

    def collect(self) -> Tensor:
        """Wait for the batch and copy its rows out of the ring's buffer (once)."""
        with self._lock:
            if self._collected is None:
                bind_thread(self.device)
                with _device_errors(self.device):
                    self.done.synchronize()  # a blocking event: the thread sleeps meanwhile
                self._collected = self.rows.clone()  # the buffer goes back to the ring
                self.rows = self._collected
            return self._collected

    def wait(self) -> Tensor:
        """The batch's rows, once the GPU is done with it."""
        return self.collect()


class _Ring:
    """The slots of the staging ring, in turn. A slot is handed out again only once the batch
    it held is collected: if nobody has waited for it yet, the ring collects it itself, so a
    batcher that keeps RING or more batches in flight gets slower, never wrong rows."""

    def __init__(self, size: int) -> None:
        self.size, self.next = size, 0
        self.held: list[_CudaPending | None] = [None] * size

    def take(self) -> int:
        """The next slot, its previous batch over and its rows copied out."""
        k, self.next = self.next, (self.next + 1) % self.size
        previous, self.held[k] = self.held[k], None
        if previous is not None:
            previous.collect()
        return k

    def hold(self, k: int, pending: _CudaPending) -> None:
        """Slot ``k`` holds ``pending``'s input and rows until it is collected."""
        self.held[k] = pending


class _CudaStaging:
    """Pinned in/out buffers in a ring, a copy stream and a compute stream."""

    def __init__(self, device: torch.device, capacity: int, classes: int) -> None:
        self.device, self.capacity = device, capacity
        self.sizes = bucket_sizes(capacity)
        self.copy_stream = torch.cuda.Stream(device)
        self.compute_stream = torch.cuda.Stream(device)
        # The weights were placed (copied, cast, laid out) on this thread's current stream.
        self.compute_stream.wait_stream(torch.cuda.current_stream(device))
        self.inputs = [
            torch.zeros((capacity, 1, *DIGIT_SHAPE), dtype=torch.uint8).pin_memory()
            for _ in range(RING)
        ]
        self.outputs = [
            torch.empty((capacity, classes), dtype=torch.float32).pin_memory() for _ in range(RING)
        ]
        self.ring = _Ring(RING)

    def take(self) -> int:
        """The next slot of the ring, free: the batch it held is over and collected."""
        return self.ring.take()

    def launch(
        self, k: int, digits: Tensor, probabilities: Callable[[Tensor], Tensor]
    ) -> _CudaPending:
        """Stage ``digits`` in slot ``k`` (free: see take), copy them over and launch the model
        on them."""
        n = int(digits.shape[0])
        padded = next(size for size in self.sizes if size >= n)  # rows past n: ignored
        staged = self.inputs[k][:padded]
        staged[:n].copy_(digits)
        with torch.cuda.stream(self.copy_stream):
            x = staged.to(self.device, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record(self.copy_stream)
        self.compute_stream.wait_event(copied)
        with torch.cuda.stream(self.compute_stream):
            x.record_stream(self.compute_stream)  # made on the copy stream, used here
            probs = probabilities(x)
            out = self.outputs[k][:n]
            out.copy_(probs[:n], non_blocking=True)
            done = torch.cuda.Event(blocking=True)
            done.record(self.compute_stream)
        pending = _CudaPending(self.device, done, out)
        self.ring.hold(k, pending)
        return pending
