"""scripts/gpu_check.sh end to end in its dry mode (the CPU, tiny sizes): every section runs and
its figures reach the results file, so the script cannot rot before a GPU runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mnist_root
from tests.helpers import ROOT

SECTIONS = ["environment", "cuda_tests", "service_http", "warmup", "serve_bench", "training"]


@pytest.mark.slow
def test_the_gpu_check_runs_every_section_in_its_dry_mode(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    env |= {"MNIST_DATA_DIR": str(mnist_root()), "VENV": str(tmp_path / "venv")}
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check_dry.json").read_text())
    assert results["dry_run"] and results["device"] == "cpu"
    assert results["preflight"]["problems"] == []
    sections = results["sections"]
    assert list(sections) == SECTIONS
    assert {name: s["status"] for name, s in sections.items()} == dict.fromkeys(SECTIONS, "ok")
    assert sections["cuda_tests"]["tests"] == sections["cuda_tests"]["skipped"] > 0  # no CUDA
    for model in ("lenet", "mnist_cnn"):
        served = sections["service_http"]["models"][model]
        assert served["equal_to_evaluation_cli"], served
    assert sections["warmup"]["models"]["lenet"]
    layouts = sections["serve_bench"]["models"]["lenet"]["layouts"]
    assert set(layouts) == {"shared", "worker"} and all(v["images_s"] > 0 for v in layouts.values())
    assert sections["training"]["exit_code"] == 0 and len(sections["training"]["epochs"]) == 1
    summary = (tmp_path / "gpu_check_dry.md").read_text()
    assert all(f"## {name} (ok" in summary for name in SECTIONS)
