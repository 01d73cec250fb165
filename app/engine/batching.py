"""DynamicBatcher: a bounded first-in-first-out queue of images per model, flushed on size or delay.

A request of N images is one job of N rows. Batches take rows from the head of the queue, so a
big request may be split across batches and every batch under load is full. When the model was
idle (nothing queued and nothing running when the last batch ended) a request runs at once;
under load the batcher waits at most ``max_delay_s`` for the batch to fill.

The model function runs in one dedicated thread, so the event loop never blocks and only that
thread touches the model. It may return the output rows, or a :class:`Pending` whose ``wait``
blocks until they are ready (a CUDA batch still running): then a second thread waits for it
while the model thread launches the next batch, up to ``depth`` batches in flight.

A model call that fails fails its batch only, unless it raises :class:`DeviceLost`: then nothing
more can run, so the batcher refuses new work, fails what is queued and tells ``on_lost``. With
a ``deadline_s`` (the watchdog, on CUDA), a batch that has not completed that long after its
launch began counts as DeviceLost too: a hung GPU blocks its threads for good, so the process
must be replaced, not waited for.
"""

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from app.failures import Failure, queue_full

log = logging.getLogger(__name__)


class ModelThread:
    """A thread that runs calls handed to it from an event loop, one at a time, in order.

    Leaner than ``loop.run_in_executor``: a SimpleQueue in, ``call_soon_threadsafe`` out, no
    concurrent.futures.Future in between (each hop costs tens of microseconds less).
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """Run ``fn(*args)`` in the thread; the future holds its result or exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._calls.put((loop, future, fn, args))
        return future

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            self._run(*item)
            # Not kept while waiting for the next call: the last call's function and arguments
            # (a batch, a model a reload has retired) go now.
            del item

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, future: "asyncio.Future[Any]",
             fn: Callable[..., Any], args: tuple[Any, ...]) -> None:  # fmt: skip
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the caller, who decides
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_settle, future, result, error)

    def stop(self, wait: bool = True) -> None:
        """Finish the calls already handed over, then end the thread (``wait=False``: do not
        wait for that; a thread stuck on a hung device never ends, and is a daemon)."""
        self._calls.put(None)
        if wait:
            self._thread.join()


