"""What the serving core asks of the model side, whichever layout runs it. Imports no torch.

Refusals and failures are :class:`~app.failures.ServiceError` rows of the failure table:
QUEUE_FULL, SHUTTING_DOWN (closed, or gone), INFERENCE_FAILED, WEIGHTS_UNREADABLE.
"""

from typing import Protocol

import numpy as np

from app.serving.catalog import Model, ReloadReport


class Engine(Protocol):
    """Models behind a call: in this process (``worker`` layout) or the model owner (``shared``)."""

    @property
    def catalog(self) -> dict[str, Model]:
        """Every listed model: its versions, each loaded or with the reason it is not."""
        ...

    @property
    def alive(self) -> bool:
        """False once the engine is gone (the model owner died): nothing can be answered."""
        ...

    def queued(self, name: str, version: int) -> int:
        """Images waiting for a version's next batches."""
        ...

    async def classify(self, name: str, version: int, digits: np.ndarray) -> np.ndarray:
        """N x 28 x 28 uint8 digits -> N x classes float32 probabilities, in order.

        Whatever version is in the catalogue when it is called takes the digits before the
        coroutine first yields: the caller resolves the version and calls without a pause,
        so a reload cannot come in between.
        """
        ...

    async def reload(self) -> ReloadReport:
        """Read WEIGHTS_DIR again, in every process that serves (see the layouts' engines);
        what changed, once this process's catalogue has switched."""
        ...

    async def close(self) -> None:
        """Stop: every request already accepted is answered first."""
        ...
