"""Stage baselines: the target-only label-free detectors, the level rule and the supervised ORACLE, per system.

Every method of ``evaluate.baselines`` runs on one target system; each writes one score file per model seed when it
is stochastic (``methods.METHODS``), one file otherwise.

- Target-only detectors (kind ``target_only``; zerolog.evaluation.detectors, deeplog, loglead_peer): each is fit on
  the target's TRAIN sessions only and never reads a label; ``evaluate.detectors`` holds their settings.
  ``pca_mixture`` is the product's recommended detector (``evaluate.recommended``): its flagged share of the train
  sessions is pi-hat, the label-free anomaly share the evaluate stage's ``pi_hat`` rule uses.
- ``level_rule`` (kind ``rule``): a session is anomalous when any of its lines has a level in
  ``evaluate.level_rule.levels`` (WARNING and above). Score 1 or 0, decided by the rule itself; no fit, no label. Not
  available, with the reason, where the system's data carries no level field (``meta.json`` ``level_names`` empty).
- ``supervised_target``: the ORACLE upper bound, trained on the target's own train LABELS. It is no zero-label method;
  it shows how far a fully labeled target could go. ``evaluate.oracle.model: neural`` trains the train stage's own
  encoder and loop (zerolog.training.loop, method ``supervised_target``; validation on the target's val labels);
  ``logistic_regression`` is a count-vector oracle without torch. With fewer than ``min_train_anomalies`` labeled
  anomalies in the target's train split it is not trained, and ``status.json`` says why.

Score-file metadata (``artifacts``: DECISION_THRESHOLD, DECISION_RULE, PI_HAT, SCORE_SCALE): every detector records
its own decision (the evaluate stage's ``detector`` rule) and the train share that decision flags (``pi_hat``).
Each method and seed gets an MLflow run (pair ``target-<system>``) with its fit time (``seconds``); its id is the
score file's ``mlflow_run_id``, so the evaluate stage adds the test metrics to it.

Writes ``scores/target-<system>/`` atomically: the score files (the contract of docs/architecture.md, domain
``target``) and ``status.json`` (per method: ``written`` with its decision and pi-hat, or ``not_available`` with the
reason).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from zerolog.artifacts import (
    DECISION_RULE,
    DECISION_THRESHOLD,
    PI_HAT,
    SCORE_SCALE,
    SPLIT_CODES,
    TARGET_STATUS,
    ArtifactPaths,
    SystemTensors,
    load_tensors,
    score_file_name,
    score_frame,
    write_scores,
)
from zerolog.config import DetectorsConfig, LevelRuleConfig, OracleConfig, Params
from zerolog.errors import DataError
from zerolog.evaluation import detectors, loglead_peer
from zerolog.evaluation.detectors import Detection
from zerolog.io import atomic_directory, write_json
from zerolog.methods import MethodKind, method_spec

# ----------------------------------------------------------------------------- target-only detectors

# Each detector: (the system's tensors, its settings, the seed) -> Detection, fit on the train rows.
Detector = Callable[[SystemTensors, DetectorsConfig, int], Detection]


def _deeplog(arrays: SystemTensors, config: DetectorsConfig, seed: int) -> Detection:
    from zerolog.evaluation.deeplog import deeplog

    return deeplog(arrays.index, arrays.lengths, arrays.rows("train"), arrays.vectors.shape[0], config.deeplog, seed)


def _pyod(method: str, arrays: SystemTensors, config: DetectorsConfig, seed: int) -> Detection:
    return detectors.pyod_detector(method, arrays.counts, arrays.rows("train"), seed)


DETECTORS: dict[str, Detector] = {
    "pca_mixture": lambda arrays, config, seed: detectors.pca_mixture(
        arrays.counts, arrays.rows("train"), config.pca.variance, config.pca.weighting, seed),
    "isolation_forest": lambda arrays, config, seed: detectors.isolation_forest(
        arrays.counts, arrays.rows("train"), config.isolation_forest.n_estimators, seed),
    "pca": lambda arrays, config, seed: detectors.pca_q_statistic(
        arrays.counts, arrays.rows("train"), config.pca.variance, config.pca.weighting, config.pca.c_alpha),
    "invariants_mining": lambda arrays, config, seed: detectors.invariants_mining(
        arrays.counts, arrays.rows("train"), config.invariants_mining.support, config.invariants_mining.epsilon,
        config.invariants_mining.max_size, config.invariants_mining.scales),
    "template_rarity": lambda arrays, config, seed: detectors.template_rarity(arrays.counts, arrays.rows("train")),
    "template_set_rarity": lambda arrays, config, seed: detectors.template_set_rarity(
        arrays.counts, arrays.rows("train")),
    "deeplog": _deeplog,
    "loglead_rarity": lambda arrays, config, seed: loglead_peer.loglead_rarity(
        arrays.counts, arrays.rows("train"), config.loglead.rarity_threshold, config.loglead.rarity_common_threshold),
    "loglead_ngram": lambda arrays, config, seed: loglead_peer.loglead_ngram(
        arrays.index, arrays.lengths, arrays.rows("train"), config.loglead.ngram_length),
    **{method: partial(_pyod, method) for method in detectors.PYOD_DETECTORS},
}  # fmt: skip

# What each detector's numbers depend on in evaluate.detectors (logged to its MLflow run, nothing else).
DETECTOR_SETTINGS = {"pca_mixture": "pca", "isolation_forest": "isolation_forest", "pca": "pca",
                     "invariants_mining": "invariants_mining", "deeplog": "deeplog", "loglead_rarity": "loglead",
                     "loglead_ngram": "loglead"}  # fmt: skip


def unavailable_reason(method: str, arrays: SystemTensors) -> str | None:
    """Why a detector cannot run on this system (None when it can): LogLead not installed, too few train rows."""
    if method.startswith("loglead_"):
        reason = loglead_peer.unavailable_reason()
        if reason is not None:
            return reason
    if arrays.rows("train").size < 2:
        return f"{arrays.system}: {arrays.rows('train').size} train session(s), too few to fit a detector on"
    return None


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
    assert arrays.labels is not None  # the baselines stage loads the target's tensors with their labels
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

    evaluate = params.evaluate
    logged: dict[str, Any] = {"evaluate": {}}
    if method in DETECTOR_SETTINGS:
        section = DETECTOR_SETTINGS[method]
        logged["evaluate"] = {"detectors": {section: getattr(evaluate.detectors, section)}}
    elif method == "level_rule":
        logged["evaluate"] = {"level_rule": evaluate.level_rule}
    elif method == "supervised_target":
        logged["evaluate"] = {"oracle": evaluate.oracle}
    if method == "supervised_target" and evaluate.oracle.model == "neural":
        logged["train"] = params.train
    return flatten_params(logged)


@contextlib.contextmanager
def _tracked(params: Params, arrays: SystemTensors, method: str, detector: str,
             seed: int | None) -> Iterator[tuple[Any, str]]:  # fmt: skip
    """An MLflow run for one baseline of one system and model seed (pair ``target-<system>``), with the system's
    tensors as its input dataset; yields (tracker, run id)."""
    from zerolog.tracking import InputData, Tracker, run_name, split_sizes

    system = arrays.system
    tags = {"pair": f"target-{system}", "sources": "", "target": system, "method": method, "detector": detector,
            "kind": str(method_spec(method).kind), "stage": "baselines"}  # fmt: skip
    logged = _logged_params(params, method)
    if seed is not None:
        tags["model_seed"] = tags["seed"] = logged["seed"] = str(seed)
    tracker = Tracker(params.mlflow)
    with tracker.run(run_name(f"target-{system}", method, seed), tags, logged) as run_id:
        tracker.log_datasets([run_id], [InputData(arrays.directory, "target", split_sizes(arrays))])
        yield tracker, run_id


def _write_method(path: Path, arrays: SystemTensors, scores: np.ndarray, metadata: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = score_frame(arrays.system, arrays.split, np.arange(arrays.sessions), scores, domain="target")
    write_scores(path, frame, {"threshold_source_val": None, **metadata})


def _decision_metadata(detection: Detection, train_rows: np.ndarray) -> dict[str, Any]:
    """The score-file keys of a detector's own decision (artifacts.DECISION_THRESHOLD, ...)."""
    return {DECISION_THRESHOLD: detection.decision_threshold, DECISION_RULE: detection.decision_rule,
            PI_HAT: detection.flagged_share(train_rows), SCORE_SCALE: detection.score_scale}  # fmt: skip


