"""Stage evaluate: every method of one source->target pair on the target's TEST split, under every threshold rule.

This is the only place the target's test labels are read (``tensors/<target>/labels.npy``, joined to the score
files by row), once, after every threshold has been fixed from label-free inputs (thresholds.py).

Writes
- ``metrics/<pair>.json`` (DVC metrics): status (``evaluated`` / ``not_evaluable`` / ``skipped``) and reason, the data
  measured on (dataset, label rule, test size, anomalies, ratio), and per method the headline F1 under the primary
  threshold rule (``evaluate.primary_threshold_rule``, or ``primary_threshold_rule_by_method``), precision, recall,
  PR-AUC, ROC-AUC, and every rule's precision / recall / F1 / threshold / bootstrap interval / confusion counts;
- ``plots/evaluate/<pair>/pr_curves.png`` (every method's PR curve), ``plots/evaluate/<pair>/pr/<method>.csv``
  (recall, precision, method) and
  ``plots/evaluate/<pair>/confusion/<method>.csv`` (actual, predicted; the headline rule's decisions) as DVC plots;
- the same numbers into each method's MLflow run (``mlflow_run_id`` of its score file) via zerolog.tracking.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.config import ConfigError, Params
from zerolog.errors import DataError
from zerolog.evaluation.inputs import (
    ORACLE_METHODS,
    SPLIT_CODES,
    TARGET_ONLY_METHODS,
    SystemArrays,
    load_system_arrays,
    read_scores,
)
from zerolog.evaluation.metrics import check_binary, pr_curve, ranking_metrics, threshold_metrics
from zerolog.evaluation.thresholds import RuleInputs, choose_threshold
from zerolog.io import atomic_directory, read_json, write_json

STATUS_EVALUATED = "evaluated"
STATUS_NOT_EVALUABLE = "not_evaluable"
STATUS_SKIPPED = "skipped"
STATUS_NOT_AVAILABLE = "not_available"
PR_FIGURE = "pr_curves.png"  # plots/evaluate/<pair>/: every method's PR curve in one figure


@dataclass(frozen=True)
class MethodEvaluation:
    """One method's metrics entry, plus the plot data that goes beside it."""

    entry: dict[str, Any]
    pr_points: pd.DataFrame | None = None  # (points, [recall, precision, method])
    decisions: pd.DataFrame | None = None  # (test sessions, [actual, predicted])
    mlflow_run_id: str | None = None


# ----------------------------------------------------------------------------- inputs


def score_path(params: Params, pair: str, method: str) -> Path:
    """Where a method's scores live: neural methods per pair, target-only baselines per target system."""
    if method in TARGET_ONLY_METHODS:
        return Path(params.paths.scores) / f"target-{params.pairs[pair].target}" / f"{method}.parquet"
    return Path(params.paths.scores) / pair / f"{method}.parquet"


def read_training_status(params: Params, pair: str) -> dict[str, Any]:
    """``metrics/train/<pair>.json`` of the train stage: the pair's status and each method's."""
    path = Path(params.paths.metrics) / "train" / f"{pair}.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found (run the train stage for pair {pair} first)")
    try:
        status = read_json(path)
    except ValueError as error:
        raise DataError(str(error)) from None
    if not isinstance(status, dict):
        raise DataError(f"{path}: expected a JSON object")
    return status


def _baseline_status(params: Params, target: str) -> dict[str, Any]:
    path = Path(params.paths.scores) / f"target-{target}" / "status.json"
    if not path.is_file():
        return {}
    try:
        return read_json(path).get("methods", {})
    except ValueError as error:
        raise DataError(str(error)) from None


def _why_missing(params: Params, pair: str, method: str, training: dict[str, Any]) -> str | None:
    """The recorded reason a method has no score file, or None when nothing explains it."""
    if method in TARGET_ONLY_METHODS:
        entry = _baseline_status(params, params.pairs[pair].target).get(method, {})
    else:
        entry = (training.get("methods") or {}).get(method, {})
    if isinstance(entry, dict) and entry.get("status") not in (None, "trained", "written", "ok"):
        return str(entry.get("reason") or f"status {entry.get('status')}")
    return None


def _labels_for(params: Params, cache: dict[str, SystemArrays], system: str) -> SystemArrays:
    if system not in cache:
        cache[system] = load_system_arrays(params, system)
    return cache[system]


def _check_rows(frame: pd.DataFrame, arrays: SystemArrays, path: Path) -> None:
    """Score rows must exist in the system's tensors and carry the split the tensors give them."""
    rows = frame["row"].to_numpy(dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= arrays.labels.size):
        raise DataError(f"{path}: rows of system {arrays.system} outside 0..{arrays.labels.size - 1}")
    codes = frame["split"].map(SPLIT_CODES).to_numpy(dtype=np.int8)
    mismatched = int((arrays.split[rows] != codes).sum())
    if mismatched:
        raise DataError(
            f"{path}: {mismatched} rows of system {arrays.system} disagree with {arrays.directory}/split.npy "
            "(scores from another tensors build?)"
        )


