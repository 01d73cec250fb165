"""``python -m app`` (or ``zoo-serve``): run the service with every core of this machine.

1. Resolve the layout (app/layout.py): device, where models run, how many frontend workers.
2. In the ``shared`` layout, start the model owner and wait until its models are loaded.
3. Run uvicorn with that many worker processes sharing the port; every worker connects to the
   model owner (or, in the ``worker`` layout, loads its own copy of the models).
4. ``POST /models/reload`` (or RELOAD_INTERVAL_S) reaches every process that holds models: the
   model owner in the ``shared`` layout; in the ``worker`` layout every worker, through a
   counter in the run folder (app/engine/siblings.py).
5. On SIGTERM or Ctrl-C, uvicorn drains the workers (each finishes what it accepted), then the
   model owner finishes and exits. If the model owner dies, the service shuts down with an
   error, so that Docker or Kubernetes restarts it whole; so does a device that fails for good
   (app/lifecycle.py).
"""

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from app import logs
from app.config import Settings
from app.engine.wire import shm_dir
from app.layout import MULTIPROCESS_ENV, Layout, plan
from app.lifecycle import fail_process, failed

if TYPE_CHECKING:
    from app.engine.owner_process import OwnerProcess

log = logging.getLogger("app")
GRACEFUL_SHUTDOWN_S = 30


def _watch(owner: "OwnerProcess", stopping: threading.Event) -> None:
    """If the model owner exits before we stop it, stop the whole service."""
    owner.process.join()
    if not stopping.is_set():
        fail_process(f"the model owner exited (code {owner.process.exitcode})")


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which lets go of the listening socket as the drain begins."""

    def terminate_all(self) -> None:
        """Close this process's copy of the listening socket, then stop the workers."""
        # Each worker stops accepting as it starts draining, but the socket lives on while any
        # process holds it: with this copy open through the drain (up to 30 s), new
        # connections would queue unanswered and be reset when it closed. Closed here, they
        # are refused once the workers close theirs, so clients and balancers go elsewhere.
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def serve(layout: Layout, host: str, port: int, run_dir: Path) -> int:
    """Start the model owner if the layout has one, then uvicorn's workers; 1 if it failed."""
    os.environ.update(layout.environment())
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    # Set before any process of the service imports prometheus_client (this one has not).
    os.environ[MULTIPROCESS_ENV] = str(metrics_dir)
    # Every worker of the worker layout follows a reload any of them was asked for through
    # this folder (app/engine/siblings.py).
    os.environ["RUN_DIR"] = str(run_dir)
    settings = Settings()  # as every worker will read it: with the layout resolved
    stopping = threading.Event()
    owner = None
    if layout.engine == "shared":
        from app.engine.owner_process import OwnerProcess

        owner = OwnerProcess.start(settings, run_dir)
        os.environ["ENGINE_SOCKET"] = str(owner.socket)
        threading.Thread(target=_watch, args=(owner, stopping), daemon=True).start()
    log.info(
        "serving on %s:%d: %d worker(s), models %s on %s",
        host,
        port,
        layout.workers,
        "in a shared model owner" if owner else "in each worker",
        layout.device,
    )
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        workers=layout.workers,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        http="app.frontend.protocol:GuardedHttpProtocol",
        server_header=False,  # no product and version for a scanner; Date stays
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        root_path=settings.root_path,
        access_log=False,
        log_level="info",
    )
    try:
        if layout.workers > 1:  # a supervisor starts the workers and watches them
            config = uvicorn.Config("app.main:app", **options)
            _Supervisor(config, sockets=[config.bind_socket()]).run()
        else:
            uvicorn.run("app.main:app", **options)
    finally:
        stopping.set()
        if owner is not None:
            owner.stop()
    return 1 if failed() else 0


class _Stop(Exception):
    """SIGTERM or SIGINT reached the launcher after uvicorn had drained its workers."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, lay the service out, serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    parser.add_argument("--host", help="address to listen on (default: HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default: PORT or 8000)")
    parser.add_argument("--workers", type=int, help="frontend worker processes (default: WORKERS)")
    args = parser.parse_args(argv)
    logs.configure()
    settings = Settings()
    if args.workers is not None:
        settings = settings.model_copy(update={"workers": args.workers})
    try:
        settings.keys()  # here, once: a worker that cannot read them would be respawned forever
    except ValueError as exc:
        print(f"python -m app: {exc}", file=sys.stderr)
        return 2
    layout = plan(settings)
    run_dir = Path(tempfile.mkdtemp(prefix="zoo-", dir=shm_dir()))
    log.info("run folder %s (sockets, shared memory, metrics); removed on exit", run_dir)
    # uvicorn serving in this process re-raises the stop signal once it has drained, into the
    # handler that was there before it: this one, so the model owner and run folder go too.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)
    try:
        return serve(layout, args.host or settings.host, args.port or settings.port, run_dir)
    except _Stop:  # uvicorn drained its worker in this process, then re-raised the signal
        return 1 if failed() else 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
