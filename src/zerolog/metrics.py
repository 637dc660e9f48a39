"""Detection metrics of the anomaly class (used by training's validation and by the evaluation).

Precision, recall, F1, PR-AUC, ROC-AUC, confusion counts, bootstrap CI.

Why here and not sklearn alone: the bootstrap recomputes F1 on a thousand resamples, so precision / recall / F1 are
computed from confusion counts with numpy in one vectorised pass (the tests check them against sklearn). The
threshold-free rankings (average precision, ROC-AUC, the PR curve) come from sklearn.

Conventions: label 1 is an anomaly, 0 normal; a session is predicted anomalous when ``score >= threshold``; a ratio
whose denominator is zero is 0.0 (sklearn's ``zero_division=0``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from zerolog.errors import DataError


@dataclass(frozen=True)
class ConfusionCounts:
    """Confusion counts of the anomaly class."""

    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class ThresholdMetrics:
    """Precision, recall and F1 of one method on one test split under one threshold."""

    threshold: float
    precision: float
    recall: float
    f1: float
    f1_ci: tuple[float, float]
    confusion: ConfusionCounts
    oracle: bool

    def as_dict(self) -> dict[str, object]:
        """Flat enough for `dvc metrics show`: scalars, the CI pair and the confusion counts."""
        flat = asdict(self)
        confusion = flat.pop("confusion")
        return {**flat, "f1_ci": list(self.f1_ci), **confusion}


def check_binary(labels: np.ndarray, scores: np.ndarray, where: str) -> None:
    """Raise DataError unless labels are 0/1 and scores finite, both one-dimensional and of equal length."""
    if labels.ndim != 1 or scores.ndim != 1 or labels.shape != scores.shape:
        raise DataError(f"{where}: labels {labels.shape} and scores {scores.shape} must be equal-length vectors")
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise DataError(f"{where}: labels must be 0 or 1, found {sorted(set(np.unique(labels)) - {0, 1})[:5]}")
    if not np.isfinite(scores).all():
        raise DataError(f"{where}: {int((~np.isfinite(scores)).sum())} scores are NaN or infinite")


def confusion_counts(labels: np.ndarray, predictions: np.ndarray) -> ConfusionCounts:
    """Confusion counts of the anomaly class (labels and predictions are 0/1 vectors)."""
    labels = np.asarray(labels).astype(bool)
    predictions = np.asarray(predictions).astype(bool)
    return ConfusionCounts(
        true_positives=int((labels & predictions).sum()),
        false_positives=int((~labels & predictions).sum()),
        true_negatives=int((~labels & ~predictions).sum()),
        false_negatives=int((labels & ~predictions).sum()),
    )


def _ratios(
    true_positives: np.ndarray | int, false_positives: np.ndarray | int, false_negatives: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 from (arrays of) counts; 0.0 where a denominator is zero."""
    true_positives = np.asarray(true_positives, dtype=np.float64)
    predicted = true_positives + np.asarray(false_positives, dtype=np.float64)
    actual = true_positives + np.asarray(false_negatives, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positives / predicted, 0.0)
        recall = np.where(actual > 0, true_positives / actual, 0.0)
        f1 = np.where(predicted + actual > 0, 2 * true_positives / (predicted + actual), 0.0)
    return precision, recall, f1


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the anomaly class (label 1)."""
    counts = confusion_counts(labels, predictions)
    precision, recall, f1 = _ratios(counts.true_positives, counts.false_positives, counts.false_negatives)
    return float(precision), float(recall), float(f1)


def bootstrap_f1_interval(
    labels: np.ndarray, predictions: np.ndarray, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of F1: resample the test sessions with replacement ``samples`` times.

    Deterministic for a given seed. The predictions are fixed (the threshold was chosen before the test split was
    read), so the interval reflects only the sampling of test sessions.
    """
    labels = np.asarray(labels).astype(bool)
    predictions = np.asarray(predictions).astype(bool)
    size = labels.size
    if size == 0:
        raise DataError("bootstrap_f1_interval: empty test split")
    generator = np.random.default_rng(seed)
    true_positive = labels & predictions
    false_positive = ~labels & predictions
    false_negative = labels & ~predictions
    f1_values = np.empty(samples, dtype=np.float64)
    chunk = max(1, 2_000_000 // size)  # bound memory: chunk x size indices at a time
    for start in range(0, samples, chunk):
        count = min(chunk, samples - start)
        indices = generator.integers(0, size, size=(count, size))  # (count, size)
        _, _, f1 = _ratios(
            true_positive[indices].sum(axis=1), false_positive[indices].sum(axis=1), false_negative[indices].sum(axis=1)
        )
        f1_values[start : start + count] = f1
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(f1_values, [tail, 100.0 - tail])
    return float(low), float(high)


def f1_best_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """(threshold, F1) of the F1-best cut ``score >= threshold`` on labeled scores; None without a labeled anomaly.

    Ties go to the highest cut (the fewest alarms).
    """
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() < 1:
        return None
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = np.flatnonzero(f1 == f1.max())[-1]  # thresholds ascend: the last maximum is the highest cut
    return float(thresholds[best]), float(f1[best])


def ranking_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Threshold-free metrics: PR-AUC (average precision) and ROC-AUC; None when the split has one class only."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.min() == labels.max():
        return {"pr_auc": None, "roc_auc": None}
    return {
        "pr_auc": float(average_precision_score(labels, scores)),
        "roc_auc": float(roc_auc_score(labels, scores)),
    }


def pr_curve(labels: np.ndarray, scores: np.ndarray, max_points: int) -> pd.DataFrame:
    """The precision-recall curve as a frame (recall, precision, threshold), thinned to at most ``max_points`` rows.

    Thinning keeps the first and last points and evenly spaced ones between, so the curve's shape survives.
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # sklearn returns one more precision/recall than thresholds (the final point recall 0, precision 1).
    thresholds = np.append(thresholds, np.nan)
    if precision.size > max_points:
        keep = np.unique(np.linspace(0, precision.size - 1, max_points).round().astype(int))
        precision, recall, thresholds = precision[keep], recall[keep], thresholds[keep]
    return pd.DataFrame({"recall": recall, "precision": precision, "threshold": thresholds})


def threshold_metrics(
    labels: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    bootstrap_samples: int,
    confidence: float,
    seed: int,
    oracle: bool = False,
) -> ThresholdMetrics:
    """Every thresholded metric of one method on one test split at ``threshold``."""
    predictions = np.asarray(scores) >= threshold
    counts = confusion_counts(labels, predictions)
    precision, recall, f1 = _ratios(counts.true_positives, counts.false_positives, counts.false_negatives)
    return ThresholdMetrics(
        threshold=float(threshold),
        precision=float(precision),
        recall=float(recall),
        f1=float(f1),
        f1_ci=bootstrap_f1_interval(labels, predictions, bootstrap_samples, confidence, seed),
        confusion=counts,
        oracle=oracle,
    )
