"""The ``worker`` layout: this frontend worker owns a copy of every model (a thread runs them).

A lost device (DeviceLost) takes the worker's readiness down and ends it (app/lifecycle.py):
uvicorn's supervisor starts a new one, with a new CUDA context; a lone worker that is the
launcher itself makes ``python -m app`` exit with status 1.
"""

import numpy as np
import torch

from app.config import Settings
from app.engine.host import ModelHost
from app.failures import Failure
from app.layout import plan
from app.lifecycle import fail_process
from app.metrics import Metrics
from app.serving.catalog import Served


class LocalEngine:
    """An :class:`~app.serving.engine.Engine` over a :class:`ModelHost` in this process."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self._closed = False

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "LocalEngine":
        """Load every listed model into this process."""
        threads = plan(settings.model_copy(update={"engine": "worker"})).torch_threads

        def lost(exc: Exception) -> None:
            fail_process(f"this worker's device failed: {exc}")

        return cls(await ModelHost.start(settings, metrics, threads, on_lost=lost))

    @property
    def catalog(self) -> dict[str, Served]:
        """Every listed model, loaded or with the reason it is not."""
        return self.host.catalog

    @property
    def alive(self) -> bool:
        """False once the device failed for good (the process is then stopping)."""
        return self.host.lost is None

    def queued(self, name: str) -> int:
        """Images waiting for ``name``'s next batches."""
        return self.host.queued(name)

    async def classify(self, name: str, digits: np.ndarray) -> np.ndarray:
        """N x 28 x 28 uint8 digits -> N x classes float32 probabilities."""
        if self._closed:
            raise Failure.SHUTTING_DOWN.error()
        rows = await self.host.enqueue(name, torch.from_numpy(digits).unsqueeze(1))
        return rows.numpy()

    async def close(self) -> None:
        """Refuse new work; answer everything accepted."""
        self._closed = True
        await self.host.stop()
