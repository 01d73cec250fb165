"""What each stage of a predict request costs, in one process, without HTTP.

    python -m benchmarks.stage_costs --json benchmarks/results/stages_cpu.json

Per stage, the best of several rounds of many calls, in microseconds: the multipart parse, PNG
decoding (libspng against Pillow), preprocessing (the reference one image at a time, and
app/digits/pipeline.py for 1 and 64 images, and for phone photos, decoding included), the
model call of lenet and mnist_cnn in each CPU placement at batch 1 and 64 (one torch thread),
and the JSON encoding of the answer.
"""

import argparse
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyspng
import torch
from PIL import Image

from app.digits.decode import ImageLimits
from app.digits.pipeline import to_digits
from app.digits.preprocess import preprocess
from app.engine.predictor import Predictor
from app.frontend.multipart import parse_multipart
from app.frontend.predict import encode
from app.serving.answer import Answer
from app.serving.catalog import CheckpointInfo, Loaded
from benchmarks import photos
from benchmarks.harness import ROOT, provenance
from benchmarks.wrk import CONTENT_TYPE, digit_pngs, multipart
from models.checkpoint import load_checkpoint
from models.data import load_mnist
from models.framing import DIGIT_LABELS
from models.weights import checkpoint_path


def best_us(
    fn: Callable[[], object], per_call: int = 1, rounds: int = 7, seconds: float = 0.2
) -> float:
    """Best of ``rounds`` timings of ``fn`` (each as many calls as fit in ``seconds``), in us
    per item when one call handles ``per_call`` items."""
    fn()
    started, calls = time.perf_counter(), 0
    while time.perf_counter() - started < seconds / 4:
        fn()
        calls += 1
    n = max(1, calls * 4 // rounds)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6 / per_call


def main() -> None:
    """Measure every stage and print (and write) the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data")),
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(1)
    digits = load_mnist(args.data_dir, train=False, download=False).images[:64, 0].numpy()
    pngs = digit_pngs(digits)
    one, many = multipart(pngs[:1], 0), multipart(pngs, 0)
    limits = ImageLimits()
    # Phone photos as benchmarks.photos makes them (JPEG frames of 480-1200 px, 0.2-1.4 MP), a
    # few digits under each of its conditions.
    shots = [
        shot
        for i, condition in enumerate(photos.CONDITIONS)
        for shot in photos.render(condition, digits[4 * i : 4 * i + 4], seed=5)
    ]
    r: dict[str, Any] = {
        "multipart parse, 1-part body (us/request)": best_us(
            lambda: parse_multipart(one, CONTENT_TYPE, 256)
        ),
        "multipart parse, 64-part body (us/part)": best_us(
            lambda: parse_multipart(many, CONTENT_TYPE, 256), 64
        ),
        "decode 28x28 PNG, libspng (us)": best_us(lambda: pyspng.load(pngs[0])),
        "decode 28x28 PNG, Pillow (us)": best_us(
            lambda: np.asarray(Image.open(io.BytesIO(pngs[0])))
        ),
        "preprocess, reference pipeline (us/image)": best_us(
            lambda: [preprocess(b, limits) for b in pngs[:16]], 16
        ),
        "decode + preprocess, 1-image request (us)": best_us(lambda: to_digits(pngs[:1], limits)),
        "decode + preprocess, 64-image request (us/image)": best_us(
            lambda: to_digits(pngs, limits), 64
        ),
        "decode + preprocess, a phone photo (us/photo)": best_us(
            lambda: [to_digits([shot], limits) for shot in shots], len(shots), rounds=3
        ),
    }
    for name in ("lenet", "mnist_cnn"):
        predictor = Predictor(
            load_checkpoint(checkpoint_path(name, ROOT / "weights")),
            torch.device("cpu"),
            torch.float32,
            64,
        )
        for placement in predictor.placements:
            kind = "channels_last + oneDNN" if placement.onednn else "contiguous, no oneDNN"
            for batch in (1, 64):
                x = torch.from_numpy(digits[:batch]).unsqueeze(1)
                r[f"{name} {kind}, batch {batch} (us/image)"] = best_us(
                    lambda x=x, pl=placement, p=predictor: p._run(pl, x),
                    batch,  # type: ignore[misc]
                )
    blank = dict.fromkeys(CheckpointInfo.model_fields, "")
    card = Loaded(
        "lenet", 0, (1, 28, 28), 1, "cpu", "float32", tuple(DIGIT_LABELS), 0.0, 0.0, 64,
        CheckpointInfo(**blank),
    )  # fmt: skip
    uploads = parse_multipart(many, CONTENT_TYPE, 256)
    probs = np.random.default_rng(0).dirichlet(np.ones(10), 64).astype(np.float32)
    r["JSON answer, 64 predictions (us/prediction)"] = best_us(
        lambda: encode(Answer(card, probs, uploads, [], None), 3), 64
    )
    for k, v in r.items():
        print(f"{k:<58} {v:9.1f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    **provenance("benchmarks.stage_costs"),
                    "us": r,
                    "threads": 1,
                    "cores": os.cpu_count(),
                    "torch": torch.__version__,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