def _settle(future: "asyncio.Future[Any]", result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class DeviceLost(Exception):
    """The model's device can run nothing more (a CUDA error that poisoned its context): this
    batch failed, and so would every later one."""


class Pending(Protocol):
    """Output rows being computed; ``wait`` blocks until they are ready."""

    def wait(self) -> Tensor: ...


BatchFn = Callable[[Tensor], Tensor | Pending]


@dataclass
class BatchStats:
    """What one model call looked like, for metrics."""

    size: int
    queue_waits: list[float]
    inference_s: float


@dataclass(eq=False)
class _Job:
    """One request's rows; ``taken`` of them are in batches, ``answered`` have their outputs."""

    inputs: Tensor
    future: "asyncio.Future[Tensor]"
    enqueued: float = field(default_factory=time.perf_counter)
    taken: int = 0
    answered: int = 0
    outputs: Tensor | None = None

    @property
    def rows(self) -> int:
        return int(self.inputs.shape[0])

    def answer(self, start: int, rows: Tensor) -> None:
        """Store the outputs of rows ``start:start+len(rows)``; resolve once all are in."""
        if self.future.done():  # gave up, or another part of it failed
            return
        if start == 0 and rows.shape[0] == self.rows:  # all of it at once: no copy
            self.future.set_result(rows)
            return
        if self.outputs is None:
            self.outputs = rows.new_empty((self.rows, *rows.shape[1:]))
        self.outputs[start : start + rows.shape[0]] = rows
        self.answered += int(rows.shape[0])
        if self.answered == self.rows:
            self.future.set_result(self.outputs)


@dataclass(frozen=True)
class _Slice:
    job: _Job
    start: int
    stop: int


class DynamicBatcher:
    """Batch images from many requests into few model calls, answering each in order."""

    def __init__(
        self,
        fn: BatchFn,
        *,
        name: str,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        depth: int = 1,
        thread: ModelThread | None = None,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        on_lost: Callable[[DeviceLost], None] | None = None,
        deadline_s: float | None = None,
    ) -> None:
        """``thread`` runs the model calls; models of one process on the CPU share one (they
        share its cores anyway); by default the batcher has its own. ``on_lost`` hears once
        that the device was lost; ``deadline_s`` is the watchdog's (None: no watchdog)."""
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must be >= 0, got {max_delay_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if deadline_s is not None and deadline_s <= 0:
            raise ValueError(f"deadline_s must be > 0, got {deadline_s}")
        self.fn, self.name, self.deadline_s = fn, name, deadline_s
        self.largest = max_batch_size  # what limit() may give back
        self.max_batch_size, self.max_delay_s = max_batch_size, max_delay_s
        self.max_queue, self.depth = max_queue, depth
        self._on_batch, self._on_depth, self._on_lost = on_batch, on_depth, on_lost
        self.lost: DeviceLost | None = None
        self._jobs: deque[_Job] = deque()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._closed = False
        self._own_thread = thread is None
        self._model_thread = thread or ModelThread(f"model-{name}")
        self._wait_thread: ModelThread | None = None  # started with the first Pending
        self._in_flight: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False

    @property
    def queued_images(self) -> int:
        """Images accepted but not yet taken into a batch."""
        return self._queued

    def _set_queued(self, n: int) -> None:
        self._queued = n
        if self._on_depth is not None:
            self._on_depth(n)

    def limit(self, n: int) -> None:
        """Take at most ``n`` rows per batch from now on (what the model's memory holds now),
        never more than ``max_batch_size`` was made with."""
        self.max_batch_size = max(1, min(self.largest, n))

    def check_room(self, n: int) -> None:
        """Refuse now (QUEUE_FULL) if ``n`` more images would not fit."""
        if self._queued + n > self.max_queue:
            raise queue_full(self.name, self._queued, self.max_queue)

    def start(self) -> None:
        """Start the worker task on the running loop."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name=f"batcher-{self.name}"
            )

    def enqueue(self, inputs: Tensor) -> "asyncio.Future[Tensor]":
        """Queue N inputs now; the future resolves to their N output rows in input order.

        Cancelling the future withdraws the rows that have not reached the model yet.
        """
        if self._closed:
            raise Failure.SHUTTING_DOWN.error()
        n = int(inputs.shape[0])
        if n == 0:
            raise ValueError("no inputs")
        self.check_room(n)
        job = _Job(inputs, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._set_queued(self._queued + n)
        self._wakeup.set()
        return job.future

    async def _wait_for_job(self, timeout: float | None) -> bool:
        """Wait until a job is queued (True) or ``timeout`` passes (False)."""
        while not self._jobs:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return False
        return True

    def _take(self, room: int) -> _Slice | None:
        """Up to ``room`` rows from the head job; requests that gave up leave the queue here."""
        while self._jobs:
            job = self._jobs[0]
            left = job.rows - job.taken
            if job.future.done():
                self._jobs.popleft()
                self._set_queued(self._queued - left)
                continue
            n = min(room, left)
            piece = _Slice(job, job.taken, job.taken + n)
            job.taken += n
            if job.taken == job.rows:
                self._jobs.popleft()
            self._set_queued(self._queued - n)
            return piece
        return None

    async def _collect(self, idle: bool) -> list[_Slice]:
        """One batch, first in first out, waiting for more only while the model is busy."""
        batch: list[_Slice] = []
        size = 0
        deadline = time.perf_counter() + self.max_delay_s
        while size < self.max_batch_size:
            piece = self._take(self.max_batch_size - size)
            if piece is not None:
                batch.append(piece)
                size += piece.stop - piece.start
                continue
            remaining = deadline - time.perf_counter()
            if idle or self._closed or remaining <= 0 or not await self._wait_for_job(remaining):
                break
        return batch

    def _finish(self, batch: list[_Slice], outputs: Tensor, started: float) -> None:
        """Hand each job its rows of ``outputs``."""
        offset = 0
        for s in batch:
            n = s.stop - s.start
            s.job.answer(s.start, outputs[offset : offset + n])
            offset += n
        self._report(batch, started)

    def _fail(self, batch: list[_Slice], exc: BaseException, started: float) -> None:
        log.error("inference failed for a batch of %d on %s", _size(batch), self.name, exc_info=exc)
        for s in batch:
            if not s.job.future.done():
                s.job.future.set_exception(exc)
        self._report(batch, started)
        if isinstance(exc, DeviceLost):
            self._lose(exc)

    def _lose(self, exc: DeviceLost) -> None:
        """Refuse new work and fail the queued (a retry elsewhere can succeed); tell on_lost."""
        if self.lost is not None:
            return
        self.lost, self._closed = exc, True
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(
                    Failure.SHUTTING_DOWN.error(f"{self.name} cannot run: its device failed")
                )
        self._set_queued(0)
        self._wakeup.set()
        if self._on_lost is not None:
            self._on_lost(exc)

    def _report(self, batch: list[_Slice], started: float) -> None:
        if self._on_batch is not None:
            waits = [started - s.job.enqueued for s in batch]
            self._on_batch(BatchStats(_size(batch), waits, time.perf_counter() - started))

    async def _execute(self, batch: list[_Slice]) -> None:
        """Launch one batch in the model thread; wait for it in the other when it is Pending."""
        started = time.perf_counter()
        parts = [
            s.job.inputs if s.stop - s.start == s.job.rows else s.job.inputs[s.start : s.stop]
            for s in batch
        ]
        inputs = parts[0] if len(parts) == 1 else torch.cat(parts)
        try:
            out = await self._watched(self._model_thread.call(self.fn, inputs), started)
        except Exception as exc:  # fails this batch (and, DeviceLost, the batcher)
            self._fail(batch, exc, started)
            return
        if isinstance(out, Tensor):
            self._check_and_finish(batch, inputs, out, started)
            return
        if self._wait_thread is None:
            self._wait_thread = ModelThread(f"model-{self.name}-wait")
        waiter = self._wait_thread

        async def wait(pending: Pending) -> None:
            try:
                rows = await self._watched(waiter.call(pending.wait), started)
            except Exception as exc:
                self._fail(batch, exc, started)
            else:
                self._check_and_finish(batch, inputs, rows, started)

        task = asyncio.get_running_loop().create_task(wait(out))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _watched(self, call: "asyncio.Future[Any]", started: float) -> Any:
        """``call``'s result, or DeviceLost once the batch begun at ``started`` has taken
        longer than the watchdog's deadline (the thread running it is left stuck)."""
        if self.deadline_s is None:
            return await call
        left = max(0.0, started + self.deadline_s - time.perf_counter())
        try:
            return await asyncio.wait_for(call, left)
        except TimeoutError:
            raise DeviceLost(
                f"{self.name}: a batch did not complete within {self.deadline_s:g} s "
                "(the watchdog): the device is taken for hung"
            ) from None

    def _check_and_finish(
        self, batch: list[_Slice], inputs: Tensor, outputs: Tensor, started: float
    ) -> None:
        if outputs.shape[0] != inputs.shape[0]:
            error = RuntimeError(
                f"{self.name} returned {outputs.shape[0]} rows for {inputs.shape[0]} inputs"
            )
            self._fail(batch, error, started)
        else:
            self._finish(batch, outputs, started)

    async def _run(self) -> None:
        idle = True  # nothing ran yet
        while True:
            await self._wait_for_job(None)
            self._busy = True
            try:
                batch = await self._collect(idle)
                if batch:
                    await self._execute(batch)
                while len(self._in_flight) >= self.depth:
                    await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._busy = False
            # Nobody waited for this batch: the next arrival goes at once.
            idle = not self._jobs and not self._in_flight

    async def stop(self) -> None:
        """Refuse new work, finish everything already accepted, then stop the worker."""
        self._closed = True
        self._wakeup.set()
        while self._worker is not None and not self._worker.done() and (self._jobs or self._busy):
            await asyncio.sleep(0.005)
        if self._in_flight:
            await asyncio.wait(self._in_flight)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        hung = self.lost is not None  # the threads may be stuck in the device for good
        if self._own_thread:
            self._model_thread.stop(wait=not hung)
        if self._wait_thread is not None:
            self._wait_thread.stop(wait=not hung)


def _size(batch: list[_Slice]) -> int:
    return sum(s.stop - s.start for s in batch)
