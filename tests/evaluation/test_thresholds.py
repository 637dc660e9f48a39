"""Threshold rules: each one on data where the right answer is known; none may read target labels."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from zerolog.errors import DataError
from zerolog.evaluation.thresholds import (
    RuleInputs,
    choose_threshold,
    from_separable_scale,
    mixture_threshold,
    otsu_threshold,
    quantile_threshold,
    to_separable_scale,
)


def _bimodal_probabilities(seed: int, normal: int, anomalous: int):
    """Scores whose logits form two Gaussian modes: normals around logit -4, anomalies around logit +3."""
    generator = np.random.default_rng(seed)
    logits = np.concatenate([generator.normal(-4.0, 1.0, normal), generator.normal(3.0, 1.0, anomalous)])
    labels = np.concatenate([np.zeros(normal, dtype=int), np.ones(anomalous, dtype=int)])
    return 1.0 / (1.0 + np.exp(-logits)), labels


def test_quantile_threshold_flags_the_prior_share():
    scores = np.linspace(0, 1, 1001)
    cut = quantile_threshold(scores, 0.05)
    assert cut == pytest.approx(0.95)
    assert (scores >= cut).mean() == pytest.approx(0.05, abs=0.002)


@pytest.mark.parametrize(
    "unit_scale,values",
    [(True, np.array([1e-9, 0.2, 0.5, 0.99, 1.0])), (False, np.array([-3.0, 0.0, 7.5, 1e4]))],
)
def test_separable_scale_round_trips(unit_scale, values):
    transformed = to_separable_scale(values, unit_scale)
    assert np.all(np.diff(transformed) > 0)  # monotone
    for value, back in zip(values[1:-1], transformed[1:-1], strict=True):
        assert from_separable_scale(back, unit_scale) == pytest.approx(value, rel=1e-6)


@pytest.mark.parametrize("rule_function", ["mixture", "otsu"])
def test_two_mode_rules_split_a_bimodal_score_set(rule_function):
    scores, labels = _bimodal_probabilities(seed=1, normal=950, anomalous=50)
    if rule_function == "mixture":
        cut, detail = mixture_threshold(scores, unit_scale=True, seed=0)
        assert detail["high_weight"] == pytest.approx(0.05, abs=0.02)
        assert detail["low_mean"] == pytest.approx(-4.0, abs=0.3) and detail["high_mean"] == pytest.approx(3.0, abs=0.5)
    else:
        cut = otsu_threshold(scores, unit_scale=True)
    logit_cut = to_separable_scale(np.array([cut]), True)[0]
    assert -3.0 < logit_cut < 2.0  # between the modes, not inside either
    assert f1_score(labels, scores >= cut) > 0.9


def test_mixture_threshold_is_deterministic_with_a_seed():
    scores, _ = _bimodal_probabilities(seed=2, normal=500, anomalous=40)
    assert mixture_threshold(scores, True, seed=3) == mixture_threshold(scores, True, seed=3)


def test_mixture_and_otsu_work_on_unbounded_scores():
    generator = np.random.default_rng(4)
    scores = np.concatenate([generator.gamma(2.0, 1.0, 900), 200 + generator.gamma(2.0, 10.0, 100)])
    labels = np.r_[np.zeros(900), np.ones(100)]
    for cut in (mixture_threshold(scores, False, seed=0)[0], otsu_threshold(scores, False)):
        assert f1_score(labels, scores >= cut) > 0.95


@pytest.mark.parametrize("function", [lambda s: mixture_threshold(s, True, 0), lambda s: otsu_threshold(s, True)])
def test_two_mode_rules_refuse_constant_scores(function):
    with pytest.raises(DataError):
        function(np.full(50, 0.3))


def _inputs(**overrides):
    scores, _ = _bimodal_probabilities(seed=5, normal=400, anomalous=30)
    values = {"target_train_scores": scores, "unit_scale": True}
    values.update(overrides)
    return RuleInputs(**values)


def test_choose_threshold_each_rule():
    source_labels = np.array([0, 0, 0, 1, 1])
    source_scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    inputs = _inputs(source_val_scores=source_scores, source_val_labels=source_labels)
    assert choose_threshold("fixed_0.5", inputs, 0.05, 0, False).value == 0.5
    assert choose_threshold("source_val", inputs, 0.05, 0, False).value == pytest.approx(0.7)
    quantile = choose_threshold("target_quantile", inputs, 0.1, 0, False)
    assert quantile.value == pytest.approx(np.quantile(inputs.target_train_scores, 0.9))
    mixture = choose_threshold("target_mixture", inputs, 0.05, 0, False)
    assert mixture.applicable and "high_mean" in mixture.detail
    assert choose_threshold("target_otsu", inputs, 0.05, 0, False).applicable


def test_rules_that_cannot_apply_say_why():
    inputs = _inputs(unit_scale=False, target_train_scores=np.linspace(0, 50, 100))
    fixed = choose_threshold("fixed_0.5", inputs, 0.05, 0, False)
    assert not fixed.applicable and "probabilities" in fixed.reason
    source = choose_threshold("source_val", inputs, 0.05, 0, False)
    assert not source.applicable and "no source side" in source.reason
    no_anomaly = _inputs(source_val_scores=np.array([0.1, 0.2]), source_val_labels=np.array([0, 0]))
    assert "no labeled anomaly" in choose_threshold("source_val", no_anomaly, 0.05, 0, False).reason
    from_metadata = _inputs(source_val_threshold=0.42)
    assert choose_threshold("source_val", from_metadata, 0.05, 0, False).value == 0.42


def test_target_val_is_oracle_only_and_marked():
    inputs = _inputs(target_val_scores=np.array([0.1, 0.6, 0.9]), target_val_labels=np.array([0, 1, 1]))
    refused = choose_threshold("target_val", inputs, 0.05, 0, is_oracle_method=False)
    assert not refused.applicable and "oracle" in refused.reason
    oracle = choose_threshold("target_val", inputs, 0.05, 0, is_oracle_method=True)
    assert oracle.oracle and oracle.value == pytest.approx(0.6)


def test_unknown_rule_is_an_error():
    with pytest.raises(DataError, match="unknown rule"):
        choose_threshold("target_magic", _inputs(), 0.05, 0, False)


def test_detector_rule_is_the_detectors_own_decision_or_says_why_not():
    own = choose_threshold("detector", _inputs(decision_threshold=1.0, decision_rule="any miss"), 0.05, 0, False)
    assert own.applicable and own.value == 1.0
    none = choose_threshold("detector", _inputs(decision_rule="none (a ranking)"), 0.05, 0, False)
    assert not none.applicable and "no decision of its own (none (a ranking))" in none.reason


def test_pi_hat_rule_flags_the_top_pi_hat_share_of_the_methods_own_train_scores():
    scores = np.linspace(0.0, 1.0, 1001)  # 1,001 distinct train scores
    threshold = choose_threshold("pi_hat", _inputs(target_train_scores=scores, pi_hat=0.03), 0.05, 0, False)
    assert threshold.value == pytest.approx(0.97) and threshold.detail == {"pi_hat": 0.03}
    assert np.mean(scores >= threshold.value) == pytest.approx(0.03, abs=0.001)
    # It does not depend on the contamination prior, and without a pi-hat it says why.
    assert choose_threshold("pi_hat", _inputs(target_train_scores=scores, pi_hat=0.03), 0.4, 0, False).value == (
        threshold.value
    )
    missing = choose_threshold("pi_hat", _inputs(pi_hat_reason="no cut: one mode"), 0.05, 0, False)
    assert not missing.applicable and missing.reason == "no pi-hat: no cut: one mode"
