"""Metrics of the anomaly class against sklearn, bootstrap determinism, ranking metrics, PR-curve thinning."""

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from zerolog.errors import DataError
from zerolog.metrics import (
    bootstrap_f1_interval,
    check_binary,
    confusion_counts,
    f1_best_threshold,
    pr_curve,
    precision_recall_f1,
    ranking_metrics,
    threshold_metrics,
)


def _sample(seed: int, size: int, anomaly_share: float):
    generator = np.random.default_rng(seed)
    labels = (generator.random(size) < anomaly_share).astype(np.int8)
    scores = np.clip(0.3 * labels + generator.normal(0.35, 0.2, size), 0, 1)
    return labels, scores


@pytest.mark.parametrize("seed,size,share", [(0, 50, 0.2), (1, 300, 0.05), (2, 17, 0.5)])
def test_precision_recall_f1_match_sklearn(seed, size, share):
    labels, scores = _sample(seed, size, share)
    predictions = (scores >= 0.5).astype(int)
    precision, recall, f1 = precision_recall_f1(labels, predictions)
    assert precision == pytest.approx(precision_score(labels, predictions, zero_division=0))
    assert recall == pytest.approx(recall_score(labels, predictions, zero_division=0))
    assert f1 == pytest.approx(f1_score(labels, predictions, zero_division=0))


def test_confusion_counts_match_sklearn():
    labels, scores = _sample(3, 200, 0.1)
    predictions = scores >= 0.45
    counts = confusion_counts(labels, predictions)
    (true_negatives, false_positives), (false_negatives, true_positives) = confusion_matrix(labels, predictions)
    assert counts.as_dict() == {
        "true_positives": true_positives,
        "false_positives": false_positives,
        "true_negatives": true_negatives,
        "false_negatives": false_negatives,
    }


def test_zero_division_gives_zero_not_nan():
    labels = np.array([0, 0, 0, 1])
    assert precision_recall_f1(labels, np.zeros(4)) == (0.0, 0.0, 0.0)


def test_ranking_metrics_match_sklearn_and_one_class_is_none():
    labels, scores = _sample(4, 120, 0.15)
    ranking = ranking_metrics(labels, scores)
    assert ranking["pr_auc"] == pytest.approx(average_precision_score(labels, scores))
    assert ranking["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert ranking_metrics(np.zeros(5, dtype=int), np.linspace(0, 1, 5)) == {"pr_auc": None, "roc_auc": None}


def test_bootstrap_is_deterministic_for_a_seed_and_brackets_f1():
    labels, scores = _sample(5, 400, 0.1)
    predictions = scores >= 0.5
    first = bootstrap_f1_interval(labels, predictions, samples=300, confidence=0.95, seed=42)
    again = bootstrap_f1_interval(labels, predictions, samples=300, confidence=0.95, seed=42)
    other = bootstrap_f1_interval(labels, predictions, samples=300, confidence=0.95, seed=7)
    assert first == again
    assert first != other
    _, _, f1 = precision_recall_f1(labels, predictions)
    assert first[0] <= f1 <= first[1]
    assert first[0] < first[1]
    narrower = bootstrap_f1_interval(labels, predictions, samples=300, confidence=0.5, seed=42)
    assert first[0] <= narrower[0] <= narrower[1] <= first[1]


def test_bootstrap_of_perfect_predictions_is_a_point():
    labels = np.array([0, 1] * 20)
    assert bootstrap_f1_interval(labels, labels, samples=50, confidence=0.95, seed=0) == (1.0, 1.0)


def test_threshold_metrics_uses_greater_or_equal_and_reports_everything():
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.5, 0.5, 0.9, 0.7])
    result = threshold_metrics(labels, scores, 0.5, bootstrap_samples=20, confidence=0.9, seed=1)
    # predicted: 0.5, 0.5, 0.9, 0.7 -> tp 2, fp 2, fn 0
    assert result.confusion.as_dict() == {
        "true_positives": 2,
        "false_positives": 2,
        "true_negatives": 1,
        "false_negatives": 0,
    }
    assert (result.precision, result.recall) == (0.5, 1.0)
    assert result.f1 == pytest.approx(2 / 3)
    flat = result.as_dict()
    assert flat["threshold"] == 0.5 and flat["oracle"] is False and len(flat["f1_ci"]) == 2


def test_pr_curve_is_thinned_and_keeps_the_ends():
    labels, scores = _sample(6, 500, 0.2)
    full = pr_curve(labels, scores, max_points=10_000)
    thin = pr_curve(labels, scores, max_points=25)
    assert len(thin) <= 25 < len(full)
    assert list(thin.columns) == ["recall", "precision", "threshold"]
    assert thin.iloc[0]["recall"] == full.iloc[0]["recall"] and thin.iloc[-1]["recall"] == full.iloc[-1]["recall"]


@pytest.mark.parametrize(
    "labels,scores",
    [
        (np.array([0, 2]), np.array([0.1, 0.2])),
        (np.array([0, 1]), np.array([0.1, np.nan])),
        (np.array([0]), np.zeros(2)),
    ],
)
def test_check_binary_rejects_bad_input(labels, scores):
    with pytest.raises(DataError):
        check_binary(labels, scores, "scores.parquet")


def test_f1_best_threshold_is_the_best_cut():
    generator = np.random.default_rng(0)
    labels = (generator.random(300) < 0.2).astype(int)
    scores = generator.normal(0.0, 1.0, 300) + 1.5 * labels
    chosen, chosen_f1 = f1_best_threshold(labels, scores)
    best = max(f1_score(labels, scores >= cut) for cut in np.unique(scores))
    assert f1_score(labels, scores >= chosen) == pytest.approx(best) == pytest.approx(chosen_f1)


def test_f1_best_threshold_breaks_ties_towards_the_highest_cut():
    labels = np.array([0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.9, 0.2])  # any cut in (0.2, 0.8] is perfect
    assert f1_best_threshold(labels, scores) == (pytest.approx(0.8), 1.0)


def test_f1_best_threshold_needs_an_anomaly():
    assert f1_best_threshold(np.zeros(4, dtype=int), np.linspace(0, 1, 4)) is None
