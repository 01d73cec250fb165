"""Generate a Python client from the live service's /openapi.json with openapi-python-client."""

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx

CONFIG = Path(__file__).parent / "clients" / "openapi-python-client.yml"


def generate_client(url: str, folder: Path, package: str) -> tuple[ModuleType, str]:
    """Generate ``package`` into ``folder`` from ``url``'s schema; the module and the output."""
    spec = folder / "openapi.json"
    spec.write_bytes(httpx.get(f"{url}/openapi.json").content)
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        [
            str(bin_dir / "openapi-python-client"),
            *("generate", "--path", str(spec), "--meta", "none"),
            *("--output-path", str(folder / package), "--config", str(CONFIG)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},  # its ruff
    )
    assert out.returncode == 0, out.stdout + out.stderr
    sys.path.insert(0, str(folder))
    return importlib.import_module(package), out.stdout + out.stderr
