"""How the zoo's models do on digits that are not MNIST's: ``python -m benchmarks.robustness``.

Every image is an upload file (PNG, or JPEG where the style says so) that goes through the
service's own preprocessing (app.digits.pipeline.to_digits, the code behind POST /predict) and
then the checkpoint's model in float32 on the CPU; an image the service would refuse (422)
counts as wrong. Suites:

- mnist: the 10,000 MNIST test digits, as PNG files (the control);
- mnist_c/<name>: MNIST-C's 15 corruptions (benchmarks/mnist_c.py) of the same digits, seeded;
- fonts, fonts_handwriting: digits rendered from this machine's fonts with pen-like distortions
  (benchmarks/fonts.py); the second row counts the handwriting-like fonts only;
- styles/<name>: the test digits uploaded in ways MNIST never was (benchmarks/styles.py);
- photos/<condition>: the first --photos test digits (1000 unless --limit is smaller) redrawn
  with a pen and photographed with a phone on paper in each of benchmarks/photos.py's
  conditions (plain, ruled, squared, ..., dim), JPEG with EXIF orientation where phones set it;
  photos/mean averages them. photos/strokes_as_mnist is the control: the same pen strokes framed
  as MNIST digits (what is lost to the strokes themselves rather than to the photo);
  photos/fonts: handwriting-font digits photographed in every condition, as many as one
  condition's photos (skipped, and said so, where no handwriting-like font is installed).

It prints a markdown table, suites down and models across, and writes JSON. With --baseline (a
JSON written by an earlier run, e.g. at the commit before a change) each model gets a "before"
column beside its "after".
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from app.digits.decode import ImageLimits
from app.digits.pipeline import to_digits
from app.serving.verdict import judge
from benchmarks import fonts as font_suite
from benchmarks import mnist_c, styles
from benchmarks import photos as photo_suite
from benchmarks.harness import provenance
from models.checkpoint import load_checkpoint
from models.data import load_mnist
from models.weights import served_path

MODELS = ("mnist_cnn", "lenet")
CHUNK = 64  # uploads per to_digits call: a request's worth, as the service sees them
LIMITS = ImageLimits()


def preprocess(files: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Upload files -> N x 28 x 28 uint8 digits and a mask of the ones the service refuses."""
    digits, refused = [], np.zeros(len(files), bool)
    for start in range(0, len(files), CHUNK):
        batch, rejections = to_digits(files[start : start + CHUNK], LIMITS)
        digits.append(batch)
        for r in rejections:
            refused[start + r.index] = True
    return np.concatenate(digits), refused


Suite = tuple[np.ndarray, np.ndarray, np.ndarray]  # digits, refused, labels


