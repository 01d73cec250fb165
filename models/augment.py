"""On-device augmentation: MNIST digits made to look like other people's digits, batch-wise.

Every transform works on an N x 1 x H x W float batch on the training device. A transform of
probability p runs on a run of round(p * N) consecutive images starting at a random offset:
the batch is already in random order, so each image gets it with probability p, and only those
images pay for it (a per-image mask would compute every transform for every image). Offsets are
drawn on the host and shapes never depend on device values, so nothing waits for the device and
no Python loop runs over images. The order follows how a real digit is made: the pen
(stroke width), the hand (rotation, shear, size and place in the frame, elastic wobble), the
scanner (blur, low resolution enlarged) and the paper (contrast and gamma).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.framing import BOX, COM_TARGET, FULL_SCALE, TIGHT


@dataclass(frozen=True)
class AugmentRecipe:
    """Each transform's probability per image and its range; probability 0 turns it off."""

    affine_p: float = 1.0
    max_degrees: float = 12.0
    max_shear: float = 12.0  # degrees, horizontal: slanted handwriting
    # Framing, around the service's own (box fitted to 20 px, centre of mass at the centre):
    # below 1 a loose frame, above 1 a tight one (strokes may touch it); a shift in pixels.
    scale: tuple[float, float] = (0.85, 1.15)
    max_shift: float = 2.0
    clutter_p: float = 0.15  # a ruled line, a form's box edge, a scratch: dashed or wavy at times
    grain_p: float = 0.15  # grainy ink (pencil on rough paper, a noisy sensor)
    grain: tuple[float, float] = (0.2, 0.5)  # relative standard deviation of the ink
    elastic_p: float = 0.4
    elastic_px: float = 1.5  # peak displacement of the smooth random field, in pixels
    stroke_p: float = 0.4  # thicker (dilation) twice as often as thinner (erosion)
    blur_p: float = 0.15
    blur_sigma: tuple[float, float] = (0.5, 1.2)
    lowres_p: float = 0.15
    lowres_side: tuple[int, int] = (10, 16)  # scanned this small, then enlarged back
    # A bitmap this small with 17 grey levels, enlarged without smoothing: an 8x8 form scan.
    blocky_p: float = 0.1
    blocky_side: tuple[int, int] = (6, 10)
    contrast_p: float = 0.3
    contrast: tuple[float, float] = (0.5, 1.0)  # ink level over the paper
    gamma: tuple[float, float] = (0.6, 1.6)


NO_AUGMENT = AugmentRecipe(
    affine_p=0.0,
    elastic_p=0.0,
    stroke_p=0.0,
    blur_p=0.0,
    lowres_p=0.0,
    blocky_p=0.0,
    contrast_p=0.0,
    clutter_p=0.0,
    grain_p=0.0,
)


class _Draw:
    """Random numbers for one batch: per image on the batch's device, per batch on the host."""

    def __init__(
        self, n: int, generator: torch.Generator, device: torch.device, host: torch.Generator
    ) -> None:
        self.n, self.gen, self.device, self.host = n, generator, device, host

    def uniform(self, lo: float, hi: float, *shape: int) -> Tensor:
        size = shape or (self.n,)
        return torch.rand(size, generator=self.gen, device=self.device) * (hi - lo) + lo

    def flags(self, p: float) -> Tensor:
        """N floats: 1 on the run of images that get a transform of probability p, else 0."""
        on = torch.zeros(self.n, device=self.device)
        on[self.run(p)] = 1
        return on

    def run(self, p: float) -> slice:
        """round(p * N) consecutive images at a random offset: the ones a transform gets."""
        k = round(p * self.n)
        start = int(torch.randint(0, self.n - k + 1, (1,), generator=self.host))
        return slice(start, start + k)


def _dilate(x: Tensor) -> Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _erode(x: Tensor) -> Tensor:
    """Grey erosion by a cross (a 3x3 square would wipe MNIST's 2-3 px strokes out)."""
    vertical = F.max_pool2d(-x, (3, 1), stride=1, padding=(1, 0))
    horizontal = F.max_pool2d(-x, (1, 3), stride=1, padding=(0, 1))
    return -torch.maximum(vertical, horizontal)


