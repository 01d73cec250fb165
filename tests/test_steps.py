"""The preprocessing steps one by one (app/digits/paper.py, ink.py, frame.py), each on a stack.

Every step is one function that a request's stack and a single image (a stack of one) both
call; these tests pin what each does, so a change to a step shows here by name. The helpers
tested in tests/test_other_hands.py (otsu, border_paper, impulses, median3, mean3, opening,
wandering) and tests/test_luminance.py (despeckle) are not repeated.
"""

import numpy as np
import pytest

from app.digits.frame import (
    centre,
    crop_boxes,
    dilate,
    extents,
    fit,
    fit_one,
    frame,
    stroke_width,
)
from app.digits.ink import (
    above_paper,
    already_ink,
    crop_ink,
    cut_noise,
    fill_outlines,
    outlines,
    stretch,
)
from app.digits.paper import (
    edges,
    inverted_bands,
    noise,
    plane,
    polarity,
    quantile,
    uninvert_bands,
)
from models.framing import BOX, COM_TARGET, FRAME


def _digit(h: int = 28, w: int = 28, box: tuple[int, int, int, int] = (4, 24, 8, 18)) -> np.ndarray:
    """White full-range ink (a filled box with an anti-aliased fringe) on black, as MNIST."""
    a = np.zeros((h, w), np.float32)
    y0, y1, x0, x1 = box
    a[y0:y1, x0:x1] = 1.0
    a[y0:y1, x1] = 0.05  # faint ink beside the box: not the digit's, but kept around it
    return a


# --- paper.py ------------------------------------------------------------------------------


def test_edges_and_nearest_rank_quantiles() -> None:
    stack = np.arange(2 * 4 * 5, dtype=np.float32).reshape(2, 4, 5)
    border = edges(stack)
    assert border.shape == (2, 2 * 5 + 2 * 4)
    assert set(border[0].tolist()) == {0, 1, 2, 3, 4, 15, 16, 17, 18, 19, 5, 10, 9, 14}
    assert edges(np.ones((1, 2, 7), np.float32)).shape == (1, 14)  # thin: the whole image
    rows = np.array([[4, 1, 3, 2], [9, 8, 7, 6]], np.float32)
    assert quantile(rows, 0.5).tolist() == [2, 7]  # index int(0.5 * 3) = 1, not a mean
    mask = np.array([[True, True, False, False], [False, True, True, True]])
    assert quantile(rows, 0.5, mask).tolist() == [1, 7]  # among the marked values only


def test_noise_is_the_median_and_mad_of_the_paper() -> None:
    clean = np.full((1, 20), 0.3, np.float32)
    level, sigma = noise(clean, np.ones_like(clean, bool))
    assert level[0] == pytest.approx(0.3) and sigma[0] == 0  # MNIST's borders: no noise
    rough = np.array([[0.4, 0.5, 0.6, 0.5, 0.5, 1.0]], np.float32)
    paper = np.array([[True, True, True, True, True, False]])  # the 1.0 is ink
    level, sigma = noise(rough, paper)
    assert level[0] == pytest.approx(0.5) and sigma[0] == pytest.approx(0.0)
    paper[0, 3:5] = False  # paper 0.4, 0.5, 0.6: MAD 0.1
    level, sigma = noise(rough, paper)
    assert level[0] == pytest.approx(0.5) and sigma[0] == pytest.approx(0.14826, abs=1e-6)


def test_polarity_follows_the_ink_not_the_mean() -> None:
    white_on_black = _digit()
    dark_on_white = 1 - white_on_black
    inverted = polarity(np.stack([white_on_black, dark_on_white]), np.array([0.0, 1.0]))
    assert inverted.tolist() == [False, True]
    thin = np.full((40, 40), 0.5, np.float32)
    thin[20, 10:14] = 0.0  # four dark pixels, under 1%: the tails tie, the mean decides
    assert polarity(thin[None], np.array([0.5]))[0]


def test_plane_is_the_linear_light_across_the_page() -> None:
    ys, xs = np.mgrid[0:64, 0:80].astype(np.float32)
    page = 0.3 + 0.004 * ys + 0.002 * xs
    inked = page.copy()
    inked[20:40, 30:34] = 0.0  # a stroke, crossing nothing at the border
    offset = plane(inked[None])[0] - page  # the edges' 25th percentiles: a little under it
    assert np.ptp(offset) < 1e-5 and -0.1 < offset.mean() < 0


