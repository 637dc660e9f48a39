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


def neural_oracle_scores(params: Params, tensors: SystemTensors, seed: int,
                         on_epoch: Callable[[dict[str, float]], None] | None) -> np.ndarray:  # fmt: skip
    """P(anomaly) for every row from the training stage's model (method ``supervised_target``, the same encoder and
    trainer as every zero-label method) trained on the target's own train labels and validated on its val labels.
    """
    from zerolog.training.loop import score, train

    result = train(params.train, [], tensors, "supervised_target", seed, progress=True, on_epoch=on_epoch)
    return score(result.model, tensors, np.arange(tensors.sessions), params.train.score_batch_size)


# ----------------------------------------------------------------------------- stage


def _logged_params(params: Params, method: str) -> dict[str, str]:
    """The params behind one baseline's numbers (MLflow must show no other)."""
    from zerolog.tracking import flatten_params

    sections = {"isolation_forest": {"unsupervised": params.evaluate.unsupervised},
                "unsupervised_target": {"unsupervised": params.evaluate.unsupervised},
                "level_rule": {"level_rule": params.evaluate.level_rule},
                "supervised_target": {"oracle": params.evaluate.oracle}}  # fmt: skip
    logged = {"evaluate": sections.get(method, {})}
    if method == "supervised_target" and params.evaluate.oracle.model == "neural":
        logged["train"] = params.train
    return flatten_params(logged)


def _tracked(params: Params, system: str, method: str, detector: str, seed: int | None) -> Any:
    """An MLflow run for one baseline of one system and model seed (pair ``target-<system>``)."""
    from zerolog.tracking import Tracker

    tags = {"pair": f"target-{system}", "sources": "", "target": system, "method": method, "detector": detector,
            "kind": str(method_spec(method).kind), "stage": "baselines"}  # fmt: skip
    logged = _logged_params(params, method)
    name = f"target-{system}/{method}"
    if seed is not None:
        tags["model_seed"], logged["seed"], name = str(seed), str(seed), f"{name}/seed-{seed}"
    tracker = Tracker(params.mlflow)
    return tracker, tracker.run(name, tags, logged)


def _write_method(path: Path, arrays: SystemTensors, scores: np.ndarray, metadata: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = score_frame(arrays.system, arrays.split, np.arange(arrays.sessions), scores, domain="target")
    write_scores(path, frame, {"threshold_source_val": None, **metadata})


def _unsupervised(params: Params, arrays: SystemTensors, folder: Path, seeds: list[int]) -> dict[str, Any]:
    detector = params.evaluate.unsupervised.method
    runs = {}
    for seed in seeds:
        tracker, run = _tracked(params, arrays.system, "unsupervised_target", detector, seed)
        with run as run_id:
            scores, scale = unsupervised_target_scores(arrays, params.evaluate.unsupervised, seed)
        _write_method(folder / "unsupervised_target" / f"seed-{seed}.parquet", arrays, scores,
                      {"method": "unsupervised_target", "detector": detector, "score_scale": scale, "seed": seed,
                       "mlflow_run_id": run_id})  # fmt: skip
        runs[str(seed)] = run_id
    return {"status": "written", "detector": detector, "mlflow_run_ids": runs}


def _oracle(params: Params, arrays: SystemTensors, folder: Path, seeds: list[int]) -> dict[str, Any]:
    oracle = params.evaluate.oracle
    train_rows, reason = oracle_training_rows(arrays, oracle)
    if train_rows is None:
        return {"status": "not_available", "reason": reason, "oracle": True}
    assert arrays.labels is not None
    counts = {"train_sessions": int(train_rows.size), "train_anomalies": int((arrays.labels[train_rows] == 1).sum())}
    runs = {}
    for seed in seeds:
        tracker, run = _tracked(params, arrays.system, "supervised_target", oracle.model, seed)
        with run as run_id:
            if oracle.model == "neural":
                log = lambda row, run_id=run_id: tracker.log_metrics(run_id, row, step=int(row["epoch"]))  # noqa: E731
                scores = neural_oracle_scores(params, arrays, seed, log)
            else:
                scores = logistic_oracle_scores(arrays.counts, arrays.labels, train_rows, oracle, seed)
        _write_method(folder / "supervised_target" / f"seed-{seed}.parquet", arrays, scores,
                      {"method": "supervised_target", "detector": oracle.model, "score_scale": "unit", "seed": seed,
                       "mlflow_run_id": run_id, "oracle": True, **counts})  # fmt: skip
        runs[str(seed)] = run_id
    return {"status": "written", "detector": oracle.model, "oracle": True, **counts, "mlflow_run_ids": runs}


def _level_rule(params: Params, arrays: SystemTensors, folder: Path) -> dict[str, Any]:
    """The level rule's scores (deterministic: one file, with an MLflow run like every baseline's)."""
    scores, reason = level_rule_scores(arrays, params.evaluate.level_rule)
    if scores is None:
        return {"status": "not_available", "reason": reason}
    tracker, run = _tracked(params, arrays.system, "level_rule", "level_rule", None)
    with run as run_id:
        tracker.log_metrics(run_id, {"flagged_sessions": float(scores.sum())})
    levels = list(params.evaluate.level_rule.levels)
    _write_method(folder / "level_rule.parquet", arrays, scores,
                  {"method": "level_rule", "detector": "level_rule", "levels": levels, "score_scale": "unit",
                   "mlflow_run_id": run_id})  # fmt: skip
    return {"status": "written", "levels": levels, "flagged_sessions": int(scores.sum()), "mlflow_run_id": run_id}


def run_target_baselines(params: Params, system: str, seeds: list[int]) -> None:
    """Stage baselines: write ``scores/target-<system>/`` (every baseline's scores, per model seed where the method
    is stochastic, and ``status.json``) atomically."""
    arrays = load_tensors(ArtifactPaths(params.paths).tensors(system))
    status: dict[str, Any] = {"system": system, "dataset": arrays.dataset, "seeds": list(seeds), "methods": {}}
    with atomic_directory(ArtifactPaths(params.paths).target_scores(system)) as folder:
        status["methods"]["unsupervised_target"] = _unsupervised(params, arrays, folder, seeds)
        status["methods"]["level_rule"] = _level_rule(params, arrays, folder)
        status["methods"]["supervised_target"] = _oracle(params, arrays, folder, seeds)
        write_json(folder / TARGET_STATUS, status)
