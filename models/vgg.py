"""VGG 11/13/16/19 from cfg lists (torchvision style), initialised as torchvision does."""

from typing import Final

from torch import Tensor, nn

from models.registry import InputSpec, register_model

# "M" is a 2x2 max-pool; integers are 3x3 conv widths.
# fmt: off
CFGS: Final[dict[str, list[int | str]]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# fmt: on


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """Conv stack for one cfg list."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(v, int)
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """features -> adaptive pool to 7x7 -> 25088->4096->4096->classes with dropout."""

    def __init__(self, features: nn.Sequential, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        self._initialize_weights()

    def forward(self, x: Tensor) -> Tensor:
        """Logits for a batch of 3x224x224 images."""
        return self.classifier(self.avgpool(self.features(x)).flatten(1))

    def _initialize_weights(self) -> None:
        # torchvision's choices: Kaiming normal (fan out) for convs, N(0, 0.01) for linears.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)


def _vgg(cfg: str, num_classes: int, dropout: float, batch_norm: bool) -> VGG:
    return VGG(make_layers(CFGS[cfg], batch_norm), num_classes=num_classes, dropout=dropout)


_SPEC = InputSpec(3, 224, 224)


@register_model("vgg11", _SPEC)
def vgg11(*, num_classes: int = 10, dropout: float = 0.5, batch_norm: bool = False) -> VGG:
    """VGG-11 (cfg A)."""
    return _vgg("A", num_classes, dropout, batch_norm)


@register_model("vgg13", _SPEC)
def vgg13(*, num_classes: int = 10, dropout: float = 0.5, batch_norm: bool = False) -> VGG:
    """VGG-13 (cfg B)."""
    return _vgg("B", num_classes, dropout, batch_norm)


@register_model("vgg16", _SPEC)
def vgg16(*, num_classes: int = 10, dropout: float = 0.5, batch_norm: bool = False) -> VGG:
    """VGG-16 (cfg D)."""
    return _vgg("D", num_classes, dropout, batch_norm)


@register_model("vgg19", _SPEC)
def vgg19(*, num_classes: int = 10, dropout: float = 0.5, batch_norm: bool = False) -> VGG:
    """VGG-19 (cfg E)."""
    return _vgg("E", num_classes, dropout, batch_norm)
