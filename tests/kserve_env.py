"""The KServe Python SDK in a virtual environment of its own, made on first use and kept in
.cache/ (about 250 MB; a minute or two with PyPI at hand).

``kserve`` 0.21 imports its whole SDK (model server, gRPC, the Kubernetes client) from any of
its modules, and pins what the dev environment has newer (python-dateutil<3 against
matplotlib's 4.x, psutil<6), besides pulling grpcio, grpcio-tools, protobuf, kubernetes and
pandas: more than the project's environment should carry for two tests. So the tests that
speak to it (tests/test_v2_clients.py, tests/test_kserve_deploy.py) run their scripts with
this environment's interpreter. If it cannot be made, those tests fail; they do not skip.
"""

import fcntl
import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

from tests.helpers import ROOT

KSERVE = "kserve==0.21.0"  # the SDK the tests speak with, and whose models hold the schema
HOME = ROOT / ".cache" / "kserve-0.21.0"
_DONE = HOME / "complete"


def kserve_python() -> Path:
    """The interpreter of the KServe environment, made first if it is not there yet."""
    python = HOME / "bin" / "python"
    HOME.parent.mkdir(parents=True, exist_ok=True)
    with open(HOME.parent / "kserve.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one maker at a time; the others wait, then reuse
        if not _DONE.exists():
            shutil.rmtree(HOME, ignore_errors=True)  # a half-made one from an interrupted run
            venv.EnvBuilder(with_pip=True).create(HOME)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 KSERVE],
                check=True,
                timeout=1800,
            )  # fmt: skip
            _DONE.write_text(KSERVE)
    return python


def run_script(script: str, *args: str, timeout: float = 300) -> Any:
    """Run ``script`` (Python source) in the KServe environment with ``args``; what it printed
    last, as JSON. The repository root is on its path, for tests/ and benchmarks/ helpers
    that need nothing beyond the standard library and numpy."""
    done = subprocess.run(
        [str(kserve_python()), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={"PYTHONPATH": "", "PATH": "/usr/bin:/bin", "HOME": str(HOME)},
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # make it ahead of the tests: python -m tests.kserve_env
    print(kserve_python(), file=sys.stderr)
