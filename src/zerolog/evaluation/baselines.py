"""Stage baselines: the target-only label-free detectors, the level rule and the supervised ORACLE, per system.

Every method of ``evaluate.baselines`` runs on one target system, one score file per model seed when it is stochastic
(``methods.METHODS``), one file otherwise:
- target-only detectors (detectors, deeplog, loglead_peer; settings ``evaluate.detectors``) are fit on the target's
  TRAIN sessions only and never read a label. Each records its own decision and the train share it flags
  (``pi_hat``): the recommended detector's (``evaluate.recommended``) is the evaluate stage's ``pi_hat`` rule;
- ``level_rule``: anomalous when any line has a level in ``evaluate.level_rule.levels``; no fit, no label; not
  available where the data carries no level field;
- ``supervised_target``: the ORACLE upper bound, trained on the target's own train LABELS (``evaluate.oracle``:
  the train stage's network, or a count-vector logistic regression); not trained with too few labeled anomalies.

Each method and seed gets an MLflow run (pair ``target-<system>``) whose id the score file carries, so the evaluate
stage adds the test metrics to it. ``status.json`` says per method ``written`` or ``not_available`` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from zerolog.config import DetectorsConfig, LevelRuleConfig, MlflowConfig, OracleConfig, Params, TrainConfig
from zerolog.errors import DataError
from zerolog.evaluation import detectors, loglead_peer
from zerolog.evaluation.detectors import Detection
from zerolog.features.target_detector import NoMixtureCut, pca_mixture_detection
from zerolog.io import write_json
from zerolog.methods import MethodKind, method_spec
from zerolog.runner import Outputs

# ----------------------------------------------------------------------------- target-only detectors

# Each detector: (the system's tensors, its settings, the seed) -> Detection, fit on the train rows.
Detector = Callable[[SystemTensors, DetectorsConfig, int], Detection]


def _deeplog(arrays: SystemTensors, config: DetectorsConfig, seed: int) -> Detection:
    from zerolog.evaluation.deeplog import deeplog

    return deeplog(arrays.index, arrays.lengths, arrays.rows("train"), arrays.vectors.shape[0], config.deeplog, seed)


def _pca_mixture(arrays: SystemTensors, config: DetectorsConfig, seed: int) -> Detection:
    """zerolog.features.target_detector's detector (the one the train stage reads pi-hat from); no cut (None, with
    the reason) when the train SPE shows no two modes. ``seed``: the mixture's initialisation only."""
    try:
        found = pca_mixture_detection(arrays.counts, arrays.split, config.pca.variance, config.pca.weighting, seed)
    except NoMixtureCut as error:
        return Detection(error.scores, "unbounded", None, f"no mixture cut: {error}")
    return Detection(found.scores, "unbounded", found.threshold, "SPE >= the 2-component mixture cut on the train SPE")


def _pyod(method: str, arrays: SystemTensors, config: DetectorsConfig, seed: int) -> Detection:
    return detectors.pyod_detector(method, arrays.counts, arrays.rows("train"), seed)


DETECTORS: dict[str, Detector] = {
    "pca_mixture": _pca_mixture,
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


def neural_oracle_scores(config: TrainConfig, tensors: SystemTensors, seed: int,
                         on_epoch: Callable[[dict[str, float]], None] | None) -> np.ndarray:  # fmt: skip
    """P(anomaly) for every row from the training stage's model (method ``supervised_target``, the same encoder and
    trainer as every zero-label method) trained on the target's own train labels and validated on its val labels.
    """
    from zerolog.training.loop import score, train

    result = train(config, [], tensors, "supervised_target", seed, progress=True, on_epoch=on_epoch)
    return score(result.model, tensors, np.arange(tensors.sessions), config.score_batch_size)


# ----------------------------------------------------------------------------- stage


@dataclass(frozen=True)
class BaselinesSection:
    """Stage baselines' settings: the system, ``evaluate.baselines`` and the settings of its methods, the seeds."""

    system: str
    seed: int  # the data seed: a deterministic detector's only seed (pca_mixture's mixture initialisation)
    seeds: list[int]  # model seeds of the stochastic detectors and the oracle
    methods: list[str]  # evaluate.baselines
    detectors: DetectorsConfig
    oracle: OracleConfig
    level_rule: LevelRuleConfig
    train: TrainConfig  # the neural oracle's trainer
    tracking: MlflowConfig


def baselines_section(params: Params, system: str) -> BaselinesSection:
    evaluate = params.evaluate
    return BaselinesSection(system, params.seed, params.seeds, evaluate.baselines, evaluate.detectors, evaluate.oracle,
                            evaluate.level_rule, params.train, params.mlflow)  # fmt: skip


def load_baselines_inputs(section: BaselinesSection, paths: ArtifactPaths) -> SystemTensors:
    return load_tensors(paths.tensors(section.system))


@dataclass
class Fit:
    """One method for one seed: its score file and its MLflow run (pair ``target-<system>``), whose id the score
    file and ``status.json`` carry (set by ``BaselinesResult.track``)."""

    method: str
    key: str  # the seed it ran with, as status.json's ``mlflow_run_ids`` key
    seed: int | None  # the model seed in the run's name and tags (None: a deterministic method)
    scores: np.ndarray  # (sessions,) float64
    metadata: dict[str, Any]  # the score file's; ``mlflow_run_id`` None until tracked
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)  # the neural oracle's epoch rows

    @classmethod
    def of(cls, scores: np.ndarray, key: str, model_seed: int | None, metadata: dict[str, Any], **extra: Any) -> Fit:
        """The score file's metadata in the contract's key order, the run id to come."""
        metadata = {"threshold_source_val": None, **metadata, "mlflow_run_id": None, **extra}
        return cls(metadata["method"], key, model_seed, scores, metadata)

    @property
    def file(self) -> Path:
        return score_file_name(self.method, self.seed or 0)  # <method>.parquet for a deterministic method