def _thinner(x: Tensor) -> Tensor:
    """Erosion where enough of the digit survives it; else the strokes' soft edges shaved off
    (a 2 px stroke would vanish under erosion)."""
    thin = _erode(x)
    kept = thin.sum((1, 2, 3), keepdim=True) > 0.35 * x.sum((1, 2, 3), keepdim=True)
    shaved = (x - 0.5).clamp_min(0) * 2
    return torch.where(kept, thin / thin.amax((1, 2, 3), keepdim=True).clamp_min(1e-6), shaved)


def stroke_width(x: Tensor, draw: _Draw, p: float) -> Tensor:
    """A thicker or thinner pen: thinner (erosion), +1 or +2 dilation steps, a third each."""
    run = draw.run(p)
    k = run.stop - run.start
    if k == 0:
        return x
    a, b = run.start + k // 3, run.start + 2 * k // 3
    x[run.start : a] = _thinner(x[run.start : a])
    x[a:b] = _dilate(x[a:b])
    x[b : run.stop] = _dilate(_dilate(x[b : run.stop]))
    return x


def _affine_theta(draw: _Draw, r: AugmentRecipe, h: int, w: int) -> Tensor:
    """N x 2 x 3 inverse maps (output -> input coordinates) for affine_grid."""
    n = draw.n
    on = draw.flags(r.affine_p)
    angle = draw.uniform(-r.max_degrees, r.max_degrees) * on * (math.pi / 180)
    shear = torch.tan(draw.uniform(-r.max_shear, r.max_shear) * on * (math.pi / 180))
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros(n, device=draw.device)
    # Rotation, then a horizontal shear: [[cos, -sin + shear*cos], [sin, cos + shear*sin]].
    a = torch.stack([cos, -sin + shear * cos, zero], 1)
    b = torch.stack([sin, cos + shear * sin, zero], 1)
    return torch.stack([a, b], 1)


def _elastic_field(k: int, draw: _Draw, r: AugmentRecipe, h: int, w: int) -> Tensor:
    """k x H x W x 2 smooth displacements in grid units (a 5x5 random field, bicubic)."""
    coarse = draw.uniform(-1, 1, k, 2, 5, 5)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    scale = torch.tensor([2.0 / w, 2.0 / h], device=draw.device) * r.elastic_px
    return field.permute(0, 2, 3, 1) * scale


