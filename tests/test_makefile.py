"""`make serve` as a new user meets it: what the install says, the CPU-only switch, Ctrl-C."""

import os
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.harness import free_port, start_server
from tests.helpers import ROOT, WEIGHTS


def _dry_run(tmp_path: Path, *args: str) -> str:
    """What `make serve` would run for a first install into an empty virtualenv folder."""
    out = subprocess.run(
        ["make", "-n", "serve", f"VENV={tmp_path / 'venv'}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_the_install_says_its_size_up_front_and_shows_progress(tmp_path: Path) -> None:
    steps = _dry_run(tmp_path)
    install = steps.index("pip install")
    assert "about 6 GB" in steps[:install] and "make serve TORCH=cpu" in steps[:install]
    assert "--quiet" not in steps and "--progress-bar on" in steps


def test_torch_cpu_takes_pytorch_s_cpu_only_wheels_first(tmp_path: Path) -> None:
    steps = _dry_run(tmp_path, "TORCH=cpu").splitlines()
    pip = [s for s in steps if "pip install" in s]
    assert "--index-url https://download.pytorch.org/whl/cpu" in pip[0] and "torch" in pip[0]
    assert pip[1].endswith("-e .")  # then the service, its torch already satisfied
    assert any("about 1.5 GB" in s for s in steps)


def test_ctrl_c_stops_make_serve_without_a_make_error(tmp_path: Path) -> None:
    port = free_port()
    command = ["make", "serve", "HOST=127.0.0.1", f"PORT={port}"]
    env = {"WEIGHTS_DIR": str(WEIGHTS), "DEVICE": "cpu", "MODELS": "lenet", "WORKERS": "2"}
    log = tmp_path / "make.log"
    # start_server gives it its own process group, as a terminal's foreground job has
    proc = start_server("make serve", command, env, "/health/ready", port=port, log=log).proc
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: to every process of the group
    proc.wait(timeout=60)
    output = log.read_text()
    assert proc.returncode in (0, -signal.SIGINT, 128 + signal.SIGINT), output[-2000:]
    assert "make: ***" not in output and "Traceback" not in output, output[-2000:]
    assert "Application shutdown complete" in output
    for _ in range(50):  # the resource tracker notices its parent has gone a moment later
        left = subprocess.run(
            ["ps", "-o", "pid=,stat=,args=", "-g", str(proc.pid)], capture_output=True, text=True
        )
        if not [line for line in left.stdout.splitlines() if " Z" not in line]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"processes left behind: {left.stdout}")
