"""The GPU check rehearsed on the CPU as it will run on the lent machine, and its verdicts.

The rehearsal builds that machine's environment here: a Python venv made from a venv (this
suite's), seeing only the packages the machine has (torch, torchvision with Pillow, numpy,
httpx, pytest, uvloop, prometheus-client, and OpenCV, which cannot travel: see
scripts/gpu_wheels.txt), none of fastapi and friends; the tree copied into an empty folder as
the device tool carries it (tracked and untracked-not-ignored files, no .git) with the bundle
scripts/gpu_bundle.sh made; no git on PATH; no PYTHONPATH, no MNIST_DATA_DIR. Then it runs
scripts/gpu_check.sh in its dry mode end to end, and once more on fake CUDA tests that fail and
skip, which must fail the check and be named.

The real bundle differs in one way: its wheels are for CPython 3.12 (the machine's), these for
this Python (3.11): the same packages at the same versions, from the same list.
"""

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks.gpu_check import MODES, run_section, verdicts
from benchmarks.gpu_sections import accuracy_mismatch, pythonpath
from tests.conftest import mnist_root
from tests.helpers import ROOT

# What the lent machine's python3 has (its own venv), by distribution name.
DEVICE_HAS = (
    "torch", "torchvision", "pillow", "numpy", "httpx", "httpcore", "anyio", "certifi", "idna",
    "h11", "sniffio", "pytest", "pluggy", "iniconfig", "packaging", "pygments", "uvloop",
    "prometheus-client", "opencv-python-headless", "filelock", "typing-extensions", "sympy",
    "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "setuptools", "triton",
)  # fmt: skip  (not pip: the check runs pip from the wheel it carries)
NOT_THERE = ("fastapi", "starlette", "uvicorn", "pydantic", "pydantic_settings", "multipart")


def _device_python(tmp: Path) -> Path:
    """A venv made from this venv, seeing only DEVICE_HAS (through a .pth file to a folder of
    links to those distributions' files), as the machine's python3 sees its own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "device")], check=True)
    python = tmp / "device" / "bin" / "python"
    farm = tmp / "device-packages"
    farm.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    wanted = {n.lower().replace("_", "-") for n in DEVICE_HAS}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name not in wanted and not name.startswith(("nvidia-", "cuda-")):
            continue
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops - {"..", "__pycache__"}:
            if (site / top).exists() and not (farm / top).exists():
                (farm / top).symlink_to(site / top)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "device-packages.pth").write_text(f"{farm}\n")
    return python


def _path_without_git(tmp: Path) -> str:
    """PATH as here, less git: the machine may have none."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not Path(folder).is_dir() or ".venv" in folder:
            continue
        for tool in Path(folder).iterdir():
            if not tool.name.startswith("git") and not (bin_dir / tool.name).exists():
                (bin_dir / tool.name).symlink_to(tool)
    return str(bin_dir)