def _score_scale(frame: pd.DataFrame, metadata: dict[str, Any], path: Path) -> bool:
    """True when scores lie in [0, 1] (probabilities, isolation-forest scores); checked against the values."""
    declared = metadata.get("score_scale")
    scores = frame["score"].to_numpy(dtype=np.float64)
    inside = bool(scores.size == 0 or (scores.min() >= 0.0 and scores.max() <= 1.0))
    if declared in ("unit", "probability") and not inside:
        raise DataError(f"{path}: metadata score_scale {declared!r} but scores fall outside [0, 1]")
    if declared == "unbounded":
        return False
    return inside


# ----------------------------------------------------------------------------- one method


def evaluate_method(
    params: Params, pair: str, method: str, path: Path, target: SystemArrays, cache: dict[str, SystemArrays]
) -> MethodEvaluation:
    """Thresholds from label-free inputs first, then the target test labels, once, for every rule."""
    evaluate = params.evaluate
    frame, metadata = read_scores(path)
    target_name = target.system
    is_oracle = method in ORACLE_METHODS or bool(metadata.get("oracle"))

    target_frame = frame[(frame["domain"] == "target") & (frame["system"] == target_name)]
    _check_rows(target_frame, target, path)
    by_split = {name: target_frame[target_frame["split"] == name] for name in SPLIT_CODES}

    # Source validation scores with the SOURCE labels (allowed), for the source_val rule.
    source_scores = source_labels = None
    source_frame = frame[(frame["domain"] == "source") & (frame["split"] == "val")]
    if len(source_frame):
        pieces_scores, pieces_labels = [], []
        for system, group in source_frame.groupby("system", sort=True):
            if system == target_name:
                raise DataError(f"{path}: source rows of the target system {target_name}")
            arrays = _labels_for(params, cache, str(system))
            _check_rows(group, arrays, path)
            labels = arrays.labels[group["row"].to_numpy(dtype=np.int64)]
            known = labels >= 0
            pieces_scores.append(group["score"].to_numpy(dtype=np.float64)[known])
            pieces_labels.append(labels[known].astype(np.int64))
        source_scores, source_labels = np.concatenate(pieces_scores), np.concatenate(pieces_labels)

    target_train_scores = by_split["train"]["score"].to_numpy(dtype=np.float64)
    if target_train_scores.size == 0:
        raise DataError(f"{path}: no target train scores (the label-free rules need them)")
    target_val_scores = target_val_labels = None
    if is_oracle:  # target validation labels: the oracle's own selection rule only
        val_rows = by_split["val"]["row"].to_numpy(dtype=np.int64)
        val_labels = target.labels[val_rows]
        known = val_labels >= 0
        target_val_scores = by_split["val"]["score"].to_numpy(dtype=np.float64)[known]
        target_val_labels = val_labels[known].astype(np.int64)
    threshold_from_training = metadata.get("threshold_source_val")
    inputs = RuleInputs(
        target_train_scores=target_train_scores,
        unit_scale=_score_scale(frame, metadata, path),
        source_val_scores=source_scores,
        source_val_labels=source_labels,
        source_val_threshold=None if threshold_from_training is None else float(threshold_from_training),
        target_val_scores=target_val_scores,
        target_val_labels=target_val_labels,
    )
    headline_rule = evaluate.primary_threshold_rule_by_method.get(method, evaluate.primary_threshold_rule)
    rules = list(dict.fromkeys([*evaluate.threshold_rules, headline_rule]))
    thresholds = {
        rule: choose_threshold(rule, inputs, evaluate.contamination_prior, params.seed, is_oracle) for rule in rules
    }

    # Target test labels: read here, once, after every threshold is fixed.
    test_rows_all = np.flatnonzero((target.split == SPLIT_CODES["test"]) & (target.labels >= 0))
    test_scores_frame = by_split["test"].drop_duplicates("row").set_index("row")
    missing = np.setdiff1d(test_rows_all, test_scores_frame.index.to_numpy())
    if missing.size:
        raise DataError(f"{path}: no score for {missing.size} labeled test rows of {target_name} (first row {missing[0]})")
    test_scores = test_scores_frame.loc[test_rows_all, "score"].to_numpy(dtype=np.float64)  # (test sessions,)
    test_labels = target.labels[test_rows_all].astype(np.int64)  # (test sessions,)
    check_binary(test_labels, test_scores, str(path))

    rule_entries: dict[str, Any] = {}
    for rule, threshold in thresholds.items():
        if not threshold.applicable:
            rule_entries[rule] = {"status": "not_applicable", "reason": threshold.reason, "oracle": threshold.oracle}
            continue
        result = threshold_metrics(
            test_labels,
            test_scores,
            threshold.value,
            rule,
            evaluate.bootstrap.samples,
            evaluate.bootstrap.confidence,
            params.seed,
            oracle=threshold.oracle,
        )
        rule_entries[rule] = {"status": STATUS_EVALUATED, **result.as_dict()}
        if threshold.detail:
            rule_entries[rule]["detail"] = threshold.detail

    headline = rule_entries[headline_rule]
    ranking = ranking_metrics(test_labels, test_scores)
    entry: dict[str, Any] = {
        "status": STATUS_EVALUATED,
        "oracle": is_oracle,
        "threshold_rule": headline_rule,
        "f1": headline.get("f1"),
        "precision": headline.get("precision"),
        "recall": headline.get("recall"),
        "f1_ci": headline.get("f1_ci"),
        **ranking,
        "rules": rule_entries,
        "mlflow_run_id": metadata.get("mlflow_run_id"),
    }
    if headline.get("status") != STATUS_EVALUATED:
        entry["reason"] = f"headline rule {headline_rule}: {headline.get('reason')}"
    if "detector" in metadata:
        entry["detector"] = metadata["detector"]

    points = pr_curve(test_labels, test_scores, evaluate.pr_curve_points)
    points = points.loc[:, ["recall", "precision"]].assign(method=method)
    decisions = None
    if headline.get("status") == STATUS_EVALUATED:
        predicted = (test_scores >= headline["threshold"]).astype(np.int64)
        decisions = pd.DataFrame({"actual": test_labels, "predicted": predicted})
    run_id = metadata.get("mlflow_run_id")
    return MethodEvaluation(entry, points, decisions, None if run_id in (None, "") else str(run_id))


