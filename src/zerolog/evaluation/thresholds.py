"""Threshold rules: how a score becomes an anomaly decision without target labels.

Every rule is named in the metrics it produces. None reads target labels, except ``target_val``, which exists only for
the supervised oracle and is always marked ``oracle: true`` (method.md §6: selecting on target labels is not valid in
the zero-label setting, so it can only describe an upper bound).

| rule | inputs | what it assumes |
|---|---|---|
| ``fixed_0.5`` | none | scores are probabilities; P(anomaly) >= 0.5 (MetaLog's rule, method.md §6) |
| ``source_val`` | SOURCE validation scores + labels | the F1-best cut on the source carries over to the target |
| ``target_quantile`` | TARGET train scores | anomaly share ``evaluate.contamination_prior``: a prior, not a label |
| ``target_mixture`` | TARGET train scores | logit scores form two Gaussian modes; cut where posteriors are equal |
| ``target_otsu`` | TARGET train scores | Otsu: the cut maximising between-class variance of the (logit) scores |
| ``detector`` | the score file's ``decision_threshold`` | the detector's own decision as its paper states it |
| ``pi_hat`` | TARGET train scores + pi-hat | the top pi-hat share of the method's target-train scores is anomalous |
| ``target_val`` | TARGET validation labels | ORACLE only: F1-best cut on the target's validation split |

``pi_hat`` is the recommended detector's label-free estimate of the target's anomaly share (``evaluate.recommended``:
the share of the target's unlabeled train sessions its own decision flags, ``pi_hat`` in its score file). It is the
headline rule of the transfer methods: their ``source_val`` cut, the F1-best on the source, does not carry over to a
target with another anomaly share. ``detector`` needs no fit here: the baselines stage recorded each detector's own
cut (IsolationForest s >= 0.5, DeepLog any miss, Invariants Mining any violation, the level rule any such line).

``target_mixture`` is the named two-component rule: a Gaussian mixture weighs the components, so a small anomaly mode
beside a large normal one still gets its own component, while Otsu's between-class variance favours splits near the
middle of the mass when the classes are very unequal. Otsu is kept as a second, parameter-free reading.
A session is predicted anomalous when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zerolog.errors import DataError
from zerolog.features.target_detector import (  # the mixture cut's one home (the train stage uses it too)
    from_separable_scale,
    mixture_threshold,
    to_separable_scale,
)
from zerolog.metrics import f1_best_threshold


@dataclass(frozen=True)
class RuleInputs:
    """Everything a threshold rule may see for one method of one pair. Never the target's test labels.

    ``unit_scale``: the scores lie in [0, 1] (probabilities, isolation-forest anomaly scores); else any real value.
    ``source_val_*``: None for target-only methods (no source side). ``target_val_*``: only for the oracle.
    """

    target_train_scores: np.ndarray  # (target train sessions,)
    unit_scale: bool
    source_val_scores: np.ndarray | None = None  # (source val sessions,)
    source_val_labels: np.ndarray | None = None  # (source val sessions,) 0/1
    source_val_threshold: float | None = None  # the training stage's own source_val threshold (parquet metadata)
    target_val_scores: np.ndarray | None = None  # oracle only
    target_val_labels: np.ndarray | None = None  # oracle only
    decision_threshold: float | None = None  # the detector's own cut (score-file metadata), None where it has none
    decision_rule: str | None = None  # that decision in words, or why there is none
    pi_hat: float | None = None  # the recommended detector's share of flagged target train sessions
    pi_hat_reason: str | None = None  # why there is no pi-hat (no recommended score file, no cut)


@dataclass(frozen=True)
class Threshold:
    """A rule's threshold, or why the rule does not apply to this method."""

    rule: str
    value: float | None
    oracle: bool = False
    reason: str | None = None
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def applicable(self) -> bool:
        return self.value is not None


def _f1_best(labels: np.ndarray, scores: np.ndarray) -> float:
    best = f1_best_threshold(labels, scores)
    assert best is not None  # the callers check for a labeled anomaly first
    return best[0]


def quantile_threshold(train_scores: np.ndarray, contamination_prior: float) -> float:
    """The (1 - prior) quantile of the target's train scores: about ``prior`` of them score at or above it (more
    when scores tie at the cut: ties are all flagged)."""
    return float(np.quantile(np.asarray(train_scores, dtype=np.float64), 1.0 - contamination_prior))


