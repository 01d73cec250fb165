"""The model-input transform shared by training and serving: 28x28 digit -> model tensor."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from models.registry import InputSpec

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


@dataclass(frozen=True)
class ModelInputTransform:
    """Scale to [0, 1], resize to the model's input, normalise, repeat the channel.

    Runs batch-wise on whatever device the digits are on, so the 224x224x3 input of
    AlexNet/VGG is made on the GPU rather than shipped there.
    """

    spec: InputSpec
    mean: float = MNIST_MEAN
    std: float = MNIST_STD

    def __call__(self, digits: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """N x 1 x 28 x 28 digits (uint8 0-255, or float 0-1) -> N x C x H x W input in ``dtype``.

        Computed in float32 and cast before the channel is repeated: the repeat is a view, so
        the C-channel input is written once, by whoever lays it out (channels_last).
        """
        if digits.ndim != 4 or digits.shape[1] != 1:
            raise ValueError(f"expected N x 1 x H x W digits, got shape {tuple(digits.shape)}")
        x = digits.float().div(255.0) if digits.dtype == torch.uint8 else digits.float()
        size = (self.spec.height, self.spec.width)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = ((x - self.mean) / self.std).to(dtype)
        if self.spec.channels != 1:
            x = x.expand(-1, self.spec.channels, -1, -1)
        return x
