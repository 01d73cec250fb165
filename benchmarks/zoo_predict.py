"""zoo-predict's speed: the 10,000 MNIST test digits as PNG files in a folder, labelled
in-process end to end (a fresh process each time: start-up, torch's import, the checkpoint,
finding the files, decoding, the model, the CSV), timed from outside.

    python -m benchmarks.zoo_predict --models lenet,mnist_cnn --rounds 5 \\
        --json benchmarks/results/zoo_predict.json

Rounds interleave the models. Each round's accuracy is checked against the labels (it must
equal the model's own test accuracy: an MNIST digit passes the preprocessing unchanged), and
its CPU time (every process of it) is recorded beside the wall time: on a shared machine the
wall time says as much about the neighbours as about zoo-predict. The target: at least 2,000
images/s on 2 cores.
"""

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app.layout import usable_cores
from benchmarks.harness import ROOT, git_state
from benchmarks.wrk import digit_pngs

TARGET = 2000.0  # images/s


def write_folder(folder: Path, data_dir: Path) -> dict[str, int]:
    """The test digits as PNGs, a thousand per subfolder; their labels by path."""
    from models.data import load_mnist

    split = load_mnist(data_dir, train=False, download=False)
    labels = {}
    for i, (data, label) in enumerate(
        zip(digit_pngs(split.images[:, 0].numpy()), split.labels.tolist(), strict=True)
    ):
        path = folder / f"{i // 1000}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        labels[str(path)] = int(label)
    return labels


def one_run(model: str, folder: Path, labels: dict[str, int], out: Path) -> dict[str, Any]:
    """zoo-predict once, from outside: wall time, images/s, accuracy, load average before."""
    command = [sys.executable, "-m", "app.cli.predict", str(folder), "--model", model]
    command += ["--out", str(out), "--weights-dir", str(ROOT / "weights")]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # its workers' time is in it too
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = list(csv.DictReader(out.open()))
    right = sum(r["label"] == str(labels[r["path"]]) for r in rows)
    assert len(rows) == len(labels), (len(rows), len(labels))
    return {
        "model": model,
        "seconds": wall,
        "images_s": len(rows) / wall,
        "cpu_seconds": cpu,
        "accuracy": right / len(rows),
        "load_before": load,
    }


def main(argv: list[str] | None = None) -> int:
    """Time the rounds, print the medians, write the JSON; 1 if a model misses the target."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="lenet,mnist_cnn")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA_DIR", ROOT.parent / "shared" / "data")),
    )
    p.add_argument("--json", type=Path, help="write every run here")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    models = args.models.split(",")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mnist-test"
        labels = write_folder(folder, args.data_dir)
        for rnd in range(args.rounds):
            for model in models:
                run = one_run(model, folder, labels, Path(tmp) / "labels.csv")
                runs.append({"round": rnd, **run})
                print(
                    f"  round {rnd + 1} {model:<10} {run['seconds']:6.2f} s "
                    f"{run['images_s']:7,.0f} images/s cpu {run['cpu_seconds']:5.2f} s "
                    f"accuracy {run['accuracy']:.4f} "
                    f"(load {run['load_before']:.2f})",
                    flush=True,
                )
    summary = {}
    for model in models:
        mine = [r for r in runs if r["model"] == model]
        median = statistics.median(r["images_s"] for r in mine)
        summary[model] = {
            "images_s": median,
            "seconds": statistics.median(r["seconds"] for r in mine),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
            "accuracy": mine[0]["accuracy"],
            "pass": median >= TARGET,
        }
        print(f"{model:<10} median {median:,.0f} images/s (target {TARGET:,.0f}) "
              f"{'PASS' if median >= TARGET else 'FAIL'}")  # fmt: skip
    if args.json:
        result = {
            **git_state(),
            "command": " ".join(["python -m benchmarks.zoo_predict", *sys.argv[1:]]),
            "cores": usable_cores(),
            "images": len(labels),
            "target_images_s": TARGET,
            "summary": summary,
            "runs": runs,
        }
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if all(s["pass"] for s in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
