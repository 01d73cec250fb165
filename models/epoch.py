"""One epoch of training over a split held on the training device, shared by the training CLI
(models/train.py) and the training benchmark: batches are indexed, augmented and (for
AlexNet/VGG) resized there, so no DataLoader or PIL sits in the loop."""

import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.augment import NO_AUGMENT, AugmentRecipe, augment
from models.data import MnistSplit
from models.runtime import Runtime
from models.transforms import ModelInputTransform


def train_one_epoch(
    model: nn.Module,
    data: MnistSplit,
    *,
    transform: ModelInputTransform,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    rt: Runtime,
    batch_size: int,
    epoch: int,
    seed: int,
    augmentation: AugmentRecipe = NO_AUGMENT,
    label_smoothing: float = 0.0,
    max_batches: int | None = None,
) -> dict[str, float]:
    """One pass over this rank's shard; returns loss, accuracy and images/s over all ranks."""
    model.train()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + epoch))
    shard = order[rt.rank :: rt.world][: len(data) // rt.world].to(rt.device)
    per_rank = max(batch_size // rt.world, 1)
    aug_seed = seed * 1000 + epoch * 10 + rt.rank
    aug_gen = torch.Generator(rt.device).manual_seed(aug_seed)
    host_gen = torch.Generator().manual_seed(aug_seed)
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    seen = 0
    start = time.perf_counter()
    bar = tqdm(
        total=len(shard) * rt.world,
        unit="img",
        desc=f"epoch {epoch}",
        leave=False,
        disable=rt.rank != 0 or not sys.stderr.isatty(),
    )
    for step, i in enumerate(range(0, len(shard), per_rank)):
        if max_batches is not None and step >= max_batches:
            break
        idx = shard[i : i + per_rank]
        x = data.images[idx].float().div_(255.0)
        y = data.labels[idx]
        if augmentation != NO_AUGMENT:
            x = augment(x, aug_gen, augmentation, host_gen)
        x = transform(x)
        if rt.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            rt.device.type, dtype=rt.amp or torch.float32, enabled=rt.amp is not None
        ):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.argmax(1) == y).sum()
        seen += len(idx)
        bar.update(len(idx) * rt.world)
        if step % 20 == 0 and not bar.disable:  # .item() waits for the device: only for the bar
            rate = seen * rt.world / (time.perf_counter() - start)
            bar.set_postfix(
                loss=f"{loss_sum.item() / seen:.4f}",
                acc=f"{correct.item() / seen:.4f}",
                img_s=f"{rate:.0f}",
            )
    bar.close()
    totals = torch.stack(
        [
            loss_sum.double(),
            correct.double(),
            torch.tensor(float(seen), dtype=torch.float64, device=rt.device),
        ]
    )
    if rt.world > 1:
        dist.all_reduce(totals)
    seconds = time.perf_counter() - start
    n = max(float(totals[2]), 1.0)
    return {
        "train_loss": float(totals[0]) / n,
        "train_accuracy": float(totals[1]) / n,
        "images": n,
        "seconds": seconds,
        "images_per_s": n / seconds,
    }
