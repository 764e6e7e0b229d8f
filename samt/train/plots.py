"""Per-run plots: learning curves and, for SAMT, step size and gate per block.

Each PNG is written atomically (rendered in memory, then ``write_atomic``): a killed run never
leaves a half-written plot.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

from samt.train.records import finite_number, write_atomic  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    """Render ``fig`` as PNG into memory, write it to ``path`` atomically, close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_atomic(Path(path), buf.getvalue())


def epoch_axis(ax: Axes) -> None:
    """Whole epochs on the x axis (no 0.5, 1.5 ticks on a short run)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_learning_curves(rows: list[dict], metric_name: str, path: Path, title: str) -> None:
    """Train/test (and validation, when the run holds a split) loss and metric against epoch,
    two panels, saved as PNG; accuracy in percent."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    splits = ["train", "test"]
    if any(finite_number(r.get("val_metric")) for r in rows):
        splits.insert(1, "val")
    for split in splits:
        ax_loss.plot(epochs, [r.get(f"{split}_loss") for r in rows], marker=".", label=split)
        ax_metric.plot(epochs, [r.get(f"{split}_metric") for r in rows], marker=".",
                       label=split)
    ax_loss.set(ylabel="loss", yscale="log", title="loss")
    ax_metric.set(ylabel=metric_name, title=metric_name)
    if metric_name == "accuracy":
        ax_metric.yaxis.set_major_formatter(PercentFormatter(100))
    for ax in (ax_loss, ax_metric):
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def plot_samt_steps(rows: list[dict], num_blocks: int, path: Path, title: str) -> None:
    """Mean applied step (with its spread) and mean beta per block against epoch."""
    epochs = [r["epoch"] for r in rows]
    fig, (ax_eta, ax_beta) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k in range(num_blocks):
        mean = [r[f"b{k}_eta_mean"] for r in rows]
        std = [r[f"b{k}_eta_std"] for r in rows]
        line, = ax_eta.plot(epochs, mean, marker=".", label=f"block {k}")
        ax_eta.fill_between(epochs, [m - s for m, s in zip(mean, std, strict=True)],
                            [m + s for m, s in zip(mean, std, strict=True)],
                            color=line.get_color(), alpha=0.15)
        ax_beta.plot(epochs, [r[f"b{k}_beta_mean"] for r in rows], marker=".", label=f"block {k}")
    ax_eta.set(ylabel="applied step eta_bar (mean +- std)", title="step size")
    ax_beta.set(ylabel="beta (mean)", title="gate beta", ylim=(-0.02, 1.02))
    for ax in (ax_eta, ax_beta):
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
