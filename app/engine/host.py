"""ModelHost: every version of every listed model on one device, loaded, warmed and batched, or
why it is not; and the reload that brings it in line with WEIGHTS_DIR again.

Both layouts run one: the model owner, and each frontend worker that keeps its own copy.
Start-up is a reload from nothing. A reload scans WEIGHTS_DIR (a stat per file), loads,
validates and warms what is new or changed off the event loop, and only then swaps the
catalogue in one step: a version serves once it is warm, and a file that fails validation never
replaces the one that served. Versions that left (removed, or replaced by a new file) are
*retiring*: they still take what a frontend resolved before the swap until :meth:`retire` lets
them finish what they accepted and frees them. A lost device (DeviceLost, or on CUDA
a batch the watchdog saw hang) is told once through ``on_lost``: the process that holds it
cannot serve any more and ends.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from app.config import Settings
from app.engine.batching import DeviceLost, DynamicBatcher, ModelThread
from app.engine.loading import (
    calibrate,
    card,
    checkpoint_of,
    model_names,
    no_checkpoint,
    place,
    unavailable,
)
from app.engine.predictor import Predictor
from app.failures import Failure, ServiceError
from app.metrics import Metrics
from app.serving.catalog import (
    Change,
    Loaded,
    Model,
    ReloadReport,
    Served,
    Unavailable,
    choose_default,
)
from models.runtime import release_cached_memory, resolve_device, set_tf32
from models.weights import Scan, VersionFile, scan

log = logging.getLogger(__name__)
Key = tuple[str, int]  # (model, version)
WATCHDOG_MIN_S = 10.0  # an H100 runs VGG19's largest batch in well under a second


def watchdog_s(settings: Settings, device: torch.device) -> float | None:
    """How long a CUDA batch may run before the device is taken for hung: as long as a request
    may wait (every request in the batch has given up by then), and never under 10 s. None on
    the CPU, where a batch is slow, never hung, and a big one may take seconds."""
    if device.type != "cuda":
        return None
    return max(WATCHDOG_MIN_S, settings.request_timeout_s)


@dataclass(eq=False)
class Hosted:
    """A loaded version: its public record, its model call, its batcher and the thread that
    runs them."""

    card: Loaded
    predictor: Predictor
    batcher: DynamicBatcher
    thread: ModelThread


class ModelHost:
    """The models of one device; built by :meth:`start` on a running event loop."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_depth: Callable[[str, int, int], None] | None = None,
        on_lost: Callable[[DeviceLost], None] | None = None,
    ) -> None:
        self.settings, self.metrics = settings, metrics
        self.device = resolve_device(settings.device)
        self.names = model_names(settings)
        self._none = {name: no_checkpoint(name, settings) for name in self.names}
        self.catalog: dict[str, Model] = {n: self._model(n, {}) for n in self.names}
        self.hosted: dict[Key, Hosted] = {}
        self.retiring: dict[Key, Hosted] = {}
        self.files: dict[Key, VersionFile] = {}  # what each listed version was read from
        self.max_labels: int | None = None  # the model owner's slab holds this many per image
        self.lost: DeviceLost | None = None
        self._on_depth, self._on_lost = on_depth, on_lost
        self._reloading = asyncio.Lock()
        self._started = False
        # On the CPU every model runs in one thread: they share the cores anyway, and the
        # small-batch placement switches oneDNN off process-wide for its calls. On CUDA each
        # version has its own thread, so one's launches do not wait behind another's.
        self.cpu_thread = ModelThread("models-cpu") if self.device.type == "cpu" else None
        self.threads = [self.cpu_thread] if self.cpu_thread else []

    @classmethod
    async def start(
        cls,
        settings: Settings,
        metrics: Metrics,
        torch_threads: int,
        on_depth: Callable[[str, int, int], None] | None = None,
        on_lost: Callable[[DeviceLost], None] | None = None,
    ) -> "ModelHost":
        """Load every version of every listed model (one at a time, off the event loop).

        ``on_depth(name, version, images)`` hears of every change of a version's queue depth,
        ``on_lost`` that the device failed for good.
        """
        host = cls(settings, metrics, on_depth, on_lost)
        # On CUDA too: idle OpenMP threads of a bigger pool would spin on the frontends' cores.
        torch.set_num_threads(torch_threads)
        if host.device.type == "cuda":
            set_tf32(False)  # DTYPE=float32 means float32; bfloat16 and float16 never use TF32
        try:
            await host.reload()  # logs what it loaded
        except ServiceError as exc:  # no folder: every model is listed as missing, as before
            log.warning("%s", exc.detail)
        return host

    async def reload(
        self, before_retire: Callable[[ReloadReport], Awaitable[None]] | None = None
    ) -> ReloadReport:
        """Bring the host in line with WEIGHTS_DIR: load new and changed files, swap, then
        retire what left (after ``before_retire``: the model owner tells its frontends first).
        One reload at a time; WEIGHTS_UNREADABLE (nothing changed) if the folder cannot be
        listed."""
        async with self._reloading:
            try:
                found = await asyncio.to_thread(scan, self.settings.weights_dir, self.names)
            except OSError as exc:
                log.error("reload: cannot list WEIGHTS_DIR: %s", exc)  # the full path: here only
                why = exc.strerror or type(exc).__name__
                raise Failure.WEIGHTS_UNREADABLE.error(
                    f"WEIGHTS_DIR cannot be listed ({why}); nothing was changed"
                ) from None
            report = await self._apply(found)
            # Straight on, nothing awaited since the swap: the owner's broadcast of the new
            # catalogue is the next thing that happens.
            if before_retire is not None:
                await before_retire(report)
            await self.retire()
            return report

    async def _apply(self, found: Scan) -> ReloadReport:
        """Load what is new or changed, then swap it all in at once; what left goes retiring."""
        changes: list[Change] = []
        hosted, files, gone = dict(self.hosted), dict(self.files), []
        versions = {name: dict(model.versions) for name, model in self.catalog.items()}
        for key, file in found.versions.items():
            known = self.files.get(key)
            if known is not None and known.stamp == file.stamp:
                continue  # unchanged (an invalid file too: it is tried again once it changes)
            name, version = key
            files[key] = file
            result = await self._load(name, version, file)
            old = hosted.get(key)
            if isinstance(result, Hosted):
                if old is not None:
                    gone.append(old)
                hosted[key], versions[name][version] = result, result.card
                changes.append(Change(model=name, version=version,
                                      change="replaced" if old else "added"))  # fmt: skip
                continue
            if old is None:  # nothing served as this version: list it with its reason
                versions[name][version] = result
            kind = "failed" if result.status == "failed" else "invalid"
            changes.append(Change(model=name, version=version, change=kind, reason=result.reason))
        for key in sorted(self.files.keys() - found.versions.keys()):
            name, version = key
            del files[key]
            versions[name].pop(version, None)
            if (old := hosted.pop(key, None)) is not None:
                gone.append(old)
            changes.append(Change(model=name, version=version, change="removed"))
        # The swap: from here to the end nothing is awaited, so no request sees half of it.
        for key, new in hosted.items():
            if self.hosted.get(key) is not new:
                new.batcher.start()
        self.retiring.update({(h.card.name, h.card.version): h for h in gone})
        self.hosted, self.files = hosted, files
        self.catalog = {name: self._model(name, versions[name]) for name in self.names}
        report = ReloadReport(
            changes=changes,
            default_versions={n: m.default_version for n, m in self.catalog.items()},
            notes=found.notes,
        )
        if report.changes or report.notes:  # polls that find nothing stay quiet
            log.info("%s: %s", "reload" if self._started else "start-up", report.summary())
        self._started = True
        return report

    def _model(self, name: str, versions: dict[int, Served]) -> Model:
        ordered = dict(sorted(versions.items()))
        pin = self.settings.model_versions.get(name)
        return Model(name, ordered, choose_default(ordered, pin, self._none[name]))

    async def _load(self, name: str, version: int, file: VersionFile) -> Hosted | Unavailable:
        """Load and validate, place and warm, batch; never raises for a bad checkpoint."""
        started = time.perf_counter()
        ckpt = await asyncio.to_thread(checkpoint_of, name, version, file, self.settings)
        if isinstance(ckpt, Unavailable):
            return ckpt
        if self.max_labels is not None and (n := len(ckpt.meta.labels)) > self.max_labels:
            why = f"{n} labels; the model owner passes {self.max_labels} (restart to serve it)"
            return unavailable(name, version, "failed", why)
        thread = self.cpu_thread or ModelThread(f"model-{name}-v{version}")
        try:
            if self.cpu_thread is None:
                predictor = await thread.call(place, ckpt, self.device, self.settings)
            else:  # warm off the thread the CPU models share: their batches go on meanwhile
                predictor = await asyncio.to_thread(place, ckpt, self.device, self.settings)
                await thread.call(calibrate, name, version, predictor, self.settings)
        except Exception:  # a model that cannot run on this device must not stop the others
            log.exception("could not start %s version %d on %s", name, version, self.device)
            if thread is not self.cpu_thread:
                await asyncio.to_thread(thread.stop)
            why = f"could not start on {self.device} (the log has why)"
            return unavailable(name, version, "failed", why)
        if thread is not self.cpu_thread:
            self.threads.append(thread)
        batcher = self._batcher(name, version, predictor, thread)
        batcher.limit(predictor.fits)  # below MAX_BATCH_SIZE if warm-up ran out of memory
        predictor.on_resize = batcher.limit
        took = time.perf_counter() - started
        log.info("loaded %s version %d on %s (%s) in %.2f s", name, version, self.device,
                 predictor.dtype, took)  # fmt: skip
        loaded = card(name, version, ckpt, predictor, self.settings)
        return Hosted(loaded, predictor, batcher, thread)

    def _batcher(
        self, name: str, version: int, predictor: Predictor, thread: ModelThread
    ) -> DynamicBatcher:
        on_batch, gauge = self.metrics.batcher_hooks(name, version)
        on_depth = self._on_depth

        def depth(n: int) -> None:
            gauge(n)
            if on_depth is not None:
                on_depth(name, version, n)

        return DynamicBatcher(
            predictor.launch,
            name=f"{name} v{version}",
            max_batch_size=predictor.max_batch,
            max_delay_s=self.settings.max_batch_delay_ms / 1000,
            max_queue=self.settings.max_queue,
            depth=predictor.depth,
            thread=thread,
            on_batch=on_batch,
            on_depth=depth,
            on_lost=self._lose,
            deadline_s=watchdog_s(self.settings, self.device),
        )

    async def retire(self) -> None:
        """Let every version that left finish what it accepted (it takes no more: no frontend
        resolves to it now), then free it: no reference to it is left here when this returns."""
        if not self.retiring:
            return
        gone, self.retiring = list(self.retiring.values()), {}
        while gone:
            hosted = gone.pop()
            await hosted.batcher.stop()
            if hosted.thread is not self.cpu_thread:
                self.threads.remove(hosted.thread)
                await asyncio.to_thread(hosted.thread.stop)
            # The predictor (on_resize) and its batcher hold each other: a cycle only the
            # collector frees, which never looks at what start-up built (gc.freeze, app/main.py).
            hosted.predictor.on_resize = None
            del hosted
        listed = self.catalog.items()
        self.metrics.keep_only({(n, str(v)) for n, m in listed for v in m.versions})
        if self.device.type == "cuda":
            await asyncio.to_thread(release_cached_memory, self.device)

    def _lose(self, exc: DeviceLost) -> None:
        if self.lost is None:
            self.lost = exc
            log.critical("%s is lost: nothing more can run on it", self.device)
            if self._on_lost is not None:
                self._on_lost(exc)

    def _find(self, name: str, version: int) -> Hosted | None:
        return self.hosted.get((name, version)) or self.retiring.get((name, version))

    def enqueue(self, name: str, version: int, digits: Tensor) -> "asyncio.Future[Tensor]":
        """Queue N x 1 x 28 x 28 uint8 digits for a version; the future: N probability rows."""
        hosted = self._find(name, version)
        if hosted is None:
            raise Failure.SHUTTING_DOWN.error(f"{name} version {version} is not loaded here")
        return hosted.batcher.enqueue(digits)

    def queued(self, name: str, version: int) -> int:
        """Images waiting for a version's next batches."""
        hosted = self._find(name, version)
        return hosted.batcher.queued_images if hosted else 0

    async def stop(self) -> None:
        """Refuse new work and finish every accepted image."""
        every = [*self.hosted.values(), *self.retiring.values()]
        await asyncio.gather(*(h.batcher.stop() for h in every))
        for thread in self.threads:
            thread.stop(wait=self.lost is None)  # after a hung device it never ends