def _fit_once(params: Params, arrays: SystemTensors, method: str, seed: int, stochastic: bool) -> tuple[Detection, str]:
    """One detector fit and scored under its own MLflow run; returns (detection, run id). Prints the fit time."""
    with _tracked(params, arrays, method, method, seed if stochastic else None) as (tracker, run_id):
        started = time.perf_counter()
        detection = DETECTORS[method](arrays, params.evaluate.detectors, seed)
        seconds = time.perf_counter() - started
        pi_hat = detection.flagged_share(arrays.rows("train"))
        tracker.log_metrics(run_id, {"seconds": seconds, **({} if pi_hat is None else {"pi_hat": pi_hat})})
    print(f"baselines {arrays.system}: {method}{f' seed {seed}' if stochastic else ''}: {seconds:.1f} s", flush=True)
    return detection, run_id


def _detector(params: Params, arrays: SystemTensors, folder: Path, method: str, seeds: list[int]) -> dict[str, Any]:
    """One target-only detector: once per model seed when stochastic, else once (seeded with the data seed: only
    pca_mixture's mixture initialisation reads it). A detector that cannot fit this system is not available."""
    reason = unavailable_reason(method, arrays)
    if reason is not None:
        return {"status": "not_available", "reason": reason}
    stochastic = method_spec(method).stochastic
    runs: dict[str, str] = {}
    decisions: dict[str, dict[str, Any]] = {}
    for seed in seeds if stochastic else [params.seed]:
        try:
            detection, runs[str(seed)] = _fit_once(params, arrays, method, seed, stochastic)
        except DataError as error:
            return {"status": "not_available", "reason": f"{arrays.system}: {method}: {error}"}
        decisions[str(seed)] = decision = _decision_metadata(detection, arrays.rows("train"))
        path = folder / score_file_name(method, seed)
        metadata = {"method": method, "detector": method, **decision, "mlflow_run_id": runs[str(seed)]}
        _write_method(path, arrays, detection.scores, {**metadata, "seed": seed} if stochastic else metadata)
    if not stochastic:
        return {"status": "written", **decision, "mlflow_run_ids": runs}
    per_seed = {seed: {key: values[key] for key in (DECISION_THRESHOLD, PI_HAT)} for seed, values in decisions.items()}
    return {"status": "written", DECISION_RULE: decision[DECISION_RULE], "seeds": per_seed, "mlflow_run_ids": runs}


