"""Finding wrk without a package index: WRK=path, then PATH, else one plain message before any
measurement (the GPU machines reach no package index: nothing is installed)."""

import argparse
import os
from pathlib import Path

import pytest

import benchmarks.serve_gpu
from benchmarks.wrk import find_wrk


def _script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def no_wrk_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no wrk, and an apt-get and sudo that record being run."""
    bin_dir = tmp_path / "bin"
    for tool in ("apt-get", "sudo"):
        _script(bin_dir, tool, f'echo {tool} >> "{tmp_path}/ran"')
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("WRK", raising=False)
    return tmp_path


def test_wrk_from_the_given_path_comes_first(
    no_wrk_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _script(no_wrk_on_path / "bin", "wrk", 'echo "wrk debian/4.1.0 [epoll]"; exit 1')
    given = _script(no_wrk_on_path / "carried", "wrk", 'echo "wrk 4.2.0 [epoll]"; exit 1')
    monkeypatch.setenv("WRK", str(given))
    assert find_wrk() == str(given)
    monkeypatch.delenv("WRK")
    assert find_wrk() == str(no_wrk_on_path / "bin" / "wrk")


def test_without_wrk_the_message_says_what_to_provide_and_nothing_is_installed(
    no_wrk_on_path: Path,
) -> None:
    with pytest.raises(RuntimeError) as missing:
        find_wrk()
    message = str(missing.value)
    assert "is not on PATH and WRK is not set" in message
    assert "WRK=/path/to/wrk" in message and "LD_LIBRARY_PATH" in message
    assert not (no_wrk_on_path / "ran").exists()  # no apt-get, no sudo


def test_a_carried_wrk_without_its_libraries_is_named(
    no_wrk_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = _script(
        no_wrk_on_path / "carried",
        "wrk",
        "echo 'wrk: error while loading shared libraries: libluajit-5.1.so.2' >&2; exit 127",
    )
    monkeypatch.setenv("WRK", str(broken))
    with pytest.raises(RuntimeError, match=r"libluajit-5\.1\.so\.2"):
        find_wrk()
    not_executable = no_wrk_on_path / "wrk.txt"
    not_executable.write_text("")
    monkeypatch.setenv("WRK", str(not_executable))
    with pytest.raises(RuntimeError, match="is not an executable file"):
        find_wrk()


def test_the_gpu_benchmark_says_what_is_missing_before_it_measures(
    no_wrk_on_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def measured(*args: object) -> None:
        raise AssertionError("measured before saying what is missing")

    monkeypatch.setattr(benchmarks.serve_gpu, "bare_throughput", measured)
    monkeypatch.setattr(benchmarks.serve_gpu, "start_server", measured)
    args = argparse.Namespace(gpu_models="lenet", gpu_device="cuda", dtype="auto")
    with pytest.raises(RuntimeError, match="WRK=/path/to/wrk"):
        benchmarks.serve_gpu.gpu_main(args)
    monkeypatch.setattr(benchmarks.serve_gpu, "missing", lambda: ["fastapi", "uvicorn"])
    with pytest.raises(RuntimeError, match="not importable: fastapi, uvicorn"):
        benchmarks.serve_gpu.gpu_main(args)
    assert os.environ["PATH"] == str(no_wrk_on_path / "bin")
