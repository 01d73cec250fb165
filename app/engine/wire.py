"""Between frontend workers and the model owner: a shared-memory slab per worker, and messages.

Each frontend worker maps a file (in /dev/shm where there is one) holding ``slots`` digits of
28x28 uint8 and, beside them, ``slots`` rows of float32 probabilities. It writes a request's
digits into a run of free slots and sends SUBMIT (request id, model, first slot, count) over a
Unix socket; the model owner reads the digits there, batches them with everyone else's, writes
the probabilities into the same slots and answers RESULT. Only those small messages travel
through the socket.

Versions: a SUBMIT names its model by index (the order of WELCOME's catalogue: the listed
models never change while the service runs, so the index stays valid across reloads) and its
version by number. A reload runs in the model owner (RELOAD from the frontend that got the
request, or the owner's own polling); once the new versions are warm and swapped in, the owner
sends CATALOG to every frontend and waits for each one's CATALOG_ACK (from then on it submits
to the new catalogue's versions only), then lets the versions that left finish and frees them,
and answers RELOADED. Queue depths live in shared memory, one slot per loaded version; the
catalogue messages say which. Imports no torch.
"""

import asyncio
import json
import mmap
import os
import struct
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from app.failures import BY_SLUG, ServiceError
from models.framing import DIGIT_SHAPE

DIGIT_BYTES = DIGIT_SHAPE[0] * DIGIT_SHAPE[1]
HEADER = struct.Struct("<BI")  # message type, payload length
SUBMIT = struct.Struct("<IHIII")  # request id, model index, version, first slot, count
CANCEL = struct.Struct("<I")  # request id
RESULT = struct.Struct("<IB")  # request id, Outcome; FAILED: "<slug>\n<detail>" in UTF-8 follows
RELOAD = struct.Struct("<I")  # request id
ACK = struct.Struct("<I")  # the generation of the catalogue now in use
QUEUE_SLOTS = 4096  # versions loaded at once whose queue depth frontends can read


class Kind(IntEnum):
    """Message types."""

    HELLO = 1  # frontend -> owner, empty
    WELCOME = 2  # owner -> frontend, JSON: CATALOG's, and {"classes": c, "queues": path}
    ATTACH = 3  # frontend -> owner, JSON: {"slab": path, "slots": n}
    ATTACHED = 4  # owner -> frontend, empty: the slab is mapped, its file may go
    SUBMIT = 5
    CANCEL = 6
    RESULT = 7
    RELOAD = 8  # frontend -> owner, RELOAD
    RELOADED = 9  # owner -> frontend, RESULT; OK: the report's JSON follows, FAILED: as RESULT
    CATALOG = 10  # owner -> frontend, JSON: {"generation": g, "catalog": [...], "queues": {...}}
    CATALOG_ACK = 11  # frontend -> owner, ACK


class Outcome(IntEnum):
    """How a SUBMIT ended; a failure names its row of the failure table (app/failures.py)."""

    OK = 0
    CANCELLED = 1  # the frontend withdrew it: nobody reads the answer
    FAILED = 2


def failure_payload(exc: ServiceError) -> bytes:
    """A failure as the text after a FAILED result."""
    return f"{exc.failure.kind.slug}\n{exc.detail}".encode()


def failure_from(payload: bytes) -> ServiceError:
    """The failure :func:`failure_payload` sent."""
    slug, _, detail = payload.decode().partition("\n")
    return BY_SLUG[slug].error(detail)


def frame(kind: Kind, payload: bytes) -> bytes:
    """One message on the wire."""
    return HEADER.pack(kind, len(payload)) + payload


def frame_json(kind: Kind, data: dict[str, Any]) -> bytes:
    """One message whose payload is JSON."""
    return frame(kind, json.dumps(data).encode())


async def read_message(reader: "asyncio.StreamReader") -> tuple[Kind, bytes]:
    """The next message; asyncio.IncompleteReadError when the other side has gone."""
    kind, length = HEADER.unpack(await reader.readexactly(HEADER.size))
    return Kind(kind), await reader.readexactly(length) if length else b""


