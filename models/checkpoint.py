"""Checkpoints: safetensors tensors + string metadata, validated on load. No pickle anywhere."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from models.framing import DIGIT_LABELS
from models.registry import InputSpec, get_input_spec, get_model, list_models
from models.transforms import ModelInputTransform

# 2: one sha256 per metadata field as well as the tensors ("digests"); 1 covered the tensors only.
FORMAT_VERSION = "2"
DIGESTS = "digests"
class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not match what it claims to be."""


@dataclass
class CheckpointMeta:
    """Everything a checkpoint says about itself besides its tensors."""

    architecture: str
    arch_kwargs: dict[str, Any]
    input_spec: InputSpec
    mean: float
    std: float
    labels: list[str]
    test_accuracy: float
    test_loss: float
    train_command: str
    seed: int
    dataset_fingerprint: str
    torch_version: str = torch.__version__
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # Calibration: probabilities are softmax(logits / temperature), fitted on held-out data.
    temperature: float = 1.0
    # How a model with outlier classes (labels past the ten digits) refuses: {"method": ...,
    # "threshold": t, ...}; an image is refused when its outlier classes hold t or more.
    rejection: dict[str, Any] = field(default_factory=dict)

    @property
    def refuse_at(self) -> float | None:
        """The operating point of a model with outlier classes (labels past the ten digits);
        None for a digits-only model, which refuses nothing."""
        if len(self.labels) <= len(DIGIT_LABELS):
            return None
        return float(self.rejection["threshold"]) if "threshold" in self.rejection else None

    def to_strings(self) -> dict[str, str]:
        """safetensors metadata is str -> str: non-strings travel as JSON."""
        out = {k: v if isinstance(v, str) else json.dumps(v) for k, v in asdict(self).items()}
        out["format_version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_strings(cls, raw: Mapping[str, str]) -> "CheckpointMeta":
        """Parse and type-check metadata written by :meth:`to_strings`."""
        if raw.get("format_version") == "1":
            raise CheckpointError(
                "checkpoint format 1 (its digest covers the tensors only); upgrade it with: "
                "python -m models.checkpoint --upgrade PATH"
            )
        if raw.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"unsupported checkpoint format_version {raw.get('format_version')!r}; "
                f"expected {FORMAT_VERSION!r}"
            )
        optional = ("temperature", "rejection")  # absent from checkpoints made before them
        names = [f for f in cls.__dataclass_fields__ if f not in ("input_spec", *optional)]
        names += ["input_spec"]
        missing = [n for n in names if n not in raw]
        if missing:
            raise CheckpointError(f"checkpoint metadata lacks {', '.join(missing)}")
        try:
            spec = json.loads(raw["input_spec"])
            meta = cls(
                architecture=raw["architecture"],
                arch_kwargs=dict(json.loads(raw["arch_kwargs"])),
                input_spec=InputSpec(**spec),
                mean=float(json.loads(raw["mean"])),
                std=float(json.loads(raw["std"])),
                labels=[str(x) for x in json.loads(raw["labels"])],
                test_accuracy=float(json.loads(raw["test_accuracy"])),
                test_loss=float(json.loads(raw["test_loss"])),
                train_command=raw["train_command"],
                seed=int(json.loads(raw["seed"])),
                dataset_fingerprint=raw["dataset_fingerprint"],
                torch_version=raw["torch_version"],
                created_at=raw["created_at"],
                temperature=float(json.loads(raw.get("temperature", "1.0"))),
                rejection=dict(json.loads(raw.get("rejection", "{}"))),
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint metadata is malformed: {exc}") from exc
        if not 0.0 <= meta.test_accuracy <= 1.0:
            raise CheckpointError(f"test_accuracy {meta.test_accuracy} is not a fraction")
        if meta.std <= 0:
            raise CheckpointError(f"normalisation std {meta.std} must be positive")
        if not meta.temperature > 0:
            raise CheckpointError(f"temperature {meta.temperature} must be positive")
        return meta


@dataclass
class LoadedCheckpoint:
    """A validated model (on the CPU, eval mode) with its metadata and file identity."""

    model: nn.Module
    meta: CheckpointMeta
    path: Path
    file_sha256: str

    @property
    def transform(self) -> ModelInputTransform:
        """The model-input transform this checkpoint was trained with (shape, mean, std)."""
        return ModelInputTransform(self.meta.input_spec, self.meta.mean, self.meta.std)


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes, in name order: detects any edit on disk."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _field_digest(name: str, value: str) -> str:
    return hashlib.sha256(f"{name}\0{value}".encode()).hexdigest()


def seal(strings: Mapping[str, str], tensors: Mapping[str, Tensor]) -> str:
    """The ``digests`` entry: a sha256 of each metadata field and one of the tensors, as JSON."""
    digests = {k: _field_digest(k, v) for k, v in strings.items() if k != DIGESTS}
    digests["tensors"] = tensors_digest(tensors)
    return json.dumps(digests, sort_keys=True)


def verify_digests(path: Path, raw: Mapping[str, str], tensors: Mapping[str, Tensor]) -> None:
    """Refuse a file whose metadata fields or tensors changed since it was written, naming them."""
    try:
        recorded = dict(json.loads(raw[DIGESTS]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path} has no readable '{DIGESTS}' entry: {exc}") from exc
    fields = (set(raw) | set(recorded)) - {DIGESTS, "tensors"}
    changed = sorted(
        k for k in fields if k not in raw or recorded.get(k) != _field_digest(k, raw[k])
    )
    what = (
        [f"metadata field{'s' if len(changed) > 1 else ''} {', '.join(changed)}"] if changed else []
    )
    if recorded.get("tensors") != tensors_digest(tensors):
        what.append("its tensors")
    if what:
        raise CheckpointError(
            f"{path} was modified after it was written: {' and '.join(what)} "
            "do not match the sha256 recorded when it was saved"
        )


def file_sha256(path: Path) -> str:
    """sha256 of a whole file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: nn.Module, meta: CheckpointMeta, path: str | Path) -> Path:
    """Write the model's state dict and metadata to ``path`` (a .safetensors file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _write(tensors, meta.to_strings(), path)
    return path


def _write(tensors: Mapping[str, Tensor], strings: dict[str, str], path: Path) -> None:
    """Seal and write atomically, readable by other users."""
    strings = {**strings, DIGESTS: seal(strings, tensors)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(dict(tensors), str(tmp), metadata=strings)
    tmp.chmod(0o644)  # safetensors writes 0600; a server running as another user must read it
    tmp.replace(path)  # atomic: a server never sees half a file


def _check_against_architecture(meta: CheckpointMeta, tensors: Mapping[str, Tensor]) -> nn.Module:
    if meta.architecture not in list_models():
        raise CheckpointError(
            f"architecture {meta.architecture!r} is not a known model ({', '.join(list_models())})"
        )
    declared = get_input_spec(meta.architecture)
    if meta.input_spec != declared:
        raise CheckpointError(
            f"input spec {meta.input_spec} does not match {meta.architecture}'s {declared}"
        )
    try:
        model = get_model(meta.architecture, **meta.arch_kwargs)
    except TypeError as exc:
        raise CheckpointError(f"bad constructor arguments {meta.arch_kwargs}: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    problems = []
    if missing := sorted(expected.keys() - found.keys()):
        problems.append(f"missing tensors {missing[:5]}")
    if unexpected := sorted(found.keys() - expected.keys()):
        problems.append(f"unexpected tensors {unexpected[:5]}")
    if wrong := [k for k in expected.keys() & found.keys() if expected[k] != found[k]]:
        k = sorted(wrong)[0]
        problems.append(
            f"{len(wrong)} tensors of the wrong shape, e.g. {k}: {found[k]} vs {expected[k]}"
        )
    out_features = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)][-1]
    if len(meta.labels) != out_features:
        problems.append(f"{len(meta.labels)} labels for a model with {out_features} outputs")
    if problems:
        raise CheckpointError(
            f"checkpoint does not match {meta.architecture}: " + "; ".join(problems)
        )
    model.load_state_dict(dict(tensors), strict=True)
    return model.eval()


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def load_checkpoint(
    path: str | Path, *, expect_architecture: str | None = None
) -> LoadedCheckpoint:
    """Read, verify and build the model of a checkpoint; raise CheckpointError on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        tensors, raw_meta = _read(path)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    meta = CheckpointMeta.from_strings(raw_meta)
    verify_digests(path, raw_meta, tensors)
    if expect_architecture is not None and meta.architecture != expect_architecture:
        raise CheckpointError(f"{path} holds {meta.architecture!r}, not {expect_architecture!r}")
    model = _check_against_architecture(meta, tensors)
    return LoadedCheckpoint(model=model, meta=meta, path=path, file_sha256=file_sha256(path))


def upgrade(path: Path) -> None:
    """Rewrite a format-1 checkpoint as format 2, once its tensors match their recorded sha256."""
    tensors, raw = _read(path)
    if raw.get("format_version") != "1":
        raise CheckpointError(f"{path} is format {raw.get('format_version')!r}, not 1")
    if tensors_digest(tensors) != raw.get("tensors_sha256"):
        raise CheckpointError(f"{path} was modified after it was written: not upgrading it")
    strings = {k: v for k, v in raw.items() if k != "tensors_sha256"}
    _write(tensors, {**strings, "format_version": FORMAT_VERSION}, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.checkpoint --upgrade PATH...``: move old checkpoints to format 2."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m models.checkpoint", description=main.__doc__)
    p.add_argument("--upgrade", nargs="+", type=Path, required=True, metavar="PATH")
    for path in p.parse_args(argv).upgrade:
        upgrade(path)
        load_checkpoint(path)  # what the service will do with it
        print(f"upgraded {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
