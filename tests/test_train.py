"""Training and evaluation CLIs on a few hundred images: outputs, metadata, DDP, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from models import evaluate as evaluate_cli
from models import train as train_cli
from models.checkpoint import load_checkpoint
from models.runtime import Runtime, resolve_device
from tests.server import free_port

PNG = b"\x89PNG\r\n\x1a\n"


def _small_run(data_dir: Path, out: Path, *extra: str) -> list[str]:
    """Training arguments for lenet on 512 images, tested on 256, on the CPU."""
    return ["--model", "lenet", "--data-dir", str(data_dir), "--no-download",
            "--limit-train", "512", "--limit-test", "256", "--device", "cpu",
            "--out", str(out), *extra]  # fmt: skip


def _train(data_dir: Path, out: Path, *extra: str) -> int:
    return train_cli.main(_small_run(data_dir, out, *extra))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("train") / "lenet.safetensors"
    assert _train(data_dir, out, "--epochs", "2", "--batch-size", "32", "--lr", "1e-2") == 0
    return out


def test_training_writes_checkpoint_log_and_plot(trained: Path) -> None:
    ckpt = load_checkpoint(trained, expect_architecture="lenet")
    # 2 short epochs on 512 heavily augmented digits beat chance (0.1) by far.
    assert ckpt.meta.test_accuracy > 0.35
    assert "--limit-train 512" in ckpt.meta.train_command
    assert ckpt.meta.train_command.startswith("python -m models.train --model lenet")
    assert len(ckpt.meta.dataset_fingerprint) == 64
    history = json.loads(trained.with_suffix(".log.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "images_per_s"} <= set(
        history[0]
    )
    assert history[0]["images"] == 512
    assert trained.with_suffix(".accuracy.png").read_bytes().startswith(PNG)


def test_evaluation_cli_reproduces_the_recorded_accuracy(
    trained: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plot = tmp_path / "confusion.png"
    code = evaluate_cli.main(
        [
            "--model",
            "lenet",
            "--weights",
            str(trained),
            "--data-dir",
            str(data_dir),
            "--no-download",
            "--limit",
            "256",
            "--device",
            "cpu",
            "--plot",
            str(plot),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    ckpt = load_checkpoint(trained)
    assert result["accuracy"] == ckpt.meta.test_accuracy
    assert result["loss"] == pytest.approx(ckpt.meta.test_loss, rel=1e-4)
    assert result["n"] == 256
    assert len(result["per_class_accuracy"]) == 10
    assert sum(map(sum, result["confusion_matrix"])) == 256
    assert result["images_per_s"] > 0
    assert plot.read_bytes().startswith(PNG)


def test_evaluation_cli_refuses_a_mismatched_checkpoint(trained: Path, data_dir: Path) -> None:
    assert (
        evaluate_cli.main(
            [
                "--model",
                "mnist_cnn",
                "--weights",
                str(trained),
                "--data-dir",
                str(data_dir),
                "--no-download",
            ]
        )
        == 2
    )


def test_dry_run_writes_nothing(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "lenet.safetensors"
    assert _train(data_dir, out, "--dry-run") == 0
    assert not list(tmp_path.iterdir())


def test_224_nets_train_through_the_shared_transform(tmp_path: Path, data_dir: Path) -> None:
    code = train_cli.main(
        [
            "--model",
            "alexnet",
            "--data-dir",
            str(data_dir),
            "--no-download",
            "--limit-train",
            "8",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--dry-run",
        ]
    )
    assert code == 0


def test_offline_without_data_says_where_files_belong(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert _train(tmp_path, tmp_path / "x.safetensors") == 2
    assert str(tmp_path / "MNIST" / "raw") in caplog.text


def test_compile_wraps_the_ddp_model_not_the_other_way_round(data_dir: Path) -> None:
    # torch.compile over DistributedDataParallel splits the graph at its gradient buckets, so
    # each bucket's all-reduce overlaps the rest of the backward pass.
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        config = train_cli.configure(["--model", "lenet", "--data-dir", str(data_dir), "--compile"])
        rt = Runtime(torch.device("cpu"), rank=0, world=2, amp=None, channels_last=False)
        trainee = train_cli.set_up(config, rt, train_images=512)
        assert isinstance(trainee.net, torch._dynamo.eval_frame.OptimizedModule)
        ddp = trainee.net._orig_mod
        assert isinstance(ddp, DistributedDataParallel) and ddp.module is trainee.model
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_ddp_on_two_cpu_processes(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
        "--master-addr=127.0.0.1", f"--master-port={free_port()}", "-m", "models.train",
        *_small_run(data_dir, out, "--epochs", "1", "--batch-size", "64"),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(out)
    assert ckpt.meta.train_command.startswith("torchrun --nproc-per-node=2 -m models.train")
    history = json.loads(out.with_suffix(".log.json").read_text())["history"]
    assert history[0]["images"] == 512  # both ranks' shards, counted once each
    assert "cpu x2" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_absent_cuda_is_an_error() -> None:
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_outlier_classes_train_from_a_digit_checkpoint(
    trained: Path, data_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lenet-2.safetensors"
    args = ("--epochs", "1", "--batch-size", "64", "--outliers", "200", "--hold-out", "100",
            "--init-from", str(trained))  # fmt: skip
    assert _train(data_dir, out, *args) == 0
    first, second = load_checkpoint(trained), load_checkpoint(out)
    assert second.meta.labels[10:] == ["not-a-digit", "several-digits"]
    assert second.meta.arch_kwargs == {"num_classes": 12}
    assert "--outliers 200" in second.meta.train_command
    head = [k for k, v in first.model.state_dict().items() if v.shape[0] == 10][-1]
    assert second.model.state_dict()[head].shape[0] == 12


def test_the_head_starts_from_the_digit_checkpoint(trained: Path, tmp_path: Path) -> None:
    from models.registry import get_model

    model = get_model("lenet", num_classes=12)
    train_cli._start_from(model, trained)
    first, weights = load_checkpoint(trained).model.state_dict(), model.state_dict()
    for name, tensor in first.items():
        if weights[name].shape == tensor.shape:
            assert torch.equal(weights[name], tensor), name
        else:  # the head: the digits' rows copied, the two new ones at zero
            assert torch.equal(weights[name][:10], tensor) and not weights[name][10:].any()


def test_outliers_are_framed_as_digits_and_never_look_like_one() -> None:
    import numpy as np

    from models.negatives import LETTERS, LOOK_LIKE_DIGITS, outliers

    digits = np.zeros((4, 28, 28), np.uint8)
    digits[:, 6:22, 12:16] = 255
    images, classes = outliers(50, digits, seed=3)
    assert images.shape == (50, 28, 28) and set(classes.tolist()) == {10, 11}
    again, _ = outliers(50, digits, seed=3)
    assert np.array_equal(images, again)  # deterministic for a seed
    assert (images.reshape(50, -1).max(1) == 255).all()  # every one drawn, at full ink
    assert not set(LETTERS) & LOOK_LIKE_DIGITS