def _font_photos(count: int, seed: int) -> tuple[list[bytes], np.ndarray]:
    """About ``count`` handwriting-font photos, spread evenly over the photo conditions."""
    each = -(-count // len(photo_suite.CONDITIONS))
    files: list[bytes] = []
    labels = []
    for condition in photo_suite.CONDITIONS:
        f, y = photo_suite.font_photos(condition, each, seed)
        files += f
        labels.append(y)
    return files, np.concatenate(labels)


def _photo_makers(
    images: np.ndarray, labels: np.ndarray, seed: int
) -> dict[str, Callable[[], tuple[list[bytes], np.ndarray]]]:
    """The photo suites: one per condition, and the control."""

    def photographed(condition: str) -> Callable[[], tuple[list[bytes], np.ndarray]]:
        return lambda: (photo_suite.render(condition, images, seed), labels)

    makers = {f"photos/{name}": photographed(name) for name in photo_suite.CONDITIONS}
    makers["photos/strokes_as_mnist"] = lambda: (
        photo_suite.strokes_as_mnist(images, seed),
        labels,
    )
    return makers


def build_suites(
    data_dir: Path,
    limit: int | None,
    font_renderings: int,
    seed: int,
    only: str | None,
    photos: int = 1000,
) -> dict[str, Suite]:
    """Every suite's preprocessed digits, refusals and labels (shared by all models)."""
    everything = load_mnist(data_dir, train=False, download=False)
    test = everything.head(limit)
    images, labels = test.images[:, 0].numpy(), test.labels.numpy()
    shot = everything.head(min(photos, limit or photos))
    makers: dict[str, Callable[[], tuple[list[bytes], np.ndarray]]] = {
        "mnist": lambda: ([styles.png_file(d) for d in images], labels)
    }
    for name in mnist_c.CORRUPTIONS:
        makers[f"mnist_c/{name}"] = lambda n=name: (
            [styles.png_file(d) for d in mnist_c.corrupt(n, images, seed)],
            labels,
        )
    for name in styles.STYLES:
        makers[f"styles/{name}"] = lambda n=name: (styles.render(n, images, seed), labels)
    makers.update(_photo_makers(shot.images[:, 0].numpy(), shot.labels.numpy(), seed))
    if not only or "photos/fonts".startswith(only):
        if photo_suite.handwriting_fonts():
            makers["photos/fonts"] = lambda: _font_photos(len(shot), seed)
        else:
            print("  photos/fonts: skipped, no handwriting-like font installed (Debian:")
            print(
                "    fonts-humor-sans, fonts-dkg-handwriting, fonts-comic-neue, fonts-urw-base35)"
            )
    suites: dict[str, Suite] = {}
    for name, make in makers.items():
        if only and not name.startswith(only):
            continue
        started = time.perf_counter()
        files, y = make()
        digits, refused = preprocess(files)
        suites[name] = (digits, refused, y)
        print(f"  {name}: {len(files)} files in {time.perf_counter() - started:.1f} s", flush=True)
    if not only or only.startswith("fonts"):
        fonts = font_suite.installed_fonts()
        files, y, hand = font_suite.render_suite(fonts, font_renderings, seed)
        digits, refused = preprocess(files)
        suites["fonts"] = (digits, refused, y)
        suites["fonts_handwriting"] = (digits[hand], refused[hand], y[hand])
        names = sorted({f.family for f in fonts if f.handwriting})
        print(f"  fonts: {len(fonts)} font files, handwriting-like: {', '.join(names) or 'none'}")
    return suites


@torch.inference_mode()
def accuracy(model_path: Path, suites: dict[str, Suite]) -> dict[str, dict[str, float]]:
    """Each suite's accuracy (refused images count as wrong, those the model refuses as not
    one digit too, as the service does), refusals, and image count."""
    ckpt = load_checkpoint(model_path)
    model, transform, meta = ckpt.model.eval(), ckpt.transform, ckpt.meta
    results = {}
    for name, (digits, refused, labels) in suites.items():
        x = torch.from_numpy(digits)[:, None]
        probs = torch.cat(
            [torch.softmax(model(transform(x[i : i + 1000])) / meta.temperature, 1)
             for i in range(0, len(x), 1000)]
        ).numpy()  # fmt: skip
        digit_probs, refusals = judge(meta.labels, meta.refuse_at, probs)
        predicted = digit_probs.argmax(1)
        refused = refused.copy()
        refused[[r.index for r in refusals]] = True
        correct = (predicted == labels) & ~refused
        results[name] = {
            "accuracy": float(correct.mean()),
            "refused": int(refused.sum()),
            "images": len(labels),
        }
    corruptions = [results[k]["accuracy"] for k in results if k.startswith("mnist_c/")]
    if len(corruptions) == len(mnist_c.CORRUPTIONS):
        results["mnist_c/mean"] = {
            "accuracy": statistics.fmean(corruptions),
            "refused": sum(results[k]["refused"] for k in results if k.startswith("mnist_c/")),
            "images": sum(results[k]["images"] for k in results if k.startswith("mnist_c/")),
        }
    conditions = [f"photos/{c}" for c in photo_suite.CONDITIONS]
    if all(k in results for k in conditions):
        results["photos/mean"] = {
            "accuracy": statistics.fmean(results[k]["accuracy"] for k in conditions),
            "refused": sum(results[k]["refused"] for k in conditions),
            "images": sum(results[k]["images"] for k in conditions),
        }
    return results


def _cell(entry: dict | None) -> str:
    return "-" if entry is None else f"{entry['accuracy']:.2%}"


def table(models: dict[str, dict], baseline: dict | None) -> str:
    """One markdown table: suites down, each model's accuracy (before -> after with a baseline)
    across, and the images the service refuses (the same for every model)."""
    before = (baseline or {}).get("models", {})
    names = list(models)
    head = ["suite"]
    for m in names:
        head += [f"{m} before", f"{m} after"] if m in before else [m]
    head.append("refused" + (" before -> after" if before else ""))
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for suite in models[names[0]]:
        cells = [suite]
        for m in names:
            if m in before:
                cells.append(_cell(before[m].get(suite)))
            cells.append(_cell(models[m].get(suite)))
        now = models[names[0]][suite]
        refused = f"{now['refused']} of {now['images']}"
        old = before.get(names[0], {}).get(suite) if before else None
        if old is not None:
            refused = f"{old['refused']} -> {refused}"
        rows.append("| " + " | ".join([*cells, refused]) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Build the suites, measure every model, print the tables, write the JSON."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.robustness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="root holding MNIST/raw/")
    p.add_argument(
        "--weights", type=Path, default=None, help="weights folder: each model's served version"
    )
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--limit", type=int, help="MNIST test digits per suite (default: all 10,000)")
    p.add_argument("--font-renderings", type=int, default=10, help="per font and digit")
    p.add_argument(
        "--photos",
        type=int,
        default=1000,
        help="test digits per photo condition (default 1000, at most --limit)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", help="only the suites whose name starts with this")
    p.add_argument("--baseline", type=Path, help="an earlier run's JSON, shown as 'before'")
    p.add_argument("--json", type=Path, help="write the results here")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print("building suites (each through the service's preprocessing):", flush=True)
    suites = build_suites(
        args.data_dir, args.limit, args.font_renderings, args.seed, args.only, args.photos
    )
    baseline = json.loads(args.baseline.read_text()) if args.baseline else None
    report: dict[str, object] = {
        "seed": args.seed,
        "limit": args.limit,
        "font_renderings": args.font_renderings,
        "photos": args.photos,
        "models": {},
    }
    for model in args.models.split(","):
        path = served_path(model) if args.weights is None else served_path(model, args.weights)
        results = accuracy(path, suites)
        report["models"][model] = results  # type: ignore[index]
    print("\n" + table(report["models"], baseline), flush=True)  # type: ignore[arg-type]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        made = {**provenance("benchmarks.robustness"), **report}
        args.json.write_text(json.dumps(made, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
