"""RemoteEngine: a frontend worker's side of the ``shared`` layout (see app/engine/wire.py)."""

import asyncio
import contextlib
import itertools
import json
import logging
import os
from pathlib import Path

import numpy as np

from app.config import Settings
from app.engine.wire import (
    CANCEL,
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
from app.serving.catalog import Served, from_json

log = logging.getLogger(__name__)


class RemoteEngine:
    """An :class:`~app.serving.engine.Engine` whose models live in the model-owner process."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        catalog: dict[str, Served],
        slab: Slab,
        queues: np.ndarray,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._catalog = catalog
        self._index = {name: i for i, name in enumerate(catalog)}
        self._slab, self._digits, self._probs = slab, slab.digits, slab.probabilities
        self._slots = SlotAllocator(slab.slots)
        self._queues = queues
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future[tuple[Outcome, bytes]], int, int]] = {}
        self._gone = False
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    @classmethod
    async def connect(cls, socket_path: str | Path, settings: Settings) -> "RemoteEngine":
        """Say hello to the model owner and share a slab with it: as many digit slots as the
        owner's queue holds, and one more request, so the queue bound is what binds."""
        slots = settings.max_queue + settings.max_files
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
        writer.write(frame(Kind.HELLO, b""))
        kind, payload = await read_message(reader)
        if kind != Kind.WELCOME:
            raise ConnectionError(f"the model owner answered {kind.name} to HELLO")
        welcome = json.loads(payload)
        catalog = {s.name: s for s in map(from_json, welcome["catalog"])}
        queues = np.ndarray((len(catalog),), np.int64, open_mapped(welcome["queues"]))
        directory = Path(socket_path).parent
        path, memory = create_mapped(Slab.size(slots, welcome["classes"]), directory, "slab-")
        try:
            writer.write(frame_json(Kind.ATTACH, {"slab": str(path), "slots": slots}))
            kind, _ = await read_message(reader)
            if kind != Kind.ATTACHED:
                raise ConnectionError(f"the model owner answered {kind.name} to ATTACH")
        finally:
            os.unlink(path)  # both sides have it mapped: nothing to clean up after a crash
        return cls(reader, writer, catalog, Slab(memory, slots, welcome["classes"]), queues)

    @property
    def catalog(self) -> dict[str, Served]:
        """Every listed model, loaded or with the reason it is not (as the owner reported)."""
        return self._catalog

    @property
    def alive(self) -> bool:
        """False once the connection to the model owner is lost."""
        return not self._gone

    def queued(self, name: str) -> int:
        """Images waiting for ``name``, as the model owner publishes them in shared memory."""
        return int(self._queues[self._index[name]])

    async def classify(self, name: str, digits: np.ndarray) -> np.ndarray:
        """Digits into the slab, SUBMIT, wait for RESULT, probabilities out of the slab."""
        if self._gone:
            raise Failure.SHUTTING_DOWN.error()
        n = len(digits)
        first = self._slots.alloc(n)
        if first is None:  # this worker's share of the owner's queue is in flight
            raise queue_full(name, self._slots.used, self._slots.slots)
        self._digits[first : first + n] = digits
        rid = next(self._ids) & 0xFFFFFFFF
        future: asyncio.Future[tuple[Outcome, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (future, first, n)
        self._writer.write(frame(Kind.SUBMIT, SUBMIT.pack(rid, self._index[name], first, n)))
        try:
            outcome, detail = await future
        except asyncio.CancelledError:  # timed out: withdraw; the slots free when RESULT comes
            if not self._gone:
                self._writer.write(frame(Kind.CANCEL, CANCEL.pack(rid)))
            raise
        try:
            if outcome == Outcome.OK:
                return self._probs[first : first + n].copy()
        finally:
            self._slots.free(first, n)
        if outcome == Outcome.FAILED:
            raise failure_from(detail)
        raise Failure.SHUTTING_DOWN.error()  # cancelled by the owner: it is stopping

    async def _listen(self) -> None:
        """Resolve each RESULT's waiter; on a lost connection fail them all."""
        try:
            while True:
                kind, payload = await read_message(self._reader)
                if kind != Kind.RESULT:
                    continue
                rid, code = RESULT.unpack_from(payload)
                future, first, n = self._waiting.pop(rid)
                if future.done():  # its request gave up: nobody will read these slots
                    self._slots.free(first, n)
                else:
                    future.set_result((Outcome(code), payload[RESULT.size :]))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.error("lost the model owner: %s", exc)
        finally:
            self._gone = True
            for future, _, _ in self._waiting.values():
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
