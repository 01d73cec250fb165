"""DynamicBatcher: a bounded queue of images per model, flushed on size or delay.

One worker task per model takes up to ``max_batch_size`` images. When the model was idle
(the queue was empty when the worker looked) it runs at once; under load it waits at most
``max_delay_s`` for the batch to fill. The model runs in one dedicated thread, so the event
loop never blocks and only that thread touches the model.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class QueueFullError(Exception):
    """The model's queue cannot take this many more images now."""


class BatcherClosedError(Exception):
    """The batcher is shutting down and takes no new work."""


@dataclass
class BatchStats:
    """What one model call looked like, for metrics."""

    size: int
    queue_waits: list[float]
    inference_s: float


@dataclass
class _Job:
    inputs: Tensor
    future: "asyncio.Future[Tensor]"
    enqueued: float = field(default_factory=time.perf_counter)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


class DynamicBatcher:
    """Batch images from many requests into few model calls, answering each in order."""

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        *,
        name: str,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        on_batch: Callable[[BatchStats], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self.fn, self.name = fn, name
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_s
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")
        self._worker: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def queued_images(self) -> int:
        """Images accepted but not yet taken into a batch."""
        return self._queued

    def check_room(self, n: int) -> None:
        """Raise QueueFullError now if ``n`` more images would not fit."""
        if self._queued + n > self.max_queue:
            raise QueueFullError(
                f"{self.name} queue is full ({self._queued} of {self.max_queue} images waiting)"
            )

    def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._worker is None:
            loop = asyncio.get_running_loop()
            self._worker = loop.create_task(self._run(), name=f"batcher-{self.name}")

    async def submit(self, inputs: Tensor) -> Tensor:
        """Queue N inputs; resolve to their N output rows in input order."""
        if self._closed:
            raise BatcherClosedError(f"{self.name} is shutting down")
        n = int(inputs.shape[0])
        if n == 0:
            raise ValueError("no inputs")
        self.check_room(n)
        loop = asyncio.get_running_loop()
        chunks = inputs.split(self.max_batch_size)
        jobs = [_Job(c, loop.create_future()) for c in chunks]
        self._jobs.extend(jobs)
        self._queued += n
        self._wakeup.set()
        try:
            outs = await asyncio.gather(*(j.future for j in jobs))
        except BaseException:
            for j in jobs:  # a request that gave up: the worker skips its images
                j.future.cancel()
            raise
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    async def _wait_for_job(self, timeout: float | None) -> bool:
        """Wait until a job is queued (True) or ``timeout`` passes (False)."""
        while not self._jobs:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def _take(self) -> _Job:
        job = self._jobs.popleft()
        self._queued -= len(job)
        return job

    async def _collect(self, idle: bool) -> list[_Job]:
        """One batch: the first job, then whatever fits, waiting only while busy."""
        batch = [self._take()]
        size = len(batch[0])
        deadline = time.perf_counter() + self.max_delay_s
        while size < self.max_batch_size:
            if not self._jobs:
                remaining = deadline - time.perf_counter()
                if idle or self._closed or remaining <= 0:
                    break
                if not await self._wait_for_job(remaining):
                    break
            if size + len(self._jobs[0]) > self.max_batch_size:
                break  # stays first in line for the next batch
            job = self._take()
            batch.append(job)
            size += len(job)
        return [j for j in batch if not j.future.done()]  # drop requests that gave up

    async def _execute(self, batch: list[_Job]) -> None:
        """Run one batch in the model thread and resolve each job with its rows."""
        started = time.perf_counter()
        inputs = torch.cat([j.inputs for j in batch]) if len(batch) > 1 else batch[0].inputs
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.fn, inputs)
            if outputs.shape[0] != inputs.shape[0]:
                raise RuntimeError(
                    f"{self.name} returned {outputs.shape[0]} rows for {inputs.shape[0]} inputs"
                )
        except Exception as exc:  # fails this batch only; the worker goes on
            log.exception("inference failed for a batch of %d on %s", inputs.shape[0], self.name)
            for j in batch:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        finally:
            if self._on_batch is not None:
                self._on_batch(
                    BatchStats(
                        int(inputs.shape[0]),
                        [started - j.enqueued for j in batch],
                        time.perf_counter() - started,
                    )
                )
        for j, out in zip(batch, outputs.split([len(j) for j in batch]), strict=True):
            if not j.future.done():
                j.future.set_result(out)

    async def _run(self) -> None:
        idle = True  # nothing ran yet
        while True:
            await self._wait_for_job(None)
            self._busy = True
            try:
                batch = await self._collect(idle)
                if batch:
                    await self._execute(batch)
            finally:
                self._busy = False
            idle = not self._jobs  # nobody waited for this batch: the next arrival goes at once

    async def stop(self) -> None:
        """Refuse new work, finish everything already accepted, then stop the worker."""
        self._closed = True
        self._wakeup.set()
        while self._worker is not None and not self._worker.done() and (self._jobs or self._busy):
            await asyncio.sleep(0.005)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)
