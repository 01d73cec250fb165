"""All 10,000 MNIST test digits posted as PNG score what the evaluation CLI measures, and are
answered (or refused as not one digit) exactly as the served checkpoint says."""

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.serving.verdict import judge
from models.checkpoint import load_checkpoint
from models.data import MnistSplit
from models.evaluate import evaluate
from models.weights import served_path
from tests.helpers import WEIGHTS, png, settings


def _expected(name: str, mnist_test: MnistSplit) -> list[int]:
    """The served version's answers in float32 on the CPU: its digit, or -1 where it refuses."""
    ckpt = load_checkpoint(served_path(name, WEIGHTS))
    meta = ckpt.meta
    direct = evaluate(ckpt.model, mnist_test, ckpt.transform, num_classes=len(meta.labels))
    assert direct.accuracy == meta.test_accuracy  # the evaluation CLI's figure, recorded
    with torch.inference_mode():
        x = ckpt.transform(mnist_test.images)
        probs = torch.softmax(ckpt.model(x) / meta.temperature, 1).numpy()
    digits, refused = judge(meta.labels, meta.refuse_at, probs)
    answers = digits.argmax(1)
    answers[[r.index for r in refused]] = -1
    return answers.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lenet", "mnist_cnn"])
def test_api_accuracy_equals_the_models_own(name: str, mnist_test: MnistSplit) -> None:
    expected = _expected(name, mnist_test)
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
            predicted += [-1 if "type" in p else int(p["label"]) for p in r.json()["predictions"]]
    differ = int(np.sum(np.array(predicted) != np.array(expected)))
    assert differ == 0, differ
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    assert accuracy >= 0.994 and predicted.count(-1) <= 30  # refused: at most 0.3%
    assert torch.tensor([p for p in predicted if p >= 0]).bincount(minlength=10).min() > 800
