"""app/layout.py and app/engine/wire.py: the resolved layout, and the slab's slot bookkeeping."""

import pytest

from app.config import Settings
from app.engine.wire import Slab, SlotAllocator
from app.layout import plan


@pytest.mark.parametrize(
    ("device", "cores", "engine", "workers", "threads"),
    [
        ("cpu", 2, "worker", 2, 1),  # one frontend per core, each half its share for torch
        ("cpu", 8, "worker", 8, 1),
        ("cpu", 64, "worker", 16, 2),  # at most 16 workers by default
        ("cuda", 16, "shared", 14, 1),  # two cores stay with the model owner
        ("cuda:1", 4, "shared", 2, 1),
        ("cuda", 1, "shared", 1, 1),
    ],
)
def test_defaults_by_device_and_cores(
    device: str, cores: int, engine: str, workers: int, threads: int
) -> None:
    layout = plan(Settings(device=device), cores=cores)
    assert (layout.device, layout.engine, layout.workers, layout.torch_threads) == (
        device,
        engine,
        workers,
        threads,
    )


def test_settings_override_every_default() -> None:
    s = Settings(device="cpu", engine="shared", workers=3, torch_threads=5)
    layout = plan(s, cores=2)
    assert (layout.engine, layout.workers, layout.torch_threads) == ("shared", 3, 5)
    assert layout.environment() == {
        "DEVICE": "cpu",
        "ENGINE": "shared",
        "WORKERS": "3",
        "TORCH_THREADS": "5",
    }
    # The environment it hands down resolves to the same layout in every child process.
    again = Settings(**{k.lower(): v for k, v in layout.environment().items()})  # type: ignore[arg-type]
    assert plan(again, cores=2) == layout


def test_slots_are_first_fit_and_freed_runs_merge() -> None:
    slots = SlotAllocator(10)
    a, b, c = slots.alloc(3), slots.alloc(3), slots.alloc(3)
    assert (a, b, c, slots.used) == (0, 3, 6, 9)
    assert slots.alloc(2) is None  # one slot left
    slots.free(3, 3)
    assert slots.alloc(4) is None  # 3 free in the middle, 1 at the end: no run of 4
    slots.free(0, 3)  # merges with the freed middle: 0..5 free
    assert slots.alloc(6) == 0
    slots.free(0, 6)
    slots.free(6, 3)  # everything merges back into one run
    assert slots.used == 0 and slots.alloc(10) == 0


def test_slab_views_share_one_mapping() -> None:
    import mmap

    memory = mmap.mmap(-1, Slab.size(4, 10))
    one, two = Slab(memory, 4, 10), Slab(memory, 4, 10)
    one.digits[2, 5, 5] = 200
    one.probabilities[3] = 0.5
    assert two.digits[2, 5, 5] == 200 and (two.probabilities[3] == 0.5).all()
    assert two.digits[3].sum() == 0  # digits and probabilities do not overlap
