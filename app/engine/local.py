"""The ``worker`` layout: this frontend worker owns a copy of every model (a thread runs them)."""

import numpy as np
import torch

from app.config import Settings
from app.engine.host import ModelHost
from app.failures import Failure
from app.layout import plan
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
        return cls(await ModelHost.start(settings, metrics, threads))

    @property
    def catalog(self) -> dict[str, Served]:
        """Every listed model, loaded or with the reason it is not."""
        return self.host.catalog

    @property
    def alive(self) -> bool:
        """Always: it lives in this very process."""
        return True

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
