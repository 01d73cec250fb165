"""What the service holds, as plain data: each listed model's versions, Loaded or Unavailable,
and the version a request without ``?version`` gets.

The records cross process borders (the model owner sends them to every frontend worker), so
they are frozen dataclasses of JSON-ready values (and pydantic models), and this module imports
no torch.
"""

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, Field

Reason = Literal["missing", "invalid", "failed"]
ChangeKind = Literal["added", "replaced", "removed", "invalid", "failed"]


class CheckpointInfo(BaseModel):
    """Where a loaded model's weights came from."""

    path: str = Field(
        description="the file, relative to the weights folder",
        examples=["lenet.safetensors", "lenet/2.safetensors"],
    )
    sha256: str
    created_at: str
    train_command: str
    torch_version: str
    dataset_fingerprint: str


@dataclass(frozen=True)
class Listed:
    """What the service knows of every model it lists."""

    name: str
    parameters: int
    input: tuple[int, int, int]


@dataclass(frozen=True)
class Loaded(Listed):
    """One version of a model that is loaded, warmed and taking requests."""

    version: int
    device: str
    dtype: str
    labels: tuple[str, ...]
    test_accuracy: float
    test_loss: float
    max_batch_size: int
    checkpoint: CheckpointInfo  # where its weights came from
    # Its operating point: an image whose outlier classes (labels past the ten digits) hold
    # this much is refused as not one digit; None: the model has no outlier classes.
    refuse_at: float | None = None


@dataclass(frozen=True)
class Unavailable(Listed):
    """A version that cannot serve (or, version None, a model with no checkpoint at all), and
    why, with what would fix it."""

    version: int | None
    status: Reason
    reason: str


Served = Loaded | Unavailable


@dataclass(frozen=True)
class Model:
    """A listed model: every version found for it, and what a request without ``?version``
    gets (the default version's record, or why there is none)."""

    name: str
    versions: dict[int, Served]  # in version order
    default: Served

    @property
    def default_version(self) -> int | None:
        """The version that answers by default (None: the model has no checkpoint)."""
        return self.default.version


def choose_default(versions: dict[int, Served], pin: int | None, none: Unavailable) -> Served:
    """The version a request without ``?version`` runs: the pinned one (MODEL_VERSIONS), else
    the highest loaded one; with none loaded, why not (the newest version's reason, or
    ``none``'s when the model has no checkpoint at all)."""
    if pin is not None:
        if pin in versions:
            return versions[pin]
        return replace(
            none,
            version=pin,
            reason=f"MODEL_VERSIONS pins version {pin}, and WEIGHTS_DIR has no checkpoint of "
            f"{none.name} version {pin}",
        )
    loaded = [v for v, served in versions.items() if isinstance(served, Loaded)]
    if loaded:
        return versions[max(loaded)]
    return versions[max(versions)] if versions else none


class Change(BaseModel):
    """One thing a reload changed."""

    model: str = Field(examples=["lenet"])
    version: int = Field(examples=[2])
    change: ChangeKind = Field(
        description="added (loaded, warmed, now serving), replaced (its file changed: the new "
        "one serves), removed (its file is gone: it finished what it had accepted and was "
        "freed), invalid (the file failed validation: whatever served before still serves), "
        "failed (valid, but it could not start on the device: likewise)"
    )
    reason: str | None = Field(None, description="why, for invalid and failed")


class ReloadReport(BaseModel):
    """What a reload found changed in WEIGHTS_DIR, and each model's default version after it."""

    changes: list[Change]
    default_versions: dict[str, int | None] = Field(examples=[{"lenet": 2, "vgg16": None}])
    notes: list[str] = Field(
        default_factory=list,
        description="files passed over, e.g. lenet.safetensors beside lenet/1.safetensors",
    )

    def summary(self) -> str:
        """One line for the log: each change, then the default versions."""
        said = [f"{c.change} {c.model} v{c.version}" + (f" ({c.reason})" if c.reason else "")
                for c in self.changes]  # fmt: skip
        defaults = ", ".join(f"{n} v{v}" for n, v in self.default_versions.items() if v)
        return f"{'; '.join(said + self.notes) or 'nothing changed'}; default versions: " + (
            defaults or "none"
        )


def to_json(served: Served) -> dict[str, Any]:
    """A record as JSON-ready data, tagged with its kind."""
    data = {"kind": type(served).__name__, **asdict(served)}
    if isinstance(served, Loaded):
        data["checkpoint"] = served.checkpoint.model_dump()
    return data


def from_json(data: dict[str, Any]) -> Served:
    """The record :func:`to_json` wrote."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    fields["input"] = tuple(fields["input"])
    if data["kind"] == "Loaded":
        fields["labels"] = tuple(fields["labels"])
        fields["checkpoint"] = CheckpointInfo(**fields["checkpoint"])
        return Loaded(**fields)
    return Unavailable(**fields)


def model_to_json(model: Model) -> dict[str, Any]:
    """A model's versions and default as JSON-ready data."""
    return {
        "name": model.name,
        "versions": [to_json(s) for s in model.versions.values()],
        "default": to_json(model.default),
    }


def model_from_json(data: dict[str, Any]) -> Model:
    """The model :func:`model_to_json` wrote."""
    versions = [from_json(s) for s in data["versions"]]
    return Model(
        data["name"],
        {s.version: s for s in versions if s.version is not None},
        from_json(data["default"]),
    )
