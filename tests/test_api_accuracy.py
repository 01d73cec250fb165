"""All 10,000 MNIST test digits posted as PNG score what the evaluation CLI measures."""

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from models.evaluate import evaluate
from tests.helpers import WEIGHTS, png, settings


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "mnist_cnn"])
def test_api_accuracy_equals_the_models_own(name: str, mnist_test: MnistSplit) -> None:
    ckpt = load_checkpoint(WEIGHTS / f"{name}.safetensors")
    direct = evaluate(ckpt.model, mnist_test, ckpt.transform)
    assert direct.accuracy == ckpt.meta.test_accuracy
    labels = mnist_test.labels.tolist()
    predicted: list[int] = []
    with TestClient(create_app(settings(models=(name,), max_batch_size=256))) as client:
        for start in range(0, len(labels), 250):
            files = [
                ("files", (f"{i}.png", png(mnist_test.images[i, 0].numpy()), "image/png"))
                for i in range(start, min(start + 250, len(labels)))
            ]
            r = client.post(f"/predict/{name}", files=files)
            assert r.status_code == 200, r.text
            predicted += [int(p["label"]) for p in r.json()["predictions"]]
    api_accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    assert api_accuracy == direct.accuracy, (api_accuracy, direct.accuracy)
    assert torch.tensor(predicted).bincount(minlength=10).min() > 800  # no collapsed class
