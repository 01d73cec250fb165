"""On-device augmentation: each transform does what its name says, at its probability, seeded."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from models.augment import (
    NO_AUGMENT,
    AugmentRecipe,
    _Draw,
    augment,
    blur,
    contrast_gamma,
    geometry,
    low_resolution,
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


@pytest.mark.parametrize(
    "field", ["affine_p", "elastic_p", "stroke_p", "blur_p", "lowres_p", "contrast_p"]
)
def test_each_transform_touches_its_share_of_the_batch(batch: torch.Tensor, field: str) -> None:
    for p in (0.25, 0.5):
        out = augment(batch, torch.Generator().manual_seed(1), only(**{field: p}))
        assert int(changed(out, batch).sum()) == round(p * len(batch)), (field, p)


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
    r = only(affine_p=1.0, max_degrees=0.0, max_shear=20.0, scale=(1.0, 1.0), max_shift=0.0)
    out = geometry(batch.clone(), draw(), r)
    rows_before, rows_after = batch.sum(3), out.sum(3)
    assert torch.allclose(rows_before, rows_after, atol=0.35)
    assert (out.sum(2) - batch.sum(2)).abs().amax() > 1.0


def test_framing_scales_the_digit(batch: torch.Tensor) -> None:
    def ink_height(x: torch.Tensor) -> torch.Tensor:
        return ((x > 0.3).any(3)[:, 0]).float().sum(1)

    tight = only(affine_p=1.0, max_degrees=0.0, max_shear=0.0, scale=(1.25, 1.25), max_shift=0)
    loose = replace(tight, scale=(0.75, 0.75))
    h = ink_height(batch)
    assert (ink_height(geometry(batch.clone(), draw(), tight)) >= h).all()
    assert (ink_height(geometry(batch.clone(), draw(), loose)) < h).all()


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
