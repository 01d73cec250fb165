"""Not a digit: fit a checkpoint's calibration and operating point, and measure what it refuses.

``python -m benchmarks.not_a_digit fit --model mnist_cnn`` fits the served version's
temperature and operating point on held-out *training* data and writes them into the checkpoint
(its metadata: ``temperature``, ``rejection``); ``python -m benchmarks.not_a_digit measure``
measures every method on the project's own suites and writes the JSON and the reliability
diagram. Every image is an upload file through the service's preprocessing
(app.digits.pipeline.to_digits); the model runs in float32 on the CPU.

Fit (never the test set): the last HOLD_OUT MNIST training digits (left out of the version's
fine-tuning by ``--hold-out``) as PNGs, the same digits photographed in every condition of
benchmarks/photos.py, and generated outliers (models/negatives.py, a seed training never used).
The temperature minimises their negative log-likelihood, each set weighing the same; the
operating point is the digits' score quantile that refuses TARGET_REFUSED of them.

Measure, per method, on the suites: MNIST test digits, the photo suite (test digits
photographed, every condition), digits from other hands at low resolution (scikit-learn's 1,797
8x8 bitmaps from 43 writers, enlarged without smoothing), and the outlier suites of
benchmarks/outliers.py (non-digits and numbers, photographed and drawn on canvases). Methods:

- ``outlier exposure``: the served version's outlier classes at its operating point (what the
  service does);
- ``max softmax``, ``energy``: version 1 (no outlier classes) refusing below a threshold on its
  top probability, or above one on its energy (-logsumexp of its logits), each set on the same
  held-out training digits to refuse the same share of them as outlier exposure does.
"""

import argparse
import io
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from app.serving.verdict import DIGITS
from benchmarks import photos as photo_suite
from benchmarks.harness import provenance
from benchmarks.robustness import preprocess
from models.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from models.data import load_mnist
from models.negatives import outliers as training_outliers
from models.weights import served_path

HOLD_OUT = 5000
TARGET_REFUSED = 0.002  # of held-out training digits (clean and photographed)
FIT_PHOTOS = 40  # held-out training digits photographed per condition
BINS = 15  # for the expected calibration error and the reliability diagram


@torch.inference_mode()
def logits(ckpt: LoadedCheckpoint, digits: np.ndarray) -> np.ndarray:
    """N x 28 x 28 uint8 digits -> the model's float32 logits."""
    model, x = ckpt.model.eval(), torch.from_numpy(digits)[:, None]
    parts = [model(ckpt.transform(x[i : i + 1000])).float() for i in range(0, len(x), 1000)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, len(ckpt.meta.labels)))


