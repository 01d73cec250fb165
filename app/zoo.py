"""The zoo as served: every listed model, its start-up and shutdown, and lookups by name."""

import asyncio
import logging
import os

import torch

from app.config import Settings
from app.decoding import Decoder
from app.metrics import Metrics
from app.problems import ProblemError
from app.serving import ServedModel, load_one, model_names
from models.runtime import resolve_device

log = logging.getLogger(__name__)


def half_the_cores() -> int:
    """The default share of cores for torch threads and for decode processes alike."""
    return max(1, (os.cpu_count() or 2) // 2)


class Zoo:
    """Models by name, on one device; built in the app's lifespan."""

    def __init__(self, settings: Settings, metrics: Metrics, device: torch.device) -> None:
        self.settings, self.metrics, self.device = settings, metrics, device
        self.models: dict[str, ServedModel] = {}
        self.accepting = False
        processes = settings.decode_processes
        self.decoder = Decoder(
            half_the_cores() if processes is None else processes,
            settings.decode_process_threshold,
        )

    @classmethod
    async def start(cls, settings: Settings, metrics: Metrics) -> "Zoo":
        """Load every listed model (off the event loop), then start their batchers."""
        zoo = cls(settings, metrics, resolve_device(settings.device))
        if zoo.device.type == "cpu":
            # The event loop and decoding need cores too: all of them for torch starves both.
            torch.set_num_threads(settings.torch_threads or half_the_cores())
        names = model_names(settings)
        for name in names:  # one at a time: loading is memory- and device-bound
            zoo.models[name] = await asyncio.to_thread(
                load_one, name, settings, zoo.device, metrics
            )
        for served in zoo.models.values():
            if served.batcher is not None:
                served.batcher.start()
        await zoo.decoder.start()
        zoo.accepting = True
        loaded = [n for n, m in zoo.models.items() if m.ready]
        log.info(
            "ready on %s with %s (%d of %d listed)",
            zoo.device,
            ", ".join(loaded) or "nothing",
            len(loaded),
            len(names),
        )
        return zoo

    async def stop(self) -> None:
        """Take no new requests; let every accepted one finish."""
        self.accepting = False
        await asyncio.gather(*(m.batcher.stop() for m in self.models.values() if m.batcher))
        await asyncio.to_thread(self.decoder.shutdown)

    def lookup(self, name: str) -> ServedModel:
        """The named model, loaded or not, or a 404 that lists the known ones."""
        served = self.models.get(name)
        if served is None:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise ProblemError(
                404,
                f"no model named {shown!r}; known models: {', '.join(self.models)}",
                slug="unknown-model",
                title="Unknown model",
                known_models=list(self.models),
            )
        return served

    def shutting_down(self) -> ProblemError:
        """The 503 for requests that arrive while the service stops."""
        return ProblemError(
            503,
            "the service is shutting down",
            slug="shutting-down",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )

    def get(self, name: str) -> ServedModel:
        """The named model, ready to take work, or the problem that says why not."""
        served = self.lookup(name)
        if not self.accepting:
            raise self.shutting_down()
        if not served.ready:
            raise ProblemError(
                503,
                f"model {name!r} is not loaded: {served.reason}",
                slug="model-not-loaded",
                title="Model not loaded",
                headers={"Retry-After": "60"},
            )
        return served

    @property
    def ready(self) -> bool:
        """Accepting, and every model with a valid checkpoint is loaded and warmed."""
        served = self.models.values()
        return (
            self.accepting
            and any(m.ready for m in served)
            and all(m.ready for m in served if m.status not in ("missing", "invalid"))
        )
