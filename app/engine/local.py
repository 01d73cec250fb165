"""The ``worker`` layout: this frontend worker owns a copy of every model (a thread runs them)."""

import numpy as np
import torch

from app.catalog import Served
from app.config import Settings
from app.engine.api import EngineClosedError
from app.engine.host import ModelHost
from app.metrics import Metrics


class LocalEngine:
    """An :class:`~app.engine.api.Engine` over a :class:`ModelHost` in this process."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self._closed = False

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics, torch_threads: int) -> "LocalEngine":
        """Load every listed model into this process."""
        return cls(await ModelHost.start(settings, metrics, torch_threads))

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
            raise EngineClosedError("the service is shutting down")
        rows = await self.host.enqueue(name, torch.from_numpy(digits).unsqueeze(1))
        return rows.numpy()

    async def close(self) -> None:
        """Refuse new work; answer everything accepted."""
        self._closed = True
        await self.host.stop()
