"""Stage evaluate: every method of one source->target pair on the target's TEST split, under every threshold rule.

This is the only place the target's test labels are read (``tensors/<target>/labels.npy``, joined to the score
files by row), once, after every threshold has been fixed from label-free inputs (thresholds.py).

Writes ``metrics/<pair>.json`` (DVC metrics: the headline numbers a user compares), ``reports/evaluate/<pair>.json``
(every detail, for the report), the PR curves and headline decisions as DVC plots, and one MLflow run per method; the
headline numbers also go, per seed, to the run that wrote the scores, so that a train or baselines run shows its own
test F1 and ROC-AUC in the runs table.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.artifacts import (
    DECISION_RULE,
    DECISION_THRESHOLD,
    PI_HAT,
    RECIPE_FILE,
    SPLIT_CODES,
    TARGET_STATUS,
    TRAINING_SUMMARY,
    ArtifactPaths,
    Status,
    SystemTensors,
    load_tensors,
    read_scores,
)
from zerolog.config import BootstrapConfig, EvaluateConfig, MlflowConfig, PairConfig, Params
from zerolog.errors import DataError
from zerolog.evaluation.thresholds import RuleInputs, Threshold, choose_threshold
from zerolog.io import read_json, write_json
from zerolog.methods import MethodKind, method_spec
from zerolog.metrics import check_binary, pr_curve, ranking_metrics, threshold_metrics
from zerolog.plots import plot_pr_curves
from zerolog.runner import Outputs
from zerolog.tracking import InputData, Tracker, flatten_params, inputs_md5, run_name, split_sizes

PR_FIGURE = "pr_curves.png"  # plots/evaluate/<pair>/: every method's PR curve in one figure
HEADLINE_KEYS = ("f1", "precision", "recall", "pr_auc", "roc_auc")


@dataclass(frozen=True)
class EvaluationSettings:
    """Stage evaluate's settings: the pair, ``evaluate.*``, the data seed, the model seeds, where runs go."""

    pair: str
    pair_config: PairConfig
    config: EvaluateConfig
    seed: int  # the data seed: bootstrap resamples, mixture initialisation
    seeds: list[int]  # the model seeds: a stochastic method has one score file per seed
    tracking: MlflowConfig | None = None  # None: the detect command's use (zerolog.detection.loading)

    def headline_rule(self, method: str) -> str:
        return self.config.primary_threshold_rule_by_method.get(method, self.config.primary_threshold_rule)


@dataclass(frozen=True)
class MethodEvaluation:
    """One method's entry, plus the plot data that goes beside it."""

    entry: dict[str, Any]
    pr_points: pd.DataFrame | None = None  # (points, [recall, precision, method])
    decisions: pd.DataFrame | None = None  # (test sessions, [actual, predicted])


@dataclass(frozen=True)
class PiHat:
    """The recommended detector's label-free anomaly share of the target (its score file's ``pi_hat``), or why
    there is none."""

    method: str
    value: float | None
    reason: str | None = None


@dataclass(frozen=True)
class TestSplit:
    """The target's labeled test sessions: rows of its tensors and their labels (read once, here)."""

    rows: np.ndarray  # (test sessions,) int64
    labels: np.ndarray  # (test sessions,) int64 0/1


# ----------------------------------------------------------------------------- reading scores


def _check_rows(frame: pd.DataFrame, tensors: SystemTensors, path: Path) -> None:
    """Score rows must exist in the system's tensors and carry the split the tensors give them."""
    rows = frame["row"].to_numpy(dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= tensors.sessions):
        raise DataError(f"{path}: rows of system {tensors.system} outside 0..{tensors.sessions - 1}")
    codes = frame["split"].map(SPLIT_CODES).to_numpy(dtype=np.int8)
    mismatched = int((np.asarray(tensors.split)[rows] != codes).sum())
    if mismatched:
        raise DataError(
            f"{path}: {mismatched} rows of system {tensors.system} disagree with {tensors.directory}/split.npy "
            "(scores from another tensors build?)"
        )


def _unit_scale(frame: pd.DataFrame, metadata: dict[str, Any], path: Path) -> bool:
    """True when scores lie in [0, 1] (probabilities, isolation-forest scores); checked against the values."""
    declared = metadata.get("score_scale")
    scores = frame["score"].to_numpy(dtype=np.float64)
    inside = bool(scores.size == 0 or (scores.min() >= 0.0 and scores.max() <= 1.0))
    if declared in ("unit", "probability") and not inside:
        raise DataError(f"{path}: metadata score_scale {declared!r} but scores fall outside [0, 1]")
    return inside and declared != "unbounded"


