"""What ``zerolog_adapt`` adds to zerolog: alignment that survives label shift, and self-training on the target.

Both parts read the target only through a label-free detector (zerolog.features.target_detector: PCA SPE on the
target's unlabeled train counts, cut by a 2-component mixture; π̂ = its flagged share of the train sessions).

1. Importance-weighted alignment (IWDAN, Tachet des Combes, Zhao, Wang, Gordon, NeurIPS 2020, §3-4). Plain DANN
   aligns the marginals p_S(z) and p_T(z); when the anomaly shares differ (HDFS 2.9 %, BGL 8-11 %, DevStack 15 %), a
   perfect marginal alignment forces anomalies of one side onto normals of the other (their Theorem 3.1). IWDAN
   reweights the source in the domain loss by w_c = π_T(c) / π_S(c), so that the *reweighted* source marginal is
   aligned with the target (generalised label shift). π_T comes from π̂ (label-free), π_S is the expected class
   share of a labeled batch (the source train share with uniform batches, ``anomaly_share`` with balanced ones).
   The source half of the domain loss becomes (1/n) Σ_i w_{y_i} ℓ_i, their Eq. (9) form; the classifier loss keeps
   the class balance of ``train.class_balance``. ``train.adapt.domain_weighting: none`` switches it off.

2. Self-training on pseudo-labels. After zerolog's ``train.epochs`` epochs, each of ``self_training.rounds`` rounds
   labels the target's TRAIN sessions from confident extremes (``self_training.rule``):
     ``agreement`` (where the transferred model and the detector agree):
       anomalous: flagged by the detector (its top π̂ share) AND in the model's top π̂ share of target-train scores;
       normal:    within the lowest ``normal_share`` of both the detector's and the model's target-train scores;
     ``detector``: the detector's flagged sessions and its lowest ``normal_share`` (the model is not consulted);
     every other session is left unlabeled (not used).
   The pseudo-labeled sessions then join the meta-test task for ``epochs_per_round`` epochs, as MetaLog's meta-test
   is the (pseudo-)labeled target (Zhang et al., ICSE 2024; method.md §5): θ' from the source meta-train half, the
   outer gradient adds ∇_θ' L_cls(target pseudo batch). λ stays at its end-of-schedule value during the rounds.
   A round with fewer than ``min_pseudo_anomalies`` agreed anomalies (or no agreed normal) trains without the
   pseudo task and says so in the history. ``rounds: 0`` switches it off.

No target label is read: pseudo-labels are a function of the model's scores and the detector's scores only
(tests/training/test_adapt.py permutes the target's labels and gets identical weights).
"""

from __future__ import annotations

import numpy as np

from zerolog.errors import DataError


def importance_weights(pi_target: float, pi_source: float) -> np.ndarray:
    """(2,) float64: w_c = π_T(c) / π_S(c) for c = 0 (normal), 1 (anomaly); π(1) = the anomaly share, π(0) = 1 − it.

    Both shares must lie strictly inside (0, 1): a class absent from one side has no finite weight.
    """
    for name, share in (("target (pi-hat)", pi_target), ("source", pi_source)):
        if not 0.0 < share < 1.0:
            raise DataError(f"importance weights: the {name} anomaly share {share} is not inside (0, 1)")
    return np.array([(1.0 - pi_target) / (1.0 - pi_source), pi_target / pi_source], dtype=np.float64)


def top_share_threshold(scores: np.ndarray, share: float) -> float:
    """The cut that flags the top ``share`` of ``scores`` (``score >= cut``): their (1 − share) quantile.

    The threshold rule of ``zerolog_adapt``: the top π̂ share of its own target-train scores. Ties at the cut are all
    flagged (the flagged share can exceed ``share`` when scores tie).
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        raise DataError("top-share threshold: no scores")
    return float(np.quantile(values, 1.0 - share))


def pseudo_labels(
    model_scores: np.ndarray, detector_scores: np.ndarray, detector_threshold: float, pi_hat: float,
    normal_share: float, rule: str,
) -> np.ndarray:  # fmt: skip
    """(sessions,) int64 pseudo-labels of the target's train sessions: 1 anomalous, 0 normal, −1 not labeled.

    ``model_scores`` and ``detector_scores`` (sessions,) are aligned. ``rule``:
    - ``agreement``: anomalous = detector score >= its own threshold AND model score >= the model's top-π̂ cut;
      normal = both scores at or below their ``normal_share`` quantiles;
    - ``detector``: the detector alone (anomalous = flagged, normal = at or below its ``normal_share`` quantile);
      the model's scores are not read (the GRU is distilled from the detector, the source acting as a prior).
    """
    model_scores = np.asarray(model_scores, dtype=np.float64)
    detector_scores = np.asarray(detector_scores, dtype=np.float64)
    if model_scores.shape != detector_scores.shape:
        raise ValueError(f"pseudo-labels: {model_scores.shape} model scores vs {detector_scores.shape} detector scores")
    anomalous = detector_scores >= detector_threshold
    normal = detector_scores <= np.quantile(detector_scores, normal_share)
    if rule == "agreement":
        anomalous &= model_scores >= top_share_threshold(model_scores, pi_hat)
        normal &= model_scores <= np.quantile(model_scores, normal_share)
    elif rule != "detector":
        raise ValueError(f"train.adapt.self_training.rule: unknown rule {rule!r}")
    labels = np.full(model_scores.shape, -1, dtype=np.int64)
    labels[normal & ~anomalous] = 0
    labels[anomalous] = 1
    return labels
