"""Target-only baselines (stage ``baselines``): a label-free detector and the supervised ORACLE, per system.

- ``unsupervised_target``: a classic label-free detector on the target's event-count vectors, fit on the TRAIN split
  only and never on labels (method.md §8 "zero-label methods"): scikit-learn's IsolationForest (Liu et al. 2008;
  score = the paper's anomaly score in (0, 1], > 0.5 reads anomalous) or loglizer-style PCA (tf-idf weighting,
  zero-mean, squared prediction error off the normal subspace that keeps ``pca_variance`` of the variance).
- ``level_rule``: the label-free rule practitioners reach for first: a session is anomalous when any of its lines has
  a level in ``evaluate.level_rule.levels`` (WARNING and above). Score 1 or 0, decided by the rule itself (the
  evaluate stage reads it at ``fixed_0.5``); no fit, no label. Not available, with the reason, where the system's
  data carries no level field (``tensors/<system>/meta.json`` ``level_names`` empty).
- ``supervised_target``: the ORACLE upper bound, trained on the target's own train LABELS. It is no zero-label method;
  it shows how far a fully labeled target could go. ``evaluate.oracle.model: neural`` trains the train stage's own
  encoder and loop (zerolog.training.loop, method ``supervised_target``; validation on the target's val labels);
  ``logistic_regression`` is a count-vector oracle without torch. With fewer than ``min_train_anomalies`` labeled
  anomalies in the target's train split it is not trained, and ``status.json`` says why.

Each baseline gets an MLflow run (pair ``target-<system>``); its id is the score file's ``mlflow_run_id``, so the
evaluate stage adds the test metrics to it.

Writes ``scores/target-<system>/<method>.parquet`` (the score contract of docs/architecture.md, domain ``target``) and
``scores/target-<system>/status.json`` (per method: ``written`` or ``not_available`` with the reason).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from zerolog.config import LevelRuleConfig, OracleConfig, Params, UnsupervisedConfig
from zerolog.errors import DataError
from zerolog.artifacts import SPLIT_CODES, TARGET_STATUS, ArtifactPaths, SystemTensors, load_tensors, method_spec, score_frame, write_scores
from zerolog.io import atomic_directory, write_json


# ----------------------------------------------------------------------------- label-free detector


def isolation_forest_scores(train_counts: np.ndarray, all_counts: np.ndarray, n_estimators: int, seed: int) -> np.ndarray:
    """Fit an IsolationForest on train count vectors; return the anomaly score s(x) in (0, 1] for every row.

    sklearn's ``score_samples`` is the negated anomaly score of the original paper, so ``-score_samples`` is it.
    """
    forest = IsolationForest(n_estimators=n_estimators, random_state=seed).fit(train_counts)  # (train, features)
    return -forest.score_samples(all_counts)  # (sessions,)


def pca_scores(train_counts: np.ndarray, all_counts: np.ndarray, variance: float) -> np.ndarray:
    """loglizer-style PCA detector: squared prediction error (SPE) of each row off the train normal subspace.

    Count vectors are tf-idf weighted (idf from the train rows) and centred on the train mean; the normal subspace
    keeps the fewest principal components that explain ``variance`` of the train variance. Larger SPE = more anomalous.
    """
    train = np.asarray(train_counts, dtype=np.float64)  # (train, features)
    document_frequency = (train > 0).sum(axis=0)  # (features,)
    idf = np.log(train.shape[0] / np.maximum(document_frequency, 1))  # unseen events weigh like the rarest
    weighted_train = train * idf
    mean = weighted_train.mean(axis=0)
    centred_train = weighted_train - mean
    if not np.any(centred_train):
        raise DataError("pca: the target's train count vectors are all identical; no subspace to fit")
    components = PCA(n_components=variance, svd_solver="full").fit(centred_train).components_  # (k, features)
    centred = np.asarray(all_counts, dtype=np.float64) * idf - mean  # (sessions, features)
    residual = centred - (centred @ components.T) @ components
    return np.einsum("ij,ij->i", residual, residual)  # (sessions,)


def unsupervised_target_scores(arrays: SystemTensors, config: UnsupervisedConfig, seed: int) -> tuple[np.ndarray, str]:
    """Scores for every row of the system from a detector fit on its train split; returns (scores, score_scale)."""
    assert arrays.counts is not None
    train_rows = np.flatnonzero(arrays.split == SPLIT_CODES["train"])
    if train_rows.size < 2:
        raise DataError(f"{arrays.directory}/split.npy: {train_rows.size} train session(s), too few to fit a detector")
    train_counts = np.asarray(arrays.counts[train_rows])
    if config.method == "isolation_forest":
        return isolation_forest_scores(train_counts, arrays.counts, config.n_estimators, seed), "unit"
    return pca_scores(train_counts, arrays.counts, config.pca_variance), "unbounded"


# ----------------------------------------------------------------------------- level rule


def level_rule_scores(arrays: SystemTensors, config: LevelRuleConfig) -> tuple[np.ndarray | None, str | None]:
    """(sessions,) 1.0 where a session has a line at one of ``config.levels`` (case-insensitive), else 0.0; or None
    and the reason the rule cannot run on this system's data."""
    if not arrays.level_names:
        return None, (
            f"{arrays.system} ({arrays.dataset}): the data carries no level field (its sessions have no levels), "
            "so level_rule cannot run"
        )
    wanted = {level.upper() for level in config.levels}
    flagged = [column for column, name in enumerate(arrays.level_names) if name.upper() in wanted]
    return (np.asarray(arrays.level_counts)[:, flagged].sum(axis=1) > 0).astype(np.float64), None


