"""Label-free detectors fit on the target system alone: pure functions on its event-count vectors.

Every detector is FIT on the target's TRAIN sessions only (``train_rows``) and scores every session of the system;
none reads a label. Scores: higher = more anomalous. Each returns a :class:`Detection`: the scores and, where the
detector has one, its own decision (``score >= decision_threshold`` reads anomalous), as its paper states it.
The threshold rules of the evaluate stage (thresholds.py) read that decision as the rule ``detector``.

| detector | paper | scores | its own decision |
|---|---|---|---|
| ``isolation_forest`` | Liu, Ting, Zhou (ICDM 2008) | anomaly score s(x) in (0, 1] | s >= 0.5 |
| ``pca_q_statistic`` | Xu et al. (SOSP 2009), loglizer | squared prediction error (SPE) | Jackson-Mudholkar Q_alpha |
| ``invariants_mining`` | Lou et al. (USENIX ATC 2010) | violated invariants | any violation |
| ``template_rarity`` | (rarity within the target) | -log share of train sessions holding the rarest template | none |
| ``template_set_rarity`` | (rarity within the target) | -log share of train sessions with this template set | none |

``pca_mixture`` (the same SPE, cut by a 2-component mixture on the train SPE) is zerolog.features.target_detector's.
The next-event model (DeepLog) is in ``deeplog.py`` (torch), LogLead's detectors in ``loglead.py``.

Arrays (the tensors layout, zerolog.artifacts.SystemTensors): ``counts`` (sessions, templates + 1) float, column 0
(padding) always 0; ``train_rows`` (train sessions,) int64 rows of ``counts``.

Ported from the issue-10 research prototype (kept outside the repository), reviewed: the port's scores were identical
to the prototype's on the bundled data (tests/evaluation/test_detectors.py checks the hand-computable cases).
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.ensemble import IsolationForest

from zerolog.features.target_detector import Weighting, train_pca
from zerolog.features.target_detector import train_matrix as _train_matrix


@dataclass(frozen=True)
class Detection:
    """One detector's output for every session of a system."""

    scores: np.ndarray  # (sessions,) float64, higher = more anomalous
    score_scale: Literal["unit", "unbounded"]  # unit: scores lie in [0, 1]
    decision_threshold: float | None  # the detector's own label-free cut (score >= it), None where it has none
    decision_rule: str  # what the decision is, in words (or why there is none)

    def flagged_share(self, rows: np.ndarray) -> float | None:
        """Share of ``rows`` the detector's own decision flags: a label-free estimate of the anomaly share there."""
        if self.decision_threshold is None or len(rows) == 0:
            return None
        return float(np.mean(self.scores[rows] >= self.decision_threshold))


# ----------------------------------------------------------------------------- IsolationForest


def isolation_forest(counts: np.ndarray, train_rows: np.ndarray, n_estimators: int, seed: int) -> Detection:
    """scikit-learn's IsolationForest on event-count vectors, fit on the train rows.

    sklearn's ``score_samples`` is the negated anomaly score s(x) of the paper, so ``-score_samples`` is s(x); the
    paper reads s >= 0.5 as anomalous (sklearn's ``contamination="auto"`` offset).
    """
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(_train_matrix(counts, train_rows))
    scores = -forest.score_samples(np.asarray(counts, dtype=np.float64))  # (sessions,)
    return Detection(scores, "unit", 0.5, "s(x) >= 0.5 (Liu et al. 2008)")


# ----------------------------------------------------------------------------- PCA (loglizer)


