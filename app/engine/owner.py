"""The model owner: one process per device that batches the digits of every frontend worker.

This module runs in that process (app/engine/owner_process.py is the launcher's handle on it).
It ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): it stops when its
parent says so or goes away, so it always outlives the requests the frontends still have in
flight; or when its device is lost, and then it exits with status 1 (the launcher stops the
service with an error).
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from app import logs
from app.config import Settings
from app.engine.host import ModelHost
from app.engine.wire import (
    ACK,
    CANCEL,
    RELOAD,
    RESULT,
    SUBMIT,
    Kind,
    Outcome,
    QueueTable,
    Slab,
    failure_payload,
    frame,
    frame_json,
    open_mapped,
    read_message,
)
from app.failures import Failure, ServiceError
from app.layout import plan
from app.metrics import Metrics, mark_process_dead
from app.serving.catalog import ReloadReport, model_to_json
from models.framing import DIGIT_LABELS

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30  # a frontend that has not taken a new catalogue by then is stuck


class Owner:
    """The running model owner: its models, and what every frontend needs to know of them."""

    def __init__(self, host: ModelHost, queues: QueueTable) -> None:
        self.host, self.queues = host, queues
        self.names = list(host.catalog)  # the listed models never change: SUBMIT's index
        # Probabilities per image in every frontend's slab, fixed when the slab is made: at
        # least MNIST's ten, so that a model loaded later by a reload fits.
        labels = [len(h.card.labels) for h in host.hosted.values()]
        self.classes = max([len(DIGIT_LABELS), *labels])
        host.max_labels = self.classes
        self.generation = 0
        self.frontends: set[_Frontend] = set()
        self._acked = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        queues.assign(host.hosted)

    def catalogue(self) -> dict[str, Any]:
        """What a frontend needs to route requests: the models, their versions, the slots."""
        return {
            "generation": self.generation,
            "catalog": [model_to_json(m) for m in self.host.catalog.values()],
            "queues": self.queues.table(),
        }

    async def serve_frontend(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One frontend worker's connection, from HELLO until it hangs up."""
        frontend = _Frontend(self, writer)
        try:
            while True:
                kind, payload = await read_message(reader)
                if kind == Kind.SUBMIT:
                    frontend.submit(*SUBMIT.unpack(payload))
                elif kind == Kind.CANCEL:
                    frontend.cancel(*CANCEL.unpack(payload))
                elif kind == Kind.CATALOG_ACK:
                    (frontend.acked,) = ACK.unpack(payload)
                    self._acked.set()
                elif kind == Kind.RELOAD:
                    self.spawn(self.reload_for(frontend, *RELOAD.unpack(payload)))
                elif kind == Kind.HELLO:
                    welcome = {**self.catalogue(), "classes": self.classes,
                               "queue_file": str(self.queues.path)}  # fmt: skip
                    writer.write(frame_json(Kind.WELCOME, welcome))
                    frontend.acked = self.generation
                    self.frontends.add(frontend)
                elif kind == Kind.ATTACH:
                    frontend.attach(payload)
                    writer.write(frame(Kind.ATTACHED, b""))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker stopped (or died): forget it
        finally:
            self.frontends.discard(frontend)
            frontend.close()
            self._acked.set()  # a reload waiting for it waits no more

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the frontends' messages (a reload must not hold up SUBMITs)."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> ReloadReport:
        """Reload the host; every frontend takes the new catalogue before what left goes."""
        return await self.host.reload(before_retire=self._publish)

    async def reload_for(self, frontend: "_Frontend", rid: int) -> None:
        """A frontend's RELOAD: reload, then answer it."""
        try:
            answer = RESULT.pack(rid, Outcome.OK) + (await self.reload()).model_dump_json().encode()
        except ServiceError as exc:
            answer = RESULT.pack(rid, Outcome.FAILED) + failure_payload(exc)
        except Exception:
            log.exception("reload failed")
            failed = Failure.INTERNAL_ERROR.error()
            answer = RESULT.pack(rid, Outcome.FAILED) + failure_payload(failed)
        frontend.send(Kind.RELOADED, answer)

    async def poll(self, interval_s: float) -> None:
        """RELOAD_INTERVAL_S: look at WEIGHTS_DIR every so often."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except ServiceError as exc:  # WEIGHTS_DIR unreadable: keep serving what we have
                log.warning("reload: %s", exc.detail)
            except Exception:  # keep looking: the next look may succeed
                log.exception("reload failed")

    async def _publish(self, report: ReloadReport) -> None:
        """Send the new catalogue to every frontend; wait until each has it in use."""
        self.generation += 1
        generation = self.generation
        self.queues.assign([*self.host.hosted, *self.host.retiring])
        message = frame_json(Kind.CATALOG, self.catalogue())
        waiting = [f for f in self.frontends if not f.closed]
        for frontend in waiting:
            frontend.writer.write(message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT_S
        while late := [f for f in waiting if not f.closed and f.acked < generation]:
            self._acked.clear()
            try:
                await asyncio.wait_for(self._acked.wait(), deadline - loop.time())
            except TimeoutError:
                log.warning("reload: %d frontend(s) did not take the new catalogue", len(late))
                return

    async def stop(self) -> None:
        """Stop reloading; finish every accepted request."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.host.stop()


