"""The target-side label-free detectors on generated data where the right answer is known, and on cases small
enough to compute by hand (zerolog.evaluation.detectors, deeplog, loglead_peer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zerolog.config import DeepLogConfig
from zerolog.errors import DataError
from zerolog.evaluation import detectors
from zerolog.evaluation.deeplog import deeplog, next_event_windows
from zerolog.features.target_detector import NoMixtureCut, pca_mixture_detection, train_pca


def workflow_counts(sessions: int, anomaly_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (sessions, 9), labels): three normal workflows of disjoint templates 1-6 repeated 1-4 times; an
    anomalous session adds templates 7 and 8, which no normal session holds."""
    generator = np.random.default_rng(seed)
    workflows = np.zeros((3, 9))
    workflows[0, [1, 2]], workflows[1, [3, 4]], workflows[2, [5, 6]] = 1, 2, 3
    counts = workflows[generator.integers(0, 3, sessions)] * generator.integers(1, 5, (sessions, 1))
    labels = (generator.random(sessions) < anomaly_share).astype(int)
    counts[labels == 1, 7] += 2
    counts[labels == 1, 8] += 1
    return counts, labels


def varied_counts(sessions: int, anomaly_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(counts (sessions, 9), labels): templates 1-4 each in half of the sessions, 1-10 times (most of the
    variance, after tf-idf); an anomalous session adds template 7 once."""
    generator = np.random.default_rng(seed)
    counts = np.zeros((sessions, 9))
    counts[:, 1:5] = generator.integers(1, 11, (sessions, 4)) * (generator.random((sessions, 4)) < 0.5)
    labels = (generator.random(sessions) < anomaly_share).astype(int)
    counts[labels == 1, 7] += 1
    return counts, labels


TRAIN = np.arange(600)  # rows 0..599 of a 1,000-session set are the train split


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


# ----------------------------------------------------------------------------- IsolationForest


def test_isolation_forest_scores_on_the_paper_scale_and_fits_on_train_rows_only():
    counts, labels = workflow_counts(1000, 0.05, seed=1)
    detection = detectors.isolation_forest(counts, TRAIN, n_estimators=50, seed=3)
    assert detection.score_scale == "unit" and detection.decision_threshold == 0.5
    assert detection.scores.shape == (1000,) and np.all((detection.scores > 0) & (detection.scores <= 1))
    assert _auc(labels, detection.scores) > 0.95
    changed = counts.copy()
    changed[600:] *= 7  # the rows outside train change: the fit (and so every train score) must not
    again = detectors.isolation_forest(changed, TRAIN, n_estimators=50, seed=3)
    np.testing.assert_array_equal(detection.scores[TRAIN], again.scores[TRAIN])


# ----------------------------------------------------------------------------- PCA


def test_pca_residual_is_zero_inside_the_train_subspace_and_positive_off_it():
    workflows = np.zeros((3, 9))
    workflows[0, [1, 2]], workflows[1, [3, 4]], workflows[2, [5, 6]] = 1, 2, 3  # disjoint supports
    train = workflows[np.arange(90) % 3] * (1 + np.arange(90) % 4)[:, None]  # (90, 9) rank-3 counts
    anomaly = workflows[0] + np.eye(9)[8] * 2  # a workflow plus an event never seen in train
    for weighting in ("tfidf", "log1p", "raw"):
        spe = train_pca(np.vstack([train, anomaly]), np.arange(90), 0.99, weighting).spe(np.vstack([train, anomaly]))
        assert spe.shape == (91,)
        assert np.all(spe[:90] < 1e-9) and spe[90] > 0.5, weighting


def test_q_statistic_matches_jackson_mudholkar_by_hand():
    # One residual eigenvalue 1: phi1 = phi2 = phi3 = 1, h0 = 1/3,
    # Q = (c sqrt(2/9) + 1 + (1/3)(-2/3))^3.
    c_alpha = 3.2905
    expected = (c_alpha * math.sqrt(2 / 9) + 1 - 2 / 9) ** 3
    assert detectors.q_statistic_threshold(np.array([1.0]), c_alpha) == pytest.approx(expected)
    assert detectors.q_statistic_threshold(np.array([]), c_alpha) == 0.0  # nothing left: any residual is anomalous
    low, high = (detectors.q_statistic_threshold(np.array([0.5, 0.2]), c) for c in (1.0, 3.0))
    assert low < high  # a stricter alpha moves the cut up


def _split(sessions: int, train: np.ndarray) -> np.ndarray:
    split = np.full(sessions, 2, dtype=np.int8)
    split[train] = 0
    return split


def test_pca_mixture_finds_the_anomaly_share_without_a_label():
    counts, labels = varied_counts(1000, 0.06, seed=2)
    detection = pca_mixture_detection(counts, _split(1000, TRAIN), variance=0.95, weighting="tfidf", seed=0)
    flagged = detection.scores >= detection.threshold
    assert np.array_equal(flagged, labels == 1)  # two clean modes: the cut lands in the gap
    assert detection.pi_hat == pytest.approx(labels[TRAIN].mean())  # pi-hat = the true train share


def test_pca_mixture_has_no_cut_without_two_modes_and_pca_refuses_identical_rows():
    counts = np.zeros((50, 5))
    counts[:, 1] = 1 + np.arange(50) % 2  # one workflow, two lengths: SPE is 0 for every row
    with pytest.raises(NoMixtureCut) as raised:
        pca_mixture_detection(counts, _split(50, np.arange(40)), 0.95, "raw", seed=0)
    assert raised.value.scores.shape == (50,) and np.all(raised.value.scores < 1e-9)
    with pytest.raises(DataError, match="all identical"):
        train_pca(np.ones((10, 4)), np.arange(10), 0.95, "raw")


# ----------------------------------------------------------------------------- Invariants Mining


def test_invariants_mining_learns_a_count_relation_and_flags_what_breaks_it():
    generator = np.random.default_rng(4)
    counts = np.zeros((300, 5))
    counts[:, 1] = generator.integers(1, 4, 300)  # "opened"
    counts[:, 2] = counts[:, 1]  # "closed": as many as opened, in every train session
    counts[:, 3] = generator.integers(1, 6, 300)  # independent
    counts[250, 2] -= 1  # a test session that closes one fewer than it opened
    counts[251, 4] = 1  # a test session with a template no train session holds
    invariants = detectors.mine_invariants(counts[:200], support=0.98, epsilon=0.5, max_size=3, scales=[1, 2, 3])
    relations = {columns: tuple(theta) for columns, theta in invariants}
    assert relations[(4,)] == (1.0,)  # never seen: count == 0
    assert relations[(1, 2)] in ((1.0, -1.0), (-1.0, 1.0))  # opened == closed
    detection = detectors.invariants_mining(counts, np.arange(200), 0.98, 0.5, 3, [1, 2, 3])
    assert detection.decision_threshold == 1.0
    assert detection.scores[250] >= 1 and detection.scores[251] >= 1
    assert np.all(np.delete(detection.scores, [250, 251]) == 0)


# ----------------------------------------------------------------------------- rarity


def test_template_and_template_set_rarity_by_hand():
    counts = np.array([
        [0, 1, 1, 0],  # train: {1, 2}
        [0, 1, 1, 0],  # train: {1, 2}
        [0, 1, 0, 0],  # train: {1}
        [0, 0, 1, 1],  # test: {2, 3}, template 3 never in train
        [0, 2, 3, 0],  # test: {1, 2} again, other counts
    ], dtype=float)  # fmt: skip
    train = np.arange(3)
    rarity = detectors.template_rarity(counts, train).scores
    # n_1 = 3, n_2 = 2, n_3 = 0 of N = 3: -log((n + 1) / 5)
    expected_single = [-math.log(3 / 5), -math.log(3 / 5), -math.log(4 / 5), -math.log(1 / 5), -math.log(3 / 5)]
    np.testing.assert_allclose(rarity, expected_single)
    sets = detectors.template_set_rarity(counts, train).scores
    # n_{1,2} = 2, n_{1} = 1, n_{2,3} = 0 of N = 3: -log((n + 1) / 4)
    np.testing.assert_allclose(sets, [-math.log(3 / 4)] * 2 + [-math.log(2 / 4), -math.log(1 / 4), -math.log(3 / 4)])
    assert detectors.template_set_rarity(counts, train).decision_threshold is None


# ----------------------------------------------------------------------------- DeepLog


def test_next_event_windows_pad_the_history_and_stop_at_the_length():
    index = np.array([[3, 4, 5, 0], [6, 0, 0, 0]])
    windows, owners = next_event_windows(index, np.array([3, 1]), np.array([0, 1]), window=2)
    np.testing.assert_array_equal(windows, [[0, 0, 3], [0, 3, 4], [3, 4, 5], [0, 0, 6]])
    np.testing.assert_array_equal(owners, [0, 0, 0, 1])


def test_deeplog_learns_a_workflow_and_misses_an_event_out_of_order():
    cycle = np.array([1, 2, 3, 4])
    normal = np.tile(cycle, 3)  # 1 2 3 4 1 2 3 4 ...
    broken = normal.copy()
    broken[5], broken[6] = broken[6], broken[5]  # 1 2 3 4 1 3 2 4 ...: two events out of order
    index = np.vstack([np.tile(normal, (40, 1)), broken[None, :], normal[None, :]])
    lengths = np.full(len(index), normal.size)
    settings = DeepLogConfig(window=3, top_g=1, hidden_size=16, layers=1, epochs=150, batch_size=32,
                               learning_rate=0.01, threads=1)  # fmt: skip
    detection = deeplog(index, lengths, np.arange(40), templates=5, settings=settings, seed=0)
    assert detection.decision_threshold == 1.0
    assert detection.scores[40] >= 1  # the broken session has a miss
    assert detection.scores[41] < 1 and np.all(detection.scores[:40] < 1)  # the normal ones none
    again = deeplog(index, lengths, np.arange(40), templates=5, settings=settings, seed=0)
    np.testing.assert_array_equal(detection.scores, again.scores)  # seeded: the same scores


# ----------------------------------------------------------------------------- LogLead


def test_loglead_rarity_by_hand():
    pytest.importorskip("loglead.RarityModel")
    from zerolog.evaluation.loglead_peer import loglead_rarity

    counts = np.array([[0, 2, 0, 0], [0, 1, 1, 0], [0, 1, 2, 0], [0, 0, 0, 5]], dtype=float)
    # train rows 0, 1: template 1 three times, template 2 once (4 events). common_threshold 0.5: template 1 (3/4)
    # is common -> weight 0; template 2 (1/4) -> (ln 4)^3. Template 3 is unseen in train: it drops out.
    # A session scores sum(count x weight) / distinct templates: [0, w/2, 2w/2, 0], w = 2.66.
    detection = loglead_rarity(counts, np.array([0, 1]), threshold=2.0, common_threshold=0.5)
    weight = math.log(4) ** 3
    np.testing.assert_allclose(detection.scores, [0.0, weight / 2, weight, 0.0])
    flagged = detection.scores >= detection.decision_threshold
    np.testing.assert_array_equal(flagged, [False, False, True, False])  # LogLead: score > 2
    at_cut = loglead_rarity(counts, np.array([0, 1]), threshold=weight, common_threshold=0.5)
    assert not (at_cut.scores[2] >= at_cut.decision_threshold)  # strictly greater, as LogLead


def test_loglead_ngram_scores_a_seen_sequence_zero_and_its_reverse_one():
    pytest.importorskip("loglead.next_event_prediction")
    from zerolog.evaluation.loglead_peer import loglead_ngram

    index = np.array([[1, 2, 0], [1, 2, 0], [2, 1, 0]])
    detection = loglead_ngram(index, np.array([2, 2, 2]), np.array([0]), ngram_length=2)
    np.testing.assert_allclose(detection.scores, [0.0, 0.0, 1.0])
    assert detection.decision_threshold is None


def test_deeplog_scores_many_templates_in_batches_of_bounded_size(monkeypatch):
    """A system of 200,000 templates (an explosion of ids left unmasked): no scoring batch holds more than
    SCORE_FLOATS log-probabilities, and the scores are those of the one-window-at-a-time computation."""
    from zerolog.evaluation import deeplog as module

    templates = 200_000
    generator = np.random.default_rng(0)
    index = generator.integers(1, templates, size=(30, 12))
    lengths = np.full(30, 12)
    settings = DeepLogConfig(window=3, top_g=9, hidden_size=4, layers=1, epochs=1, batch_size=64,
                             learning_rate=0.01, threads=1)  # fmt: skip
    scored = []  # log-probabilities per scoring call (scoring runs without gradients, training with)
    forward = module.NextEventModel.forward

    def recorded(self, histories):
        logits = forward(self, histories)
        if not torch.is_grad_enabled():
            scored.append(logits.numel())
        return logits

    monkeypatch.setattr(module.NextEventModel, "forward", recorded)
    batched = deeplog(index, lengths, np.arange(20), templates=templates, settings=settings, seed=0)
    assert len(scored) > 1 and max(scored) <= module.SCORE_FLOATS
    monkeypatch.setattr(module, "SCORE_FLOATS", templates)  # one window a batch
    single = deeplog(index, lengths, np.arange(20), templates=templates, settings=settings, seed=0)
    np.testing.assert_allclose(batched.scores, single.scores, rtol=1e-5)