def q_statistic_threshold(residual_eigenvalues: np.ndarray, c_alpha: float) -> float:
    """Jackson & Mudholkar (1979) Q_alpha for the SPE, from the residual eigenvalues lambda_j (j > k):
    phi_i = sum lambda_j^i, h0 = 1 - 2 phi1 phi3 / (3 phi2^2),
    Q = phi1 [c_alpha sqrt(2 phi2 h0^2) / phi1 + 1 + phi2 h0 (h0 - 1) / phi1^2] ^ (1 / h0)  (loglizer's PCA)."""
    eigenvalues = np.asarray(residual_eigenvalues, dtype=np.float64)
    phi1, phi2, phi3 = (float(np.sum(eigenvalues**power)) for power in (1, 2, 3))
    if phi1 <= 0 or phi2 <= 0:
        return 0.0  # the subspace explains everything: any residual at all is anomalous
    h0 = 1.0 - 2.0 * phi1 * phi3 / (3.0 * phi2**2)
    base = c_alpha * np.sqrt(2.0 * phi2 * h0**2) / phi1 + 1.0 + phi2 * h0 * (h0 - 1.0) / phi1**2
    return float(phi1 * base ** (1.0 / h0))


def pca_q_statistic(
    counts: np.ndarray, train_rows: np.ndarray, variance: float, weighting: Weighting, c_alpha: float
) -> Detection:
    """loglizer's PCA detector: SPE with the Q-statistic cut (c_alpha 3.2905: loglizer's default, alpha ~ 0.001)."""
    subspace = train_pca(counts, train_rows, variance, weighting)
    spe, threshold = subspace.spe(counts), q_statistic_threshold(subspace.residual_variances, c_alpha)
    return Detection(spe, "unbounded", threshold, f"SPE >= Q_alpha (Jackson-Mudholkar, c_alpha {c_alpha})")


# ----------------------------------------------------------------------------- Invariants Mining (Lou et al.)


def _integer_invariant(columns: np.ndarray, support: float, scales: list[int]) -> np.ndarray | None:
    """Small integer coefficients theta with ``columns @ theta == 0`` on >= ``support`` of the rows, or None: the
    null vector of ``columns`` (rows, k) scaled so its smallest non-zero magnitude is 1, times each scale, rounded
    (Lou et al. search small integers)."""
    vector = np.linalg.svd(columns, full_matrices=True)[2][-1]  # (k,) right singular vector of the smallest value
    nonzero = np.abs(vector) > 1e-8
    if not nonzero.any():
        return None
    base = vector / np.min(np.abs(vector[nonzero]))
    for scale in scales:
        theta = np.round(base * scale)
        if np.any(theta) and np.mean(np.abs(columns @ theta) < 1e-8) >= support:
            return theta
    return None


def mine_invariants(
    train_counts: np.ndarray, support: float, epsilon: float, max_size: int, scales: list[int]
) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """Invariants (count columns, integer theta) with ``X[:, columns] @ theta == 0`` on >= ``support`` of the train
    rows, searched over event sets of size 1..``max_size`` in increasing size (Lou et al. 2010).

    The search stops once it holds as many invariants as the invariant space's estimated dimension (eigenvalues of
    X^T X below ``epsilon``, loglizer's reading) and skips supersets of a set that already holds one (the paper's
    pruning). A template no train row holds gets the invariant "count == 0". Measured in the issue-10 research: on
    unlabeled train rows that hold a few percent anomalies the budget goes to single-event "count == 0" invariants
    of rare events, so the paper's count relations (HDFS: opened = closed) are rarely reached.
    """
    matrix = np.asarray(train_counts, dtype=np.float64)[:, 1:]  # (train, templates): no padding column
    seen = np.flatnonzero(matrix.any(axis=0))
    never_seen = np.flatnonzero(~matrix.any(axis=0))
    invariants: list[tuple[tuple[int, ...], np.ndarray]] = [
        ((int(column) + 1,), np.array([1.0])) for column in never_seen
    ]
    matrix = matrix[:, seen]
    singular_values = np.linalg.svd(matrix, compute_uv=False)
    budget = int(np.sum(singular_values**2 < epsilon)) + max(0, matrix.shape[1] - matrix.shape[0])
    found: list[set[int]] = []
    for subset in itertools.chain.from_iterable(
        itertools.combinations(range(matrix.shape[1]), size) for size in range(1, max_size + 1)
    ):
        if len(found) >= budget:
            break
        if any(earlier <= set(subset) for earlier in found):
            continue
        columns = matrix[:, subset]
        theta = _integer_invariant(columns, support, scales)
        if theta is not None:
            found.append(set(subset))
            columns_of_invariant: tuple[int, ...] = tuple(int(seen[column]) + 1 for column in subset)
            invariants.append((columns_of_invariant, theta))
    return invariants


