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
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import torch

from app import logs
from app.config import Settings
from app.engine.host import ModelHost, model_names
from app.engine.wire import (
    CANCEL,
    RESULT,
    SUBMIT,
    Kind,
    Outcome,
    Slab,
    create_mapped,
    failure_payload,
    frame,
    frame_json,
    open_mapped,
    read_message,
)
from app.failures import Failure, ServiceError
from app.layout import plan
from app.metrics import Metrics, mark_process_dead
from app.serving.catalog import to_json

log = logging.getLogger(__name__)


class Owner:
    """The running model owner: its models, and what every frontend needs to know of them."""

    def __init__(self, host: ModelHost, queues_path: Path) -> None:
        self.host = host
        self.names = list(host.catalog)
        self.classes = max((len(h.card.labels) for h in host.hosted.values()), default=1)
        self.welcome = {
            "catalog": [to_json(s) for s in host.catalog.values()],
            "classes": self.classes,
            "queues": str(queues_path),
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
                elif kind == Kind.HELLO:
                    writer.write(frame_json(Kind.WELCOME, self.welcome))
                elif kind == Kind.ATTACH:
                    frontend.attach(payload)
                    writer.write(frame(Kind.ATTACHED, b""))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker stopped (or died): forget it
        finally:
            frontend.close()


class _Frontend:
    """One connected frontend worker: its slab and its requests in flight."""

    def __init__(self, owner: Owner, writer: asyncio.StreamWriter) -> None:
        self.owner, self.writer = owner, writer
        self.pending: dict[int, asyncio.Future[torch.Tensor]] = {}
        self.slab: Slab | None = None
        self.closed = False

    def attach(self, payload: bytes) -> None:
        attach = json.loads(payload)
        classes = self.owner.classes
        self.slab = Slab(open_mapped(attach["slab"]), int(attach["slots"]), classes)
        self.digits, self.probabilities = self.slab.digits, self.slab.probabilities

    def reply(self, rid: int, outcome: Outcome, detail: bytes = b"") -> None:
        if not self.closed:
            self.writer.write(frame(Kind.RESULT, RESULT.pack(rid, outcome) + detail))

    def submit(self, rid: int, model: int, first: int, n: int) -> None:
        name = self.owner.names[model]
        # A copy: the slots belong to the frontend again as soon as it has its RESULT.
        digits = torch.from_numpy(self.digits[first : first + n].copy()).unsqueeze(1)
        try:
            future = self.owner.host.enqueue(name, digits)
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
            self.probabilities[first : first + n] = future.result().numpy()
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
    names = model_names(settings)
    queues_path, memory = create_mapped(8 * len(names), socket_path.parent, "queues-")
    queues = np.ndarray((len(names),), np.int64, memory)
    index = {name: i for i, name in enumerate(names)}

    def publish(name: str, n: int) -> None:  # every frontend reads it before it decodes
        queues[index[name]] = n

    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def stop_for(reason: str) -> None:
        if not stop.done():
            stop.set_result(reason)

    threads = plan(settings).torch_threads
    host = await ModelHost.start(
        settings, Metrics(), threads, on_depth=publish, on_lost=lambda exc: stop_for("lost")
    )
    owner = Owner(host, queues_path)
    server = await asyncio.start_unix_server(owner.serve_frontend, path=str(socket_path))
    parent.send("ready")
    loop.add_reader(parent.fileno(), stop_for, "told")  # "stop", or the parent died
    reason = await stop
    loop.remove_reader(parent.fileno())
    server.close()
    await host.stop()  # with the device lost, what is queued fails at once
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