# ----------------------------------------------------------------------------- stage


def _check_methods(params: Params) -> None:
    known = set(params.train.methods) | set(TARGET_ONLY_METHODS)
    for index, method in enumerate(params.evaluate.methods):
        if method not in known:
            raise ConfigError(
                f"{params.source_file}: evaluate.methods[{index}]: {method!r} is neither in train.methods nor a "
                f"target baseline ({', '.join(TARGET_ONLY_METHODS)})"
            )


def tracking_metrics(entry: dict[str, Any]) -> dict[str, float]:
    """The MLflow metric keys of one method's entry: ``test/<metric>`` (headline) and ``test/<rule>/<metric>``."""
    metrics: dict[str, float] = {}
    for key in ("f1", "precision", "recall", "pr_auc", "roc_auc"):
        if entry.get(key) is not None:
            metrics[f"test/{key}"] = float(entry[key])
    for rule, values in entry.get("rules", {}).items():
        if values.get("status") != STATUS_EVALUATED:
            continue
        for key in ("f1", "precision", "recall", "threshold"):
            metrics[f"test/{rule}/{key}"] = float(values[key])
        metrics[f"test/{rule}/f1_ci_low"], metrics[f"test/{rule}/f1_ci_high"] = map(float, values["f1_ci"])
    return metrics


