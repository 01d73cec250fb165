"""Name -> builder registry (torchvision's ``_api`` pattern), with each model's input spec.

The architecture modules register themselves when imported; the registry imports them on the
first lookup, so that importing ``models`` (or a torch-free module of it, such as
models/framing.py) does not import PyTorch in processes that run no model.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from torch import nn

BuilderT = TypeVar("BuilderT", bound="Callable[..., nn.Module]")
ARCHITECTURES = ("alexnet", "lenet", "mnist_cnn", "vgg")  # the modules of models/ that register


@dataclass(frozen=True)
class InputSpec:
    """The tensor shape one image must have when it reaches a model."""

    channels: int
    height: int
    width: int

    def as_tuple(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class _Entry:
    builder: "Callable[..., nn.Module]"
    input_spec: InputSpec


_REGISTRY: dict[str, _Entry] = {}


def _registered() -> dict[str, _Entry]:
    for module in ARCHITECTURES:
        importlib.import_module(f"models.{module}")  # a no-op once imported
    return _REGISTRY


def register_model(name: str, input_spec: InputSpec) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a keyword-only model builder under ``name``."""

    def wrapper(fn: BuilderT) -> BuilderT:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = _Entry(fn, input_spec)
        return fn

    return wrapper


def _entry(name: str) -> _Entry:
    try:
        return _registered()[name]
    except KeyError:
        known = ", ".join(list_models())
        raise KeyError(f"unknown model {name!r}; known models: {known}") from None


def get_model(name: str, **kwargs: object) -> "nn.Module":
    """Build the registered model ``name`` with the builder's keyword arguments."""
    return _entry(name).builder(**kwargs)


def get_input_spec(name: str) -> InputSpec:
    """The input spec the registered model ``name`` declares."""
    return _entry(name).input_spec


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return sorted(_registered())
