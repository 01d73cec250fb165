"""The zoo as one frontend worker sees it: the catalog, the engine behind it, and its state.

Built in the app's lifespan. Under ``python -m app`` the engine is the model owner the launcher
started (ENGINE_SOCKET); run on its own (``uvicorn app.main:app``, or a test's app) a worker
starts what its layout needs itself: the model owner, or its own copy of the models.
"""

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app import errors
from app.catalog import Loaded, Served, Unavailable
from app.config import Settings
from app.engine.api import Engine, EngineClosedError, InferenceError, QueueFullError
from app.engine.client import RemoteEngine
from app.engine.wire import shm_dir
from app.layout import plan
from app.metrics import Metrics

if TYPE_CHECKING:
    from app.engine.owner import OwnerProcess


def slab_slots(settings: Settings) -> int:
    """Digits one worker may have in flight to the model owner (its shared-memory slab): as
    many as the owner's queue holds, and one more request, so the queue bound is what binds."""
    return settings.max_queue + settings.max_files


class Zoo:
    """Models by name, behind one engine."""

    def __init__(
        self, settings: Settings, engine: Engine, own: "tuple[OwnerProcess, Path] | None" = None
    ) -> None:
        self.settings, self.engine = settings, engine
        self._own = own  # a model owner this worker started, and its run folder
        self.accepting = True

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "Zoo":
        """Connect to (or start) the engine this worker's layout calls for."""
        if settings.engine_socket:
            engine = await RemoteEngine.connect(settings.engine_socket, slab_slots(settings))
            return cls(settings, engine)
        layout = plan(settings)
        if layout.engine == "worker":
            from app.engine.local import LocalEngine  # torch: only where models run here

            return cls(settings, await LocalEngine.start(settings, metrics, layout.torch_threads))
        from app.engine.owner import OwnerProcess

        run_dir = Path(tempfile.mkdtemp(prefix="zoo-", dir=shm_dir()))
        resolved = settings.model_copy(update={"device": layout.device})
        owner = await asyncio.to_thread(OwnerProcess.start, resolved, run_dir)
        engine = await RemoteEngine.connect(owner.socket, slab_slots(settings))
        return cls(settings, engine, (owner, run_dir))

    async def stop(self) -> None:
        """Take no new requests; let every accepted one finish."""
        self.accepting = False
        await self.engine.close()
        if self._own is not None:
            owner, run_dir = self._own
            await asyncio.to_thread(owner.stop)
            with contextlib.suppress(OSError):
                shutil.rmtree(run_dir)

    @property
    def models(self) -> dict[str, Served]:
        """Every listed model, loaded or not."""
        return self.engine.catalog

    def lookup(self, name: str) -> Served:
        """The named model, loaded or not, or a 404 that lists the known ones."""
        served = self.models.get(name)
        if served is None:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise errors.UnknownModel(
                f"no model named {shown!r}; known models: {', '.join(self.models)}",
                known_models=list(self.models),
            )
        return served

    def shutting_down(self) -> errors.ShuttingDown:
        """The 503 for requests that arrive while the service stops (another replica can help)."""
        return errors.ShuttingDown(
            "the service is shutting down", retry_after=self.settings.retry_after_s
        )

    def get(self, name: str) -> Loaded:
        """The named model, ready to take work, or the error that says why not."""
        served = self.lookup(name)
        if not self.accepting or not self.engine.alive:
            raise self.shutting_down()
        if isinstance(served, Unavailable):  # no Retry-After: retrying cannot help
            raise errors.ModelNotLoaded(f"model {name!r} is not loaded: {served.reason}")
        return served

    def _queue_full(self, detail: str) -> errors.QueueFull:
        retry = self.settings.retry_after_s
        return errors.QueueFull(f"{detail}; retry after {retry} s", retry_after=retry)

    def check_room(self, name: str, n: int) -> None:
        """503 now, before any decoding, when ``n`` more images would not fit the queue."""
        queued, limit = self.engine.queued(name), self.settings.max_queue
        if queued + n > limit:
            raise self._queue_full(f"{name} queue is full ({queued} of {limit} images waiting)")

    async def classify(self, name: str, digits: np.ndarray) -> np.ndarray:
        """Probabilities for ``digits``, or the error (503, 504, 500) that says why not."""
        timeout = self.settings.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self.engine.classify(name, digits)
        except QueueFullError as exc:
            raise self._queue_full(str(exc)) from None
        except EngineClosedError:
            raise self.shutting_down() from None
        except TimeoutError:
            raise errors.InferenceTimeout(f"no answer from {name} within {timeout} s") from None
        except InferenceError as exc:
            raise errors.InferenceFailed(str(exc)) from None
        except Exception:  # the model raised in this process: only this batch failed
            detail = "inference failed for this batch (the log has why)"
            raise errors.InferenceFailed(detail) from None

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
