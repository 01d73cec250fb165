"""Training speed of mnist_cnn: our pipeline against the seed's, measured in the same run.

The seed: torchvision MNIST + ToTensor/Normalize + DataLoader(batch 100, shuffle) + Adam, fp32.
Ours: uint8 tensors on the device, on-device augmentation, batch 256, AdamW + one-cycle,
bf16 autocast and channels_last where the hardware has them (models/train.py).
The same loop also runs without augmentation and with the earlier affine-only augmentation,
so the cost of the recipe's augmentations (target: at most 20%) is measured in the same rounds.

    python -m benchmarks.train_speed --data-dir ../shared/data            # CPU ratio
    python -m benchmarks.train_speed --data-dir DATA --gpu                  # + GPU figures
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from models import train as train_mod
from models.augment import NO_AUGMENT, AugmentRecipe
from models.data import load_mnist
from models.registry import get_input_spec, get_model
from models.runtime import setup_runtime
from models.transforms import ModelInputTransform


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


# The augmentation before robustness work: small rotation, scale and shift only.
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


def our_images_per_s(
    data_dir: Path, images: int, device: torch.device, augmentation: AugmentRecipe | None = None
) -> float:
    """models.train.train_one_epoch over ``images`` training images; returns images/s."""
    rt = setup_runtime(str(device), "auto")
    data = load_mnist(data_dir, train=True, download=False).head(images).to(rt.device)
    model = get_model("mnist_cnn").to(rt.device)
    if rt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    recipe = train_mod.RECIPES["mnist_cnn"]
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = -(-images // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    stats = train_mod.train_one_epoch(
        model,
        data,
        transform=ModelInputTransform(get_input_spec("mnist_cnn")),
        optimizer=opt,
        scheduler=sched,
        rt=rt,
        batch_size=recipe.batch_size,
        epoch=1,
        seed=1,
        augmentation=recipe.augment if augmentation is None else augmentation,
        label_smoothing=recipe.label_smoothing,
    )
    return stats["images_per_s"]


def gpu_figures(data_dir: Path, out_dir: Path) -> dict[str, object]:
    """Time to 99.5% for mnist_cnn (a short run), and alexnet's and vgg16's default recipes
    (target: at least 99.5%), all with the recipes' augmentation on."""
    figures: dict[str, object] = {}
    runs = {
        "mnist_cnn": ["--epochs", "8", "--batch-size", "512", "--lr", "4e-3"],
        "alexnet": [],
        "vgg16": [],
    }
    for name, extra in runs.items():
        out = out_dir / f"{name}.safetensors"
        started = time.perf_counter()
        code = train_mod.main(
            [
                "--model",
                name,
                "--data-dir",
                str(data_dir),
                "--no-download",
                "--out",
                str(out),
                *extra,
            ]
        )
        wall = time.perf_counter() - started
        history = (
            json.loads(out.with_suffix(".log.json").read_text())["history"] if code == 0 else []
        )
        first = next((h for h in history if h["test_accuracy"] >= 0.995), None)
        figures[name] = {
            "exit_code": code,
            "wall_s": wall,
            "epochs": [
                {k: h[k] for k in ("epoch", "seconds", "elapsed_s", "test_accuracy")}
                for h in history
            ],
            "train_seconds_to_99_5": first["elapsed_s"] if first else None,
        }
    return figures


def main() -> None:
    """Print images/s for both pipelines (median of rounds) and their ratio."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--images", type=int, default=12_800, help="training images per measurement")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gpu", action="store_true", help="also the CUDA figures (needs a GPU)")
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
            result["gpu"] = gpu_figures(args.data_dir, Path(tmp))
        print(json.dumps(result["gpu"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
