"""On-device augmentation: each transform does what its name says, at its probability, seeded."""

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from models.augment import (
    NO_AUGMENT,
    AugmentRecipe,
    _Draw,
    augment,
    blocky,
    blur,
    clutter,
    contrast_gamma,
    geometry,
    grain,
    low_resolution,
    reframe,
    stroke_width,
)
from models.data import MnistSplit


@pytest.fixture(scope="module")
def batch(mnist_test: MnistSplit) -> torch.Tensor:
    return mnist_test.images[:64].float() / 255


def draw(n: int = 64, seed: int = 0) -> _Draw:
    cpu = torch.device("cpu")
    return _Draw(n, torch.Generator().manual_seed(seed), cpu, torch.Generator().manual_seed(seed))


def changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().amax((1, 2, 3)) > 1e-4


def only(**fields: object) -> AugmentRecipe:
    """A recipe with every transform off except the ones given."""
    return replace(NO_AUGMENT, **fields)  # type: ignore[arg-type]


def test_no_augmentation_leaves_mnist_as_it_is(batch: torch.Tensor) -> None:
    out = augment(batch, torch.Generator().manual_seed(0), NO_AUGMENT)
    assert torch.equal(out, batch)


def test_the_input_batch_is_not_modified(batch: torch.Tensor) -> None:
    before = batch.clone()
    augment(batch, torch.Generator().manual_seed(0), AugmentRecipe())
    assert torch.equal(batch, before)


def test_seeded_and_reproducible(batch: torch.Tensor) -> None:
    a = augment(batch, torch.Generator().manual_seed(3), AugmentRecipe())
    b = augment(batch, torch.Generator().manual_seed(3), AugmentRecipe())
    c = augment(batch, torch.Generator().manual_seed(4), AugmentRecipe())
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == batch.shape and float(a.min()) >= 0 and float(a.max()) <= 1


def _alone(name: str, p: float) -> Callable[[torch.Tensor, _Draw], torch.Tensor]:
    """One transform at probability p, called as augment calls it."""
    r = replace(AugmentRecipe(), **{f"{name}_p": p})
    calls: dict[str, Callable[[torch.Tensor, _Draw], torch.Tensor]] = {
        "stroke": lambda x, d: stroke_width(x, d, p),
        "elastic": lambda x, d: geometry(x, d, replace(r, affine_p=0.0)),
        "affine": lambda x, d: geometry(x, d, replace(r, elastic_p=0.0)),
        "clutter": lambda x, d: clutter(x, d, p),
        "blur": lambda x, d: blur(x, d, p, r.blur_sigma),
        "lowres": lambda x, d: low_resolution(x, d, p, r.lowres_side),
        "blocky": lambda x, d: blocky(x, d, p, r.blocky_side),
        "grain": lambda x, d: grain(x, d, p, r.grain),
        "contrast": lambda x, d: contrast_gamma(x, d, r),
    }
    return calls[name]


@pytest.mark.parametrize(
    "name",
    ["stroke", "elastic", "affine", "clutter", "blur", "lowres", "blocky", "grain", "contrast"],
)
def test_each_transform_touches_its_share_of_the_batch(batch: torch.Tensor, name: str) -> None:
    for p in (0.25, 0.5):
        out = _alone(name, p)(batch.clone(), draw())
        assert int(changed(out, batch).sum()) == round(p * len(batch)), (name, p)


def test_framing_jitter_touches_its_share_of_the_batch(batch: torch.Tensor) -> None:
    plain = reframe(batch.clone(), draw(), only(affine_p=0.0))
    jittered = reframe(batch.clone(), draw(), replace(AugmentRecipe(), affine_p=0.25))
    assert int(changed(jittered, plain).sum()) == 16


def test_runs_start_at_random_offsets() -> None:
    d = draw(100)
    starts = {d.run(0.3).start for _ in range(20)}
    assert len(starts) > 5 and all(0 <= s <= 70 for s in starts)
    none = d.run(0.0)
    assert none.stop == none.start


def test_stroke_width_thins_a_third_and_thickens_the_rest(batch: torch.Tensor) -> None:
    out = stroke_width(batch.clone(), draw(), 0.75)
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    thinner, thicker = int((ratio < 0.95).sum()), int((ratio > 1.3).sum())
    assert thinner == 16 and thicker == 32  # 48 images: a third eroded, two thirds dilated
    assert int((ratio == 1).sum()) == 16  # the rest untouched
    same = batch[:1].repeat(3, 1, 1, 1)  # one run of 3: thinner, +1 step, +2 steps
    a, b, c = (stroke_width(same.clone(), draw(3), 1.0).sum((1, 2, 3)) / same[0].sum()).tolist()
    assert a < 1 < b < c


def test_erosion_never_wipes_a_digit_out() -> None:
    faint = torch.zeros(4, 1, 28, 28)
    faint[:, :, 10:18, 14] = 1.0  # a 1 px line: erosion by a cross would leave nothing
    out = stroke_width(faint.clone(), draw(4), 1.0)
    assert (out.sum((1, 2, 3)) > 0).all()


def test_shear_slants_columns_but_keeps_each_row_s_ink(batch: torch.Tensor) -> None:
    r = only(affine_p=1.0, max_degrees=0.0, max_shear=20.0)
    out = geometry(batch.clone(), draw(), r)
    rows_before, rows_after = batch.sum(3), out.sum(3)
    assert torch.allclose(rows_before, rows_after, atol=0.35)
    assert (out.sum(2) - batch.sum(2)).abs().amax() > 1.0


