"""LeNet for 1x28x28 digits: two convolutions and three fully connected layers."""

from torch import Tensor, nn

from models.registry import InputSpec, register_model


class LeNet(nn.Module):
    """conv(1->6, 3x3, pad 1) -> pool -> conv(6->16, 5x5) -> pool -> fc 400->120->84->classes."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        # A ReLU after each conv and hidden fc: without them the net is linear between pools.
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of 1x28x28 images."""
        return self.classifier(self.features(x).flatten(1))


@register_model("lenet", InputSpec(1, 28, 28))
def lenet(*, num_classes: int = 10) -> LeNet:
    """LeNet with ReLU activations."""
    return LeNet(num_classes=num_classes)