def _oracle(params: Params, arrays: SystemTensors, folder: Path, seeds: list[int]) -> dict[str, Any]:
    oracle = params.evaluate.oracle
    train_rows, reason = oracle_training_rows(arrays, oracle)
    if train_rows is None:
        return {"status": "not_available", "reason": reason, "oracle": True}
    assert arrays.labels is not None
    counts = {"train_sessions": int(train_rows.size), "train_anomalies": int((arrays.labels[train_rows] == 1).sum())}
    runs = {}
    for seed in seeds:
        with _tracked(params, arrays, "supervised_target", oracle.model, seed) as (tracker, run_id):
            if oracle.model == "neural":
                log = lambda row, run_id=run_id, tracker=tracker: tracker.log_metrics(  # noqa: E731
                    run_id, row, step=int(row["epoch"])
                )
                scores = neural_oracle_scores(params, arrays, seed, log)
            else:
                scores = logistic_oracle_scores(arrays.counts, arrays.labels, train_rows, oracle, seed)
        _write_method(folder / score_file_name("supervised_target", seed), arrays, scores,
                      {"method": "supervised_target", "detector": oracle.model, "score_scale": "unit", "seed": seed,
                       "mlflow_run_id": run_id, "oracle": True, **counts})  # fmt: skip
        runs[str(seed)] = run_id
    return {"status": "written", "detector": oracle.model, "oracle": True, **counts, "mlflow_run_ids": runs}


def _level_rule(params: Params, arrays: SystemTensors, folder: Path) -> dict[str, Any]:
    """The level rule's scores (deterministic: one file, with an MLflow run like every baseline's). Its own decision:
    a flagged line (score 1)."""
    scores, reason = level_rule_scores(arrays, params.evaluate.level_rule)
    if scores is None:
        return {"status": "not_available", "reason": reason}
    with _tracked(params, arrays, "level_rule", "level_rule", None) as (tracker, run_id):
        tracker.log_metrics(run_id, {"flagged_sessions": float(scores.sum())})
    levels = list(params.evaluate.level_rule.levels)
    detection = Detection(scores, "unit", 1.0, f"any line at a level of {levels}")
    decision = _decision_metadata(detection, arrays.rows("train"))
    _write_method(folder / "level_rule.parquet", arrays, scores,
                  {"method": "level_rule", "detector": "level_rule", "levels": levels, **decision,
                   "mlflow_run_id": run_id})  # fmt: skip
    return {"status": "written", "levels": levels, "flagged_sessions": int(scores.sum()), "pi_hat": decision[PI_HAT],
            "mlflow_run_id": run_id}  # fmt: skip


def run_target_baselines(params: Params, system: str, seeds: list[int]) -> None:
    """Stage baselines: write ``scores/target-<system>/`` (the scores of every method of ``evaluate.baselines``, per
    model seed where the method is stochastic, and ``status.json``) atomically."""
    arrays = load_tensors(ArtifactPaths(params.paths).tensors(system))
    status: dict[str, Any] = {"system": system, "dataset": arrays.dataset, "seeds": list(seeds), "methods": {}}
    with atomic_directory(ArtifactPaths(params.paths).target_scores(system)) as folder:
        for method in params.evaluate.baselines:
            if method == "level_rule":
                status["methods"][method] = _level_rule(params, arrays, folder)
            elif method_spec(method).kind is MethodKind.ORACLE:
                status["methods"][method] = _oracle(params, arrays, folder, seeds)
            else:
                status["methods"][method] = _detector(params, arrays, folder, method, seeds)
        write_json(folder / TARGET_STATUS, status)
