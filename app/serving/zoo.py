"""The zoo: the models being served, as a frontend worker sees them, behind one engine.

It adds the service's rules to the engine's calls: which names and versions exist, which
version a request runs (:meth:`Zoo.get`, the one place that decides), whether it can take work
now (loaded, not stopping, room in its queue), and readiness.
"""

import numpy as np

from app.config import Settings
from app.failures import Failure, ServiceError, queue_full
from app.serving.catalog import Loaded, Model, ReloadReport, Unavailable
from app.serving.decoding import DecoderPool
from app.serving.engine import Engine


def _shown(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "..."


def _unknown_version(model: Model, shown: str) -> ServiceError:
    known = list(model.versions)
    return Failure.UNKNOWN_VERSION.error(
        f"{model.name} has no version {shown}; known versions: "
        f"{', '.join(map(str, known)) or 'none'}",
        known_versions=known,
    )


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
    def models(self) -> dict[str, Model]:
        """Every listed model and its versions, loaded or not."""
        return self.engine.catalog

    def lookup(self, name: str) -> Model:
        """The named model, or a 404 that lists the known ones."""
        model = self.models.get(name)
        if model is None:
            raise Failure.UNKNOWN_MODEL.error(
                f"no model named {_shown(name)!r}; known models: {', '.join(self.models)}",
                known_models=list(self.models),
            )
        return model

    def get(self, name: str, version: int | None = None) -> Loaded:
        """The version of ``name`` a request runs (``version``, else the default), ready to take
        work, or the error that says why not: unknown model or version (404), not loaded or
        stopping (503)."""
        model = self.lookup(name)
        if not self.accepting or not self.engine.alive:
            raise Failure.SHUTTING_DOWN.error()
        if version is None:
            served = model.default
        elif (found := model.versions.get(version)) is not None:
            served = found
        else:
            raise _unknown_version(model, str(version))
        if isinstance(served, Unavailable):
            which = f"model {name!r}" if version is None else f"{name} version {version}"
            raise Failure.MODEL_NOT_LOADED.error(f"{which} is not loaded: {served.reason}")
        return served

    def version_named(self, name: str, text: str) -> int:
        """The version a path names (the v2 protocol's ``/versions/<v>``, a string there): one
        of the model's, else the same 404 as an unknown ``?version=N``."""
        model = self.lookup(name)
        if text.isascii() and text.isdigit() and int(text) in model.versions:
            return int(text)
        raise _unknown_version(model, _shown(text))

    def takes_work(self, name: str, version: int | None = None) -> bool:
        """Whether a request for that version of ``name`` would be taken now (what :meth:`get`
        checks); an unknown model or version still raises its 404."""
        try:
            self.get(name, version)
        except ServiceError as exc:
            if exc.failure in (Failure.UNKNOWN_MODEL, Failure.UNKNOWN_VERSION):
                raise
            return False
        return True

    def check_room(self, model: Loaded, n: int) -> None:
        """503 now, before any decoding, when ``n`` more images would not fit the queue."""
        queued = self.engine.queued(model.name, model.version)
        if queued + n > self.settings.max_queue:
            raise queue_full(model.name, queued, self.settings.max_queue)

    async def classify(
        self, name: str, version: int | None, digits: np.ndarray
    ) -> tuple[Loaded, np.ndarray]:
        """The version that ran, and its probabilities for ``digits``, or the error (404, 503,
        500) that says why not. The version is resolved again here, at the moment the digits
        are queued: a reload since the request began has moved the default on (or removed the
        version it asked for), and only a version in the catalogue takes work."""
        model = self.get(name, version)
        try:  # no pause between the lookup and the engine's queueing (see Engine.classify)
            return model, await self.engine.classify(model.name, model.version, digits)
        except ServiceError:
            raise
        except Exception:  # the model raised in this process: only this batch failed
            raise Failure.INFERENCE_FAILED.error() from None

    async def reload(self) -> ReloadReport:
        """Read WEIGHTS_DIR again, in every process that serves; what changed."""
        if not self.accepting or not self.engine.alive:
            raise Failure.SHUTTING_DOWN.error()
        return await self.engine.reload()

    def live(self) -> set[tuple[str, str]]:
        """Every (model, version) in the catalogue, as the metrics label them."""
        return {(m.name, str(v)) for m in self.models.values() for v in m.versions}

    @property
    def ready(self) -> bool:
        """Accepting, and every model's default version is loaded and warmed, unless the model
        has no checkpoint or only an invalid one (a restart would not change that)."""
        defaults = [m.default for m in self.models.values()]
        return (
            self.accepting
            and self.engine.alive
            and any(isinstance(d, Loaded) for d in defaults)
            and all(isinstance(d, Loaded) or d.status in ("missing", "invalid") for d in defaults)
        )
