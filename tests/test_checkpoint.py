"""Checkpoints: round trip, metadata, and refusal of anything that does not match."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from models.checkpoint import (
    DIGESTS,
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    save_checkpoint,
    seal,
    tensors_digest,
    upgrade,
)
from models.framing import DIGIT_LABELS
from models.registry import InputSpec, get_input_spec, get_model


def _meta(arch: str = "lenet", **over: object) -> CheckpointMeta:
    fields: dict[str, object] = dict(
        architecture=arch,
        arch_kwargs={},
        input_spec=get_input_spec(arch),
        mean=0.1307,
        std=0.3081,
        labels=DIGIT_LABELS,
        test_accuracy=0.99,
        test_loss=0.03,
        train_command="python -m models.train --model " + arch,
        seed=1,
        dataset_fingerprint="ab",
    )
    fields.update(over)
    return CheckpointMeta(**fields)  # type: ignore[arg-type]


def _raw(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())  # noqa: SIM118


def _resealed(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write edited metadata with fresh digests: what a deliberate, consistent edit looks like."""
    fields = {k: v for k, v in meta.items() if k != DIGESTS}
    save_file(tensors, str(path), metadata={**fields, DIGESTS: seal(fields, tensors)})


def _format_1(path: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, str]]:
    """A lenet checkpoint written as format 1 had it; its tensors and format-1 metadata."""
    path = save_checkpoint(get_model("lenet"), _meta(), path)
    tensors, meta = _raw(path)
    old = {k: v for k, v in meta.items() if k != DIGESTS}
    old.update(format_version="1", tensors_sha256=tensors_digest(tensors))
    save_file(tensors, str(path), metadata=old)
    return path, tensors, old


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    model = get_model("mnist_cnn")
    path = save_checkpoint(model, _meta("mnist_cnn"), tmp_path / "m.safetensors")
    ckpt = load_checkpoint(path, expect_architecture="mnist_cnn")
    for (k, a), (_, b) in zip(
        model.state_dict().items(), ckpt.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    assert ckpt.meta.input_spec == InputSpec(1, 28, 28)
    assert ckpt.meta.labels == DIGIT_LABELS
    assert ckpt.meta.torch_version == torch.__version__
    assert len(ckpt.file_sha256) == 64
    assert not ckpt.model.training


def test_metadata_is_strings_with_every_field(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    _, meta = _raw(path)
    for key in [
        "architecture",
        "arch_kwargs",
        "input_spec",
        "mean",
        "std",
        "labels",
        "test_accuracy",
        "test_loss",
        "train_command",
        "seed",
        "dataset_fingerprint",
        "torch_version",
        "created_at",
        "digests",
        "format_version",
    ]:
        assert isinstance(meta[key], str), key
    assert json.loads(meta["input_spec"]) == {"channels": 1, "height": 28, "width": 28}


def test_no_pickle_in_the_file(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    assert b"\x80\x04" not in path.read_bytes()[:64]  # a pickle stream would start so
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    json.loads(path.read_bytes()[8 : 8 + header_len])  # the header is plain JSON


def test_edited_weights_are_detected(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="modified after it was written: its tensors do not"):
        load_checkpoint(path)


EDITS = {  # metadata field -> an edit someone might make (or a disk might)
    "architecture": "mnist_cnn",
    "arch_kwargs": '{"num_classes": 10}',
    "input_spec": '{"channels": 1, "height": 28, "width": 29}',
    "mean": "0.2",
    "std": "0.3",
    "labels": '["0", "1", "2", "3", "4", "5", "6", "7", "9", "8"]',
    "test_accuracy": "0.9999",
    "test_loss": "0.0",
    "train_command": "python -m models.train --model lenet --epochs 1000",
    "seed": "2",
    "dataset_fingerprint": "cd",
    "torch_version": "9.9.9",
    "created_at": "2020-01-01T00:00:00+00:00",
    "temperature": "0.5",  # calibration: edited, every confidence changes
    "rejection": '{"threshold": 0.01}',  # the operating point: edited, digits are refused
}


def test_a_checkpoint_from_before_calibration_loads_with_none() -> None:
    raw = _meta().to_strings()
    for key in ("temperature", "rejection"):
        raw.pop(key)
    meta = CheckpointMeta.from_strings(raw)
    assert meta.temperature == 1.0 and meta.rejection == {} and meta.refuse_at is None
    raw["temperature"] = "0"
    with pytest.raises(CheckpointError, match=r"temperature 0\.0 must be positive"):
        CheckpointMeta.from_strings(raw)


def test_every_metadata_field_is_covered_by_a_digest() -> None:
    assert set(EDITS) | {"format_version"} == set(_meta().to_strings())


@pytest.mark.parametrize("key", sorted(EDITS))
def test_edited_metadata_is_refused_naming_the_field(tmp_path: Path, key: str) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    tensors, meta = _raw(path)
    assert meta[key] != EDITS[key]
    meta[key] = EDITS[key]
    save_file(tensors, str(path), metadata=meta)  # the digests are left as they were
    with pytest.raises(
        CheckpointError, match=f"modified after it was written: metadata field {key} "
    ):
        load_checkpoint(path)


def test_several_edits_are_all_named(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    tensors, meta = _raw(path)
    meta.update(mean="0.5", labels=EDITS["labels"], extra="x")
    tensors["classifier.4.bias"] = tensors["classifier.4.bias"] + 1
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(
        CheckpointError, match="metadata fields extra, labels, mean and its tensors do not match"
    ):
        load_checkpoint(path)


def test_format_1_is_refused_with_the_upgrade_and_the_upgrade_checks_it(tmp_path: Path) -> None:
    path, tensors, old = _format_1(tmp_path / "l.safetensors")
    with pytest.raises(CheckpointError, match="--upgrade"):
        load_checkpoint(path)
    upgrade(path)
    assert load_checkpoint(path).meta.labels == DIGIT_LABELS
    old["tensors_sha256"] = "0" * 64  # a format-1 file whose tensors changed
    save_file(tensors, str(path), metadata=old)
    with pytest.raises(CheckpointError, match="not upgrading"):
        upgrade(path)


def test_wrong_architecture_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    with pytest.raises(CheckpointError, match="holds 'lenet', not 'mnist_cnn'"):
        load_checkpoint(path, expect_architecture="mnist_cnn")


def test_tensors_of_another_net_are_refused(tmp_path: Path) -> None:
    # LeNet tensors under mnist_cnn's name: a valid digest but the wrong shapes.
    path = save_checkpoint(get_model("lenet"), _meta("mnist_cnn"), tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="does not match mnist_cnn: missing tensors"):
        load_checkpoint(path)


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet", num_classes=5), _meta(), tmp_path / "l.safetensors")
    with pytest.raises(CheckpointError, match=r"wrong shape, e.g. classifier.4.bias: \(5,\)"):
        load_checkpoint(path)


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    tensors, meta = _raw(path)
    meta["architecture"] = "resnet"
    _resealed(path, tensors, meta)
    with pytest.raises(CheckpointError, match="'resnet' is not a known model"):
        load_checkpoint(path)


def test_wrong_input_spec_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(
        get_model("lenet"), _meta(input_spec=InputSpec(3, 224, 224)), tmp_path / "l.safetensors"
    )
    with pytest.raises(CheckpointError, match="input spec"):
        load_checkpoint(path)


@pytest.mark.parametrize("key", ["labels", "test_accuracy", "dataset_fingerprint"])
def test_missing_metadata_is_named(tmp_path: Path, key: str) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    tensors, meta = _raw(path)
    del meta[key]
    _resealed(path, tensors, meta)
    with pytest.raises(CheckpointError, match=f"lacks {key}"):
        load_checkpoint(path)


def test_accuracy_must_be_a_fraction(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(test_accuracy=99.3), tmp_path / "l.st")
    with pytest.raises(CheckpointError, match="not a fraction"):
        load_checkpoint(path)


def test_not_a_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x80\x04\x95 pickle, not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_no_pickle_anywhere_in_the_project() -> None:
    root = Path(__file__).resolve().parents[1]
    sources = [p for d in ("models", "app", "benchmarks") for p in (root / d).rglob("*.py")]
    banned = ("import pickle", "torch.load(", "torch.save(", "cloudpickle")
    offenders = [f"{p.name}: {b}" for p in sources for b in banned if b in p.read_text()]
    assert not offenders


def test_checkpoints_are_readable_by_other_users(tmp_path: Path) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(), tmp_path / "l.safetensors")
    assert path.stat().st_mode & 0o777 == 0o644  # a server running as another user can load it


def test_loading_keeps_every_metadata_field_as_written(tmp_path: Path) -> None:
    meta = _meta(test_loss=0.0312, seed=7, dataset_fingerprint="cafe")
    path = save_checkpoint(get_model("lenet"), meta, tmp_path / "deep" / "er" / "l.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.meta == meta  # every field, created_at and torch_version included
    assert loaded.path == path


def test_constructor_arguments_are_honoured(tmp_path: Path) -> None:
    five = [str(d) for d in range(5)]
    meta = _meta(arch_kwargs={"num_classes": 5}, labels=five)
    path = save_checkpoint(get_model("lenet", num_classes=5), meta, tmp_path / "l.safetensors")
    assert load_checkpoint(path).model.classifier[-1].out_features == 5


@pytest.mark.parametrize(
    ("accuracy", "ok"), [(0.0, True), (1.0, True), (-0.01, False), (1.01, False)]
)
def test_accuracy_bounds(tmp_path: Path, accuracy: float, ok: bool) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(test_accuracy=accuracy), tmp_path / "l.st")
    if ok:
        assert load_checkpoint(path).meta.test_accuracy == accuracy
    else:
        with pytest.raises(CheckpointError, match="not a fraction"):
            load_checkpoint(path)


@pytest.mark.parametrize("std", [0.0, -0.3])
def test_normalisation_std_must_be_positive(tmp_path: Path, std: float) -> None:
    path = save_checkpoint(get_model("lenet"), _meta(std=std), tmp_path / "l.st")
    with pytest.raises(CheckpointError, match="std"):
        load_checkpoint(path)


def test_an_upgraded_file_keeps_no_trace_of_format_1(tmp_path: Path) -> None:
    path, _, old = _format_1(tmp_path / "l.safetensors")
    upgrade(path)
    _, new = _raw(path)
    assert "tensors_sha256" not in new and new["format_version"] == "2"
    kept = {k: v for k, v in old.items() if k != "tensors_sha256"}
    assert {k: v for k, v in new.items() if k != DIGESTS} == {**kept, "format_version": "2"}