def test_side_bands_of_inverted_polarity_are_inverted_back() -> None:
    digit = _digit()
    striped = digit.copy()
    striped[:, :7] = 1 - striped[:, :7]  # MNIST-C's stripe: 7 columns each side inverted
    striped[:, -7:] = 1 - striped[:, -7:]
    one_side = digit.copy()
    one_side[:, :7] = 1 - one_side[:, :7]
    ring = np.zeros((28, 28), np.float32)  # a tight 0: ink down both sides, not all of them
    ring[:, :5], ring[:, -5:], ring[:4], ring[-4:] = 1, 1, 1, 1
    ring[:3, :2] = ring[-3:, -2:] = 0
    broken = striped.copy()
    broken[10:18, 0] = 0  # a side column not all of the band's level
    ragged = striped.copy()
    ragged[-1, 5:7] = 0  # a band 7 px wide at the top, 5 at the bottom
    crossed = striped.copy()
    crossed[0, 12:14] = 1  # something of the band's level between the bands
    stack = np.stack([striped, digit, 1 - digit, one_side, ring, broken, ragged, crossed])
    assert inverted_bands(stack).tolist() == [7, 0, 0, 0, 0, 0, 0, 0]
    out = uninvert_bands(stack)
    np.testing.assert_array_equal(out[0], digit)
    np.testing.assert_array_equal(out[1:], stack[1:])
    rest = stack[1:]
    assert uninvert_bands(rest) is rest  # nothing to do: no copy
    ink, _ = crop_ink(np.stack([striped, digit]))  # a step of the crop path
    np.testing.assert_array_equal(ink[0], ink[1])


# --- ink.py --------------------------------------------------------------------------------


def test_above_paper_looks_again_for_faint_ink_under_noise() -> None:
    rng = np.random.default_rng(0)
    page = rng.normal(0.5, 0.05, (2, 80, 80)).astype(np.float32)
    page[:, 20:60, 30:42] += 0.08  # a faint wide stroke, under 4 sigma of the noise
    paper = np.ones((2, 4 * 80), bool)
    field = np.full((2, 1, 1), 0.5, np.float32)
    _, _, noisy, thr, peak = above_paper(page.copy(), field, paper, faint_means=False)
    assert (peak - thr < 0.05).all()  # lost in the noise
    resid, _, sigma, thr, peak = above_paper(page.copy(), field, paper, faint_means=True)
    assert (peak - thr >= 0.05).all() and (sigma < noisy / 2).all()  # found after the means
    assert resid[0, 40, 36] > thr[0] > resid[0, 5, 5]


def test_stretch_spans_paper_to_peak_and_leaves_full_range_ink_alone() -> None:
    resid = np.stack([_digit() * 0.4 + 0.1, _digit(), _digit() * 0.97])
    out = stretch(resid, np.array([0.1, 0.0, 0.0]), np.array([0.5, 1.0, 0.97]))
    assert out is resid  # in place
    assert out[0].min() == pytest.approx(0) and out[0].max() == pytest.approx(1)
    np.testing.assert_array_equal(out[1], _digit())
    np.testing.assert_array_equal(out[2], _digit() * 0.97)  # at FULL_SCALE or more: as it is


def test_cut_noise_cuts_under_the_threshold_only_where_there_is_noise() -> None:
    resid = np.stack([_digit(), _digit()])
    resid[:, 10, 10] = 0.04  # a hole in the digit's box, under the threshold
    resid[:, 0, 0] = 0.5  # a lone speck off the digit, over it
    ink = cut_noise(
        resid.copy(),
        np.zeros(2),
        np.array([0.01, 0.0]),  # the first image is noisy
        np.array([0.04, 0.0]),
        np.ones(2),
    )
    assert ink[0, 10, 10] == 0 and ink[1, 10, 10] == pytest.approx(0.04)
    assert ink[0, 12, 12] == 1  # the digit stays
    assert ink[0, 0, 0] == 0 and ink[1, 0, 0] == 0.5  # despeckled where there is noise


def test_crop_ink_takes_mnist_as_it_is_and_inverts_a_page() -> None:
    mnist = _digit()
    stack = np.stack([mnist, 1 - mnist])
    found = extents(stack[:1])
    assert already_ink(found, 28, 28) == [True]
    alone = mnist[None]
    assert crop_ink(alone)[0] is alone  # no step at all
    ink, (boxes, _, _) = crop_ink(stack)
    np.testing.assert_allclose(ink[1], ink[0], atol=1e-6)  # dark on white: the same ink
    assert boxes[0] == boxes[1] == (4, 24, 8, 18)
    blank, (boxes, _, _) = crop_ink(np.full((1, 28, 28), 0.7, np.float32))
    assert not blank.any() and boxes[0][0] == 28  # no digit: zeros, an empty box