# ----------------------------------------------------------------------------- supervised oracle


def oracle_training_rows(arrays: SystemTensors, config: OracleConfig) -> tuple[np.ndarray | None, str | None]:
    """Labeled train rows for the oracle, or None and the reason it cannot be trained."""
    train = arrays.split == SPLIT_CODES["train"]
    labeled = np.flatnonzero(train & (arrays.labels >= 0))
    anomalies = int((arrays.labels[labeled] == 1).sum())
    if labeled.size == 0:
        return None, f"{arrays.system}: the target's train split has no labeled session"
    if anomalies < config.min_train_anomalies:
        return None, (
            f"{arrays.system}: the target's train split has {anomalies} labeled anomalies "
            f"(< evaluate.oracle.min_train_anomalies = {config.min_train_anomalies})"
        )
    if anomalies == labeled.size:
        return None, f"{arrays.system}: every labeled train session is anomalous; no normal class to learn"
    return labeled, None


def logistic_oracle_scores(
    counts: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, config: OracleConfig, seed: int
) -> np.ndarray:
    """P(anomaly) for every row from a logistic regression on log1p event counts, fit on labeled train rows.

    Class weights are balanced (anomalies are a few percent), so P >= 0.5 is a usable cut. Used when
    ``evaluate.oracle.model`` is ``logistic_regression`` (the count-vector oracle).
    """
    features_train = np.log1p(np.asarray(counts[train_rows], dtype=np.float64))  # (train, features)
    scaler = StandardScaler().fit(features_train)
    model = LogisticRegression(
        C=config.logistic_regularization,
        max_iter=config.logistic_max_iterations,
        class_weight="balanced",
        random_state=seed,
    ).fit(scaler.transform(features_train), labels[train_rows])
    features = scaler.transform(np.log1p(np.asarray(counts, dtype=np.float64)))  # (sessions, features)
    return model.predict_proba(features)[:, 1]


def neural_oracle_scores(params: Params, system: str, on_epoch: Callable[[dict[str, float]], None] | None) -> np.ndarray:
    """P(anomaly) for every row from the training stage's model (method ``supervised_target``, the same encoder and
    trainer as every zero-label method) trained on the target's own train labels and validated on its val labels.
    """
    from zerolog.training.loop import score, train

    tensors = load_tensors(ArtifactPaths(params.paths).tensors(system))
    result = train(params.train, [], tensors, "supervised_target", params.seed, progress=True, on_epoch=on_epoch)
    return score(result.model, tensors, np.arange(tensors.sessions), params.train.score_batch_size)


# ----------------------------------------------------------------------------- stage


def _start_run(params: Params, system: str, method: str, detector: str) -> tuple[Any, str]:
    """An MLflow run for one baseline of one system (tags like the train stage's, pair ``target-<system>``)."""
    from zerolog.tracking import Tracker, flatten_params

    tracker = Tracker(params.mlflow)
    tags = {
        "pair": f"target-{system}",
        "sources": "",
        "target": system,
        "method": method,
        "detector": detector,
        "oracle": str(method_spec(method).oracle).lower(),
        "stage": "baselines",
    }
    logged = flatten_params({"seed": params.seed, "evaluate": {"unsupervised": params.evaluate.unsupervised,
                                                               "oracle": params.evaluate.oracle,
                                                               "level_rule": params.evaluate.level_rule}})
    if method_spec(method).oracle and params.evaluate.oracle.model == "neural":
        logged.update(flatten_params({"train": params.train}))
    return tracker, tracker.start_run(f"target-{system}/{method}", tags, logged)