class _Frontend:
    """One connected frontend worker: its slab and its requests in flight."""

    def __init__(self, owner: Owner, writer: asyncio.StreamWriter) -> None:
        self.owner, self.writer = owner, writer
        self.pending: dict[int, asyncio.Future[torch.Tensor]] = {}
        self.slab: Slab | None = None
        self.closed = False
        self.acked = 0  # the generation of the catalogue it has in use

    def attach(self, payload: bytes) -> None:
        attach = json.loads(payload)
        classes = self.owner.classes
        self.slab = Slab(open_mapped(attach["slab"]), int(attach["slots"]), classes)
        self.digits, self.probabilities = self.slab.digits, self.slab.probabilities

    def send(self, kind: Kind, payload: bytes) -> None:
        if not self.closed:
            self.writer.write(frame(kind, payload))

    def reply(self, rid: int, outcome: Outcome, detail: bytes = b"") -> None:
        self.send(Kind.RESULT, RESULT.pack(rid, outcome) + detail)

    def submit(self, rid: int, model: int, version: int, first: int, n: int) -> None:
        name = self.owner.names[model]
        # A copy: the slots belong to the frontend again as soon as it has its RESULT.
        digits = torch.from_numpy(self.digits[first : first + n].copy()).unsqueeze(1)
        try:
            future = self.owner.host.enqueue(name, version, digits)
        except ServiceError as exc:  # a full queue, or stopping
            self.reply(rid, Outcome.FAILED, failure_payload(exc))
            return
        self.pending[rid] = future
        future.add_done_callback(lambda f: self.done(rid, first, n, f))

    def done(self, rid: int, first: int, n: int, future: "asyncio.Future[torch.Tensor]") -> None:
        self.pending.pop(rid, None)
        if self.closed:
            return
        if future.cancelled():
            self.reply(rid, Outcome.CANCELLED)
        elif (exc := future.exception()) is not None:  # the batcher logged why
            error = exc if isinstance(exc, ServiceError) else Failure.INFERENCE_FAILED.error()
            self.reply(rid, Outcome.FAILED, failure_payload(error))
        else:
            rows = future.result().numpy()  # this version's classes: the slab may hold more
            self.probabilities[first : first + n, : rows.shape[1]] = rows
            self.probabilities[first : first + n, rows.shape[1] :] = 0
            self.reply(rid, Outcome.OK)

    def cancel(self, rid: int) -> None:
        future = self.pending.get(rid)
        if future is not None:
            future.cancel()  # rows not yet in a batch never reach the model

    def close(self) -> None:
        self.closed = True
        for future in list(self.pending.values()):
            future.cancel()
        self.pending.clear()
        self.writer.close()


async def _serve(settings: Settings, socket_path: Path, parent: Connection) -> int:
    queues = QueueTable(socket_path.parent)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def stop_for(reason: str) -> None:
        if not stop.done():
            stop.set_result(reason)

    threads = plan(settings).torch_threads
    host = await ModelHost.start(
        settings, Metrics(), threads, on_depth=queues.publish, on_lost=lambda exc: stop_for("lost")
    )
    owner = Owner(host, queues)
    server = await asyncio.start_unix_server(owner.serve_frontend, path=str(socket_path))
    if settings.reload_interval_s:
        owner.spawn(owner.poll(settings.reload_interval_s))
    parent.send("ready")
    loop.add_reader(parent.fileno(), stop_for, "told")  # "stop", or the parent died
    reason = await stop
    loop.remove_reader(parent.fileno())
    server.close()
    await owner.stop()  # with the device lost, what is queued fails at once
    if reason == "lost":
        return 1
    with contextlib.suppress(OSError):
        parent.send("stopped")
    return 0


def run(settings: Settings, socket_path: str, parent: Connection) -> None:
    """The model owner's main (a spawned process); exits with status 1 if its device is lost."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.configure()
    loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            code = runner.run(_serve(settings, Path(socket_path), parent))
    finally:
        mark_process_dead()
    if code:  # the device is lost: skip the interpreter's teardown, which would touch it
        sys.stderr.flush()
        os._exit(code)
