"""`python -m app.as_user UID:GID [--into DIR] -- COMMAND...`: hand the API keys to UID, become it.

Compose mounts a file secret with the host file's owner and mode (it ignores a secret's uid, gid
and mode outside Swarm), so a root-owned 0600 ``secrets/api_keys`` is unreadable to the service's
user. docker-compose.keys.yml therefore starts the api as root with this entry point: it copies
``API_KEYS_FILE`` into memory (``DIR``, default /dev/shm) as UID's own 0400 file, points
``API_KEYS_FILE`` at the copy, drops to UID:GID (no supplementary groups) and execs COMMAND, so
the service itself never runs as root. Started as anyone else, it only execs COMMAND.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_INTO = Path("/dev/shm")


def copy_keys(source: Path, into: Path, uid: int, gid: int) -> Path:
    """Copy ``source`` to ``into``/api_keys, owned by ``uid``:``gid``, mode 0400; its path."""
    data = source.read_bytes()
    target = into / "api_keys"
    target.unlink(missing_ok=True)
    # O_EXCL | O_NOFOLLOW: never write through a link someone left at the target's name.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
    try:
        os.fchown(fd, uid, gid)
        os.write(fd, data)
    finally:
        os.close(fd)
    return target


def main(argv: list[str] | None = None) -> int:
    """Copy the keys (as root), drop to UID:GID and exec the command; returns only on errors."""
    argv = sys.argv[1:] if argv is None else argv
    # Everything after the first "--" is the command, options and all.
    split = argv.index("--") if "--" in argv else len(argv)
    own, command = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="python -m app.as_user", description=__doc__)
    parser.add_argument("user", help="UID:GID the command runs as, e.g. 10001:10001")
    parser.add_argument("--into", type=Path, default=DEFAULT_INTO, help="folder for the copy")
    args = parser.parse_args(own)
    uid_text, _, gid_text = args.user.partition(":")
    if not command or not uid_text.isdigit() or not gid_text.isdigit():
        parser.error("give UID:GID (numbers), then -- and the command")
    uid, gid = int(uid_text), int(gid_text)
    if os.geteuid() == 0:
        keys_file = os.environ.get("API_KEYS_FILE")
        if keys_file:
            try:
                os.environ["API_KEYS_FILE"] = str(copy_keys(Path(keys_file), args.into, uid, gid))
            except OSError as exc:
                print(f"python -m app.as_user: API_KEYS_FILE {keys_file}: {exc}", file=sys.stderr)
                return 2
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    os.execvp(command[0], command)
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
