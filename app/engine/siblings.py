"""The frontend workers of one ``python -m app`` in the ``worker`` layout, as one for reloads.

A reload request reaches one worker; every worker holds its own models, so every one must
reload. They share the launcher's run folder, and in it ``reload/``:

- ``generation``: a counter; the worker that took the request adds one (under a lock, so two
  requests at once get two numbers);
- ``<pid>``: the generation that worker has applied; it writes its own on start-up, and again
  after each reload.

Every worker reads the counter a few times a second (a read of a few bytes in /dev/shm) and
reloads when it has moved; the worker that took the request answers once every live worker
has applied its number, so an answer means the whole service switched. Imports no torch.
"""

import contextlib
import fcntl
import os
from pathlib import Path

WATCH_S = 0.2  # how often a worker looks at the counter


def _read(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):  # not written yet
        return 0


def _write(path: Path, value: int) -> None:
    """Atomically: a reader never sees a half-written number."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(str(value))
    tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a dead worker waiting to be reaped has not applied anything


class Siblings:
    """This worker's view of the reload generation it shares with the others."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = Path(run_dir) / "reload"
        self.dir.mkdir(exist_ok=True)
        self.counter = self.dir / "generation"
        self.mine = self.dir / str(os.getpid())
        self.seen = self.generation()
        _write(self.mine, self.seen)  # what this worker loads next reflects at least this

    def generation(self) -> int:
        """The latest reload any worker asked for."""
        return _read(self.counter)

    def bump(self) -> int:
        """Ask every worker to reload: the new generation."""
        with open(self.dir / "lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            generation = self.generation() + 1
            _write(self.counter, generation)
        self.seen = max(self.seen, generation)
        return generation

    def applied(self, generation: int) -> None:
        """This worker has reloaded for ``generation``."""
        _write(self.mine, max(generation, _read(self.mine)))

    def behind(self, generation: int) -> list[int]:
        """The live workers that have not applied ``generation`` yet."""
        late = []
        for entry in self.dir.iterdir():
            if entry.name.isdigit() and _read(entry) < generation and _alive(int(entry.name)):
                late.append(int(entry.name))
        return late

    def leave(self) -> None:
        """This worker stops: nobody waits for it any more."""
        with contextlib.suppress(OSError):
            self.mine.unlink()
