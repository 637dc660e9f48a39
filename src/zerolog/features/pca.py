"""loglizer's PCA subspace, fitted once: the one home of the PCA of every stage and of ``zerolog detect``.

The baselines stage's ``pca`` and ``pca_mixture`` rows, the train stage's pi-hat
(zerolog.features.target_detector) and the detector that ``zerolog detect`` persists and loads
(zerolog.detection.loso, zerolog.detection.bundle) all fit and score with :func:`fit_pca_subspace` and
:class:`PcaSubspace`; it sits in the features layer (numpy + scikit-learn) because training must not import
evaluation or detection.

PCA squared prediction error (SPE) of weighted event counts.

Xu et al. (SOSP 2009; loglizer's PCA): weight each session's event-count vector (tf-idf by default), centre it on the
train mean, project it off the normal subspace (the fewest principal components of the TRAIN rows that explain
``variance`` of their variance) and score it by the squared length of the residual, SPE = |x - P P^T x|^2. The
recommended detector (``evaluate.recommended: pca_mixture``) cuts the SPE where a two-component Gaussian mixture on
the train SPE gives equal posteriors (``zerolog.evaluation.thresholds.mixture_threshold``); the share it flags among
the train sessions is pi-hat.

Why a state object: ``zerolog detect`` scores sessions that were never in the tensors, so everything the score needs
(idf, mean, components) is kept, and the SPE is a sum over template columns, which says which templates weigh most:
the contribution of template j is its squared residual r_j^2 (SPE = sum_j r_j^2).

A template the state has no column for (new to the detector) counts as a template no train session holds: weight
log(N / 1) under tf-idf (``tfidf_weights`` gives an unseen column df = 1), mean 0 and no loading on any component
(the train column is all zeros), so its residual is its weighted count. Columns the vocabulary has but no train row
holds are treated the same way by the fit itself, so a new template scores exactly as such a column would.

Arrays: ``counts`` (sessions, templates + 1) float, column 0 (padding) always 0, as ``tensors/<system>/counts.npy``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sklearn.decomposition import PCA

from zerolog.errors import DataError

Weighting = Literal["tfidf", "log1p", "raw"]
WEIGHTINGS = ("tfidf", "log1p", "raw")


def _weighted(counts: np.ndarray, weighting: Weighting, idf: np.ndarray | float) -> np.ndarray:
    """(sessions, columns) counts as the PCA sees them; ``idf``: each column's tf-idf weight."""
    counts = np.asarray(counts, dtype=np.float64)
    if weighting == "tfidf":
        return counts * idf
    if weighting == "log1p":
        return np.log1p(counts)
    return counts


def tfidf_weights(train_counts: np.ndarray) -> np.ndarray:
    """(templates + 1,) loglizer's idf, log(N / df) over the train rows; a column no train row holds weighs as
    df = 1 (the rarest)."""
    document_frequency = (np.asarray(train_counts) > 0).sum(axis=0)
    return np.log(train_counts.shape[0] / np.maximum(document_frequency, 1))


@dataclass(frozen=True)
class PcaSubspace:
    """A fitted normal subspace (module docstring). Shapes: ``idf`` and ``mean`` (templates + 1,), ``components``
    (k, templates + 1); float64. ``residual_variances`` (components not kept,): the train variance along each
    component left out, which the Q-statistic cut reads (zerolog.evaluation.detectors.pca_q_statistic); a
    persisted detector does not keep them (its cut is stored)."""

    weighting: Weighting
    idf: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    train_sessions: int
    residual_variances: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def columns(self) -> int:
        return int(self.mean.shape[0])

    def residuals(self, counts: np.ndarray, unseen_counts: np.ndarray | None = None) -> np.ndarray:
        """(sessions, columns + extra) residual of every row off the subspace; ``unseen_counts`` (sessions, extra)
        are counts of templates without a column (their residual is their weighted count)."""
        centred = _weighted(counts, self.weighting, self.idf) - self.mean  # (sessions, columns)
        residual = centred - (centred @ self.components.T) @ self.components
        if unseen_counts is None or unseen_counts.shape[1] == 0:
            return residual
        unseen = _weighted(unseen_counts, self.weighting, np.log(self.train_sessions / 1.0))  # weighed as df = 1
        return np.concatenate([residual, unseen], axis=1)

    def spe(self, counts: np.ndarray, unseen_counts: np.ndarray | None = None) -> np.ndarray:
        """(sessions,) squared prediction error."""
        residual = self.residuals(counts, unseen_counts)
        return np.einsum("ij,ij->i", residual, residual)


def fit_pca_subspace(train_counts: np.ndarray, variance: float, weighting: Weighting) -> PcaSubspace:
    """Fit the normal subspace on the train rows' counts (train sessions, templates + 1): the fewest principal
    components reaching ``variance`` of the variance (loglizer's 0.95), by scikit-learn's full SVD."""
    if weighting not in WEIGHTINGS:
        raise DataError(f"pca weighting: unknown {weighting!r} (expected one of {', '.join(WEIGHTINGS)})")
    train = np.asarray(train_counts, dtype=np.float64)
    if train.shape[0] < 2:
        raise DataError(f"{train.shape[0]} train session(s): too few to fit a detector on")
    idf = tfidf_weights(train)
    weighted_train = _weighted(train, weighting, idf)  # (train, templates + 1)
    mean = weighted_train.mean(axis=0)
    if not np.any(weighted_train - mean):
        raise DataError("pca: the target's train count vectors are all identical; no subspace to fit")
    pca = PCA(svd_solver="full").fit(weighted_train - mean)
    kept = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), variance) + 1)  # fewest reaching the share
    kept = min(kept, len(pca.explained_variance_ratio_))
    return PcaSubspace(
        weighting,
        idf,
        mean,
        np.ascontiguousarray(pca.components_[:kept]),
        train.shape[0],
        residual_variances=pca.explained_variance_[kept:],
    )


__all__ = ["WEIGHTINGS", "PcaSubspace", "Weighting", "fit_pca_subspace", "tfidf_weights"]