def _source_validation(
    frame: pd.DataFrame, target: SystemTensors, systems: dict[str, SystemTensors], path: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Source validation scores with the SOURCE labels (allowed), for the source_val rule; None without a source."""
    source_frame = frame[(frame["domain"] == "source") & (frame["split"] == "val")]
    if not len(source_frame):
        return None, None
    parts = []
    for system, group in source_frame.groupby("system", sort=True):
        if system == target.system or str(system) not in systems:
            raise DataError(f"{path}: source rows of system {system}, which is not a source of this pair")
        _check_rows(group, systems[str(system)], path)
        parts.append(_labeled_scores(group, systems[str(system)]))
    return np.concatenate([scores for scores, _ in parts]), np.concatenate([labels for _, labels in parts])


def _labeled_scores(frame: pd.DataFrame, tensors: SystemTensors) -> tuple[np.ndarray, np.ndarray]:
    """The scores of ``frame``'s rows that carry a label in ``tensors``, and those labels."""
    assert tensors.labels is not None
    labels = np.asarray(tensors.labels)[frame["row"].to_numpy(dtype=np.int64)]
    known = labels >= 0
    return frame["score"].to_numpy(dtype=np.float64)[known], labels[known].astype(np.int64)


def rule_inputs(
    frame: pd.DataFrame, metadata: dict[str, Any], path: Path, oracle: bool,
    target: SystemTensors, systems: dict[str, SystemTensors], pi_hat: PiHat,
) -> tuple[RuleInputs, dict[str, pd.DataFrame]]:  # fmt: skip
    """Everything the threshold rules may read for one score file (never the target's test labels)."""
    target_frame = frame[(frame["domain"] == "target") & (frame["system"] == target.system)]
    _check_rows(target_frame, target, path)
    by_split = {name: target_frame[target_frame["split"] == name] for name in SPLIT_CODES}
    train_scores = by_split["train"]["score"].to_numpy(dtype=np.float64)
    if train_scores.size == 0:
        raise DataError(f"{path}: no target train scores (the label-free rules need them)")
    source_scores, source_labels = _source_validation(frame, target, systems, path)
    target_val_scores = target_val_labels = None
    if oracle:
        target_val_scores, target_val_labels = _labeled_scores(by_split["val"], target)  # the ORACLE's rule only
    from_training = metadata.get("threshold_source_val")
    decision = metadata.get(DECISION_THRESHOLD)
    inputs = RuleInputs(
        target_train_scores=train_scores,
        unit_scale=_unit_scale(frame, metadata, path),
        source_val_scores=source_scores,
        source_val_labels=source_labels,
        source_val_threshold=None if from_training is None else float(from_training),
        target_val_scores=target_val_scores,
        target_val_labels=target_val_labels,
        decision_threshold=None if decision is None else float(decision),
        decision_rule=metadata.get(DECISION_RULE),
        pi_hat=pi_hat.value,
        pi_hat_reason=pi_hat.reason,
    )
    return inputs, by_split


def _test_scores(by_split: dict[str, pd.DataFrame], test: TestSplit, target: str, path: Path) -> np.ndarray:
    """(test sessions,) the method's scores of the labeled test rows, in ``test.rows`` order."""
    frame = by_split["test"].drop_duplicates("row").set_index("row")
    missing = np.setdiff1d(test.rows, frame.index.to_numpy())
    if missing.size:
        raise DataError(f"{path}: no score for {missing.size} labeled test rows of {target} (first row {missing[0]})")
    scores = frame.loc[test.rows, "score"].to_numpy(dtype=np.float64)
    check_binary(test.labels, scores, str(path))
    return scores


# ----------------------------------------------------------------------------- one method


def _rule_entry(
    threshold: Threshold, test: TestSplit, scores: np.ndarray, bootstrap: BootstrapConfig, seed: int
) -> dict[str, Any]:
    if threshold.value is None:
        return {"status": str(Status.NOT_APPLICABLE), "reason": threshold.reason, "oracle": threshold.oracle}
    result = threshold_metrics(test.labels, scores, threshold.value, bootstrap.samples, bootstrap.confidence, seed,
                               threshold.oracle)  # fmt: skip
    detail = {"detail": threshold.detail} if threshold.detail else {}
    return {"status": str(Status.EVALUATED), **result.as_dict(), **detail}


@dataclass(frozen=True)
class ScoreFile:
    """One read score file of a method (of one model seed)."""

    path: Path
    frame: pd.DataFrame
    metadata: dict[str, Any]


#: A method's score files by model seed, the recorded reason it has none, or the error that it has none unexplained.
MethodScores = dict[str, ScoreFile] | str | DataError


def evaluate_method(
    method: str, score_file: ScoreFile, settings: EvaluationSettings, test: TestSplit,
    target: SystemTensors, systems: dict[str, SystemTensors], pi_hat: PiHat,
) -> MethodEvaluation:  # fmt: skip
    """Thresholds from label-free inputs first, then the target's test labels, once, for every rule."""
    spec = method_spec(method)
    path, frame, metadata = score_file.path, score_file.frame, score_file.metadata
    inputs, by_split = rule_inputs(frame, metadata, path, spec.oracle, target, systems, pi_hat)
    headline_rule = settings.headline_rule(method)
    rules = list(dict.fromkeys([*settings.config.threshold_rules, headline_rule]))
    config = settings.config
    thresholds = {rule: choose_threshold(rule, inputs, config.contamination_prior, settings.seed, spec.oracle)
                  for rule in rules}  # fmt: skip
    scores = _test_scores(by_split, test, target.system, path)  # target test labels: from here on
    rule_entries = {rule: _rule_entry(threshold, test, scores, config.bootstrap, settings.seed)
                    for rule, threshold in thresholds.items()}  # fmt: skip
    headline = rule_entries[headline_rule]
    entry: dict[str, Any] = {
        "status": str(Status.EVALUATED), "kind": str(spec.kind), "oracle": spec.oracle,
        "threshold_rule": headline_rule, "f1": headline.get("f1"), "precision": headline.get("precision"),
        "recall": headline.get("recall"), "f1_ci": headline.get("f1_ci"), **ranking_metrics(test.labels, scores),
        "rules": rule_entries, "train_run_id": metadata.get("mlflow_run_id"),
    }  # fmt: skip
    if headline.get("status") != str(Status.EVALUATED):
        entry["reason"] = f"headline rule {headline_rule}: {headline.get('reason')}"
    if "detector" in metadata:
        entry["detector"] = metadata["detector"]
    points = pr_curve(test.labels, scores, config.pr_curve_points).loc[:, ["recall", "precision"]].assign(method=method)
    decisions = None
    if headline.get("status") == str(Status.EVALUATED):
        decisions = pd.DataFrame(
            {"actual": test.labels, "predicted": (scores >= headline["threshold"]).astype(np.int64)}
        )
    return MethodEvaluation(entry, points, decisions)


# ----------------------------------------------------------------------------- the pair


def _read_json_object(path: Path, missing: str) -> dict[str, Any]:
    value = read_json(path, missing)
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value


def _why_missing(method: str, training: dict[str, Any], paths: ArtifactPaths, target: str) -> str | None:
    """The recorded reason a method has no score file (train, baselines or select stage), or None when nothing
    explains it."""
    if method_spec(method).kind is MethodKind.SELECTED:
        recorded = _read_json_object(paths.selected_scores(target) / RECIPE_FILE, "run the select stage")
        return str(recorded.get("reason") or "no recipe recorded")
    if method_spec(method).per_pair:
        recorded = (training.get("methods") or {}).get(method, {})
    else:
        status = _read_json_object(paths.target_scores(target) / TARGET_STATUS, "run the baselines stage")
        recorded = (status.get("methods") or {}).get(method, {})
    if isinstance(recorded, dict) and recorded.get("status") not in (None, "trained", "written", str(Status.OK)):
        return str(recorded.get("reason") or f"status {recorded.get('status')}")
    return None


def _test_split(target: SystemTensors) -> TestSplit:
    assert target.labels is not None
    labels = np.asarray(target.labels)
    rows = np.flatnonzero((np.asarray(target.split) == SPLIT_CODES["test"]) & (labels >= 0))
    return TestSplit(rows.astype(np.int64), labels[rows].astype(np.int64))


def _pair_status(settings: EvaluationSettings, training: dict[str, Any], target: SystemTensors,
                 test: TestSplit) -> tuple[Status, str | None]:  # fmt: skip
    """Evaluated, skipped (nothing trained) or not evaluable (too few labeled test anomalies), with the reason."""
    if training.get("status") == str(Status.SKIPPED):
        return Status.SKIPPED, str(training.get("reason") or "skipped by the train stage (no reason given)")
    anomalies = int(test.labels.sum())
    where = f"{target.system} ({target.dataset})"
    if test.rows.size == 0:
        return Status.NOT_EVALUABLE, f"{where}: the test split has no labeled session"
    if anomalies < settings.config.min_test_anomalies:
        return Status.NOT_EVALUABLE, (
            f"{where}: the test split has {anomalies} labeled anomalies "
            f"(< evaluate.min_test_anomalies = {settings.config.min_test_anomalies})"
        )
    return Status.EVALUATED, None


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [value for value in values if value is not None]
    if not known:
        return None, None
    return float(np.mean(known)), float(np.std(known))


def _over_seeds(per_seed: dict[str, MethodEvaluation]) -> MethodEvaluation:
    """One entry of a method from its evaluation under each model seed: the headline numbers (and each rule's F1,
    precision, recall) become the mean over seeds, with ``<key>_sd`` and the per-seed values under ``seeds``.
    The thresholds, intervals, curves and decisions shown are the first seed's."""
    first = next(iter(per_seed.values()))
    entry = {**first.entry, "seeds": {seed: {key: evaluation.entry.get(key) for key in (*HEADLINE_KEYS, "mlflow_run_id",
             "train_run_id")} for seed, evaluation in per_seed.items()}}  # fmt: skip
    for key in HEADLINE_KEYS:
        entry[key], entry[f"{key}_sd"] = _mean_sd([evaluation.entry.get(key) for evaluation in per_seed.values()])
    rules = {}
    for rule, values in first.entry.get("rules", {}).items():
        rules[rule] = dict(values)
        if values.get("status") == str(Status.EVALUATED):
            for key in ("f1", "precision", "recall"):
                rules[rule][key], rules[rule][f"{key}_sd"] = _mean_sd(
                    [evaluation.entry["rules"][rule].get(key) for evaluation in per_seed.values()]
                )
    entry["rules"] = rules
    return MethodEvaluation(entry, first.pr_points, first.decisions)


def read_pi_hat(settings: EvaluationSettings, paths: ArtifactPaths, target: str, seed: int) -> PiHat:
    """pi-hat of the target from the recommended method's score file (of model ``seed`` when it is stochastic):
    label-free, fixed before any test label is read."""
    method = settings.config.recommended
    path = paths.score_file(method, settings.pair, target, seed)
    if not path.is_file():
        return PiHat(method, None, f"{path}: no score file of the recommended method {method}")
    value = read_scores(path)[1].get(PI_HAT)
    if value is None:
        return PiHat(method, None, f"{path}: the recommended method {method} gives no pi_hat (no decision of its own)")
    return PiHat(method, float(value))


def pi_hat_entry(pi_hats: dict[str, PiHat], target: SystemTensors, test: TestSplit) -> dict[str, Any]:
    """pi-hat beside the true anomaly shares of the target's labeled test and train sessions (labels read here for
    the report only; pi-hat was fixed without them)."""
    first = next(iter(pi_hats.values()))
    values = [pi_hat.value for pi_hat in pi_hats.values() if pi_hat.value is not None]
    assert target.labels is not None
    labels, split = np.asarray(target.labels), np.asarray(target.split)
    train_labels = labels[(split == SPLIT_CODES["train"]) & (labels >= 0)]
    entry: dict[str, Any] = {
        "method": first.method, "estimate": float(np.mean(values)) if values else None, "reason": first.reason,
        "true_share_test": float(test.labels.mean()) if test.labels.size else None,
        "true_share_train": float(train_labels.mean()) if train_labels.size else None,
    }  # fmt: skip
    if len({pi_hat.value for pi_hat in pi_hats.values()}) > 1:
        entry["seeds"] = {seed: pi_hat.value for seed, pi_hat in pi_hats.items()}
    return entry


def _read_method_scores(settings: EvaluationSettings, paths: ArtifactPaths, training: dict[str, Any],
                        target: str) -> dict[str, MethodScores]:  # fmt: skip
    """Every method of ``evaluate.methods``: its score files by model seed (one file when it is deterministic), or
    the recorded reason it has none (or the error that it has none unexplained)."""
    read: dict[str, MethodScores] = {}
    for method in settings.config.methods:
        seeds = settings.seeds if method_spec(method).stochastic else settings.seeds[:1]
        files = {str(seed): paths.score_file(method, settings.pair, target, seed) for seed in seeds}
        missing = [path for path in files.values() if not path.is_file()]
        if missing:  # an unexplained one is an error, raised when the evaluation reaches the method (in order)
            try:
                read[method] = _why_missing(method, training, paths, target) or DataError(
                    f"{missing[0]}: file not found (method {method} of evaluate.methods)"
                )
            except DataError as error:
                read[method] = error
        else:
            read[method] = {seed: ScoreFile(path, *read_scores(path)) for seed, path in files.items()}
    return read


def _evaluate_methods(
    settings: EvaluationSettings, scores: dict[str, MethodScores], test: TestSplit,
    target: SystemTensors, systems: dict[str, SystemTensors], pi_hats: dict[str, PiHat],
) -> dict[str, MethodEvaluation]:  # fmt: skip
    """Every method of ``evaluate.methods``, under every model seed when it is stochastic (one file otherwise)."""
    evaluations: dict[str, MethodEvaluation] = {}
    for method, files in scores.items():
        if isinstance(files, DataError):
            raise files
        spec = method_spec(method)
        if isinstance(files, str):
            entry = {
                "status": str(Status.NOT_AVAILABLE),
                "reason": files,
                "kind": str(spec.kind),
                "oracle": spec.oracle,
            }
            evaluations[method] = MethodEvaluation(entry)
            continue
        per_seed = {seed: evaluate_method(method, file, settings, test, target, systems, pi_hats[seed])
                    for seed, file in files.items()}  # fmt: skip
        evaluations[method] = _over_seeds(per_seed) if spec.stochastic else next(iter(per_seed.values()))
    return evaluations


def _details(settings: EvaluationSettings, training: dict[str, Any], target: SystemTensors, test: TestSplit,
             status: Status, reason: str | None) -> dict[str, Any]:  # fmt: skip
    size, anomalies = int(test.rows.size), int(test.labels.sum())
    unlabeled = int(((np.asarray(target.split) == SPLIT_CODES["test"]) & (np.asarray(target.labels) < 0)).sum())
    return {
        "pair": settings.pair, "protocol": "realistic", "sources": list(settings.pair_config.sources),
        "sources_used": training.get("sources", list(settings.pair_config.sources)),
        "sources_skipped": training.get("sources_skipped") or {}, "target": settings.pair_config.target,
        "dataset": target.dataset, "label_rule": target.label_rule,
        "test": {"size": size, "anomalies": anomalies, "ratio": anomalies / size if size else None,
                 "unlabeled": unlabeled},
        "primary_threshold_rule": settings.config.primary_threshold_rule, "recommended": settings.config.recommended,
        "bootstrap": {"samples": settings.config.bootstrap.samples,
                      "confidence": settings.config.bootstrap.confidence, "seed": settings.seed},
        "status": str(status), "reason": reason, "methods": {},
    }  # fmt: skip


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """The DVC metrics of a pair: what a user compares between experiments, nothing else."""
    methods = {}
    for method, entry in details["methods"].items():
        methods[method] = {"kind": entry.get("kind"), "status": entry.get("status")}
        if entry.get("status") == str(Status.EVALUATED):
            methods[method]["threshold_rule"] = entry.get("threshold_rule")
            methods[method].update({key: entry.get(key) for key in HEADLINE_KEYS})
            if "seeds" in entry:
                methods[method].update({f"{key}_sd": entry.get(f"{key}_sd") for key in ("f1", "pr_auc", "roc_auc")})
                methods[method]["seeds"] = {seed: {key: values[key] for key in ("f1", "pr_auc", "roc_auc")}
                                            for seed, values in entry["seeds"].items()}  # fmt: skip
    return {
        "pair": details["pair"], "protocol": details["protocol"], "status": details["status"],
        "test": {key: details["test"][key] for key in ("size", "anomalies")}, "recommended": details["recommended"],
        "pi_hat": details.get("pi_hat"), "methods": methods,
    }  # fmt: skip


def scored_run_metrics(entry: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The headline test numbers (stable names: ``f1``, ``roc_auc``, ...) per run that wrote the scores: each seed's
    train or baselines run (``train_run_id``), or the method's one run when it has no seeds."""
    per_seed = entry.get("seeds") or {"": entry}
    runs: dict[str, dict[str, float]] = {}
    for values in per_seed.values():
        scored = values.get("train_run_id")
        if scored:
            runs[str(scored)] = {key: float(values[key]) for key in HEADLINE_KEYS if values.get(key) is not None}
    return runs


def tracking_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """The MLflow metric keys of one method's entry: the headline under stable names (``f1``, ``roc_auc``, ... the
    runs table's columns) and as ``test/<metric>``, per seed and per rule ``test/<rule>/<metric>``."""
    headline = {key: float(entry[key]) for key in HEADLINE_KEYS if entry.get(key) is not None}
    metrics = {**headline, **{f"test/{key}": value for key, value in headline.items()}}
    metrics.update({f"test/{key}_sd": float(entry[f"{key}_sd"]) for key in HEADLINE_KEYS
                    if entry.get(f"{key}_sd") is not None})  # fmt: skip
    for seed, values in entry.get("seeds", {}).items():
        metrics.update({f"test/seed-{seed}/{key}": float(values[key]) for key in HEADLINE_KEYS
                        if values.get(key) is not None})  # fmt: skip
    for rule, values in entry.get("rules", {}).items():
        if values.get("status") != str(Status.EVALUATED):
            continue
        for key in ("f1", "precision", "recall", "threshold"):
            metrics[f"test/{rule}/{key}"] = float(values[key])
        metrics[f"test/{rule}/f1_ci_low"], metrics[f"test/{rule}/f1_ci_high"] = map(float, values["f1_ci"])
    return metrics


def evaluate_section(params: Params, pair: str) -> EvaluationSettings:
    return EvaluationSettings(pair, params.pairs[pair], params.evaluate, params.seed, params.seeds, params.mlflow)


@dataclass(frozen=True)
class EvaluateInputs:
    """The pair's training summary, its systems' tensors, every method's score files (read only when the pair is
    evaluated) and pi-hat per model seed; the paths of what the MLflow runs record as their inputs."""

    training: dict[str, Any]
    systems: dict[str, SystemTensors]
    scores: dict[str, MethodScores]
    pi_hats: dict[str, PiHat]
    label_files: list[Path]  # labels.npy and split.npy of every system of the pair
    scores_root: Path  # paths.scores


def load_evaluate_inputs(settings: EvaluationSettings, paths: ArtifactPaths) -> EvaluateInputs:
    pair, pair_config = settings.pair, settings.pair_config
    training = _read_json_object(paths.pair_scores(pair) / TRAINING_SUMMARY, f"run the train stage for pair {pair}")
    systems = {system: load_tensors(paths.tensors(system)) for system in [*pair_config.sources, pair_config.target]}
    target = systems[pair_config.target]
    scores: dict[str, MethodScores] = {}
    pi_hats: dict[str, PiHat] = {}
    if _pair_status(settings, training, target, _test_split(target))[0] is Status.EVALUATED:
        pi_hats = {str(seed): read_pi_hat(settings, paths, target.system, seed) for seed in settings.seeds}
        scores = _read_method_scores(settings, paths, training, target.system)
    labels = [paths.tensors(system) / f"{name}.npy" for system in systems for name in ("labels", "split")]
    return EvaluateInputs(training, systems, scores, pi_hats, labels, Path(paths.paths.scores))


@dataclass(frozen=True)
class EvaluateResult:
    """``metrics/<pair>.json`` (the headline), ``reports/evaluate/<pair>.json`` (every detail) and the plots; one
    MLflow run per evaluated method."""

    settings: EvaluationSettings
    inputs: EvaluateInputs
    status: Status
    details: dict[str, Any]
    evaluations: dict[str, MethodEvaluation]

    def metrics(self) -> dict[str, Any]:
        return headline(self.details)

    def _curves(self) -> dict[str, tuple[pd.DataFrame, float | None, bool]]:
        """Each evaluated method's PR points, PR-AUC and whether it is an ORACLE: the PR figure's curves."""
        return {method: (evaluation.pr_points, evaluation.entry.get("pr_auc"), bool(evaluation.entry["oracle"]))
                for method, evaluation in self.evaluations.items() if evaluation.pr_points is not None}  # fmt: skip

    def write(self, outputs: Outputs) -> None:
        for method, evaluation in self.evaluations.items():
            if evaluation.pr_points is not None:
                evaluation.pr_points.to_csv(outputs["pr"] / f"{method}.csv", index=False)
            if evaluation.decisions is not None:
                evaluation.decisions.to_csv(outputs["confusion"] / f"{method}.csv", index=False)
        # An empty CSV keeps both folders in git when nothing was evaluated (skipped / not evaluable pairs).
        for name, columns in (("pr", ["recall", "precision", "method"]), ("confusion", ["actual", "predicted"])):
            if not any(outputs[name].iterdir()):
                pd.DataFrame(columns=columns).to_csv(outputs[name] / "none.csv", index=False)
        plot_pr_curves(outputs["pr_curves"], self._curves(), f"{self.settings.pair}: {self.status}")
        write_json(outputs["details"], self.details)
        write_json(outputs["metrics"], headline(self.details))

    def track(self, tracker: Tracker, _: str) -> None:
        """One MLflow run per evaluated method, holding the evaluate params that produced its numbers; the headline
        numbers also go to each run that wrote the scores. The run is keyed by the method's exact inputs (score
        file, labels, splits, params): evaluating the same inputs again reuses it, so a rerun neither duplicates
        runs nor changes the run id recorded in the details (the runner records before the result writes)."""
        settings, inputs = self.settings, self.inputs
        logged = flatten_params({"evaluate": settings.config, "pairs": {settings.pair: settings.pair_config},
                                 "seed": settings.seed, "seeds": settings.seeds})  # fmt: skip
        target = inputs.systems[settings.pair_config.target]
        with tempfile.TemporaryDirectory() as scratch:
            figure = Path(scratch) / PR_FIGURE  # logged under its own name, not the temporary one
            plot_pr_curves(figure, self._curves(), f"{settings.pair}: {self.status}")
            for method, entry in self.details["methods"].items():
                if entry.get("status") != str(Status.EVALUATED):
                    continue
                files = inputs.scores[method]
                assert isinstance(files, dict)
                score_files = [file.path for file in files.values()]
                tags = {"pair": settings.pair, "sources": ",".join(settings.pair_config.sources),
                        "target": settings.pair_config.target, "method": method, "kind": entry["kind"],
                        "stage": "evaluate", "seed": ",".join(files),
                        "train_run_id": str(entry.get("train_run_id") or "")}  # fmt: skip
                key = inputs_md5([*score_files, *inputs.label_files], {**logged, "method": method})
                folder = inputs.scores_root / score_files[0].relative_to(inputs.scores_root).parts[0]
                with tracker.run(f"{run_name(settings.pair, method)} evaluate", tags, logged, key=key) as run_id:
                    tracker.log_metrics(run_id, tracking_metrics(entry))
                    tracker.log_artifacts(run_id, [figure], "plots")
                    datasets = [InputData(target.directory, "test", split_sizes(target)),
                                InputData(folder, "scores", {"score_files": len(score_files)})]  # fmt: skip
                    tracker.log_datasets([run_id], datasets)
                for scored_run, metrics in scored_run_metrics(entry).items():
                    tracker.add_metrics(scored_run, metrics)
                entry["mlflow_run_id"] = run_id


def compute_evaluate(settings: EvaluationSettings, inputs: EvaluateInputs) -> EvaluateResult:
    """Stage evaluate: every method of one pair on the target's test split, under every threshold rule."""
    target = inputs.systems[settings.pair_config.target]
    test = _test_split(target)
    status, reason = _pair_status(settings, inputs.training, target, test)
    details = _details(settings, inputs.training, target, test, status, reason)
    evaluations: dict[str, MethodEvaluation] = {}
    if status is Status.EVALUATED:
        evaluations = _evaluate_methods(settings, inputs.scores, test, target, inputs.systems, inputs.pi_hats)
        details["methods"] = {method: evaluation.entry for method, evaluation in evaluations.items()}
        details["pi_hat"] = pi_hat_entry(inputs.pi_hats, target, test)
    return EvaluateResult(settings, inputs, status, details, evaluations)