def _travelling_tree(tmp: Path) -> Path:
    """What the device tool copies: tracked files and untracked ones git does not ignore."""
    tree = tmp / "tree"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    return tree


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The lent machine, rehearsed: the travelling tree with its bundle, the device's Python,
    the environment its commands run in."""
    tmp = tmp_path_factory.mktemp("machine")
    tree = _travelling_tree(tmp)
    bundled = subprocess.run(
        [str(ROOT / "scripts" / "gpu_bundle.sh")],
        env={
            **os.environ,
            "BUNDLE": str(tree / ".gpu-bundle"),
            "PYTHON": sys.executable,
            "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
            "MNIST_DATA_DIR": str(mnist_root()),
        },
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if bundled.returncode == 3:  # a download failed: no network here, and nothing cached yet
        pytest.skip(f"the bundle's downloads failed: {bundled.stderr[-500:]}")
    assert bundled.returncode == 0, bundled.stdout + bundled.stderr[-3000:]
    python = _device_python(tmp)
    env = {"PATH": _path_without_git(tmp), "HOME": str(tmp), "OUT": str(tmp / "out")}
    env |= {"PYTHON": str(python), "LANG": "C.UTF-8"}
    return {"tree": tree, "env": env, "python": python, "bundle_said": bundled.stdout}


def _check(machine: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--dry-run", *args],
        cwd=machine["tree"], env=machine["env"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_the_rehearsal_environment_is_the_machines(machine: dict[str, Any]) -> None:
    tree, env = machine["tree"], machine["env"]
    assert not (tree / ".git").exists() and shutil.which("git", path=env["PATH"]) is None
    code = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    seen = subprocess.run(
        [machine["python"], "-c", code, "torch", "numpy", "httpx", "cv2", *NOT_THERE],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert seen.strip() == "['torch', 'numpy', 'httpx', 'cv2']"
    assert "in all" in machine["bundle_said"]


@pytest.mark.slow
def test_the_check_runs_end_to_end_in_its_dry_mode(machine: dict[str, Any]) -> None:
    started = time.perf_counter()
    done = _check(machine)
    took = time.perf_counter() - started
    said = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, said
    assert "installing" in done.stderr and "pip --target" in done.stderr
    assert "everything passed" in done.stdout, said
    results = json.loads((Path(machine["env"]["OUT"]) / "gpu_check_dry.json").read_text())
    assert results["dry_run"] and results["device"] == "cpu" and results["mode"] == "quick"
    assert results["preflight"]["problems"] == []  # packages, wrk and MNIST all found
    assert results["failed"] == []
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert results["commit"] == head.stdout.strip()  # from the bundle: no git there
    sections = results["sections"]
    assert list(sections) == list(MODES["quick"])
    assert {s["status"] for s in sections.values()} == {"ok"}, sections
    tests = sections["cuda_tests"]
    assert tests["tests"] == tests["skipped"] > 0 and not tests["failed"]  # no CUDA here
    served = sections["service_http"]
    assert set(served["models"]) == {"mnist_cnn", "alexnet"}
    assert not any(m["mismatch"] for m in served["models"].values()), served
    assert served["trained"]["alexnet"]["steps"] > 0
    layouts = sections["serve_bench"]["models"]["lenet"]["layouts"]
    assert set(layouts) == {"shared"} and layouts["shared"]["images_s"] > 0
    assert sections["training"]["exit_code"] == 0
    summary = (Path(machine["env"]["OUT"]) / "gpu_check_dry.md").read_text()
    assert all(f"## {name} (ok" in summary for name in sections)
    print(f"the dry run took {took:.0f} s")


@pytest.mark.slow
def test_the_full_checks_own_sections_run_in_its_two_parts(machine: dict[str, Any]) -> None:
    """What the full check runs and quick mode does not: warm-up (part 1) and serve_bench
    with both layouts (part 2); the rest is the quick mode's code at other sizes."""
    out = Path(machine["env"]["OUT"])
    done = _check(machine, "--part", "1", "--sections", "warmup")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    warmup = json.loads((out / "gpu_check_dry_full1.json").read_text())["sections"]["warmup"]
    assert warmup["status"] == "ok" and warmup["models"]["lenet"]
    done = _check(machine, "--part", "2", "--sections", "serve_bench")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    bench = json.loads((out / "gpu_check_dry_full2.json").read_text())["sections"]["serve_bench"]
    assert set(bench["models"]["lenet"]["layouts"]) == {"shared", "worker"}


@pytest.mark.slow
def test_a_failing_or_skipped_cuda_test_fails_the_check(machine: dict[str, Any]) -> None:
    done = _check(
        machine,
        "--sections", "environment,cuda_tests",
        "--cuda-tests", "tests/gpu_check_fakes.py",
        "--skips-fail",  # as on CUDA, where nothing may skip
    )  # fmt: skip
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    failed = [line for line in done.stdout.splitlines() if line.startswith("gpu_check: FAILED:")]
    assert len(failed) == 2, done.stdout
    assert "test_fails failure" in failed[0] and "a CUDA test that fails" in failed[0]
    assert "test_skips skipped" in failed[1] and "a CUDA test that skipped" in failed[1]
    summary = (Path(machine["env"]["OUT"]) / "gpu_check_dry.md").read_text()
    assert "**FAILED**" in summary and "test_skips" in summary


def _ok(**figures: Any) -> dict[str, Any]:
    return {"status": "ok", "seconds": 1.0, **figures}


def _cuda(failed: list[dict[str, str]], skipped: list[dict[str, str]]) -> dict[str, Any]:
    n = 3 + len(failed) + len(skipped)
    code = 1 if failed else 0
    return _ok(tests=n, exit_code=code, failed=failed, skipped_tests=skipped)


