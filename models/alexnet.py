"""AlexNet for MNIST: 3x224x224 input, 256x5x5 features, 6400->4096->4096->classes."""

from torch import Tensor, nn

from models.registry import InputSpec, register_model


class AlexNet(nn.Module):
    """AlexNet with an unpadded 11x11/4 stem, so 224x224 input ends at 256x5x5."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4),  # 54x54
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 26x26
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 12x12
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 5x5
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 5 * 5, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of 3x224x224 images."""
        return self.classifier(self.features(x).flatten(1))


@register_model("alexnet", InputSpec(3, 224, 224))
def alexnet(*, num_classes: int = 10, dropout: float = 0.5) -> AlexNet:
    """AlexNet for 3x224x224 digits (the 28x28 digit resized, its channel repeated)."""
    return AlexNet(num_classes=num_classes, dropout=dropout)
