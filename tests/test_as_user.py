"""app/as_user.py: docker-compose.keys.yml's entry point hands a root-only secret to the service.

Run as root (as the container starts): the copy, the drop to the service's uid, the exec.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges: needs root")

# What the command sees once started: its uid, gid, groups, the keys file and its contents.
REPORT = (
    'id -u; id -g; id -G; echo "$API_KEYS_FILE"; stat -c "%u:%g %a" "$API_KEYS_FILE"; '
    'cat "$API_KEYS_FILE"'
)


@pytest.fixture
def into() -> Iterator[Path]:
    """A folder the unprivileged command can reach (pytest's tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(dir="/dev/shm"))
    folder.chmod(0o711)
    yield folder
    shutil.rmtree(folder)


def as_user(into: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.as_user",
            f"{NOBODY}:{NOBODY}",
            "--into",
            str(into),
            "--",
            *command,
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        extra_groups=[0, 4],  # groups a container's root may hold: the command must shed them
    )


def test_a_root_only_secret_reaches_the_service_user(tmp_path: Path, into: Path) -> None:
    secret = tmp_path / "api_keys"  # as a careful operator makes it: root's, mode 0600
    secret.write_text("the-key\n")
    secret.chmod(0o600)
    done = as_user(into, {"API_KEYS_FILE": str(secret)}, "sh", "-c", REPORT)
    assert done.returncode == 0, done.stderr
    uid, gid, groups, path, owner, key = done.stdout.splitlines()
    assert (uid, gid, groups) == (str(NOBODY), str(NOBODY), str(NOBODY))  # no root group left
    assert path == str(into / "api_keys") and owner == f"{NOBODY}:{NOBODY} 400"
    assert key == "the-key"


def test_without_keys_it_only_drops_to_the_user(into: Path) -> None:
    done = as_user(into, {}, "sh", "-c", 'id -u; echo "${API_KEYS_FILE:-none}"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(NOBODY), "none"]
    assert not list(into.iterdir())


def test_a_missing_secret_stops_with_one_line(tmp_path: Path, into: Path) -> None:
    done = as_user(into, {"API_KEYS_FILE": str(tmp_path / "none")}, "true")
    assert done.returncode == 2
    assert done.stderr.startswith(f"python -m app.as_user: API_KEYS_FILE {tmp_path / 'none'}: ")
    assert len(done.stderr.splitlines()) == 1
