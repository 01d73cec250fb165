"""RemoteEngine: a frontend worker's side of the ``shared`` layout (see app/engine/wire.py)."""

import asyncio
import contextlib
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.engine.wire import (
    ACK,
    CANCEL,
    QUEUE_SLOTS,
    RELOAD,
    RESULT,
    SUBMIT,
    Kind,
    Outcome,
    Slab,
    SlotAllocator,
    create_mapped,
    failure_from,
    frame,
    frame_json,
    open_mapped,
    read_message,
)
from app.failures import Failure, queue_full
from app.metrics import Metrics
from app.serving.catalog import Loaded, Model, ReloadReport, model_from_json

log = logging.getLogger(__name__)
Waiter = asyncio.Future[tuple[Outcome, bytes]]


class RemoteEngine:
    """An :class:`~app.serving.engine.Engine` whose models live in the model-owner process."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        catalogue: dict[str, Any],
        slab: Slab,
        queues: np.ndarray,
        metrics: Metrics | None = None,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._metrics = metrics
        # SUBMIT's model index: the order of the first catalogue (the listed models never change).
        self._index = {m["name"]: i for i, m in enumerate(catalogue["catalog"])}
        self._take(catalogue)
        self._slab, self._digits, self._probs = slab, slab.digits, slab.probabilities
        self._slots = SlotAllocator(slab.slots)
        self._queues = queues
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[Waiter, int, int]] = {}
        self._reloads: dict[int, Waiter] = {}
        self._gone = False
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _take(self, catalogue: dict[str, Any]) -> None:
        """Route by a catalogue from the model owner (WELCOME's or CATALOG's), all at once."""
        self._catalog = {m.name: m for m in map(model_from_json, catalogue["catalog"])}
        self._queue_slot = {
            (name, int(version)): slot
            for name, slots in catalogue["queues"].items()
            for version, slot in slots.items()
        }
        if self._metrics is not None:  # the request series of versions that left go too
            live = {(n, str(v)) for n, m in self._catalog.items() for v in m.versions}
            self._metrics.keep_only(live)

    @classmethod
    async def connect(
        cls, socket_path: str | Path, settings: Settings, metrics: Metrics | None = None
    ) -> "RemoteEngine":
        """Say hello to the model owner and share a slab with it: as many digit slots as the
        owner's queue holds, and one more request, so the queue bound is what binds. The
        frontend's ``metrics`` follow its catalogue."""
        slots = settings.max_queue + settings.max_files
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(frame(Kind.HELLO, b""))
        kind, payload = await read_message(reader)
        if kind != Kind.WELCOME:
            raise ConnectionError(f"the model owner answered {kind.name} to HELLO")
        catalogue = json.loads(payload)
        queues = np.ndarray((QUEUE_SLOTS,), np.int64, open_mapped(catalogue["queue_file"]))
        directory = Path(socket_path).parent
        classes = catalogue["classes"]
        path, memory = create_mapped(Slab.size(slots, classes), directory, "slab-")
        try:
            writer.write(frame_json(Kind.ATTACH, {"slab": str(path), "slots": slots}))
            while (kind := (message := await read_message(reader))[0]) == Kind.CATALOG:
                catalogue = _taken(writer, catalogue, message[1])  # a reload since WELCOME
            if kind != Kind.ATTACHED:
                raise ConnectionError(f"the model owner answered {kind.name} to ATTACH")
        finally:
            os.unlink(path)  # both sides have it mapped: nothing to clean up after a crash
        return cls(reader, writer, catalogue, Slab(memory, slots, classes), queues, metrics)

    def _classes(self, name: str, version: int) -> int:
        """How many classes a version has (the slab's rows are as wide as the widest)."""
        served = self._catalog[name].versions.get(version) if name in self._catalog else None
        return len(served.labels) if isinstance(served, Loaded) else self._slab.classes

    @property
    def catalog(self) -> dict[str, Model]:
        """Every listed model and its versions (as the owner last reported them)."""
        return self._catalog

    @property
    def alive(self) -> bool:
        """False once the connection to the model owner is lost."""
        return not self._gone

    def queued(self, name: str, version: int) -> int:
        """Images waiting for a version, as the model owner publishes them in shared memory."""
        slot = self._queue_slot.get((name, version))
        return 0 if slot is None else int(self._queues[slot])

    async def classify(self, name: str, version: int, digits: np.ndarray) -> np.ndarray:
        """Digits into the slab, SUBMIT, wait for RESULT, probabilities out of the slab."""
        if self._gone:
            raise Failure.SHUTTING_DOWN.error()
        n = len(digits)
        first = self._slots.alloc(n)
        if first is None:  # this worker's share of the owner's queue is in flight
            raise queue_full(name, self._slots.used, self._slots.slots)
        self._digits[first : first + n] = digits
        rid = next(self._ids) & 0xFFFFFFFF
        future: Waiter = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (future, first, n)
        submit = SUBMIT.pack(rid, self._index[name], version, first, n)
        self._writer.write(frame(Kind.SUBMIT, submit))
        try:
            outcome, detail = await future
        except asyncio.CancelledError:  # timed out: withdraw; the slots free when RESULT comes
            if not self._gone:
                self._writer.write(frame(Kind.CANCEL, CANCEL.pack(rid)))
            raise
        try:
            if outcome == Outcome.OK:  # as many columns as the version has classes
                return self._probs[first : first + n, : self._classes(name, version)].copy()
        finally:
            self._slots.free(first, n)
        if outcome == Outcome.FAILED:
            raise failure_from(detail)
        raise Failure.SHUTTING_DOWN.error()  # cancelled by the owner: it is stopping

    async def reload(self) -> ReloadReport:
        """RELOAD: the owner reloads and sends every frontend the new catalogue (this one's
        arrives before the answer, on the same connection); what changed."""
        if self._gone:
            raise Failure.SHUTTING_DOWN.error()
        rid = next(self._ids) & 0xFFFFFFFF
        future: Waiter = asyncio.get_running_loop().create_future()
        self._reloads[rid] = future
        self._writer.write(frame(Kind.RELOAD, RELOAD.pack(rid)))
        try:
            outcome, detail = await future
        finally:
            self._reloads.pop(rid, None)
        if outcome == Outcome.OK:
            return ReloadReport.model_validate_json(detail)
        raise failure_from(detail)

    async def _listen(self) -> None:
        """Resolve each RESULT's waiter, take each CATALOG; on a lost connection fail them all."""
        try:
            while True:
                kind, payload = await read_message(self._reader)
                if kind == Kind.CATALOG:
                    self._take(_taken(self._writer, {}, payload))
                    continue
                if kind not in (Kind.RESULT, Kind.RELOADED):
                    continue
                rid, code = RESULT.unpack_from(payload)
                outcome = (Outcome(code), payload[RESULT.size :])
                if kind == Kind.RELOADED:
                    if (reload := self._reloads.get(rid)) is not None and not reload.done():
                        reload.set_result(outcome)
                    continue
                future, first, n = self._waiting.pop(rid)
                if future.done():  # its request gave up: nobody will read these slots
                    self._slots.free(first, n)
                else:
                    future.set_result(outcome)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.error("lost the model owner: %s", exc)
        finally:
            self._gone = True
            waiters = [w for w, _, _ in self._waiting.values()] + list(self._reloads.values())
            for future in waiters:
                if not future.done():
                    future.set_exception(Failure.SHUTTING_DOWN.error())
            self._waiting.clear()

    async def close(self) -> None:
        """Hang up; the model owner forgets this worker (nothing is in flight by now)."""
        self._gone = True  # also when the listener never got to run
        self._listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._listener
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


def _taken(writer: asyncio.StreamWriter, before: dict[str, Any], payload: bytes) -> dict[str, Any]:
    """A CATALOG message over ``before``, acknowledged: from now on this worker routes by it."""
    catalogue = {**before, **json.loads(payload)}
    writer.write(frame(Kind.CATALOG_ACK, ACK.pack(catalogue["generation"])))
    return catalogue
