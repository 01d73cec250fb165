"""Where checkpoints live: the weights folder, and each model's versions in it (imports no torch).

``<dir>/<model>.safetensors`` is version 1 (the layout from before versions, and where training
writes by default); ``<dir>/<model>/<N>.safetensors`` is version N, N a positive integer written
without leading zeros. When both ``<model>.safetensors`` and ``<model>/1.safetensors`` exist,
the numbered file is version 1 (the explicit form wins) and the scan says so in its notes; any
other file name is not a version and is left alone (``3.safetensors.tmp``, ``03.safetensors``).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

WEIGHTS_DIR = Path("weights")
SUFFIX = ".safetensors"
# Without leading zeros (one name per number), at most 9 digits (it travels as a uint32).
VERSION_NAME = re.compile(r"[1-9][0-9]{0,8}")


def checkpoint_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Version 1's file, where training writes by default: ``<weights_dir>/<name>.safetensors``."""
    return Path(weights_dir) / f"{name}{SUFFIX}"


def version_path(name: str, version: int, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """Version N's file in the numbered layout: ``<weights_dir>/<name>/<N>.safetensors``."""
    return Path(weights_dir) / name / f"{version}{SUFFIX}"


@dataclass(frozen=True)
class VersionFile:
    """One version's checkpoint file, and what says whether it changed since it was read."""

    path: Path
    stamp: tuple[int, int, int]  # size, modification time (ns), inode: a stat, cheap to poll

    @classmethod
    def of(cls, path: Path) -> "VersionFile":
        """The file at ``path`` as it is now (OSError if it is not there)."""
        st = os.stat(path)  # follows links: a volume that swaps a link's target is seen
        return cls(path, (st.st_size, st.st_mtime_ns, st.st_ino))


@dataclass
class Scan:
    """Every version file of the listed models, and notes on files that were passed over."""

    versions: dict[tuple[str, int], VersionFile] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _numbered(folder: Path) -> dict[int, Path]:
    """The version files in one model's folder (none when it has no folder)."""
    if not folder.is_dir():
        return {}
    found = {}
    for entry in os.scandir(folder):
        stem = entry.name.removesuffix(SUFFIX)
        if entry.name.endswith(SUFFIX) and VERSION_NAME.fullmatch(stem) and entry.is_file():
            found[int(stem)] = Path(entry.path)
    return found


def scan(weights_dir: Path, names: list[str]) -> Scan:
    """The versions of ``names`` in ``weights_dir``, read with stats only (no file is opened).

    Raises OSError when the folder itself cannot be listed: a volume that is not mounted must
    not read as "every version removed".
    """
    weights_dir = Path(weights_dir)
    os.listdir(weights_dir)  # missing, not a folder, unreadable: raises, before anything else
    out = Scan()
    for name in names:
        files = _numbered(weights_dir / name)
        flat = checkpoint_path(name, weights_dir)
        if flat.is_file():
            if 1 in files:
                out.notes.append(
                    f"{name}: both {flat.name} and {name}/1{SUFFIX} exist; "
                    f"{name}/1{SUFFIX} is version 1"
                )
            else:
                files[1] = flat
        for version, path in sorted(files.items()):
            try:
                out.versions[name, version] = VersionFile.of(path)
            except OSError:  # removed between the listing and the stat: not there
                continue
    return out


def served_path(name: str, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """The file of the version served by default when nothing is pinned: the highest found;
    version 1's path when there is none (or the folder cannot be listed), whose loading then
    says where it looked."""
    try:
        found = {v: f.path for (_, v), f in scan(weights_dir, [name]).versions.items()}
    except OSError:
        found = {}
    return found[max(found)] if found else checkpoint_path(name, weights_dir)
