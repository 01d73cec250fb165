"""Ending a process of the service that cannot go on: its model owner died, or its device failed.

It stops the way SIGTERM stops it (new requests refused, accepted ones drained), and the process
is marked failed, so that ``python -m app`` exits with status 1 and Docker or Kubernetes
restarts the service. A frontend worker that uvicorn's supervisor started ends by that same
SIGTERM and is started again by the supervisor. Imports no torch.
"""

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)
_failed = threading.Event()


def fail_process(reason: str) -> None:
    """Stop this process as SIGTERM does, marked failed."""
    log.critical("%s; stopping", reason)
    _failed.set()
    os.kill(os.getpid(), signal.SIGTERM)


def failed() -> bool:
    """Whether :func:`fail_process` ended this process."""
    return _failed.is_set()