def invariants_mining(
    counts: np.ndarray, train_rows: np.ndarray, support: float, epsilon: float, max_size: int, scales: list[int]
) -> Detection:
    """Score = the number of mined invariants a session violates; the paper's decision: any violation."""
    invariants = mine_invariants(_train_matrix(counts, train_rows), support, epsilon, max_size, scales)
    counts = np.asarray(counts, dtype=np.float64)
    violations = np.zeros(counts.shape[0])  # (sessions,)
    for columns, theta in invariants:
        violations += np.abs(counts[:, list(columns)] @ theta) > 1e-8
    return Detection(violations, "unbounded", 1.0, f"any of {len(invariants)} mined invariants violated")


# ----------------------------------------------------------------------------- rarity within the target


def template_rarity(counts: np.ndarray, train_rows: np.ndarray) -> Detection:
    """max over the session's templates of -log((n_t + 1) / (N + 2)), n_t = train sessions holding template t
    (add-one smoothing: a template no train session holds scores highest, not infinite)."""
    present = np.asarray(counts) > 0  # (sessions, templates + 1)
    holding = present[train_rows].sum(axis=0).astype(np.float64)  # (templates + 1,)
    rarity = -np.log((holding + 1.0) / (len(train_rows) + 2.0))
    scores = np.where(present, rarity, -np.inf).max(axis=1)
    scores[~present.any(axis=1)] = 0.0  # a session with no event: nothing rare in it
    return Detection(scores, "unbounded", None, "none (a ranking; cut by a label-free rule)")


def template_set_rarity(counts: np.ndarray, train_rows: np.ndarray) -> Detection:
    """-log((n_S + 1) / (N + 1)), n_S = train sessions holding exactly the session's set S of templates."""
    keys = [row.tobytes() for row in np.asarray(counts) > 0]
    tally = collections.Counter(keys[row] for row in train_rows)
    scores = np.array([-np.log((tally[key] + 1.0) / (len(train_rows) + 1.0)) for key in keys])
    return Detection(scores, "unbounded", None, "none (a ranking; cut by a label-free rule)")


# ----------------------------------------------------------------------------- PyOD peers, off the shelf

#: PyOD's detectors a practitioner would try first, each with PyOD's defaults (contamination 0.1: PyOD's own cut flags
#: the top 10% of the train scores; IForest 100 trees). Rows ``pyod_<name>``: what one gets without any tuning.
PYOD_DETECTORS = {"pyod_iforest": "iforest", "pyod_ecod": "ecod", "pyod_copod": "copod"}


def pyod_detector(method: str, counts: np.ndarray, train_rows: np.ndarray, seed: int) -> Detection:
    """A PyOD detector with its defaults, fit on the train rows' event counts; its own cut is PyOD's ``threshold_``
    (the train scores' (1 - contamination) quantile). ECOD (Li et al., TKDE 2022) and COPOD (Li et al., ICDM 2020)
    are deterministic; IForest reads ``seed``."""
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest

    name = PYOD_DETECTORS[method]
    model = IForest(random_state=seed) if name == "iforest" else ECOD() if name == "ecod" else COPOD()
    model.fit(_train_matrix(counts, train_rows))
    scores = model.decision_function(np.asarray(counts, dtype=np.float64))  # (sessions,)
    rule = f"PyOD {type(model).__name__} default cut: contamination {model.contamination}"
    return Detection(np.asarray(scores, dtype=np.float64), "unbounded", float(model.threshold_), rule)
