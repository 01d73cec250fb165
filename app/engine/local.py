"""The ``worker`` layout: this frontend worker owns a copy of every model (a thread runs them).

A reload reaches every worker of the service (app/engine/siblings.py); RELOAD_INTERVAL_S has
each worker look at WEIGHTS_DIR on its own. A lost device (DeviceLost) takes the worker's
readiness down and ends it (app/lifecycle.py): uvicorn's supervisor starts a new one, with a
new CUDA context; a lone worker that is the launcher itself makes ``python -m app`` exit with
status 1.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import torch

from app.config import Settings
from app.engine.host import ModelHost
from app.engine.siblings import WATCH_S, Siblings
from app.failures import Failure, ServiceError
from app.layout import plan
from app.lifecycle import fail_process
from app.metrics import Metrics
from app.serving.catalog import Model, ReloadReport

log = logging.getLogger(__name__)
SIBLINGS_WAIT_S = 900  # as long as the model owner may take to start: VGG on a slow disk


class LocalEngine:
    """An :class:`~app.serving.engine.Engine` over a :class:`ModelHost` in this process."""

    def __init__(self, host: ModelHost, siblings: Siblings | None, interval_s: float) -> None:
        self.host, self.siblings = host, siblings
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        if siblings is not None:
            self._tasks.append(self._every(WATCH_S, self._follow))
        if interval_s:
            self._tasks.append(self._every(interval_s, self._reload_here))

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "LocalEngine":
        """Load every listed model into this process."""
        threads = plan(settings.model_copy(update={"engine": "worker"})).torch_threads
        # Before the first scan: a reload asked for from here on is one this worker follows.
        siblings = Siblings(settings.run_dir) if settings.run_dir else None

        def lost(exc: Exception) -> None:
            fail_process(f"this worker's device failed: {exc}")

        host = await ModelHost.start(settings, metrics, threads, on_lost=lost)
        return cls(host, siblings, settings.reload_interval_s)

    def _every(self, seconds: float, fn: Callable[[], Awaitable[object]]) -> "asyncio.Task[None]":
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await fn()
                except ServiceError as exc:  # WEIGHTS_DIR unreadable: keep serving what we have
                    log.warning("reload: %s", exc.detail)
                except Exception:  # keep looking: the next look may succeed
                    log.exception("reload failed")

        return asyncio.get_running_loop().create_task(loop())

    @property
    def catalog(self) -> dict[str, Model]:
        """Every listed model and its versions, loaded or with the reason they are not."""
        return self.host.catalog

    @property
    def alive(self) -> bool:
        """False once the device failed for good (the process is then stopping)."""
        return self.host.lost is None

    def queued(self, name: str, version: int) -> int:
        """Images waiting for a version's next batches."""
        return self.host.queued(name, version)

    async def classify(self, name: str, version: int, digits: np.ndarray) -> np.ndarray:
        """N x 28 x 28 uint8 digits -> N x classes float32 probabilities."""
        if self._closed:
            raise Failure.SHUTTING_DOWN.error()
        rows = await self.host.enqueue(name, version, torch.from_numpy(digits).unsqueeze(1))
        return rows.numpy()

    async def _reload_here(self) -> ReloadReport:
        return await self.host.reload()

    async def _follow(self) -> None:
        """Reload when another worker asked for it."""
        assert self.siblings is not None
        generation = self.siblings.generation()
        if generation > self.siblings.seen:
            self.siblings.seen = generation
            try:
                await self.host.reload()
            finally:  # applied, or failed here as it did there: nobody waits on us for it
                self.siblings.applied(generation)

    async def reload(self) -> ReloadReport:
        """Reload here and in every other worker; what changed, once all have switched."""
        if self.siblings is None:  # uvicorn app.main:app: one worker, this one
            return await self.host.reload()
        generation = self.siblings.bump()
        try:
            report = await self.host.reload()
        finally:
            self.siblings.applied(generation)
        deadline = time.monotonic() + SIBLINGS_WAIT_S
        while late := self.siblings.behind(generation):
            if time.monotonic() > deadline:
                log.warning("reload: workers %s have not switched yet", late)
                break
            await asyncio.sleep(WATCH_S / 4)
        return report

    async def close(self) -> None:
        """Refuse new work; answer everything accepted."""
        self._closed = True
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.siblings is not None:
            self.siblings.leave()
        await self.host.stop()