def otsu_threshold(train_scores: np.ndarray, unit_scale: bool) -> float:
    """Otsu's cut of the transformed train scores, exact over every split of the sorted values (no histogram bins).

    Maximises the between-class variance w0 w1 (mu0 - mu1)^2 over cuts between consecutive distinct values; the cut
    is the midpoint of the two values it falls between, mapped back to the score scale.
    """
    values = np.sort(to_separable_scale(train_scores, unit_scale))
    if values.size < 2 or values[0] == values[-1]:
        raise DataError("target_otsu: the target train scores are constant, nothing to split")
    count = values.size
    prefix_sum = np.cumsum(values)  # (count,)
    below = np.arange(1, count)  # number of values at or below each candidate cut
    distinct = values[1:] != values[:-1]  # a cut between equal values is not a cut
    weight_low = below / count
    mean_low = prefix_sum[:-1] / below
    mean_high = (prefix_sum[-1] - prefix_sum[:-1]) / (count - below)
    between = weight_low * (1.0 - weight_low) * (mean_low - mean_high) ** 2
    between[~distinct] = -np.inf
    best = int(np.argmax(between))
    cut = 0.5 * (values[best] + values[best + 1])
    return from_separable_scale(cut, unit_scale)


def choose_threshold(
    rule: str, inputs: RuleInputs, contamination_prior: float, seed: int, is_oracle_method: bool
) -> Threshold:
    """Apply one named rule; a rule that cannot apply to this method returns a Threshold with its reason."""
    if rule == "fixed_0.5":
        if not inputs.unit_scale:
            return Threshold(rule, None, reason="scores are not probabilities (not on [0, 1])")
        return Threshold(rule, 0.5)
    if rule == "source_val":
        if inputs.source_val_scores is not None and inputs.source_val_labels is not None:
            if inputs.source_val_labels.size and inputs.source_val_labels.max() == 1:
                return Threshold(rule, _f1_best(inputs.source_val_labels, inputs.source_val_scores))
            return Threshold(rule, None, reason="the source validation split has no labeled anomaly")
        if inputs.source_val_threshold is not None:
            return Threshold(rule, float(inputs.source_val_threshold), detail={"from_training_metadata": 1.0})
        return Threshold(rule, None, reason="no source side: the method is trained on the target alone")
    if rule == "target_quantile":
        return Threshold(rule, quantile_threshold(inputs.target_train_scores, contamination_prior))
    if rule == "target_mixture":
        try:
            value, detail = mixture_threshold(inputs.target_train_scores, inputs.unit_scale, seed)
        except DataError as error:
            return Threshold(rule, None, reason=str(error))
        return Threshold(rule, value, detail=detail)
    if rule == "target_otsu":
        try:
            return Threshold(rule, otsu_threshold(inputs.target_train_scores, inputs.unit_scale))
        except DataError as error:
            return Threshold(rule, None, reason=str(error))
    if rule == "detector":
        if inputs.decision_threshold is None:
            why = inputs.decision_rule or "no decision_threshold in its score file"
            return Threshold(rule, None, reason=f"the method has no decision of its own ({why})")
        return Threshold(rule, float(inputs.decision_threshold))
    if rule == "pi_hat":
        if inputs.pi_hat is None:
            return Threshold(rule, None, reason=f"no pi-hat: {inputs.pi_hat_reason}")
        return Threshold(
            rule, quantile_threshold(inputs.target_train_scores, inputs.pi_hat), detail={"pi_hat": inputs.pi_hat}
        )
    if rule == "target_val":
        if not is_oracle_method:
            return Threshold(rule, None, reason="reads target labels: allowed for the supervised oracle only")
        if inputs.target_val_labels is None or inputs.target_val_scores is None or inputs.target_val_labels.size == 0:
            return Threshold(rule, None, oracle=True, reason="the target has no labeled validation session")
        if inputs.target_val_labels.max() < 1:
            return Threshold(rule, None, oracle=True, reason="the target validation split has no labeled anomaly")
        return Threshold(rule, _f1_best(inputs.target_val_labels, inputs.target_val_scores), oracle=True)
    raise DataError(f"evaluate.threshold_rules: unknown rule {rule!r}")
