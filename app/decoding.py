"""Uploads -> digits off the event loop: a thread for small requests, processes for big ones.

Preprocessing is mostly small numpy calls that hold the GIL, so several decoding threads only
take turns with the event loop and the model thread. Requests of many images therefore go to a
pool of worker processes (spawned, so they inherit no torch or loop state) where they run in
parallel with everything else; a single image stays in a thread, where the hop is cheapest.
This module imports no torch: the workers stay small.
"""

import asyncio
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from app.preprocess import ImageLimits, ImageRejected, preprocess


@dataclass(frozen=True)
class Rejection:
    """The first upload that could not be used, as plain data (it crosses process borders)."""

    index: int
    detail: str
    status_code: int


def preprocess_all(datas: list[bytes], limits: ImageLimits) -> np.ndarray | Rejection:
    """Every upload -> N x 1 x 28 x 28 float32, or the first rejection."""
    digits = np.empty((len(datas), 1, 28, 28), dtype=np.float32)
    for i, data in enumerate(datas):
        try:
            digits[i, 0] = preprocess(data, limits)
        except ImageRejected as exc:
            return Rejection(i, exc.detail, exc.status_code)
    return digits


class Decoder:
    """Runs :func:`preprocess_all` in a thread or, from ``process_threshold`` images, a process."""

    def __init__(self, processes: int, process_threshold: int) -> None:
        self.process_threshold = process_threshold
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._processes: Executor | None = None
        if processes > 0:
            ctx = multiprocessing.get_context("spawn")
            self._processes = ProcessPoolExecutor(max_workers=processes, mp_context=ctx)

    async def start(self) -> None:
        """Start the worker processes now rather than on the first big request."""
        if self._processes is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._processes, preprocess_all, [], ImageLimits())

    async def __call__(self, datas: list[bytes], limits: ImageLimits) -> np.ndarray | Rejection:
        """Decode and preprocess ``datas`` off the event loop."""
        big = self._processes is not None and len(datas) >= self.process_threshold
        executor = self._processes if big and self._processes else self._thread
        return await asyncio.get_running_loop().run_in_executor(
            executor, preprocess_all, datas, limits
        )

    def shutdown(self) -> None:
        """Let running jobs finish, then stop the thread and the worker processes."""
        self._thread.shutdown(wait=True)
        if self._processes is not None:
            self._processes.shutdown(wait=True)
