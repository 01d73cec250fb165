"""A compact BatchNorm CNN for MNIST: four conv + BatchNorm + ReLU, two pools, three fc."""

from torch import Tensor, nn

from models.registry import InputSpec, register_model


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class MnistCNN(nn.Module):
    """4 x (conv 3x3 + BatchNorm + ReLU), 2 max-pools, fc 2048->1024->128->classes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(1, 16),  # 26x26
            *_conv_bn_relu(16, 32),  # 24x24
            nn.MaxPool2d(2),  # 12x12
            *_conv_bn_relu(32, 64),  # 10x10
            *_conv_bn_relu(64, 128),  # 8x8
            nn.MaxPool2d(2),  # 4x4
        )
        self.classifier = nn.Sequential(
            nn.Linear(128 * 4 * 4, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of 1x28x28 images."""
        return self.classifier(self.features(x).flatten(1))


@register_model("mnist_cnn", InputSpec(1, 28, 28))
def mnist_cnn(*, num_classes: int = 10) -> MnistCNN:
    """The compact BatchNorm CNN."""
    return MnistCNN(num_classes=num_classes)