@dataclass(frozen=True)
class Method:
    """One method of ``evaluate.baselines``: its ``status.json`` entry (run ids aside) and its fits."""

    entry: dict[str, Any]
    fits: list[Fit] = field(default_factory=list)
    one_run: bool = False  # status.json names the run as ``mlflow_run_id`` (the level rule), else per seed

    def status(self) -> dict[str, Any]:
        runs = {fit.key: fit.metadata["mlflow_run_id"] for fit in self.fits}
        if not self.fits:
            return self.entry
        return {**self.entry, **({"mlflow_run_id": runs[""]} if self.one_run else {"mlflow_run_ids": runs})}


def _decision_metadata(detection: Detection, train_rows: np.ndarray) -> dict[str, Any]:
    """The score-file keys of a detector's own decision (artifacts.DECISION_THRESHOLD, ...)."""
    return {DECISION_THRESHOLD: detection.decision_threshold, DECISION_RULE: detection.decision_rule,
            PI_HAT: detection.flagged_share(train_rows), SCORE_SCALE: detection.score_scale}  # fmt: skip


def _detector(section: BaselinesSection, arrays: SystemTensors, method: str) -> Method:
    """One target-only detector: once per model seed when stochastic, else once (seeded with the data seed: only
    pca_mixture's mixture initialisation reads it). A detector that cannot fit this system is not available."""
    reason = unavailable_reason(method, arrays)
    if reason is not None:
        return Method({"status": "not_available", "reason": reason})
    stochastic = method_spec(method).stochastic
    fits = []
    for seed in section.seeds if stochastic else [section.seed]:
        started = time.perf_counter()
        try:
            detection = DETECTORS[method](arrays, section.detectors, seed)
        except DataError as error:
            return Method({"status": "not_available", "reason": f"{arrays.system}: {method}: {error}"})
        seconds = time.perf_counter() - started
        print(
            f"baselines {arrays.system}: {method}{f' seed {seed}' if stochastic else ''}: {seconds:.1f} s", flush=True
        )
        decision = _decision_metadata(detection, arrays.rows("train"))
        metadata = {"method": method, "detector": method, **decision}
        fit = Fit.of(detection.scores, str(seed), seed if stochastic else None, metadata,
                     **({"seed": seed} if stochastic else {}))  # fmt: skip
        pi_hat = decision[PI_HAT]
        fit.metrics.update({"seconds": seconds, **({} if pi_hat is None else {"pi_hat": pi_hat})})
        fits.append(fit)
    if not stochastic:
        return Method({"status": "written", **decision}, fits)
    per_seed = {fit.key: {key: fit.metadata[key] for key in (DECISION_THRESHOLD, PI_HAT)} for fit in fits}
    return Method({"status": "written", DECISION_RULE: decision[DECISION_RULE], "seeds": per_seed}, fits)


def _oracle(section: BaselinesSection, arrays: SystemTensors) -> Method:
    oracle = section.oracle
    train_rows, reason = oracle_training_rows(arrays, oracle)
    if train_rows is None:
        return Method({"status": "not_available", "reason": reason, "oracle": True})
    assert arrays.labels is not None
    counts = {"train_sessions": int(train_rows.size), "train_anomalies": int((arrays.labels[train_rows] == 1).sum())}
    fits = []
    for seed in section.seeds:
        history: list[dict[str, float]] = []
        if oracle.model == "neural":
            scores = neural_oracle_scores(section.train, arrays, seed, history.append)
        else:
            scores = logistic_oracle_scores(arrays.counts, arrays.labels, train_rows, oracle, seed)
        metadata = {"method": "supervised_target", "detector": oracle.model, "score_scale": "unit", "seed": seed}
        fit = Fit.of(scores, str(seed), seed, metadata, oracle=True, **counts)
        fit.history.extend(history)
        fits.append(fit)
    return Method({"status": "written", "detector": oracle.model, "oracle": True, **counts}, fits)