def softmax(z: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Rows of probabilities."""
    z = z / temperature
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def fit_temperature(z: np.ndarray, y: np.ndarray, weight: np.ndarray) -> float:
    """The temperature that minimises the weighted negative log-likelihood of ``y`` (LBFGS on
    log T)."""
    zt, yt, wt = torch.from_numpy(z).double(), torch.from_numpy(y), torch.from_numpy(weight)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        nll = torch.nn.functional.cross_entropy(zt / log_t.exp(), yt, reduction="none")
        loss = (nll * wt).sum() / wt.sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def png(digit: np.ndarray) -> bytes:
    """A 28x28 uint8 digit as the PNG file a client would upload."""
    buf = io.BytesIO()
    Image.fromarray(digit).save(buf, "PNG")
    return buf.getvalue()


def held_out(data_dir: Path, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fitting sets, preprocessed: held-out training digits (clean, photographed) and
    generated outliers; each as digits and classes."""
    train = load_mnist(data_dir, train=True, download=False)
    images, labels = train.images[-HOLD_OUT:, 0].numpy(), train.labels[-HOLD_OUT:].numpy()
    clean, _ = preprocess([png(d) for d in images])
    shot = [], []  # type: tuple[list[bytes], list[int]]
    for c in photo_suite.CONDITIONS:
        pick = slice(FIT_PHOTOS * photo_suite.CONDITIONS.index(c), None)
        files = photo_suite.render(c, images[pick][:FIT_PHOTOS], seed)
        shot[0].extend(files)
        shot[1].extend(labels[pick][:FIT_PHOTOS].tolist())
    photographed, _ = preprocess(shot[0])
    made, classes = training_outliers(2000, train.images[:1000, 0].numpy(), seed + 7919)
    return {
        "digits": (clean, labels),
        "photos": (photographed, np.array(shot[1])),
        "outliers": (made, classes),
    }


def fit(model: str, path: Path, data_dir: Path, seed: int) -> dict[str, object]:
    """Fit the checkpoint's temperature and operating point, and write them into it."""
    ckpt = load_checkpoint(path)
    if len(ckpt.meta.labels) <= DIGITS:
        raise SystemExit(f"{path} has no outlier classes: nothing to fit")
    sets = held_out(data_dir, seed)
    z = np.concatenate([logits(ckpt, d) for d, _ in sets.values()])
    y = np.concatenate([c for _, c in sets.values()])
    # Each set weighs the same: the few photographed digits as much as the many clean ones.
    w = np.concatenate([np.full(len(c), 1 / len(c)) for _, c in sets.values()])
    temperature = fit_temperature(z, y, w)
    digit_scores = np.concatenate(
        [softmax(logits(ckpt, sets[k][0]), temperature)[:, DIGITS:].sum(1)
         for k in ("digits", "photos")]
    )  # fmt: skip
    threshold = float(np.quantile(digit_scores, 1 - TARGET_REFUSED))
    ckpt.meta.temperature = temperature
    ckpt.meta.rejection = {
        "method": "outlier exposure: classes not-a-digit and several-digits "
        "(models/negatives.py); temperature scaling",
        "threshold": threshold,
        "fitted_on": f"the last {HOLD_OUT} MNIST training digits (clean, and {FIT_PHOTOS} per "
        "photo condition photographed) and 2,000 generated outliers",
        "target_refused": TARGET_REFUSED,
        "command": provenance("benchmarks.not_a_digit")["command"],
    }
    save_checkpoint(ckpt.model, ckpt.meta, path)
    load_checkpoint(path)  # what the service will do with it
    print(f"{model}: temperature {temperature:.3f}, refuse at score >= {threshold:.4f}")
    return ckpt.meta.rejection


@dataclass(frozen=True)
class Method:
    """One way to refuse: scores for logits (higher: less likely one digit) and a threshold."""

    name: str
    checkpoint: LoadedCheckpoint
    score: Callable[[np.ndarray], np.ndarray]
    threshold: float


def _msp(temperature: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda z: 1 - softmax(z, temperature).max(1)


def _energy(z: np.ndarray) -> np.ndarray:
    m = z.max(1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(1)))


def ece(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over BINS equal-width bins, and the bins themselves."""
    edges = np.linspace(0, 1, BINS + 1)
    bins, total = [], 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
            total += inside.mean() * abs(acc - conf)
            bins.append({"low": lo, "high": hi, "accuracy": acc, "confidence": conf,
                         "images": int(inside.sum())})  # fmt: skip
    return float(total), bins


def main(argv: list[str] | None = None) -> int:
    """Fit, or measure."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.not_a_digit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("action", choices=["fit", "measure"])
    p.add_argument("--model", default="mnist_cnn")
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photos", type=int, default=50, help="test digits per photo condition")
    p.add_argument("--outliers", type=int, default=240, help="images per outlier suite")
    p.add_argument("--json", type=Path)
    p.add_argument("--plot", type=Path, help="the reliability diagram (PNG)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.action == "fit":
        fit(args.model, served_path(args.model), args.data_dir, args.seed)
        return 0
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Every method on every suite; the JSON and the diagram."""
    from benchmarks.refusals import build, methods, report

    suites = build(args)
    found = methods(args)
    results = report(found, suites)
    print(json.dumps(results["summary"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        made = {**provenance("benchmarks.not_a_digit"), **results}
        args.json.write_text(json.dumps(made, indent=1) + "\n")
    if args.plot:
        from benchmarks.refusals import reliability_diagram

        reliability_diagram(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
