"""What a frontend worker asks of an engine, whichever layout runs it. Imports no torch."""

from typing import Protocol

import numpy as np

from app.catalog import Served


class QueueFullError(Exception):
    """The model's queue cannot take this many more images now (503, retry soon)."""


class EngineClosedError(Exception):
    """The engine is shutting down, or gone, and takes no new work (503)."""


class InferenceError(Exception):
    """The model raised on the batch that held these images (500; the log has the cause)."""


class Engine(Protocol):
    """Models behind a call: in this process (``worker`` layout) or the model owner (``shared``)."""

    @property
    def catalog(self) -> dict[str, Served]:
        """Every listed model, loaded or with the reason it is not."""
        ...

    @property
    def alive(self) -> bool:
        """False once the engine is gone (the model owner died): nothing can be answered."""
        ...

    def queued(self, name: str) -> int:
        """Images waiting for ``name``'s next batches."""
        ...

    async def classify(self, name: str, digits: np.ndarray) -> np.ndarray:
        """N x 28 x 28 uint8 digits -> N x classes float32 probabilities, in order."""
        ...

    async def close(self) -> None:
        """Stop: every request already accepted is answered first."""
        ...
