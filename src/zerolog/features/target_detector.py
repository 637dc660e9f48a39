"""The PCA + mixture detector's one home: loglizer's PCA SPE on event counts, cut by a 2-component mixture.

Why here (the features layer, numpy + scikit-learn only): two stages use it and they sit in different layers. The
baselines stage scores the target with it (method ``pca_mixture``, ``evaluate.recommended``:
zerolog.evaluation.baselines reads :func:`pca_mixture_detection`), and the evaluate
stage's ``target_mixture`` rule is :func:`mixture_threshold` (re-exported by zerolog.evaluation.thresholds). The
train stage needs the same detector for ``zerolog_adapt`` (its π̂ weights the domain loss, its flags make the
self-training pseudo-labels), and training must not import evaluation. One implementation, so the π̂ the trainer
uses is the π̂ the evaluate stage's ``pi_hat`` rule reads from the baselines stage's score file
(tests/training/test_adapt.py checks they are equal).

The detector (the issue-10 research's recommended product detector; ``pca_mixture`` in docs/method.md, "Baselines"):
loglizer's PCA (Xu et al., SOSP 2009): weighted (tf-idf by default) event counts of the target's unlabeled TRAIN
sessions, squared prediction error (SPE) off the subspace keeping ``variance`` of the train variance; the cut is
where a 2-component Gaussian mixture on the sign-log1p train SPE puts equal posterior on both modes. π̂ = the share
of train sessions at or above the cut. No label is read anywhere.

Arrays (the tensors layout, zerolog.artifacts.SystemTensors): ``counts`` (sessions, templates + 1) float, column 0
(padding) always 0; ``train_rows`` (train sessions,) int64 rows of ``counts``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from sklearn.mixture import GaussianMixture

from zerolog.artifacts import SPLIT_CODES
from zerolog.errors import DataError
from zerolog.features.pca import PcaSubspace, Weighting, fit_pca_subspace

# Probability-like scores are clipped this far inside (0, 1) before the logit (float32 sigmoids saturate).
_LOGIT_EPSILON = 1e-6


@dataclass(frozen=True)
class TargetDetection:
    """A label-free detector's view of one target system.

    ``scores``: (sessions,) float64, every row of the system's tensors, larger = more anomalous.
    ``threshold``: the detector's own cut (``score >= threshold`` is flagged). ``pi_hat``: the flagged share of the
    target's TRAIN sessions, the label-free estimate of its anomaly share.
    """

    method: str
    scores: np.ndarray
    threshold: float
    pi_hat: float


def train_matrix(counts: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """(train sessions, templates + 1) float64 counts of the train rows; DataError when there are too few."""
    if len(train_rows) < 2:
        raise DataError(f"{len(train_rows)} train session(s): too few to fit a detector on")
    return np.asarray(counts, dtype=np.float64)[train_rows]


def train_pca(counts: np.ndarray, train_rows: np.ndarray, variance: float, weighting: Weighting) -> PcaSubspace:
    """loglizer's PCA subspace (zerolog.features.pca) of the TRAIN rows of ``counts``: the SPE of ``pca``,
    ``pca_mixture`` and the PCA state of the persisted detector (zerolog.detection.bundle)."""
    return fit_pca_subspace(train_matrix(counts, train_rows), variance, weighting)


def to_separable_scale(scores: np.ndarray, unit_scale: bool) -> np.ndarray:
    """Map scores to a scale where two modes look Gaussian: logit for [0, 1] scores, signed log1p otherwise."""
    scores = np.asarray(scores, dtype=np.float64)
    if unit_scale:
        clipped = np.clip(scores, _LOGIT_EPSILON, 1.0 - _LOGIT_EPSILON)
        return np.log(clipped) - np.log1p(-clipped)
    return np.sign(scores) * np.log1p(np.abs(scores))


def from_separable_scale(value: float, unit_scale: bool) -> float:
    """Inverse of :func:`to_separable_scale` for one value."""
    if unit_scale:
        return float(1.0 / (1.0 + np.exp(-value)))
    return float(np.sign(value) * np.expm1(abs(value)))


def mixture_threshold(train_scores: np.ndarray, unit_scale: bool, seed: int) -> tuple[float, dict[str, float]]:
    """Fit a 2-component Gaussian mixture to the transformed train scores; cut where the posteriors are equal.

    The higher-mean component is the anomaly mode. Returns the cut on the original score scale and the fit (means,
    standard deviations, weights on the transformed scale). DataError when the scores form no two separable modes.
    """
    values = to_separable_scale(train_scores, unit_scale)
    if values.size < 2 or np.ptp(values) == 0:
        raise DataError("target_mixture: the target train scores are constant, no two modes to split")
    mixture = GaussianMixture(n_components=2, covariance_type="full", random_state=seed).fit(values.reshape(-1, 1))
    low, high = np.argsort(mixture.means_.ravel())
    means = mixture.means_.ravel()
    deviations = np.sqrt(mixture.covariances_.reshape(-1))
    weights = mixture.weights_

    def log_odds_high(x: float) -> float:
        """log P(high component | x) - log P(low component | x)."""
        densities = [
            np.log(weights[k]) - np.log(deviations[k]) - 0.5 * ((x - means[k]) / deviations[k]) ** 2
            for k in (low, high)
        ]
        return float(densities[1] - densities[0])

    left, right = means[low], means[high]
    if not (log_odds_high(left) < 0 < log_odds_high(right)):
        raise DataError("target_mixture: the two mixture components do not separate between their means")
    cut = brentq(log_odds_high, left, right)
    detail = {"low_mean": float(means[low]), "low_std": float(deviations[low]), "low_weight": float(weights[low]),
              "high_mean": float(means[high]), "high_std": float(deviations[high]),
              "high_weight": float(weights[high])}  # fmt: skip
    return from_separable_scale(cut, unit_scale), detail


class NoMixtureCut(DataError):
    """The train scores show no two modes to cut between; ``scores`` are every session's all the same."""

    def __init__(self, message: str, scores: np.ndarray) -> None:
        super().__init__(message)
        self.scores = scores


def pca_mixture_detection(
    counts: np.ndarray, split: np.ndarray, variance: float, weighting: Weighting, seed: int
) -> TargetDetection:
    """The ``pca_mixture`` detector, its one assembly: PCA SPE fit on the TRAIN rows of ``counts`` (sessions,
    features), cut by the train mixture (settings ``evaluate.detectors.pca``, seed ``params.seed``). The baselines
    stage scores the target with it, the train stage reads its pi-hat.

    DataError (with the reason) when the system has too few train sessions; :class:`NoMixtureCut` when the SPE has
    no two modes.
    """
    train_rows = np.flatnonzero(np.asarray(split) == SPLIT_CODES["train"])
    scores = train_pca(counts, train_rows, variance, weighting).spe(counts)  # (sessions,)
    try:
        threshold, _ = mixture_threshold(scores[train_rows], unit_scale=False, seed=seed)
    except DataError as error:
        raise NoMixtureCut(str(error), scores) from None
    pi_hat = float(np.mean(scores[train_rows] >= threshold))
    return TargetDetection("pca_mixture", scores, threshold, pi_hat)
