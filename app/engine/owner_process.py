"""The launcher's handle on the model-owner process: start it, wait for it, stop it.

Imports no torch (the launcher runs no model): the process is spawned with a target that imports
app/engine/owner.py only once it runs there.
"""

import contextlib
import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from app.config import Settings

log = logging.getLogger(__name__)
START_TIMEOUT_S = 900  # VGG checkpoints on a slow disk, and CUDA's first initialisation


def _owner_main(settings: Settings, socket_path: str, parent: Connection) -> None:
    from app.engine.owner import run

    run(settings, socket_path, parent)


@dataclass
class OwnerProcess:
    """The parent's handle on a model-owner process."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    socket: Path

    @classmethod
    def start(cls, settings: Settings, run_dir: Path) -> "OwnerProcess":
        """Spawn it and wait until every model is loaded and its socket listens."""
        ctx = multiprocessing.get_context("spawn")  # no inherited CUDA, event loop or threads
        conn, child = ctx.Pipe()
        socket_path = run_dir / "engine.sock"
        process = ctx.Process(
            target=_owner_main, args=(settings, str(socket_path), child), name="zoo-model-owner"
        )
        process.start()
        child.close()
        owner = cls(process, conn, socket_path)
        for _ in range(START_TIMEOUT_S * 10):
            if conn.poll(0.1):
                conn.recv()
                log.info("model owner ready (pid %d, socket %s)", process.pid, socket_path)
                return owner
            if not process.is_alive():
                break
        process.kill()
        process.join()
        raise RuntimeError(f"the model owner did not start (exit code {process.exitcode})")

    def stop(self, timeout: float = 60) -> None:
        """Tell it to finish what it accepted and exit; kill it if it does not in ``timeout``."""
        with contextlib.suppress(OSError):
            self.conn.send("stop")
            self.conn.poll(timeout)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
