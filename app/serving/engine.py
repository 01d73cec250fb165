"""What the serving core asks of the model side, whichever layout runs it. Imports no torch.

Refusals and failures are :class:`~app.failures.ServiceError` rows of the failure table:
QUEUE_FULL, SHUTTING_DOWN (closed, or gone), INFERENCE_FAILED.
"""

from typing import Protocol

import numpy as np

from app.serving.catalog import Served


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
