"""What the service holds, as plain data: each listed model is Loaded or Unavailable.

The records cross process borders (the model owner sends them to every frontend worker), so
they are frozen dataclasses of JSON types, and this module imports neither torch nor the app.
"""

from dataclasses import asdict, dataclass
from typing import Any, Literal

Reason = Literal["missing", "invalid", "failed"]


@dataclass(frozen=True)
class CheckpointCard:
    """Where a loaded model's weights came from."""

    path: str
    sha256: str
    created_at: str
    train_command: str
    torch_version: str
    dataset_fingerprint: str


@dataclass(frozen=True)
class Loaded:
    """A model that is loaded, warmed and taking requests."""

    name: str
    parameters: int
    input: tuple[int, int, int]
    device: str
    dtype: str
    labels: tuple[str, ...]
    test_accuracy: float
    test_loss: float
    max_batch_size: int
    checkpoint: CheckpointCard


@dataclass(frozen=True)
class Unavailable:
    """A listed model that cannot serve, and why (with what would fix it)."""

    name: str
    parameters: int
    input: tuple[int, int, int]
    status: Reason
    reason: str


Served = Loaded | Unavailable


def to_json(served: Served) -> dict[str, Any]:
    """A record as JSON-ready data, tagged with its kind."""
    return {"kind": type(served).__name__, **asdict(served)}


def from_json(data: dict[str, Any]) -> Served:
    """The record :func:`to_json` wrote."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    fields["input"] = tuple(fields["input"])
    if data["kind"] == "Loaded":
        fields["labels"] = tuple(fields["labels"])
        fields["checkpoint"] = CheckpointCard(**fields["checkpoint"])
        return Loaded(**fields)
    return Unavailable(**fields)
