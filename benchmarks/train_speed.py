"""Training speed of mnist_cnn: our pipeline against the seed's loop, measured in the same run.

The baseline is the seed's loop: torchvision MNIST + ToTensor/Normalize + DataLoader(batch 100,
shuffle) + Adam, fp32. Ours is the training CLI's own steps (models/train.py): uint8 tensors on
the device, on-device augmentation, batch 256, AdamW + one-cycle, bf16 autocast and
channels_last where the hardware has them. Ours also runs without augmentation and with an
affine-only one (rotation, scale, shift), so the cost of the recipe's other transforms (target:
at most 20%) is measured in the same rounds.

    python -m benchmarks.train_speed --data-dir ../shared/data            # CPU ratio
    python -m benchmarks.train_speed --data-dir DATA --gpu                  # + GPU figures
"""

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from benchmarks.harness import provenance
from models import train as train_mod
from models.augment import NO_AUGMENT, AugmentRecipe
from models.registry import get_model
from models.runtime import setup_runtime


def seed_images_per_s(data_dir: Path, images: int, device: torch.device) -> float:
    """The seed's loop over ``images`` training images; returns images/s."""
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    ds = datasets.MNIST(str(data_dir), train=True, download=False, transform=tf)
    loader = DataLoader(ds, batch_size=100, shuffle=True)
    model = get_model("mnist_cnn").to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        seen += len(y)
        if seen >= images:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


# Rotation, scale and shift only: the cheap part of the recipe.
AFFINE_ONLY = AugmentRecipe(
    max_degrees=10.0,
    max_shear=0.0,
    scale=(0.9, 1.1),
    elastic_p=0.0,
    stroke_p=0.0,
    blur_p=0.0,
    lowres_p=0.0,
    contrast_p=0.0,
)
MAX_AUGMENT_COST = 0.20
TARGET_ACCURACY = 0.995


def our_images_per_s(
    data_dir: Path, images: int, device: torch.device, augmentation: AugmentRecipe | None = None
) -> float:
    """One epoch of the training CLI's steps over ``images`` training images; images/s."""
    config = train_mod.configure(
        ["--model", "mnist_cnn", "--data-dir", str(data_dir), "--no-download",
         "--device", str(device), "--epochs", "1",
         "--limit-train", str(images), "--limit-test", "1"]
    )  # fmt: skip
    if augmentation is not None:
        config = replace(config, augment=augmentation)
    rt = setup_runtime(config.device, config.amp)
    train, _, _ = train_mod.load_data(config, rt)
    trainee = train_mod.set_up(config, rt, len(train))
    return train_mod.run_epoch(config, rt, trainee, train, epoch=1)["images_per_s"]


def time_to_accuracy(
    name: str, data_dir: Path, out_dir: Path, *extra: str, target: float = TARGET_ACCURACY
) -> dict[str, Any]:
    """The training CLI on ``name`` with its default recipe (plus ``extra`` arguments): exit
    code, wall time, each epoch's time and test accuracy, and the training time until the
    test accuracy first reached ``target`` (None if it never did)."""
    out = out_dir / f"{name}.safetensors"
    started = time.perf_counter()
    code = train_mod.main(
        ["--model", name, "--data-dir", str(data_dir), "--no-download", "--out", str(out), *extra]
    )
    wall = time.perf_counter() - started
    log = out.with_suffix(".log.json")
    history = json.loads(log.read_text())["history"] if code == 0 and log.exists() else []
    first = next((h for h in history if h["test_accuracy"] >= target), None)
    return {
        "exit_code": code,
        "wall_s": wall,
        "epochs": [
            {k: h[k] for k in ("epoch", "seconds", "elapsed_s", "test_accuracy")} for h in history
        ],
        "target_accuracy": target,
        "train_seconds_to_target": first["elapsed_s"] if first else None,
    }


def gpu_figures(data_dir: Path, out_dir: Path, names: list[str]) -> dict[str, object]:
    """Each model's default recipe, augmentation on: time to 99.5% (mnist_cnn's target: 5 s
    on an H100 or H200) and where alexnet's and vgg16's end (target: at least 99.5%)."""
    return {name: time_to_accuracy(name, data_dir, out_dir) for name in names}


def main() -> None:
    """Print images/s for both pipelines (median of rounds) and their ratio."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--images", type=int, default=12_800, help="training images per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu", action="store_true", help="also the CUDA figures (needs a GPU)")
    p.add_argument("--gpu-models", default="mnist_cnn,alexnet,vgg16", help="with --gpu")
    p.add_argument("--json", type=Path, help="write the results here too")
    args = p.parse_args()
    device = torch.device(args.device)
    runs: dict[str, list[float]] = {"seed": [], "ours": [], "no_augment": [], "affine_only": []}
    for r in range(args.rounds):  # interleaved, so machine noise hits all of them
        runs["seed"].append(seed_images_per_s(args.data_dir, args.images, device))
        runs["ours"].append(our_images_per_s(args.data_dir, args.images, device))
        runs["no_augment"].append(our_images_per_s(args.data_dir, args.images, device, NO_AUGMENT))
        runs["affine_only"].append(
            our_images_per_s(args.data_dir, args.images, device, AFFINE_ONLY)
        )
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in runs.items()))
    med = {k: statistics.median(v) for k, v in runs.items()}
    seed, ours = med["seed"], med["ours"]
    cost = 1 - ours / med["no_augment"]
    result: dict[str, object] = {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "rounds": {k: v for k, v in runs.items()},
        "seed_images_per_s": seed,
        "ours_images_per_s": ours,
        "no_augment_images_per_s": med["no_augment"],
        "affine_only_images_per_s": med["affine_only"],
        "ratio": ours / seed,
        "target_ratio": 2.0,
        "augment_cost": cost,
        "target_augment_cost": MAX_AUGMENT_COST,
        "pass": ours / seed >= 2.0 and cost <= MAX_AUGMENT_COST,
    }
    print(
        f"\nmnist_cnn training on {device} ({torch.get_num_threads()} threads), median of "
        f"{args.rounds}: seed {seed:.0f} img/s | ours {ours:.0f} img/s | ratio {ours / seed:.2f}x"
        f" (target >= 2x: {'PASS' if ours / seed >= 2 else 'FAIL'})\n"
        f"augmentation: none {med['no_augment']:.0f} img/s | affine only (before) "
        f"{med['affine_only']:.0f} img/s | the recipe {ours:.0f} img/s | cost {cost:.1%} "
        f"(target <= {MAX_AUGMENT_COST:.0%}: {'PASS' if cost <= MAX_AUGMENT_COST else 'FAIL'})"
    )
    if args.gpu:
        with tempfile.TemporaryDirectory() as tmp:
            result["gpu"] = gpu_figures(args.data_dir, Path(tmp), args.gpu_models.split(","))
        print(json.dumps(result["gpu"], indent=1))
    if args.json:
        made = {**provenance("benchmarks.train_speed"), **result}
        args.json.write_text(json.dumps(made, indent=1))


if __name__ == "__main__":
    main()