def test_outlines_are_told_from_strokes_and_filled() -> None:
    bar = np.zeros((28, 28), np.float32)
    bar[4:24, 12:15] = 1.0  # a 3 px stroke
    outline = bar.copy()
    outline[5:23, 13] = 0.0  # only its edges left (as canny draws them)
    thick_binary = np.zeros((28, 28), np.float32)
    thick_binary[4:24, 10:15] = 1.0  # binary but 5 px wide: a stroke (MNIST has one such)
    stack = np.stack([outline, bar * 0.9, thick_binary, np.zeros((28, 28), np.float32)])
    assert outlines(stack).tolist() == [True, False, False, False]
    filled = fill_outlines(outline[None])[0]
    np.testing.assert_array_equal(filled[5:23, 12:15], 1.0)  # the stroke is whole again
    assert filled[:, :12].max() == 0 and filled[:, 15:].max() == 0  # and no wider
    ink, (boxes, _, _) = crop_ink(outline[None])
    np.testing.assert_array_equal(ink[0], filled)
    assert boxes[0] == (4, 24, 12, 15)


# --- frame.py ------------------------------------------------------------------------------


def test_extents_and_crop_boxes() -> None:
    stack = np.stack([_digit(), np.zeros((28, 28), np.float32)])
    boxes, inked, full = extents(stack)
    assert boxes == [(4, 24, 8, 18), (28, 28, 28, 28)]  # none: starts at max(h, w)
    assert inked[0] == (4, 24, 8, 19) and full == [True, False]
    windows, sides = crop_boxes(boxes, inked)
    assert sides == [20, 0]
    assert windows[0] == (4, 24, 8, 19)  # padded, but only as far as the faint ink goes
    windows, _ = crop_boxes([(4, 24, 8, 18)], [(0, 28, 0, 28)])
    assert windows == [(0, 28, 4, 22)]  # 4 of BOX px around a 20 px box


def test_stroke_width_and_dilate() -> None:
    bar = np.zeros((30, 30), np.float32)
    bar[5:25, 10:13] = 1.0
    assert stroke_width(bar) == pytest.approx(3.0)
    dot = np.zeros((3, 3), np.float32)
    dot[1, 1] = 1.0
    grown = dilate(dot, 1)
    assert grown.shape == (5, 5) and grown.sum() == 5  # one cross step: a plus
    assert dilate(dot, 2).sum() == 21  # then a square: an octagon


def test_fit_keeps_mnist_boxes_and_scales_others_to_box() -> None:
    big = np.zeros((1, 80, 80), np.float32)
    big[0, 10:70, 30:50] = 1.0
    canvas, sizes = fit(big, [(10, 70, 30, 50)], [60])
    assert sizes == [(BOX, 7)] and canvas[0, :BOX, :7].max() == 1
    mnist = _digit()[None]
    canvas, sizes = fit(mnist, [(4, 24, 8, 19)], [20])
    np.testing.assert_array_equal(canvas[0, :20, :11], mnist[0, 4:24, 8:19])  # not resampled
    pen = np.zeros((200, 200), np.float32)
    pen[20:180, 99:101] = 1.0  # a 2 px line on a big canvas: grown before shrinking
    fitted = fit_one(pen[20:180, 90:110], 160)
    assert fitted is not None and fitted.shape[0] == BOX and stroke_width(fitted) >= 2


def test_centre_puts_the_mass_at_com_target_and_frame_says_what_it_found() -> None:
    canvas = np.zeros((2, FRAME, FRAME), np.float32)
    canvas[0, :3, :5] = 1.0  # a 3 x 5 block at the top left
    out = centre(canvas, [(3, 5), (0, 0)])
    ys, xs = np.nonzero(out[0])
    assert (ys.mean(), xs.mean()) == (COM_TARGET, COM_TARGET) and out[0].sum() == 15
    assert not out[1].any()
    digits, found = frame(np.stack([_digit(), np.zeros((28, 28), np.float32)]))
    assert found.tolist() == [True, False] and digits[0].sum() == pytest.approx(_digit().sum())
