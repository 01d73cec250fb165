"""The committed checkpoints: accuracy targets, and metadata that the evaluation CLI reproduces."""

import json
from pathlib import Path

import pytest

from models import evaluate as evaluate_cli
from models.checkpoint import load_checkpoint
from tests.helpers import WEIGHTS

TARGETS = {"lenet": 0.993, "mnist_cnn": 0.996}  # the floors with the robustness recipe


@pytest.mark.parametrize("name,target", TARGETS.items())
def test_committed_checkpoint_meets_its_target_as_measured(
    name: str, target: float, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = load_checkpoint(WEIGHTS / f"{name}.safetensors", expect_architecture=name)
    assert ckpt.meta.test_accuracy >= target
    assert (
        evaluate_cli.main(
            [
                "--model",
                name,
                "--data-dir",
                str(data_dir),
                "--no-download",
                "--device",
                "cpu",
                "--weights",
                str(WEIGHTS / f"{name}.safetensors"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 10_000
    assert result["accuracy"] == ckpt.meta.test_accuracy


@pytest.mark.parametrize("name", TARGETS)
def test_weights_readme_gives_the_exact_command(name: str) -> None:
    ckpt = load_checkpoint(WEIGHTS / f"{name}.safetensors")
    assert ckpt.meta.train_command in (WEIGHTS / "README.md").read_text()
