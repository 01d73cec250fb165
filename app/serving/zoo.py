"""The zoo: the models being served, as a frontend worker sees them, behind one engine.

It adds the service's rules to the engine's calls: which names exist, whether a model can take
work now (loaded, not stopping, room in its queue), the request deadline, and readiness.
"""

import numpy as np

from app.config import Settings
from app.failures import Failure, ServiceError, queue_full
from app.serving.catalog import Loaded, Served, Unavailable
from app.serving.decoding import DecoderPool
from app.serving.engine import Engine

# Until the catalogue holds versions, every listed model is served as its version 1 (the
# weights folder's <model>.safetensors).
ONLY_VERSION = "1"


class Zoo:
    """Models by name, behind one engine (in this process, or the model owner), and the
    worker's decoder for the uploads that are not small plain PNGs."""

    def __init__(self, settings: Settings, engine: Engine, decoders: DecoderPool) -> None:
        self.settings, self.engine, self.decoders = settings, engine, decoders
        self.accepting = True

    async def stop(self) -> None:
        """Take no new requests; let every accepted one finish."""
        self.accepting = False
        await self.engine.close()
        await self.decoders.close()

    @property
    def models(self) -> dict[str, Served]:
        """Every listed model, loaded or not."""
        return self.engine.catalog

    def lookup(self, name: str) -> Served:
        """The named model, loaded or not, or a 404 that lists the known ones."""
        served = self.models.get(name)
        if served is None:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise Failure.UNKNOWN_MODEL.error(
                f"no model named {shown!r}; known models: {', '.join(self.models)}",
                known_models=list(self.models),
            )
        return served

    def versions(self, name: str) -> tuple[str, ...]:
        """The versions of a listed model, oldest first (404 for an unknown model)."""
        self.lookup(name)
        return (ONLY_VERSION,)

    def version(self, name: str, asked: str | None = None) -> str:
        """The version a request for ``name`` gets: the one it asked for, which the model must
        have (else 404 listing the ones it has), or the newest. Every protocol's version check
        (the v2 paths' ``/versions/<v>``) is this one."""
        versions = self.versions(name)
        if asked is None:
            return versions[-1]
        if asked not in versions:
            shown = asked if len(asked) <= 64 else asked[:64] + "..."
            raise Failure.UNKNOWN_VERSION.error(
                f"model {name!r} has no version {shown!r}; versions: {', '.join(versions)}",
                versions=list(versions),
            )
        return asked

    def get(self, name: str) -> Loaded:
        """The named model, ready to take work, or the error that says why not."""
        served = self.lookup(name)
        if not self.accepting or not self.engine.alive:
            raise Failure.SHUTTING_DOWN.error()
        if isinstance(served, Unavailable):
            raise Failure.MODEL_NOT_LOADED.error(f"model {name!r} is not loaded: {served.reason}")
        return served

    def takes_work(self, name: str) -> bool:
        """Whether a request for ``name`` would be taken now (what :meth:`get` checks)."""
        try:
            self.get(name)
        except ServiceError:
            return False
        return True

    def check_room(self, name: str, n: int) -> None:
        """503 now, before any decoding, when ``n`` more images would not fit the queue."""
        queued, limit = self.engine.queued(name), self.settings.max_queue
        if queued + n > limit:
            raise queue_full(name, queued, limit)

    async def classify(self, name: str, digits: np.ndarray) -> np.ndarray:
        """Probabilities for ``digits``, or the error (503, 500) that says why not."""
        try:
            return await self.engine.classify(name, digits)
        except ServiceError:
            raise
        except Exception:  # the model raised in this process: only this batch failed
            raise Failure.INFERENCE_FAILED.error() from None

    @property
    def ready(self) -> bool:
        """Accepting, and every model with a valid checkpoint is loaded and warmed."""
        served = self.models.values()
        return (
            self.accepting
            and self.engine.alive
            and any(isinstance(m, Loaded) for m in served)
            and all(isinstance(m, Loaded) or m.status in ("missing", "invalid") for m in served)
        )