def _level_rule(section: BaselinesSection, arrays: SystemTensors) -> Method:
    """The level rule's scores (deterministic: one file, with an MLflow run like every baseline's). Its own decision:
    a flagged line (score 1)."""
    scores, reason = level_rule_scores(arrays, section.level_rule)
    if scores is None:
        return Method({"status": "not_available", "reason": reason})
    levels = list(section.level_rule.levels)
    detection = Detection(scores, "unit", 1.0, f"any line at a level of {levels}")
    decision = _decision_metadata(detection, arrays.rows("train"))
    fit = Fit.of(scores, "", None, {"method": "level_rule", "detector": "level_rule", "levels": levels, **decision})
    fit.metrics["flagged_sessions"] = float(scores.sum())
    return Method({"status": "written", "levels": levels, "flagged_sessions": int(scores.sum()),
                   "pi_hat": decision[PI_HAT]}, [fit], one_run=True)  # fmt: skip


@dataclass(frozen=True)
class BaselinesResult:
    """``scores/target-<system>/``: every method's score files and ``status.json``; one MLflow run per fit."""

    section: BaselinesSection
    arrays: SystemTensors
    methods: dict[str, Method]

    def metrics(self) -> dict[str, Any]:
        return {method: {fit.key or "rule": fit.metrics for fit in entry.fits}
                for method, entry in self.methods.items()}  # fmt: skip

    def _logged_params(self, method: str) -> dict[str, str]:
        """The params behind one baseline's numbers (MLflow must show no other)."""
        from zerolog.tracking import flatten_params

        section = self.section
        logged: dict[str, Any] = {"evaluate": {}}
        if method in DETECTOR_SETTINGS:
            name = DETECTOR_SETTINGS[method]
            logged["evaluate"] = {"detectors": {name: getattr(section.detectors, name)}}
        elif method == "level_rule":
            logged["evaluate"] = {"level_rule": section.level_rule}
        elif method == "supervised_target":
            logged["evaluate"] = {"oracle": section.oracle}
        if method == "supervised_target" and section.oracle.model == "neural":
            logged["train"] = section.train
        return flatten_params(logged)

    def track(self, tracker: Any, _: str) -> None:
        """One run per fit, with the system's tensors as its input dataset; its id goes into the score file."""
        from zerolog.tracking import InputData, run_name, split_sizes

        system = self.arrays.system
        for fit in (fit for method in self.methods.values() for fit in method.fits):
            kind = str(method_spec(fit.method).kind)
            tags = {"pair": f"target-{system}", "sources": "", "target": system, "method": fit.method,
                    "detector": fit.metadata["detector"], "kind": kind, "stage": "baselines"}  # fmt: skip
            logged = self._logged_params(fit.method)
            if fit.seed is not None:
                tags["model_seed"] = tags["seed"] = logged["seed"] = str(fit.seed)
            with tracker.run(run_name(f"target-{system}", fit.method, fit.seed), tags, logged) as run_id:
                tracker.log_datasets([run_id], [InputData(self.arrays.directory, "target", split_sizes(self.arrays))])
                for row in fit.history:
                    tracker.log_metrics(run_id, row, step=int(row["epoch"]))
                if fit.metrics:
                    tracker.log_metrics(run_id, fit.metrics)
            fit.metadata["mlflow_run_id"] = run_id

    def write(self, outputs: Outputs) -> None:
        folder, arrays = outputs["scores"], self.arrays
        for fit in (fit for method in self.methods.values() for fit in method.fits):
            (folder / fit.file).parent.mkdir(parents=True, exist_ok=True)
            frame = score_frame(arrays.system, arrays.split, np.arange(arrays.sessions), fit.scores, domain="target")
            write_scores(folder / fit.file, frame, fit.metadata)
        status = {"system": arrays.system, "dataset": arrays.dataset, "seeds": list(self.section.seeds),
                  "methods": {method: entry.status() for method, entry in self.methods.items()}}  # fmt: skip
        write_json(folder / TARGET_STATUS, status)


def compute_baselines(section: BaselinesSection, arrays: SystemTensors) -> BaselinesResult:
    """Stage baselines: every method of ``evaluate.baselines`` on the system (per model seed where stochastic)."""
    methods = {}
    for method in section.methods:
        if method == "level_rule":
            methods[method] = _level_rule(section, arrays)
        elif method_spec(method).kind is MethodKind.ORACLE:
            methods[method] = _oracle(section, arrays)
        else:
            methods[method] = _detector(section, arrays, method)
    return BaselinesResult(section, arrays, methods)
