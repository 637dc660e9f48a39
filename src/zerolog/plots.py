"""Every figure of the pipeline, in one place: training curves, precision-recall curves, the F1 heatmap, status
images. Each is a PNG written atomically (a killed run leaves the old figure or none), logged to MLflow by the stage
that draws it and declared as a DVC plot.

matplotlib is imported when a figure is drawn, with the Agg backend (no screen on these machines), so importing
this module costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.io import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path, dpi: int) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    _pyplot().close(figure)


def plot_training_history(path: Path, history: Sequence[Mapping[str, float]], title: str) -> None:
    """Training curves: losses (left) and source-validation metrics (right) per epoch."""
    plt = _pyplot()
    frame = pd.DataFrame(list(history))
    figure, (losses, validation) = plt.subplots(1, 2, figsize=(10, 3.6))
    for column in ("loss/classification", "loss/domain", "loss/meta", "val/loss"):
        if column in frame and frame[column].notna().any():
            losses.plot(frame["epoch"], frame[column], marker="o", label=column)
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.legend(fontsize=8)
    for column in ("val/f1", "val/pr_auc"):
        if column in frame and frame[column].notna().any():
            validation.plot(frame["epoch"], frame[column], marker="o", label=f"source {column}")
    validation.set_xlabel("epoch")
    validation.set_ylim(0, 1.02)
    validation.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path, dpi=100)


def plot_paper_curve(path: Path, curve: pd.DataFrame, threshold: float, title: str) -> None:
    """The paper protocol per epoch: training losses (left); target precision, recall and F1 at ``threshold``, an
    ORACLE view since it reads target labels, and the source dev F1 (right), the best target epoch marked."""
    plt = _pyplot()
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.6))
    for column in ("loss/classification", "loss/domain", "loss/meta"):
        if column in curve and curve[column].notna().any():
            losses.plot(curve["epoch"], curve[column], label=column)
    losses.set(xlabel="epoch", ylabel="loss")
    losses.legend(fontsize=8)
    for column in ("target/f1", "target/precision", "target/recall", "val/f1"):
        label = "source dev F1 (best cut)" if column == "val/f1" else f"{column} at P >= {threshold:g} (ORACLE)"
        scores.plot(curve["epoch"], curve[column], label=label, linestyle="--" if column == "val/f1" else "-")
    best = curve.loc[curve["target/f1"].idxmax()]
    scores.scatter([best["epoch"]], [best["target/f1"]], marker="*", s=90, color="black", zorder=3,
                   label=f"best target F1 {best['target/f1']:.3f} (epoch {int(best['epoch'])}, ORACLE)")  # fmt: skip
    scores.set(xlabel="epoch", ylim=(0, 1.02))
    scores.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path, dpi=100)


def status_image(path: Path, text: str) -> None:
    """A PNG that says why there is no figure (a skipped pair), so the declared plot always exists."""
    figure = _pyplot().figure(figsize=(8, 1.2))
    figure.text(0.01, 0.5, text, va="center", fontsize=9, wrap=True)
    _save(figure, path, dpi=100)


def plot_pr_curves(path: Path, curves: Mapping[str, tuple[pd.DataFrame, float | None, bool]], title: str) -> None:
    """One precision-recall figure per pair: per method (recall/precision points, PR-AUC, oracle); oracle dashed."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for method, (points, area, oracle) in curves.items():
        label = method if area is None else f"{method} (PR-AUC {area:.2f})"
        axes.plot(points["recall"], points["precision"], "--" if oracle else "-", label=label, drawstyle="steps-post")
    if axes.lines:
        axes.legend(fontsize=8, loc="upper right")
    else:
        axes.text(0.5, 0.5, "no method evaluated", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    figure.tight_layout()
    _save(figure, path, dpi=110)


def plot_heatmap(
    path: Path, matrix: np.ndarray, row_labels: list[str], column_labels: list[str], title: str, colour_label: str
) -> None:
    """A (rows, columns) matrix of values in [0, 1]; NaN cells grey with 'n/a'."""
    plt = _pyplot()
    import matplotlib

    figure, axes = plt.subplots(figsize=(1.5 + 1.3 * len(column_labels), 1.0 + 0.45 * len(row_labels)))
    colormap = matplotlib.colormaps["viridis"].copy()
    colormap.set_bad("lightgrey")
    image = axes.imshow(np.ma.masked_invalid(matrix), cmap=colormap, vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(column_labels)), column_labels, rotation=30, ha="right")
    axes.set_yticks(range(len(row_labels)), row_labels)
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            value = matrix[row, column]
            text = "n/a" if np.isnan(value) else f"{value:.2f}"
            colour = "black" if np.isnan(value) or value > 0.6 else "white"
            axes.text(column, row, text, ha="center", va="center", fontsize=8, color=colour)
    figure.colorbar(image, ax=axes, label=colour_label)
    axes.set_title(title)
    figure.tight_layout()
    _save(figure, path, dpi=120)
