"""Architectures: registry, seed fidelity (parameter counts, output shapes), the input transform."""

import pytest
import torch

import models
from models.registry import InputSpec, get_input_spec, get_model, list_models, register_model
from models.transforms import MNIST_MEAN, MNIST_STD, ModelInputTransform

SEED_PARAMS = {
    "mnist_cnn": 2_328_298,
    "lenet": 61_610,
    "alexnet": 45_510_474,
    "vgg16": 134_301_514,
}


def test_registry_lists_the_seeds_nets() -> None:
    assert list_models() == sorted(
        ["alexnet", "lenet", "mnist_cnn", "vgg11", "vgg13", "vgg16", "vgg19"]
    )
    assert models.list_models() == list_models()


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known models: alexnet, lenet"):
        get_model("resnet")


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet", InputSpec(1, 28, 28))(lambda: torch.nn.Identity())


@pytest.mark.parametrize("name,count", SEED_PARAMS.items())
def test_parameter_counts_match_the_seed(name: str, count: int) -> None:
    with torch.device("meta"):
        model = get_model(name)
    assert sum(p.numel() for p in model.parameters()) == count


@pytest.mark.parametrize("name", ["lenet", "mnist_cnn", "alexnet", "vgg16"])
def test_output_shape_at_the_declared_input(name: str) -> None:
    spec = get_input_spec(name)
    model = get_model(name).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, *spec.as_tuple()))
    assert out.shape == (2, 10)


def test_input_specs() -> None:
    assert get_input_spec("lenet") == InputSpec(1, 28, 28)
    assert get_input_spec("mnist_cnn") == InputSpec(1, 28, 28)
    for name in ["alexnet", "vgg11", "vgg13", "vgg16", "vgg19"]:
        assert get_input_spec(name) == InputSpec(3, 224, 224)


def test_num_classes_is_a_keyword() -> None:
    assert get_model("lenet", num_classes=3)(torch.zeros(1, 1, 28, 28)).shape == (1, 3)


def test_lenet_is_not_linear() -> None:
    # The seed forgot activations; with ReLUs f(a) + f(b) != f(a + b) + f(0).
    model = get_model("lenet").eval()
    a, b = torch.randn(1, 1, 28, 28), torch.randn(1, 1, 28, 28)
    zero = torch.zeros(1, 1, 28, 28)
    assert not torch.allclose(model(a) + model(b), model(a + b) + model(zero), atol=1e-4)


def test_alexnet_has_no_debug_print(capsys: pytest.CaptureFixture[str]) -> None:
    get_model("alexnet").eval()(torch.zeros(1, 3, 224, 224))
    assert capsys.readouterr().out == ""


def test_vgg_initialisation() -> None:
    model = get_model("vgg11")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(not m.bias.detach().any() for m in linears + convs)
    assert 0.008 < float(linears[0].weight.detach().std()) < 0.012  # N(0, 0.01)
    fan_out = convs[1].out_channels * 9
    assert float(convs[1].weight.detach().std()) == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_transform_for_224_nets_resizes_and_repeats_channels() -> None:
    digits = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    digits[:, :, 10:18, 10:18] = 255
    out = ModelInputTransform(get_input_spec("vgg16"))(digits)
    assert out.shape == (4, 3, 224, 224)
    assert torch.equal(out[:, 0], out[:, 2])
    assert out.min().item() == pytest.approx(-MNIST_MEAN / MNIST_STD)
    assert out.max().item() == pytest.approx((1 - MNIST_MEAN) / MNIST_STD)


def test_transform_uint8_and_float_agree() -> None:
    digits = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    t = ModelInputTransform(get_input_spec("lenet"))
    assert torch.allclose(t(digits), t(digits.float() / 255))
    assert t(digits).shape == (3, 1, 28, 28)


def test_transform_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        ModelInputTransform(get_input_spec("lenet"))(torch.zeros(3, 28, 28))
