"""What the service holds, as plain data: each listed model is Loaded or Unavailable.

The records cross process borders (the model owner sends them to every frontend worker), so
they are frozen dataclasses of JSON-ready values, and this module imports no torch.
"""

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

Reason = Literal["missing", "invalid", "failed"]


class CheckpointInfo(BaseModel):
    """Where a loaded model's weights came from."""

    path: str = Field(
        description="the file, relative to the weights folder", examples=["lenet.safetensors"]
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
    """A model that is loaded, warmed and taking requests."""

    device: str
    dtype: str
    labels: tuple[str, ...]
    test_accuracy: float
    test_loss: float
    max_batch_size: int
    checkpoint: CheckpointInfo  # where its weights came from


@dataclass(frozen=True)
class Unavailable(Listed):
    """A listed model that cannot serve, and why (with what would fix it)."""

    status: Reason
    reason: str


Served = Loaded | Unavailable


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
