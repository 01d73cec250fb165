"""The serving benchmark's own logic: which server starts measure which scenarios, the roles its
memory report gives each process of a server's tree, and what every results file records."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import serve_bench, serve_gpu
from benchmarks.process_memory import report, role, sample
from benchmarks.serve_servers import plan_starts

PY = "/venv/bin/python"
SPAWN = [PY, "-B", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=7)"]
SPAWN += ["--multiprocessing-fork", ""]  # /proc's cmdline ends with a NUL
TRACKER = [PY, "-B", "-c", "from multiprocessing.resource_tracker import main;main(6)", ""]
OURS = [PY, "-m", "app", "--host", "127.0.0.1", "--port", "8000", ""]
LITSERVE = [PY, "-m", "benchmarks.litserve_server", "--port", "8000", "--workers", "2", ""]
UVICORN = [PY, "-m", "uvicorn", "--factory", "benchmarks.naive_server:create_app", "--port", "1"]


def test_ours_processes_are_named_by_role() -> None:
    assert role(OURS, None, http=True, unix_listener=False) == "launcher"
    assert role(TRACKER, "launcher", http=False, unix_listener=False) == "resource tracker"
    assert role(SPAWN, "launcher", http=True, unix_listener=False) == "frontend worker"
    # the shared layout's model owner listens on a Unix socket, yet is spawned, not a Manager
    assert role(SPAWN, "launcher", http=False, unix_listener=True) == "model owner"
    assert role(SPAWN, "frontend worker", http=False, unix_listener=False) == "zoo-decoder"


def test_litserve_processes_are_named_by_role() -> None:
    assert role(LITSERVE, None, http=True, unix_listener=True) == "LitServe main"
    # forked after the port was bound, the Manager holds it too: its Unix listener tells it apart
    assert role(LITSERVE, "LitServe main", http=True, unix_listener=True) == (
        "multiprocessing manager"
    )
    assert role(LITSERVE, "LitServe main", http=True, unix_listener=False) == "API server"
    assert role(SPAWN, "LitServe main", http=False, unix_listener=False) == "inference worker"


def test_uvicorn_roots_supervise_only_with_several_workers() -> None:
    assert role([*UVICORN, "--workers", "1", ""], None, True, False) == "uvicorn server"
    assert role([*UVICORN, ""], None, True, False) == "uvicorn server"
    assert role([*UVICORN, "--workers", "2", ""], None, True, False) == "uvicorn supervisor"
    assert role(SPAWN, "uvicorn supervisor", True, False) == "uvicorn worker"
    assert role(SPAWN, "uvicorn supervisor", False, False) == "spawned child"


def test_litserve_runs_one_connection_unbatched_in_a_start_of_its_own() -> None:
    starts = plan_starts(["ours", "litserve", "naive-1"], ["c1", "c32", "c8x64v2"])
    got = [(s.server, s.label, [sc.name for sc in s.scenarios], s.extra) for s in starts]
    assert got == [
        ("ours", "ours", ["c1", "c32", "c8x64v2"], ()),
        ("litserve", "litserve", ["c32"], ()),
        ("litserve", "litserve-unbatched", ["c1"], ("--max-batch-size", "1")),
        ("naive-1", "naive-1", ["c1", "c32"], ()),  # v2 is ours only
    ]
    only_c1 = plan_starts(["litserve"], ["c1"])
    assert [s.label for s in only_c1] == ["litserve-unbatched"]
    assert plan_starts(["naive-N"], ["c8x64v2"]) == []


def test_a_real_tree_is_sampled_parents_first_with_totals() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        processes = sample(os.getpid(), port=1)
        by_pid = {p.pid: p for p in processes}
        assert processes[0].pid == os.getpid() and processes[0].role == "main"
        assert by_pid[child.pid].role == "child" and by_pid[child.pid].rss_mb > 0
        totals = report(processes)
        assert totals["total_rss_mb"] == sum(p.rss_mb for p in processes)
        assert totals["total_pss_mb"] <= totals["total_rss_mb"]
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("mode", [[], ["--gpu"]])
def test_every_results_file_names_its_commit_and_command(
    mode: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serve_bench, "cpu_main", lambda args: {"figures": "cpu"})
    monkeypatch.setattr(serve_gpu, "gpu_main", lambda args, on_result: {"figures": "gpu"})
    out = tmp_path / "result file.json"
    serve_bench.main([*mode, "--servers", "ours", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["figures"] == ("gpu" if mode else "cpu")
    assert len(result["commit"]) == 40 and isinstance(result["dirty"], bool)
    given = shlex.join([*mode, "--servers", "ours", "--json", str(out)])
    assert result["command"] == f"python -m benchmarks.serve_bench {given}"


def test_the_gpu_json_keeps_the_models_measured_before_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def alexnet_then_fail(args: object, on_result: object) -> dict[str, object]:
        on_result({"gpu": [{"model": "alexnet"}], "device": "cuda:0"})  # type: ignore[operator]
        raise RuntimeError("vgg16's service did not start")

    monkeypatch.setattr(serve_gpu, "gpu_main", alexnet_then_fail)
    out = tmp_path / "serve_gpu.json"
    with pytest.raises(RuntimeError):
        serve_bench.main(["--gpu", "--json", str(out)])
    assert json.loads(out.read_text())["gpu"] == [{"model": "alexnet"}]  # written at once


def test_provenance_names_the_commit_and_the_command_as_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What robustness, soak, stage_costs and train_speed write beside their figures."""
    from benchmarks.harness import provenance

    monkeypatch.setattr("sys.argv", ["robustness.py", "--only", "photos", "--json", "a b.json"])
    made = provenance("benchmarks.robustness")
    assert len(str(made["commit"])) == 40 and isinstance(made["dirty"], bool)
    assert made["command"] == "python -m benchmarks.robustness --only photos --json 'a b.json'"