def geometry(x: Tensor, draw: _Draw, r: AugmentRecipe) -> Tensor:
    """Rotation, shear and elastic wobble, sampled once (one grid_sample)."""
    if r.affine_p <= 0 and r.elastic_p <= 0:
        return x
    n, _, h, w = x.shape
    grid = F.affine_grid(_affine_theta(draw, r, h, w), [n, 1, h, w], align_corners=False)
    run = draw.run(r.elastic_p)
    if run.stop > run.start:
        grid[run] += _elastic_field(run.stop - run.start, draw, r, h, w)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _gaussian(x: Tensor, draw: _Draw, sigma: tuple[float, float]) -> Tensor:
    """Gaussian blur with a per-image sigma (a separable 5-tap kernel, grouped convolution)."""
    n, c, h, w = x.shape
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    s = draw.uniform(sigma[0], sigma[1], n).to(x.dtype)
    k = torch.exp(-(taps[None] ** 2) / (2 * s[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (0, 0, 2, 2)), k.view(n * c, 1, 5, 1), groups=n * c)
    y = F.conv2d(F.pad(y, (2, 2, 0, 0)), k.view(n * c, 1, 1, 5), groups=n * c)
    return y.view(n, c, h, w)


def clutter(x: Tensor, draw: _Draw, p: float) -> Tensor:
    """A line across the frame: ruled paper, a form's box, a scratch; a third of them dashed
    and a third wavy. Drawn as a distance field, so every image of the run gets its own."""
    run = draw.run(p)
    k = run.stop - run.start
    if k == 0:
        return x
    h, w = x.shape[-2:]
    shape = (-1, 1, 1, 1)
    ys = torch.arange(h, device=x.device, dtype=x.dtype).view(1, 1, h, 1) - (h - 1) / 2
    xs = torch.arange(w, device=x.device, dtype=x.dtype).view(1, 1, 1, w) - (w - 1) / 2
    theta = draw.uniform(0, math.pi, k).view(shape)
    offset = draw.uniform(-0.4 * h, 0.4 * h, k).view(shape)
    across = xs * torch.cos(theta) + ys * torch.sin(theta)  # distance from the centre line
    along = -xs * torch.sin(theta) + ys * torch.cos(theta)
    style = draw.uniform(0, 3, k).view(shape)  # [0, 1) solid, [1, 2) dashed, [2, 3) wavy
    period = draw.uniform(3, 6, k).view(shape)
    wave = torch.where(style >= 2, 1.5 * torch.sin(along * (2 * math.pi) / period), 0)
    width = draw.uniform(0.5, 1.2, k).view(shape)
    line = (1 - ((across - offset - wave).abs() - width).clamp_min(0)).clamp_min(0)
    dashes = torch.sin(along * (math.pi / period)) > 0
    line = torch.where((style >= 1) & (style < 2) & ~dashes, 0, line)
    x[run] = torch.maximum(x[run], line * draw.uniform(0.6, 1.0, k).view(shape))
    return x


def blur(x: Tensor, draw: _Draw, p: float, sigma: tuple[float, float]) -> Tensor:
    """An out-of-focus photo or a soft pencil: Gaussian blur on a run of the batch."""
    run = draw.run(p)
    if run.stop > run.start:
        x[run] = _gaussian(x[run], draw, sigma)
    return x


def low_resolution(
    x: Tensor, draw: _Draw, p: float, side: tuple[int, int], levels: int | None = None
) -> Tensor:
    """Down to a small side (area average), then bilinear back up: a tiny scan enlarged. With
    ``levels``, a bitmap of that many grey levels enlarged without smoothing (blocky)."""
    run = draw.run(p)
    if run.stop == run.start:
        return x
    h, w = x.shape[-2:]
    # One side per batch, drawn on the host: reading a device number back would stall CUDA.
    small = int(torch.randint(side[0], side[1] + 1, (1,), generator=draw.host))
    y = F.interpolate(x[run], size=(small, small), mode="area")
    if levels is None:
        x[run] = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
    else:
        y = torch.round(y.clamp(0, 1) * (levels - 1)) / (levels - 1)
        x[run] = F.interpolate(y, size=(h, w), mode="nearest")
    return x


def blocky(x: Tensor, draw: _Draw, p: float, side: tuple[int, int]) -> Tensor:
    """A tiny bitmap of 17 grey levels enlarged by nearest neighbour: blocky strokes, as a
    low-resolution form scan (8x8 of 17 levels, as UCI's digits) enlarged."""
    return low_resolution(x, draw, p, side, levels=17)


def contrast_gamma(x: Tensor, draw: _Draw, r: AugmentRecipe) -> Tensor:
    """Ink profile through a gamma curve, then fainter ink: pencil, felt tip, faded scans."""
    run = draw.run(r.contrast_p)
    k = run.stop - run.start
    if k == 0:
        return x
    shape = (-1, 1, 1, 1)
    gamma = torch.exp(draw.uniform(math.log(r.gamma[0]), math.log(r.gamma[1]), k)).view(shape)
    level = draw.uniform(r.contrast[0], r.contrast[1], k).view(shape)
    x[run] = x[run].clamp(0, 1).pow(gamma) * level
    return x


def grain(x: Tensor, draw: _Draw, p: float, level: tuple[float, float]) -> Tensor:
    """Grainy ink: multiplicative noise on the strokes (the paper stays clean, as the service's
    noise threshold leaves it)."""
    run = draw.run(p)
    k = run.stop - run.start
    if k == 0:
        return x
    sd = draw.uniform(level[0], level[1], k).view(-1, 1, 1, 1)
    noise = draw.uniform(-1.7320508, 1.7320508, *x[run].shape)  # unit variance
    x[run] = (x[run] * (1 + sd * noise)).clamp(0, 1)
    return x


def reframe(x: Tensor, draw: _Draw, r: AugmentRecipe) -> Tensor:
    """Frame every digit as the service does (the box of ink above 0.1 scaled to 20 px, the
    centre of mass at the middle), then off by the recipe's framing: so whatever the other
    transforms did to the box (a line across the frame, a thicker pen), the model sees it as
    the service would show it, not as MNIST's framing would."""
    n, _, h, w = x.shape
    ink = x > TIGHT
    rows, cols = ink.any(3)[:, 0].float(), ink.any(2)[:, 0].float()
    index_h = torch.arange(h, device=x.device, dtype=x.dtype)
    index_w = torch.arange(w, device=x.device, dtype=x.dtype)

    def extent(profile: Tensor, index: Tensor) -> Tensor:
        first = torch.where(profile > 0, index, index.numel()).amin(1)
        last = torch.where(profile > 0, index, -1).amax(1)
        return (last - first + 1).clamp_min(1)

    side = torch.maximum(extent(rows, index_h), extent(cols, index_w))
    mass = x.sum((1, 2, 3)).clamp_min(1e-6)
    cy = (x.sum((1, 3)) * index_h).sum(1) / mass
    cx = (x.sum((1, 2)) * index_w).sum(1) / mass
    on = draw.flags(r.affine_p)
    scale = BOX / side * (1 + (draw.uniform(*r.scale) - 1) * on)  # output px per input px
    ty = COM_TARGET + draw.uniform(-r.max_shift, r.max_shift) * on
    tx = COM_TARGET + draw.uniform(-r.max_shift, r.max_shift) * on
    blank = mass <= 1e-6
    scale = torch.where(blank, 1.0, scale)
    cy, cx = torch.where(blank, ty, cy), torch.where(blank, tx, cx)
    # Output pixel i samples input pixel (i - t) / scale + c. In grid units (align_corners
    # False: pixel i sits at (2i + 1) / size - 1) that is g_in = g_out / scale + offset, with
    # offset = ((size - 1 - 2t) / scale + 2c + 1) / size - 1.
    inv = 1 / scale
    gx = ((w - 1 - 2 * tx) * inv + 2 * cx + 1) / w - 1
    gy = ((h - 1 - 2 * ty) * inv + 2 * cy + 1) / h - 1
    zero = torch.zeros_like(inv)
    theta = torch.stack([torch.stack([inv, zero, gx], 1), torch.stack([zero, inv, gy], 1)], 1)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def restretch(x: Tensor) -> Tensor:
    """Peak back to 1 where resampling or blurring lowered it, as the service's preprocessing
    does (app/frontend/preprocess.py leaves peaks of FULL_SCALE and more alone, as here)."""
    peak = x.amax((1, 2, 3), keepdim=True)
    return torch.where(peak < FULL_SCALE, x / peak.clamp_min(1e-6), x)


def augment(
    x: Tensor,
    generator: torch.Generator,
    recipe: AugmentRecipe,
    host: torch.Generator | None = None,
) -> Tensor:
    """Float N x 1 x H x W digits in [0, 1] -> the same, augmented per the recipe.

    ``generator`` draws on the batch's device; ``host`` (a CPU generator, by default one seeded
    from ``generator``'s seed) draws the few per-batch choices.
    """
    if host is None:
        host = torch.Generator().manual_seed(generator.initial_seed())
    if recipe == NO_AUGMENT:
        return x
    draw = _Draw(x.shape[0], generator, x.device, host)
    x = stroke_width(x.clone(), draw, recipe.stroke_p)  # the transforms write in place
    x = geometry(x, draw, recipe)
    x = clutter(x, draw, recipe.clutter_p)
    x = blur(x, draw, recipe.blur_p, recipe.blur_sigma)
    x = low_resolution(x, draw, recipe.lowres_p, recipe.lowres_side)
    x = blocky(x, draw, recipe.blocky_p, recipe.blocky_side)
    x = reframe(x, draw, recipe)
    # The service stretches a blurred digit's faint peak back to full ink; so do we.
    x = grain(restretch(x), draw, recipe.grain_p, recipe.grain)
    return contrast_gamma(x, draw, recipe)