def plot_pr_curves(path: Path, evaluations: dict[str, MethodEvaluation], title: str) -> None:
    """One precision-recall figure per pair, a curve per evaluated method (the oracle dashed); PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for method, evaluation in evaluations.items():
        points = evaluation.pr_points
        if points is None or points.empty:
            continue
        area = evaluation.entry.get("pr_auc")
        label = method if area is None else f"{method} (PR-AUC {area:.2f})"
        style = "--" if evaluation.entry.get("oracle") else "-"
        axes.plot(points["recall"], points["precision"], style, label=label, drawstyle="steps-post")
    if axes.lines:
        axes.legend(fontsize=8, loc="upper right")
    else:
        axes.text(0.5, 0.5, "no method evaluated", ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _log_to_tracking(
    params: Params, pair: str, method: str, evaluation: MethodEvaluation, artifacts: list[Path]
) -> str:
    """Log the method's test metrics into the MLflow run that produced its scores; returns the run id used.

    A score file without a run of this store (none recorded, or restored from another machine's DVC cache) gets a
    new run tagged ``stage: evaluate``, so the numbers are never lost.
    """
    from zerolog import tracking

    metrics = tracking_metrics(evaluation.entry)
    run_id = evaluation.mlflow_run_id
    if run_id is not None and tracking.run_exists(params.mlflow, run_id):
        tracking.log_to_run(params.mlflow, run_id, metrics, artifacts, "plots")
        return run_id
    pair_config = params.pairs[pair]
    tags = {
        "pair": pair,
        "sources": ",".join(pair_config.sources),
        "target": pair_config.target,
        "method": method,
        "stage": "evaluate",
    }
    return tracking.log_new_run(
        params.mlflow, f"{pair}/{method}/evaluate", tags, tracking.flatten_params(params), metrics, artifacts, "plots"
    )


def evaluate_pair(params: Params, pair: str) -> None:
    """Stage evaluate: write ``metrics/<pair>.json`` and ``plots/evaluate/<pair>/`` for one pair."""
    if pair not in params.pairs:
        raise ConfigError(f"{params.source_file}: pairs.{pair}: unknown pair (known: {', '.join(params.pairs)})")
    _check_methods(params)
    evaluate = params.evaluate
    pair_config = params.pairs[pair]
    training = read_training_status(params, pair)
    target = load_system_arrays(params, pair_config.target)

    test = target.split == SPLIT_CODES["test"]
    labeled_test = test & (target.labels >= 0)
    anomalies = int((target.labels[labeled_test] == 1).sum())
    size = int(labeled_test.sum())
    result: dict[str, Any] = {
        "pair": pair,
        "sources": list(pair_config.sources),
        "sources_used": training.get("sources", list(pair_config.sources)),
        "sources_skipped": training.get("sources_skipped") or {},
        "target": pair_config.target,
        "dataset": target.dataset or params.system_dataset(pair_config.target),
        "label_rule": target.label_rule,
        "test": {
            "size": size,
            "anomalies": anomalies,
            "ratio": anomalies / size if size else None,
            "unlabeled": int((test & (target.labels < 0)).sum()),
        },
        "primary_threshold_rule": evaluate.primary_threshold_rule,
        "bootstrap": {
            "samples": evaluate.bootstrap.samples,
            "confidence": evaluate.bootstrap.confidence,
            "seed": params.seed,
        },
        "status": STATUS_EVALUATED,
        "reason": None,
        "methods": {},
    }
    evaluations: dict[str, MethodEvaluation] = {}
    if training.get("status") == STATUS_SKIPPED:
        result["status"] = STATUS_SKIPPED
        result["reason"] = str(training.get("reason") or "skipped by the train stage (no reason given)")
    elif size == 0:
        result["status"] = STATUS_NOT_EVALUABLE
        result["reason"] = f"{pair_config.target} ({result['dataset']}): the test split has no labeled session"
    elif anomalies < evaluate.min_test_anomalies:
        result["status"] = STATUS_NOT_EVALUABLE
        result["reason"] = (
            f"{pair_config.target} ({result['dataset']}): the test split has {anomalies} labeled anomalies "
            f"(< evaluate.min_test_anomalies = {evaluate.min_test_anomalies})"
        )
    else:
        cache: dict[str, SystemArrays] = {pair_config.target: target}
        for method in evaluate.methods:
            path = score_path(params, pair, method)
            if not path.is_file():
                reason = _why_missing(params, pair, method, training)
                if reason is None:
                    raise DataError(f"{path}: file not found (method {method} of evaluate.methods)")
                evaluations[method] = MethodEvaluation({"status": STATUS_NOT_AVAILABLE, "reason": reason,
                                                        "oracle": method in ORACLE_METHODS})
                continue
            evaluations[method] = evaluate_method(params, pair, method, path, target, cache)
        result["methods"] = {method: evaluation.entry for method, evaluation in evaluations.items()}

    plots = Path(params.paths.plots) / "evaluate" / pair
    with atomic_directory(plots) as directory:
        (directory / "pr").mkdir()
        (directory / "confusion").mkdir()
        for method, evaluation in evaluations.items():
            if evaluation.pr_points is not None:
                evaluation.pr_points.to_csv(directory / "pr" / f"{method}.csv", index=False)
            if evaluation.decisions is not None:
                evaluation.decisions.to_csv(directory / "confusion" / f"{method}.csv", index=False)
        # An empty CSV keeps both folders in git when nothing was evaluated (skipped / not evaluable pairs).
        if not any((directory / "pr").iterdir()):
            pd.DataFrame(columns=["recall", "precision", "method"]).to_csv(directory / "pr" / "none.csv", index=False)
        if not any((directory / "confusion").iterdir()):
            pd.DataFrame(columns=["actual", "predicted"]).to_csv(directory / "confusion" / "none.csv", index=False)
        plot_pr_curves(directory / PR_FIGURE, evaluations, f"{pair}: {result.get('status')}")
        write_json(Path(params.paths.metrics) / f"{pair}.json", result)

    for method, evaluation in evaluations.items():
        if evaluation.entry.get("status") == STATUS_EVALUATED:
            _log_to_tracking(params, pair, method, evaluation, [plots / PR_FIGURE])
