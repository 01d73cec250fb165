"""MNIST-C corruptions (benchmarks/mnist_c.py) on 50 real test digits: contract, one property each.

Each property is chosen so that it fails if that corruption were broken or swapped for another.
"""

from collections.abc import Callable

import numpy as np
import pytest
from scipy import ndimage

from benchmarks.mnist_c import CORRUPTIONS, corrupt
from models.data import MnistSplit

N = 50
# brightness, stripe and canny_edges use no randomness at all; scale has no random parameter.
RANDOM = tuple(c for c in CORRUPTIONS if c not in {"brightness", "stripe", "canny_edges", "scale"})

Corrupted = Callable[[str], np.ndarray]


@pytest.fixture(scope="module")
def digits(mnist_test: MnistSplit) -> np.ndarray:
    return mnist_test.images[:N, 0].numpy().copy()


@pytest.fixture(scope="module")
def corrupted(digits: np.ndarray) -> Corrupted:
    """Seed-0 output per corruption, computed once: several tests read each."""
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = corrupt(name, digits, seed=0)
        return cache[name]

    return get


def moments(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: ink mass, centre of mass (x = column, y = row) and second central moments."""
    a = images.astype(np.float64)
    rows, cols = np.mgrid[:28, :28]
    mass = a.sum(axis=(1, 2))
    cx = (a * cols).sum(axis=(1, 2)) / mass
    cy = (a * rows).sum(axis=(1, 2)) / mass
    dx = cols - cx[:, None, None]
    dy = rows - cy[:, None, None]
    vxx = (a * dx * dx).sum(axis=(1, 2)) / mass
    vyy = (a * dy * dy).sum(axis=(1, 2)) / mass
    vxy = (a * dx * dy).sum(axis=(1, 2)) / mass
    return {"mass": mass, "cx": cx, "cy": cy, "vxx": vxx, "vyy": vyy, "vxy": vxy}


def covariance(m: dict[str, np.ndarray]) -> np.ndarray:
    """N x 2 x 2 covariance matrices of the ink, in (x, y)."""
    return np.stack([np.stack([m["vxx"], m["vxy"]], -1), np.stack([m["vxy"], m["vyy"]], -1)], -2)


# --- the contract, for every corruption ---


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_keeps_shape_and_dtype_and_leaves_input_alone(name: str, digits: np.ndarray) -> None:
    before = digits.copy()
    out = corrupt(name, digits, seed=0)
    assert out.shape == digits.shape
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(digits, before)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_deterministic_for_a_seed(name: str, digits: np.ndarray, corrupted: Corrupted) -> None:
    np.testing.assert_array_equal(corrupt(name, digits, seed=0), corrupted(name))


@pytest.mark.parametrize("name", RANDOM)
def test_another_seed_gives_another_result(
    name: str, digits: np.ndarray, corrupted: Corrupted
) -> None:
    assert not np.array_equal(corrupt(name, digits, seed=1), corrupted(name))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_output_differs_from_input(name: str, digits: np.ndarray, corrupted: Corrupted) -> None:
    changed = (corrupted(name) != digits).any(axis=(1, 2))
    assert changed.mean() >= 0.9


def test_all_fifteen_in_the_papers_order() -> None:
    assert CORRUPTIONS == (
        "shot_noise",
        "impulse_noise",
        "glass_blur",
        "motion_blur",
        "shear",
        "scale",
        "rotate",
        "brightness",
        "translate",
        "stripe",
        "fog",
        "spatter",
        "dotted_line",
        "zigzag",
        "canny_edges",
    )


def test_unknown_name_raises(digits: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("gaussian_noise", digits)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((28, 28), np.uint8),
        np.zeros((2, 28, 27), np.uint8),
        np.zeros((2, 1, 28, 28), np.uint8),
        np.zeros((2, 28, 28), np.float32),
        np.zeros((2, 28, 28), np.int64),
    ],
    ids=["2d", "27-wide", "channel-axis", "float32", "int64"],
)
def test_wrong_shape_or_dtype_raises(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        corrupt("rotate", bad)


# --- one property per corruption ---


def test_shot_noise_is_poisson_with_three_photons(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("shot_noise")
    # poisson(3 x) / 3, clipped: only 0, 1/3, 2/3 and 1 of full scale can come out.
    assert set(np.unique(out)) <= {0, 85, 170, 255}
    # A Poisson count of zero photons is always zero: black stays black.
    assert (out[digits == 0] == 0).all()
    ink = digits > 0
    changed = [(out[i] != digits[i])[ink[i]].mean() for i in range(N)]
    assert min(changed) > 0.4
    # Bright ink keeps about E[min(Poisson(3), 3)] / 3 = 0.78 of its level on average.
    assert 0.7 < out[digits == 255].mean() / 255 < 0.86


def test_impulse_noise_sets_some_pixels_to_black_or_white(
    digits: np.ndarray, corrupted: Corrupted
) -> None:
    out = corrupted("impulse_noise")
    changed = out != digits
    assert set(np.unique(out[changed])) <= {0, 255}
    # 17% of pixels are hit, half salt and half pepper: ~8.5% of black turns white and back.
    salted = [(out[i][digits[i] == 0] == 255).mean() for i in range(N)]
    assert min(salted) > 0.04 and max(salted) < 0.14
    assert 0.07 < np.mean(salted) < 0.10
    assert 0.04 < (out[digits == 255] == 0).mean() < 0.13
    assert changed.mean(axis=(1, 2)).max() < 0.15


def test_glass_blur_spreads_ink_locally(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("glass_blur")
    before, after = moments(digits), moments(out)
    saturated = (out >= 250).sum(axis=(1, 2)) / (digits >= 250).sum(axis=(1, 2))
    assert saturated.max() < 0.4  # peaks flattened
    inked = (out > 30).sum(axis=(1, 2)) / (digits > 30).sum(axis=(1, 2))
    assert inked.min() > 1.15  # ink spread to more pixels
    # Blurring and swapping neighbours move ink but neither create nor destroy it.
    assert np.allclose(after["mass"] / before["mass"], 1, atol=0.03)
    # Local: unlike motion blur the centre of mass stays put.
    shift = np.hypot(after["cx"] - before["cx"], after["cy"] - before["cy"])
    assert shift.max() < 0.6
    # The shuffle breaks strokes into grains: many isolated local maxima, which a plain blur
    # (about 6 per digit here) does not make.
    ring = np.ones((1, 3, 3), bool)
    ring[0, 1, 1] = False
    values = out.astype(np.float64)
    grains = (values > ndimage.maximum_filter(values, footprint=ring, mode="constant")) & (out > 30)
    assert np.median(grains.sum(axis=(1, 2))) >= 12
    # As in the reference (see the module docstring) the blur runs down the columns only, so the
    # image stays rough across rows: about twice as rough as down columns, 1.3x for a round blur.
    across = np.abs(np.diff(values, 2, axis=2)).sum(axis=(1, 2))
    down = np.abs(np.diff(values, 2, axis=1)).sum(axis=(1, 2))
    assert np.median(across) > 1.6 * np.median(down)


def test_motion_blur_smears_ink_along_a_line(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("motion_blur")
    before, after = moments(digits), moments(out)
    saturated = (out >= 250).sum(axis=(1, 2)) / (digits >= 250).sum(axis=(1, 2))
    assert saturated.max() < 0.4
    assert np.allclose(after["mass"] / before["mass"], 1, atol=0.05)
    # The one-sided kernel samples up to 45 degrees either side of +x, so every digit's ink
    # trails left by the kernel's mean reach (about 2.4 px times cos(angle)).
    dx = after["cx"] - before["cx"]
    dy = after["cy"] - before["cy"]
    assert ((dx > -2.6) & (dx < -1.2)).all()
    assert (np.abs(dy) <= np.abs(dx) + 0.2).all()
    assert np.ptp(dy) > 1.0  # the angle is random per image


def test_shear_stretches_vertically_and_slants(digits: np.ndarray, corrupted: Corrupted) -> None:
    before, after = moments(digits), moments(corrupted("shear"))
    # The inverse map x - sin(s) y, cos(s) y about the centre: rows spread by 1/cos(0.4),
    # ink grows by the same factor, and each row slides by tan(0.4) times its height.
    assert np.allclose(after["mass"] / before["mass"], 1 / np.cos(0.4), atol=0.04)
    assert np.median(after["vyy"] / before["vyy"]) == pytest.approx(1 / np.cos(0.4) ** 2, abs=0.03)
    slant = (after["vxy"] - before["vxy"]) / before["vyy"]
    assert (np.abs(slant) > 0.35).all() and (np.abs(slant) < 0.55).all()
    assert (slant > 0).any() and (slant < 0).any()  # both directions occur
    shift = np.hypot(after["cx"] - before["cx"], after["cy"] - before["cy"])
    assert shift.max() < 0.7


def test_scale_shrinks_about_the_centre(digits: np.ndarray, corrupted: Corrupted) -> None:
    before, after = moments(digits), moments(corrupted("scale"))
    # Shrinking by 0.7 leaves 0.49 of the ink and of the spread, and pulls the centre of mass
    # 30% of the way towards the image centre.
    assert np.allclose(after["mass"] / before["mass"], 0.49, atol=0.06)
    spread = (after["vxx"] + after["vyy"]) / (before["vxx"] + before["vyy"])
    assert np.allclose(spread, 0.49, atol=0.05)
    for c in ("cx", "cy"):
        np.testing.assert_allclose(after[c] - 13.5, 0.7 * (before[c] - 13.5), atol=0.3)


def test_rotate_turns_the_ink_by_0_4_rad(digits: np.ndarray, corrupted: Corrupted) -> None:
    before, after = moments(digits), moments(corrupted("rotate"))
    assert np.allclose(after["mass"] / before["mass"], 1, atol=0.03)
    shift = np.hypot(after["cx"] - before["cx"], after["cy"] - before["cy"])
    assert shift.max() < 0.7
    # The ink's covariance is the original's rotated by +-0.4 rad, which neither the original
    # (no rotation) nor a shear (changes its trace) reproduces.
    s0, s1 = covariance(before), covariance(after)
    scale = (before["vxx"] + before["vyy"])[:, None]
    errors = []
    for angle in (0.0, 0.4, -0.4):
        r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        errors.append(np.linalg.norm(s1 - r @ s0 @ r.T, axis=(1, 2)) / scale[:, 0])
    unrotated, rotated = errors[0], np.minimum(errors[1], errors[2])
    assert rotated.max() < 0.03
    assert (rotated < unrotated).all()
    assert np.median(unrotated) > 0.1
    assert (errors[1] < errors[2]).any() and (errors[2] < errors[1]).any()  # both directions


def test_brightness_raises_every_background_to_mid_grey(
    digits: np.ndarray, corrupted: Corrupted
) -> None:
    out = corrupted("brightness")
    # +0.5 in HSV value: black becomes 127.5 (rounded to 128) in every image, nothing darkens.
    assert (out[digits == 0] == 128).all()
    assert (out >= digits).all()
    assert (out[digits >= 128] == 255).all()


def test_translate_shifts_by_three_pixels_each_way(
    digits: np.ndarray, corrupted: Corrupted
) -> None:
    before, after = moments(digits), moments(corrupted("translate"))
    dx = after["cx"] - before["cx"]
    dy = after["cy"] - before["cy"]
    # Ink pushed off the border can pull the centre of mass back a little, never further.
    assert np.median(np.abs(dx)) == pytest.approx(3, abs=0.05)
    assert np.median(np.abs(dy)) == pytest.approx(3, abs=0.05)
    assert ((np.abs(dx) > 2.3) & (np.abs(dx) < 3.5)).all()
    assert ((np.abs(dy) > 2.3) & (np.abs(dy) < 3.5)).all()
    assert len(set(zip(np.sign(dx), np.sign(dy), strict=True))) == 4  # all four directions
    assert np.median(after["mass"] / before["mass"]) == pytest.approx(1, abs=0.01)


def test_stripe_inverts_the_side_columns(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("stripe")
    sides = np.r_[0:7, 21:28]
    np.testing.assert_array_equal(out[:, :, sides], 255 - digits[:, :, sides])
    np.testing.assert_array_equal(out[:, :, 7:21], digits[:, :, 7:21])


def test_fog_raises_the_background_smoothly(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("fog").astype(np.float64)
    black = digits == 0
    for i in range(N):
        background = out[i][black[i]]
        # Everywhere, not in patches (unlike spatter), and not uniformly (unlike brightness).
        assert np.quantile(background, 0.05) > 10
        assert background.std() > 2
        # Smooth: neighbours differ far less than the fog varies across the image (unlike noise).
        pairs = black[i][:, 1:] & black[i][:, :-1]
        step = np.abs(np.diff(out[i], axis=1))[pairs].mean()
        assert step < 0.4 * background.std()
        # The digit keeps only a quarter of its contrast: (x + 3 fog) * 1 / (1 + 3).
        contrast = out[i][digits[i] >= 250].mean() - background.mean()
        assert 30 < contrast < 100


def test_spatter_drops_mud_blobs(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("spatter").astype(np.int64)
    black = digits == 0
    mud = (out != digits) & black
    assert mud.any(axis=(1, 2)).mean() >= 0.9
    # Mud is grey 63 times a coverage of 0.8..1: 50..63 on black, and it darkens ink it covers.
    assert out[mud].min() >= 50 and out[mud].max() <= 63
    covered = (out != digits) & ~black
    assert (out[covered] <= 115).all()
    # Blobs, not speckle: most mud pixels belong to clumps of several pixels.
    sizes = np.concatenate(
        [np.bincount(ndimage.label(mud[i])[0].ravel())[1:] for i in range(N) if mud[i].any()]
    )
    assert sizes[sizes >= 4].sum() >= 0.9 * sizes.sum()
    # Mostly background survives (unlike fog).
    assert (out[black] == 0).mean() > 0.5


def test_dotted_line_adds_separate_dots(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("dotted_line")
    assert (out >= digits).all()
    added = (out > digits) & (digits == 0)
    # Only 2-column blocks 2-3, 6-7, ..., 26 carry dots; the rest of the image is untouched.
    dotted = np.zeros(28, bool)
    dotted[[c for c in range(27) if (c // 2) % 2 == 1]] = True
    np.testing.assert_array_equal(out[:, :, ~dotted], digits[:, :, ~dotted])
    for i in range(N):
        labels, count = ndimage.label(added[i], structure=np.ones((3, 3)))
        assert count >= 4  # separate dots across the width
        widths = [s[1].stop - s[1].start for s in ndimage.find_objects(labels)]
        assert max(widths) <= 2


def test_zigzag_adds_a_continuous_zigzag(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("zigzag")
    assert (out >= digits).all()
    added = np.asarray((out > digits).any(axis=1))  # columns where ink was added
    # Drawn from column 2 to 25 only, and in most of those columns (where it crosses the digit's
    # full-white ink nothing is added); a dotted line adds to at most 13 columns.
    assert not added[:, [0, 1, 26, 27]].any()
    assert added[:, 2:26].sum(axis=1).min() >= 16
    # New ink where the digit had none, going up and down: the drawn rows are not a straight line.
    fresh = (out > digits) & (digits == 0)
    assert fresh.sum(axis=(1, 2)).min() > 20
    for i in range(N):
        rows, cols = np.nonzero(fresh[i])
        fit = np.polyfit(cols, rows, 1)
        assert np.abs(rows - np.polyval(fit, cols)).max() > 1.5


def test_canny_edges_outline_the_strokes(digits: np.ndarray, corrupted: Corrupted) -> None:
    out = corrupted("canny_edges")
    assert set(np.unique(out)) <= {0, 255}
    edges = out == 255
    assert edges.sum(axis=(1, 2)).min() >= 20
    ink = digits > 127
    # Edge pixels sit on the stroke boundary: none inside a stroke, all within 2 px of one.
    interior = ndimage.binary_erosion(ink, structure=np.ones((1, 3, 3)))
    assert not (edges & interior).any()
    band = ndimage.binary_dilation(ink, np.ones((1, 5, 5))) & ~ndimage.binary_erosion(
        ink, np.ones((1, 5, 5))
    )
    assert (edges <= band).all()
