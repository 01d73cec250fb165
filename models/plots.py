"""The PNGs the CLIs write: accuracy per epoch (training) and the confusion matrix (evaluation)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from torch import Tensor


def plot_history(history: list[dict[str, float]], path: Path, title: str) -> None:
    """PNG of train and test accuracy per epoch."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["test_accuracy"] for h in history], "s-", label="test")
    ax.set(xlabel="epoch", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(confusion: Tensor, labels: list[str], path: Path, title: str) -> None:
    """Write the confusion matrix as a PNG heat map with counts."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    im = ax.imshow(confusion.numpy(), cmap="Blues")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    half = int(confusion.max()) / 2
    for i, row in enumerate(confusion.tolist()):
        for j, count in enumerate(row):
            if count:
                color = "white" if count > half else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