def shm_dir() -> str | None:
    """/dev/shm when it is there (memory, not disk), else the default temporary folder."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def create_mapped(size: int, directory: str | Path | None, prefix: str) -> tuple[Path, mmap.mmap]:
    """A new file of ``size`` bytes in ``directory``, mapped shared.

    Its space is reserved now: a full /dev/shm fails here with a clear error, not later with
    SIGBUS on the first write into a page that cannot be backed.
    """
    fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    reserve = getattr(os, "posix_fallocate", lambda fd, offset, size: os.ftruncate(fd, size))
    try:
        try:
            reserve(fd, 0, size)
        except OSError as exc:
            os.unlink(name)
            raise OSError(
                exc.errno,
                f"cannot reserve {size:,} bytes of shared memory in {directory}: "
                f"{exc.strerror} (give the container more /dev/shm, e.g. shm_size)",
            ) from exc
        return Path(name), mmap.mmap(fd, size)
    finally:
        os.close(fd)


def open_mapped(path: str | Path) -> mmap.mmap:
    """Map an existing file shared, read and write."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


@dataclass
class Slab:
    """Digits in, probabilities out, ``slots`` of each, over one shared mapping."""

    memory: mmap.mmap
    slots: int
    classes: int

    @staticmethod
    def size(slots: int, classes: int) -> int:
        """Bytes a slab of ``slots`` slots needs."""
        return slots * (DIGIT_BYTES + 4 * classes)

    @property
    def digits(self) -> np.ndarray:
        """slots x 28 x 28 uint8, a view of the shared memory."""
        return np.ndarray((self.slots, *DIGIT_SHAPE), np.uint8, self.memory)

    @property
    def probabilities(self) -> np.ndarray:
        """slots x classes float32, a view of the shared memory."""
        return np.ndarray(
            (self.slots, self.classes), np.float32, self.memory, self.slots * DIGIT_BYTES
        )


class SlotAllocator:
    """Runs of consecutive free slots, first fit; freed runs merge with their neighbours."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free: list[tuple[int, int]] = [(0, slots)]  # (start, length), sorted by start
        self.used = 0

    def alloc(self, n: int) -> int | None:
        """The first slot of ``n`` free consecutive slots, or None when no run is that long."""
        for i, (start, length) in enumerate(self._free):
            if length >= n:
                if length == n:
                    del self._free[i]
                else:
                    self._free[i] = (start + n, length - n)
                self.used += n
                return start
        return None

    def free(self, start: int, n: int) -> None:
        """Give back the run ``start:start+n``."""
        self.used -= n
        runs = self._free
        i = 0
        while i < len(runs) and runs[i][0] < start:
            i += 1
        runs.insert(i, (start, n))
        if i + 1 < len(runs) and start + n == runs[i + 1][0]:  # merge with the next run
            runs[i] = (start, n + runs[i + 1][1])
            del runs[i + 1]
        if i > 0 and runs[i - 1][0] + runs[i - 1][1] == start:  # and with the previous one
            runs[i - 1] = (runs[i - 1][0], runs[i - 1][1] + runs[i][1])
            del runs[i]


class QueueTable:
    """The model owner's queue depths in shared memory, one slot per version a frontend may
    submit to; every frontend reads its version's before it decodes a request."""

    def __init__(self, directory: Path) -> None:
        self.path, memory = create_mapped(8 * QUEUE_SLOTS, directory, "queues-")
        self.depth = np.ndarray((QUEUE_SLOTS,), np.int64, memory)
        self.slot: dict[tuple[str, int], int] = {}

    def publish(self, name: str, version: int, n: int) -> None:
        """A version's batcher says how many images wait."""
        slot = self.slot.get((name, version))
        if slot is not None:
            self.depth[slot] = n

    def assign(self, keys: Iterable[tuple[str, int]]) -> None:
        """Slots for exactly these versions: each keeps its own; new ones start at zero (past
        QUEUE_SLOTS a version has none, and only the owner's own bound applies to it)."""
        keys = list(keys)
        kept = {k: s for k, s in self.slot.items() if k in keys}
        free = sorted(set(range(QUEUE_SLOTS)) - set(kept.values()), reverse=True)
        for key in keys:
            if key not in kept and free:
                kept[key] = free.pop()
                self.depth[kept[key]] = 0
        self.slot = kept

    def table(self) -> dict[str, dict[str, int]]:
        """The slots as the catalogue messages carry them: model -> version -> slot."""
        out: dict[str, dict[str, int]] = {}
        for (name, version), slot in self.slot.items():
            out.setdefault(name, {})[str(version)] = slot
        return out
