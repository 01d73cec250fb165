"""Stand-ins for tests/test_cuda.py in the GPU check's rehearsal (tests/test_gpu_check.py): one
passes, one fails, one skips; the check must fail and name the last two. Not collected by the
suite (the file name does not start with test_)."""

import pytest


def test_passes() -> None:
    assert True


def test_fails() -> None:
    assert 1 + 1 == 3, "a CUDA test that fails"


@pytest.mark.skip(reason="a CUDA test that skipped")
def test_skips() -> None:
    raise AssertionError("never runs")