def _write_level_rule(params: Params, arrays: SystemTensors, path: Path) -> dict[str, Any]:
    """Write the level rule's scores (with an MLflow run like every baseline's) and return its status entry."""
    scores, reason = level_rule_scores(arrays, params.evaluate.level_rule)
    if scores is None:
        return {"status": "not_available", "reason": reason}
    tracker, run_id = _start_run(params, arrays.system, "level_rule", "level_rule")
    tracker.finish(run_id)
    rows = np.arange(arrays.sessions)
    levels = list(params.evaluate.level_rule.levels)
    write_scores(
        path,
        score_frame(arrays.system, arrays.split, rows, scores, domain="target"),
        {
            "method": "level_rule",
            "detector": "level_rule",
            "levels": levels,
            "score_scale": "unit",
            "threshold_source_val": None,
            "mlflow_run_id": run_id,
            "oracle": False,
        },
    )
    return {"status": "written", "levels": levels, "flagged_sessions": int(scores.sum()), "mlflow_run_id": run_id}


def run_target_baselines(params: Params, system: str) -> None:
    """Stage baselines: write ``scores/target-<system>/`` (both baselines' scores and ``status.json``) atomically."""
    arrays = load_tensors(ArtifactPaths(params.paths).tensors(system))
    rows = np.arange(arrays.sessions)
    output = ArtifactPaths(params.paths).target_scores(system)
    status: dict[str, Any] = {"system": system, "dataset": arrays.dataset, "methods": {}}
    detector = params.evaluate.unsupervised.method
    oracle = params.evaluate.oracle
    train_rows, reason = oracle_training_rows(arrays, oracle)
    with atomic_directory(output) as temporary:
        tracker, run_id = _start_run(params, system, "unsupervised_target", detector)
        try:
            scores, scale = unsupervised_target_scores(arrays, params.evaluate.unsupervised, params.seed)
        except BaseException:
            tracker.finish(run_id, "FAILED")
            raise
        tracker.finish(run_id)
        write_scores(
            temporary / "unsupervised_target.parquet",
            score_frame(system, arrays.split, rows, scores, domain="target"),
            {
                "method": "unsupervised_target",
                "detector": detector,
                "score_scale": scale,
                "threshold_source_val": None,
                "mlflow_run_id": run_id,
                "oracle": False,
            },
        )
        status["methods"]["unsupervised_target"] = {"status": "written", "detector": detector, "mlflow_run_id": run_id}
        status["methods"]["level_rule"] = _write_level_rule(params, arrays, temporary / "level_rule.parquet")

        if train_rows is None:
            status["methods"]["supervised_target"] = {"status": "not_available", "reason": reason, "oracle": True}
        else:
            train_anomalies = int((arrays.labels[train_rows] == 1).sum())
            tracker, run_id = _start_run(params, system, "supervised_target", oracle.model)
            try:
                if oracle.model == "neural":
                    scores = neural_oracle_scores(
                        params, system, lambda row: tracker.log_metrics(run_id, row, step=int(row["epoch"]))
                    )
                else:
                    scores = logistic_oracle_scores(arrays.counts, arrays.labels, train_rows, oracle, params.seed)
            except BaseException:
                tracker.finish(run_id, "FAILED")
                raise
            tracker.finish(run_id)
            write_scores(
                temporary / "supervised_target.parquet",
                score_frame(system, arrays.split, rows, scores, domain="target"),
                {
                    "method": "supervised_target",
                    "detector": oracle.model,
                    "score_scale": "unit",
                    "threshold_source_val": None,
                    "mlflow_run_id": run_id,
                    "oracle": True,
                    "train_sessions": int(train_rows.size),
                    "train_anomalies": train_anomalies,
                },
            )
            status["methods"]["supervised_target"] = {
                "status": "written",
                "detector": oracle.model,
                "oracle": True,
                "train_sessions": int(train_rows.size),
                "train_anomalies": train_anomalies,
                "mlflow_run_id": run_id,
            }
        write_json(temporary / TARGET_STATUS, status)