def test_verdicts_name_every_failure() -> None:
    skip = {"test": "test_cuda_n", "outcome": "skipped", "message": "one GPU"}
    fail = {"test": "test_oom", "outcome": "failure", "message": "no shrink"}
    assert verdicts({"cuda_tests": _cuda([], [])}, skips_fail=True) == []
    assert verdicts({"cuda_tests": _cuda([], [skip])}, skips_fail=False) == []  # a dry run
    assert verdicts({"cuda_tests": _cuda([], [skip])}, skips_fail=True) == [
        "cuda_tests: test_cuda_n skipped: one GPU"
    ]
    assert verdicts({"cuda_tests": _cuda([fail], [])}, skips_fail=False) == [
        "cuda_tests: test_oom failure: no shrink"
    ]
    none_ran = _ok(tests=0, exit_code=5, failed=[], skipped_tests=[])
    assert verdicts({"cuda_tests": none_ran}, skips_fail=True) == ["cuda_tests: no test ran"]
    model = {"accuracy": 0.99, "evaluation_cli_accuracy": 0.98, "mismatch": True}
    assert verdicts({"service_http": _ok(models={"alexnet": model})}, True) == [
        "service_http: alexnet accuracy through HTTP 0.9900 against the evaluation CLI's 0.9800"
    ]
    layout = {"errors": 0}
    bench = {"pass": False, "target_fraction": 0.92, "layouts": {"shared": layout}}
    assert verdicts({"serve_bench": _ok(models={"vgg16": bench})}, True) == [
        "serve_bench: vgg16 FAIL: the shared layout below 92% of the bare model"
    ]
    bench = {"pass": None, "target_fraction": None, "layouts": {"shared": {"errors": 4}}}
    assert verdicts({"serve_bench": _ok(models={"lenet": bench})}, True) == [
        "serve_bench: lenet shared: 4 errors"
    ]
    assert verdicts({"warmup": _ok(spikes=["vgg16 at 64: 900 ms, then 3"])}, True)
    assert verdicts({"training": _ok(exit_code=1)}, True) == [
        "training: the training CLI exited 1"
    ]
    timed_out = {"status": "timed out", "seconds": 300.0}
    assert verdicts({"serve_bench": timed_out}, True) == ["serve_bench: timed out"]


def test_an_accuracy_mismatch_is_more_than_rounding_can_explain() -> None:
    assert not accuracy_mismatch(10_000, 9_950, 9_955)  # 5 of 10000: a near tie or five
    assert accuracy_mismatch(10_000, 9_950, 9_956)
    assert not accuracy_mismatch(200, 150, 151) and accuracy_mismatch(200, 150, 152)


def test_children_get_pythonpath_prepended_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/carried/site")
    assert pythonpath(ROOT) == f"{ROOT}{os.pathsep}/carried/site"
    monkeypatch.delenv("PYTHONPATH")
    assert pythonpath(ROOT) == str(ROOT)


@pytest.mark.slow
def test_the_bundle_refuses_to_be_over_the_limit(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu_bundle.sh")],
        env={**os.environ, "BUNDLE": str(tmp_path / "b"), "PYTHON": sys.executable,
             "PYTHON_VERSION": f"{sys.version_info.major}.{sys.version_info.minor}",
             "MNIST_DATA_DIR": str(mnist_root()), "LIMIT_MIB": "30"},
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode == 3:
        pytest.skip(f"the bundle's downloads failed: {done.stderr[-500:]}")
    assert done.returncode == 1 and "over the limit" in done.stderr, done.stderr[-2000:]
    assert "of 30" in done.stdout  # it said its size first


def test_a_section_cut_short_keeps_what_it_had_written(tmp_path: Path) -> None:
    partial = {
        "device": "cuda:0",
        "dtype": "torch.bfloat16",
        "gpu": [
            {
                "model": "alexnet",
                "bare_best_images_s": 20000.0,
                "bare_sweep": {"best_batch": 512},
                "target_fraction": 0.8,
                "pass": True,
                "layouts": {"shared": {k: 1.0 for k in (
                    "images_s", "percent_of_bare", "p50_ms", "p99_ms", "gpu_mib", "contexts",
                    "errors")}},
            }
        ],
    }  # fmt: skip
    (tmp_path / "serve_bench.partial.json").write_text(json.dumps(partial))
    args = argparse.Namespace(
        device="cpu", data_dir=mnist_root(), dry_run=True, mode="quick",
        cuda_tests="tests/test_cuda.py",
    )  # fmt: skip
    section = run_section("serve_bench", args, tmp_path, timeout=0.5)  # killed while starting
    assert section["status"] == "timed out"
    assert section["partial"]["models"]["alexnet"]["pass"] is True


def test_every_quick_section_fits_five_minutes_and_each_full_part_one_command() -> None:
    assert sum(MODES["quick"].values()) <= 300
    assert all(sum(MODES[part].values()) <= 540 for part in ("full1", "full2"))