def _box_and_com(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ink = x[:, 0] > 0.1
    rows, cols = ink.any(2), ink.any(1)
    idx = torch.arange(28.0)
    height = rows.float().sum(1)  # MNIST's strokes have no gaps across a row or column
    side = torch.maximum(height, cols.float().sum(1))
    mass = x.sum((1, 2, 3))
    cy = (x[:, 0].sum(2) * idx).sum(1) / mass
    cx = (x[:, 0].sum(1) * idx).sum(1) / mass
    return side, cy, cx


def test_reframe_frames_as_the_service_does(batch: torch.Tensor) -> None:
    """Box to 20 px, centre of mass to pixel 14: a digit squeezed into a corner comes back."""
    small = F.interpolate(batch, scale_factor=0.5, mode="bilinear")  # 14x14 digits ...
    corner = torch.zeros_like(batch)
    corner[:, :, :14, :14] = small  # ... in the top-left corner, box ~10 px
    out = reframe(corner, draw(), only(affine_p=0.0))
    side, cy, cx = _box_and_com(out)
    assert ((side >= 19) & (side <= 22)).all(), side  # 20, and a resampling halo
    assert (cy - 14).abs().max() < 0.6 and (cx - 14).abs().max() < 0.6


def test_framing_tight_and_loose(batch: torch.Tensor) -> None:
    def box(scale: float) -> torch.Tensor:
        r = replace(AugmentRecipe(), affine_p=1.0, scale=(scale, scale), max_shift=0.0)
        return _box_and_com(reframe(batch.clone(), draw(), r))[0]

    tight, plain, loose = box(1.25), box(1.0), box(0.75)
    assert (tight > plain).float().mean() > 0.9 and (loose < plain).all()
    assert (tight >= 24).float().mean() > 0.9  # 25 px of a 28 px frame: touching its edges


def test_clutter_draws_lines_where_there_was_paper(batch: torch.Tensor) -> None:
    out = clutter(batch.clone(), draw(), 1.0)
    new_ink = ((batch == 0) & (out > 0.3)).sum((1, 2, 3))
    assert (new_ink >= 6).all()  # a line, even a dashed one cut by the frame
    assert torch.equal(torch.maximum(out, batch), out)  # the digit's own ink stays


def test_grain_roughens_ink_but_leaves_the_paper(batch: torch.Tensor) -> None:
    out = grain(batch.clone(), draw(), 1.0, (0.3, 0.3))
    paper = batch == 0
    assert torch.equal(out[paper], batch[paper])
    strokes = batch > 0.9
    assert (out[strokes] < 0.85).float().mean() > 0.2  # a uniform +-52% grain dims many


def test_elastic_wobble_moves_ink_a_little(batch: torch.Tensor) -> None:
    out = geometry(batch.clone(), draw(), only(elastic_p=1.0, elastic_px=1.5))
    assert changed(out, batch).all()
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    assert ((ratio > 0.6) & (ratio < 1.4)).all()
    com = torch.arange(28.0)
    shift = (out.sum((1, 3)) @ com / out.sum((1, 2, 3))) - (
        batch.sum((1, 3)) @ com / batch.sum((1, 2, 3))
    )
    assert shift.abs().max() < 1.5  # a wobble, not a move


def test_blur_spreads_ink_and_keeps_its_mass(batch: torch.Tensor) -> None:
    out = blur(batch.clone(), draw(), 1.0, (1.0, 1.2))
    assert torch.allclose(out.sum((1, 2, 3)), batch.sum((1, 2, 3)), rtol=0.02)
    assert (out.amax((1, 2, 3)) < batch.amax((1, 2, 3))).all()
    assert ((out > 0.05).sum((1, 2, 3)) > (batch > 0.05).sum((1, 2, 3))).all()


def test_low_resolution_is_a_small_scan_enlarged(batch: torch.Tensor) -> None:
    d = draw()
    out = low_resolution(batch.clone(), d, 1.0, (10, 10))
    expected = F.interpolate(F.interpolate(batch, size=(10, 10), mode="area"), size=(28, 28),
                             mode="bilinear", align_corners=False)  # fmt: skip
    assert torch.allclose(out, expected)


def test_contrast_and_gamma_fade_the_ink(batch: torch.Tensor) -> None:
    r = only(contrast_p=1.0, contrast=(0.5, 0.7), gamma=(1.0, 1.0))
    out = contrast_gamma(batch.clone(), draw(), r)
    peaks = out.amax((1, 2, 3))
    assert ((peaks >= 0.5 - 1e-6) & (peaks <= 0.7 + 1e-6)).all()
    g = contrast_gamma(batch.clone(), draw(), only(contrast_p=1.0, contrast=(1, 1), gamma=(2, 2)))
    assert torch.allclose(g, batch.pow(2))


def test_the_recipe_keeps_digits_recognisable(batch: torch.Tensor) -> None:
    """Augmented digits stay in the frame with their ink: no transform empties an image."""
    out = augment(batch, torch.Generator().manual_seed(0), AugmentRecipe())
    ratio = out.sum((1, 2, 3)) / batch.sum((1, 2, 3))
    assert (ratio > 0.3).all() and (out.amax((1, 2, 3)) >= 0.5 - 1e-6).all()


def test_blocky_digits_are_bitmaps_of_17_levels_enlarged(batch: torch.Tensor) -> None:
    out = blocky(batch.clone(), draw(), 1.0, (7, 7))
    assert torch.equal(out * 16, torch.round(out * 16))  # 17 grey levels
    assert len(torch.unique(out[0, 0], dim=0)) <= 7  # 7 distinct rows: blocks, not a blur
