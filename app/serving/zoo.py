"""The zoo: the models being served, as a frontend worker sees them, behind one engine.

It adds the service's rules to the engine's calls: which names and versions exist, which
version a request runs (:meth:`Zoo.admit`, the one place that decides), whether it can take
work now (loaded, not stopping, room in its queue), and readiness.
"""

import numpy as np

from app.config import Settings
from app.digits.sandbox import DigitReader
from app.failures import Failure, ServiceError, queue_full
from app.serving.catalog import Loaded, Model, ReloadReport, Served, Unavailable
from app.serving.engine import Engine


def _shown(name: str) -> str:
    return name if len(name) <= 64 else name[:64] + "..."


def not_loaded(name: str, version: int | str | None, served: Unavailable) -> ServiceError:
    """The 503 for a version that is listed but cannot serve, and why (what would fix it)."""
    which = f"model {name!r}" if version is None else f"{name} version {version}"
    return Failure.MODEL_NOT_LOADED.error(f"{which} is not loaded: {served.reason}")


def _unknown_version(model: Model, shown: str) -> ServiceError:
    known = list(model.versions)
    return Failure.UNKNOWN_VERSION.error(
        f"{model.name} has no version {shown}; known versions: "
        f"{', '.join(map(str, known)) or 'none'}",
        known_versions=known,
    )


class Zoo:
    """Models by name, behind one engine (in this process, or the model owner), and the
    worker's reader of upload bytes into digits."""

    def __init__(self, settings: Settings, engine: Engine, reader: DigitReader) -> None:
        self.settings, self.engine, self.reader = settings, engine, reader
        self.accepting = True

    async def stop(self) -> None:
        """Take no new requests; let every accepted one finish."""
        self.accepting = False
        await self.engine.close()
        await self.reader.close()

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

    def version_of(self, name: str, version: int | str | None = None) -> Served:
        """The record of the version of ``name`` that ``version`` names (a number, a v2 path's
        text, or None for the default), loaded or not; 404 for an unknown model or version."""
        model = self.lookup(name)
        if version is None:
            return model.default
        if isinstance(version, str):  # the v2 protocol's /versions/<v>, a string there
            if not (version.isascii() and version.isdigit() and int(version) in model.versions):
                raise _unknown_version(model, _shown(version))
            return model.versions[int(version)]
        if (found := model.versions.get(version)) is None:
            raise _unknown_version(model, str(version))
        return found

    def admit(self, name: str, version: int | str | None = None) -> Loaded:
        """The version of ``name`` a request runs (``version``, else the default), ready to take
        work, or the error that says why not: unknown model or version (404), not loaded or
        stopping (503)."""
        self.lookup(name)
        if not self.accepting or not self.engine.alive:
            raise Failure.SHUTTING_DOWN.error()
        served = self.version_of(name, version)
        if isinstance(served, Unavailable):
            raise not_loaded(name, version, served)
        return served

    def takes_work(self, name: str, version: int | str | None = None) -> bool:
        """Whether a request for that version of ``name`` would be taken now (what :meth:`admit`
        checks); an unknown model or version still raises its 404."""
        try:
            self.admit(name, version)
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

    async def classify(self, model: Loaded, digits: np.ndarray) -> np.ndarray:
        """``model``'s probabilities for ``digits``, or the error (503, 500) that says why not.
        The caller admitted ``model`` and calls without a pause since (see Engine.classify)."""
        try:
            return await self.engine.classify(model.name, model.version, digits)
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
