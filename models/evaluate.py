"""Evaluation: the shared ``evaluate`` loop and the ``python -m models.evaluate`` CLI."""

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.data import MnistNotFoundError, MnistSplit, load_mnist
from models.runtime import bind_thread, exact_float32, resolve_device
from models.transforms import ModelInputTransform

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Test-set metrics; the confusion matrix is indexed [true label, predicted label]."""

    loss: float
    accuracy: float
    confusion: Tensor
    seconds: float

    @property
    def n(self) -> int:
        """How many images were evaluated."""
        return int(self.confusion.sum())

    def per_class_accuracy(self) -> list[float]:
        """Recall of each class (NaN-free: a class with no images scores 0)."""
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return (self.confusion.diag() / totals).tolist()

    def as_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "n": self.n,
            "per_class_accuracy": self.per_class_accuracy(),
            "confusion_matrix": self.confusion.tolist(),
            "images_per_s": self.n / self.seconds if self.seconds > 0 else None,
        }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    data: MnistSplit,
    transform: ModelInputTransform,
    *,
    batch_size: int = 1000,
    autocast_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    num_classes: int = 10,
) -> EvalResult:
    """Loss, accuracy and confusion matrix of ``model`` on ``data`` (on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    start = time.perf_counter()
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for i in range(0, len(data), batch_size):
        x = transform(data.images[i : i + batch_size].to(device, non_blocking=True))
        y = data.labels[i : i + batch_size].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes**2)
    confusion_m = confusion.view(num_classes, num_classes).cpu()
    n = max(int(confusion_m.sum()), 1)
    return EvalResult(
        loss=float(loss_sum) / n,
        accuracy=int(confusion_m.diag().sum()) / n,
        confusion=confusion_m,
        seconds=time.perf_counter() - start,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__)
    p.add_argument("--model", required=True, help="architecture name, e.g. lenet")
    p.add_argument("--weights", type=Path, help="checkpoint (default weights/<model>.safetensors)")
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="root holding MNIST/raw/")
    p.add_argument("--no-download", action="store_true", help="never try to download MNIST")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--limit", type=int, help="evaluate only the first N test images")
    p.add_argument("--plot", type=Path, help="write the confusion matrix to this PNG")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: print one JSON object of test-set metrics."""
    from models.checkpoint import CheckpointError, load_checkpoint
    from models.weights import checkpoint_path

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    weights = args.weights or checkpoint_path(args.model)
    try:
        ckpt = load_checkpoint(weights, expect_architecture=args.model)
        test = load_mnist(args.data_dir, train=False, download=not args.no_download)
    except (CheckpointError, MnistNotFoundError) as exc:
        log.error("%s", exc)
        return 2
    device = resolve_device(args.device)
    bind_thread(device)
    model = ckpt.model.to(device)
    with exact_float32():  # the model's own accuracy: float32 on any device
        result = evaluate(
            model,
            test.head(args.limit).to(device),
            ckpt.transform,
            batch_size=args.batch_size,
            num_classes=len(ckpt.meta.labels),
        )
    out = {
        "model": args.model,
        "weights": str(weights),
        "device": str(device),
        **result.as_dict(),
        "checkpoint_test_accuracy": ckpt.meta.test_accuracy,
    }
    print(json.dumps(out))
    if args.plot:
        from models.plots import plot_confusion  # matplotlib only when asked

        plot_confusion(
            result.confusion,
            ckpt.meta.labels,
            args.plot,
            f"{args.model}: accuracy {result.accuracy:.2%}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
