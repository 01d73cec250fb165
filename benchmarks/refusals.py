"""The measurement behind ``python -m benchmarks.not_a_digit measure``: the suites, the methods
set at equal refusals of held-out training digits, and the figures (see that module)."""

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from app.serving.verdict import DIGITS
from benchmarks import outliers
from benchmarks import photos as photo_suite
from benchmarks.not_a_digit import (
    Method,
    _energy,
    _msp,
    ece,
    held_out,
    logits,
    png,
    softmax,
)
from benchmarks.robustness import preprocess
from models.checkpoint import load_checkpoint
from models.data import load_mnist
from models.weights import checkpoint_path, served_path

# name -> (digits, refused by preprocessing, labels (digit suites) or None (outlier suites))
Suite = tuple[np.ndarray, np.ndarray, np.ndarray | None]
OUTLIER_SUITES = ("nondigits/photos", "nondigits/canvas", "numbers/photos", "numbers/canvas")


def other_hands() -> tuple[list[bytes], np.ndarray]:
    """scikit-learn's 1,797 digits (8x8, 17 grey levels, 43 writers) as dark-on-light PNGs
    enlarged without smoothing to 32, 64 or 96 pixels: low-resolution digits of other hands."""
    from sklearn.datasets import load_digits

    found = load_digits()
    rng = np.random.default_rng(0)
    files = []
    for img in found.images:
        side = int(rng.choice([32, 64, 96]))
        bitmap = Image.fromarray((255 - img / 16 * 255).astype(np.uint8))
        buf = io.BytesIO()
        bitmap.resize((side, side), Image.Resampling.NEAREST).save(buf, "PNG")
        files.append(buf.getvalue())
    return files, found.target.astype(np.int64)


def build(args: argparse.Namespace) -> dict[str, Suite]:
    """Every suite, through the service's preprocessing."""
    test = load_mnist(args.data_dir, train=False, download=False)
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    suites: dict[str, Suite] = {}
    digits, refused = preprocess([png(d) for d in images])
    suites["mnist"] = (digits, refused, labels)
    files, y = [], []
    for i, c in enumerate(photo_suite.CONDITIONS):
        pick = slice(i * args.photos, (i + 1) * args.photos)
        files += photo_suite.render(c, images[pick], args.seed)
        y += labels[pick].tolist()
    digits, refused = preprocess(files)
    suites["photos"] = (digits, refused, np.array(y))
    files, target = other_hands()
    digits, refused = preprocess(files)
    suites["other_hands"] = (digits, refused, target)
    for name in OUTLIER_SUITES:
        files, _ = outliers.suite(name, args.outliers, args.seed, (images, labels))
        digits, refused = preprocess(files)
        suites[name] = (digits, refused, None)
        print(f"  {name}: {len(files)} files", flush=True)
    return suites


def methods(args: argparse.Namespace) -> list[Method]:
    """The served version's outlier classes, and version 1 with a max-softmax or an energy
    threshold that refuses as many held-out training digits."""
    served = load_checkpoint(served_path(args.model))
    temperature, threshold = served.meta.temperature, served.meta.rejection["threshold"]
    sets = held_out(args.data_dir, args.seed)
    digits = np.concatenate([sets["digits"][0], sets["photos"][0]])

    def outlier_score(z: np.ndarray) -> np.ndarray:
        return softmax(z, temperature)[:, DIGITS:].sum(1)

    share = float((outlier_score(logits(served, digits)) >= threshold).mean())
    first = load_checkpoint(checkpoint_path(args.model))
    z1 = logits(first, digits)
    found = [Method("outlier exposure", served, outlier_score, threshold)]
    for name, score in (("max softmax", _msp(1.0)), ("energy", _energy)):
        found.append(Method(name, first, score, float(np.quantile(score(z1), 1 - share))))
    return found


def _one(method: Method, suite: Suite) -> dict[str, float]:
    digits, refused, labels = suite
    z = logits(method.checkpoint, digits)
    refused = refused | (method.score(z) >= method.threshold)
    out: dict[str, float] = {"images": len(digits), "refused": float(refused.mean())}
    if labels is None:
        if z.shape[1] > DIGITS:  # which of the two outlier classes
            several = z[:, DIGITS + 1] > z[:, DIGITS]
            out["refused_as_several_digits"] = float((refused & several).mean())
        return out
    probs = softmax(z[:, :DIGITS], method.checkpoint.meta.temperature)
    answered = ~refused
    right = probs.argmax(1) == labels
    out["accuracy_answered"] = float(right[answered].mean()) if answered.any() else 0.0
    out["right"] = float((right & answered).mean())
    error, bins = ece(probs.max(1)[answered], right[answered])
    out["ece"] = error
    out["bins"] = bins  # type: ignore[assignment]
    return out


def report(found: list[Method], suites: dict[str, Suite]) -> dict[str, object]:
    """Per method and suite: refusals, and for digits accuracy of what is answered and ECE."""
    table = {m.name: {name: _one(m, s) for name, s in suites.items()} for m in found}
    served = table[found[0].name]
    summary = {
        "nondigits refused": np.mean([served[k]["refused"] for k in OUTLIER_SUITES[:2]]),
        "numbers refused": np.mean([served[k]["refused"] for k in OUTLIER_SUITES[2:]]),
        "mnist refused": served["mnist"]["refused"],
        "mnist accuracy answered": served["mnist"]["accuracy_answered"],
        "photos refused": served["photos"]["refused"],
        "photos accuracy answered": served["photos"]["accuracy_answered"],
        "other hands right": served["other_hands"]["right"],
        "ece mnist": served["mnist"]["ece"],
        "ece photos": served["photos"]["ece"],
    }
    methods_info = {
        m.name: {"threshold": m.threshold, "checkpoint": str(m.checkpoint.path),
                 "temperature": m.checkpoint.meta.temperature}
        for m in found
    }  # fmt: skip
    return {"summary": {k: float(v) for k, v in summary.items()}, "methods": methods_info,
            "suites": table}  # fmt: skip


def reliability_diagram(results: dict[str, object], path: Path) -> None:
    """Accuracy against confidence per bin, for the served method on MNIST and the photos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results["suites"]["outlier exposure"]  # type: ignore[index]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    for name, style in (("mnist", "o-"), ("photos", "s-")):
        bins = table[name]["bins"]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                label=f"{name} (ECE {table[name]['ece']:.2%})")  # fmt: skip
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability of answered digits")  # fmt: skip
    ax.legend(loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
