"""Stage evaluate on generated inputs: every method and rule, not-evaluable and skipped pairs, label hygiene."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LOSO_PCA, REPOSITORY, call_stage
from evaluation_fixtures import build_pair, make_params, write_pair_scores, write_tensors, write_train_status

from zerolog.artifacts import read_scores
from zerolog.config import ConfigError
from zerolog.config_loader import load_params
from zerolog.errors import DataError
from zerolog.evaluation.evaluate import HEADLINE_KEYS, tracking_metrics
from zerolog.methods import method_spec

PAIR = "hdfs-bgl"


def only(*methods):
    """Params overrides: evaluate ``methods`` plus the recommended detector (pi-hat), which alone the baselines
    stage runs."""
    return {
        "evaluate.methods": [*methods, "pca_mixture", "loso"],
        "evaluate.baselines": ["pca_mixture", "pca"],
        **LOSO_PCA,
    }


def _metrics(params, pair=PAIR):
    """The evaluate stage's full details of a pair (reports/evaluate/<pair>.json)."""
    return json.loads((Path(params.paths.reports) / "evaluate" / f"{pair}.json").read_text())


def _headline(params, pair=PAIR):
    """The DVC metrics of a pair (metrics/<pair>.json)."""
    return json.loads((Path(params.paths.metrics) / f"{pair}.json").read_text())


def evaluate_pair(params, pair):
    return call_stage("evaluate", params, pair)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """hdfs-bgl with every neural method, both baselines, evaluated once (shared: tests that change inputs restore
    them)."""
    methods = ["zerolog", "source_only", "dann", "meta"]  # the trainer's rows (the default run trains zerolog only)
    params = make_params(tmp_path_factory.mktemp("evaluated"), {
        "train.methods": methods, "selection.min_val_anomalies": 1,
        "evaluate.methods": [*methods, *[m for m in load_params(REPOSITORY / "params.yaml").evaluate.methods
                                         if m not in methods]]})  # fmt: skip
    write_tensors(params, "hdfs", sessions=400, anomaly_share=0.1, seed=1)
    target = write_tensors(params, "bgl", sessions=600, anomaly_share=0.1, seed=2, unlabeled_share=0.05, levels=True)
    build_pair(params, PAIR)
    call_stage("baselines", params, "hdfs")  # the reference that judges bgl's recipe
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    evaluate_pair(params, PAIR)
    return params, target


def test_every_method_and_rule_is_reported(evaluated):
    params, target = evaluated
    metrics = _metrics(params)
    assert metrics["status"] == "evaluated" and metrics["reason"] is None
    labeled_test = (target["split"] == 2) & (target["labels"] >= 0)
    anomalies = int((target["labels"][labeled_test] == 1).sum())
    assert metrics["test"] == {
        "size": int(labeled_test.sum()),
        "anomalies": anomalies,
        "ratio": pytest.approx(anomalies / labeled_test.sum()),
        "unlabeled": int(((target["split"] == 2) & (target["labels"] < 0)).sum()),
    }
    assert metrics["dataset"] == params.systems["bgl"].dataset and metrics["label_rule"] == "generated"
    assert metrics["primary_threshold_rule"] == "pi_hat" and metrics["recommended"] == "loso"
    assert set(metrics["methods"]) == set(params.evaluate.methods)
    for method, entry in metrics["methods"].items():
        if method.startswith("loglead_") and entry["status"] == "not_available":
            assert "loglead is not importable" in entry["reason"]  # not installed in this environment
            continue
        assert entry["status"] == "evaluated", (method, entry)
        assert set(params.evaluate.threshold_rules) <= set(entry["rules"])
        assert 0.0 <= entry["f1"] <= 1.0 and entry["f1_ci"][0] <= entry["f1"] <= entry["f1_ci"][1]
        assert entry["kind"] == str(method_spec(method).kind)
    zerolog = metrics["methods"]["zerolog"]
    assert zerolog["threshold_rule"] == "pi_hat" and zerolog["oracle"] is False
    assert zerolog["f1"] == zerolog["rules"]["pi_hat"]["f1"] and zerolog["roc_auc"] > 0.5
    # The better-separated generated scores must rank above the weaker ones.
    assert zerolog["pr_auc"] > metrics["methods"]["source_only"]["pr_auc"]


def test_baselines_use_their_own_rules_and_the_oracle_is_marked(evaluated):
    params, _ = evaluated
    methods = _metrics(params)["methods"]
    oracle = methods["supervised_target"]
    assert oracle["oracle"] is True and oracle["threshold_rule"] == "target_val"
    assert oracle["rules"]["target_val"]["oracle"] is True
    assert oracle["rules"]["source_val"]["status"] == "not_applicable"
    forest = methods["isolation_forest"]
    assert forest["oracle"] is False and forest["threshold_rule"] == "target_quantile"
    assert forest["kind"] == "target_only" and forest["detector"] == "isolation_forest"
    assert "target_val" not in forest["rules"]
    assert "no source side" in forest["rules"]["source_val"]["reason"]
    assert forest["rules"]["detector"]["threshold"] == 0.5  # its own decision, s >= 0.5
    recommended = methods["pca_mixture"]
    assert recommended["threshold_rule"] == "detector" and recommended["kind"] == "target_only"
    rarity = methods["template_rarity"]
    assert rarity["threshold_rule"] == "target_mixture" and rarity["rules"]["detector"]["status"] == "not_applicable"


def test_plots_are_written_per_method(evaluated):
    params, _ = evaluated
    plots = Path(params.paths.plots) / "evaluate" / PAIR
    for method in params.evaluate.methods:
        if _metrics(params)["methods"][method]["status"] != "evaluated":
            assert not (plots / "pr" / f"{method}.csv").exists()  # loglead where it is not installed
            continue
        curve = pd.read_csv(plots / "pr" / f"{method}.csv")
        assert list(curve.columns) == ["recall", "precision", "method"] and set(curve["method"]) == {method}
        assert len(curve) <= params.evaluate.pr_curve_points
        decisions = pd.read_csv(plots / "confusion" / f"{method}.csv")
        assert list(decisions.columns) == ["actual", "predicted"]
        entry = _metrics(params)["methods"][method]
        rule = entry["rules"][entry["threshold_rule"]]
        assert int(((decisions.actual == 1) & (decisions.predicted == 1)).sum()) == rule["true_positives"]
    figure = plots / "pr_curves.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 5_000


def test_headline_metrics_hold_only_the_numbers_users_compare(evaluated):
    params, _ = evaluated
    details, headline = _metrics(params), _headline(params)
    assert set(headline) == {"pair", "protocol", "status", "test", "recommended", "pi_hat", "methods"}
    assert headline["recommended"] == "loso" and headline["pi_hat"] == details["pi_hat"]
    assert headline["test"] == {key: details["test"][key] for key in ("size", "anomalies")}
    for method, entry in headline["methods"].items():
        if entry["status"] != "evaluated":
            assert set(entry) == {"kind", "status"}
            continue
        spread = {"seeds", "f1_sd", "pr_auc_sd", "roc_auc_sd"} if method_spec(method).stochastic else set()
        assert set(entry) == {"kind", "status", "threshold_rule", *HEADLINE_KEYS, *spread}
        assert all(entry[key] == details["methods"][method][key] for key in HEADLINE_KEYS)
    assert headline["methods"]["supervised_target"]["kind"] == "oracle"
    assert headline["methods"]["zerolog"]["kind"] == "transfer"


def test_each_method_gets_an_evaluate_run_with_the_params_that_produced_it(evaluated):
    from mlflow.tracking import MlflowClient

    params, _ = evaluated
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    details = _metrics(params)
    for method, entry in details["methods"].items():
        if entry["status"] != "evaluated":
            continue
        run = client.get_run(entry["mlflow_run_id"])
        assert run.data.tags["stage"] == "evaluate" and run.data.tags["method"] == method
        assert run.data.metrics["test/f1"] == pytest.approx(entry["f1"])
        assert run.data.params["evaluate.contamination_prior"] == str(params.evaluate.contamination_prior)
        assert not any(key.startswith(("train.", "embed.", "parse.")) for key in run.data.params)
    zerolog = client.get_run(details["methods"]["zerolog"]["mlflow_run_id"])
    assert zerolog.data.metrics["test/fixed_0.5/f1"] == pytest.approx(
        details["methods"]["zerolog"]["rules"]["fixed_0.5"]["f1"]
    )


def test_target_test_labels_do_not_move_any_threshold(evaluated):
    params, target = evaluated
    before = _metrics(params)
    labels = target["labels"].copy()
    test = np.flatnonzero((target["split"] == 2) & (labels >= 0))
    labels[test] = np.random.default_rng(0).permutation(labels[test])
    path = Path(params.paths.tensors) / "bgl" / "labels.npy"
    np.save(path, labels)
    try:
        evaluate_pair(params, PAIR)
        after = _metrics(params)
    finally:
        np.save(path, target["labels"])
        evaluate_pair(params, PAIR)
    for method in ("zerolog", "isolation_forest", "pca_mixture", "deeplog"):
        for rule, values in before["methods"][method]["rules"].items():
            if values["status"] == "evaluated":
                assert after["methods"][method]["rules"][rule]["threshold"] == values["threshold"], (method, rule)
    assert after["methods"]["zerolog"]["f1"] != before["methods"]["zerolog"]["f1"]
    assert after["pi_hat"]["estimate"] == before["pi_hat"]["estimate"]  # label-free
    assert after["pi_hat"]["true_share_test"] == before["pi_hat"]["true_share_test"]  # a permutation keeps the share


def test_a_rerun_gives_the_same_outputs_and_reuses_its_mlflow_runs(evaluated):
    """Bootstrap intervals are seeded, and the MLflow run of the same inputs is reused (not duplicated)."""
    from mlflow.tracking import MlflowClient

    params, _ = evaluated
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(params.mlflow.experiment)

    def evaluate_runs():  # the methods' runs (the stage's own run is one per invocation)
        runs = client.search_runs([experiment.experiment_id], "tags.stage = 'evaluate'")
        return {run.info.run_id for run in runs if "method" in run.data.tags}

    first, runs = _metrics(params), evaluate_runs()
    result = evaluate_pair(params, PAIR)
    assert _metrics(params)["methods"] == first["methods"] == json.loads(json.dumps(result.details))["methods"]
    assert evaluate_runs() == runs


def _evaluated_with_target(tmp_path, **target) -> tuple[object, dict]:
    """Params and metrics of hdfs-openstack evaluated with an openstack target of 300 sessions shaped by ``target``
    (write_tensors' keywords)."""
    params = make_params(tmp_path)
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "openstack", sessions=300, seed=3, **target)
    build_pair(params, "hdfs-openstack")
    evaluate_pair(params, "hdfs-openstack")
    return params, _metrics(params, "hdfs-openstack")


def test_too_few_test_anomalies_is_not_evaluable(tmp_path):
    params, metrics = _evaluated_with_target(tmp_path, anomaly_share=0.0, test_anomalies=2)
    assert metrics["status"] == "not_evaluable" and metrics["methods"] == {}
    assert "2 labeled anomalies" in metrics["reason"] and "evaluate.min_test_anomalies = 10" in metrics["reason"]
    assert metrics["test"]["anomalies"] == 2
    assert (Path(params.paths.plots) / "evaluate" / "hdfs-openstack" / "pr" / "none.csv").is_file()


def test_unlabeled_test_split_is_not_evaluable(tmp_path):
    _, metrics = _evaluated_with_target(tmp_path, anomaly_share=0.1, unlabeled_share=1.0)
    assert metrics["status"] == "not_evaluable" and "no labeled session" in metrics["reason"]
    assert metrics["test"]["ratio"] is None


def test_skipped_training_is_reported_with_its_reason(tmp_path):
    params = make_params(tmp_path)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.1, seed=2)
    write_tensors(params, "openstack", sessions=100, anomaly_share=0.0, seed=3)
    reason = "no usable source (source openstack: 0 labeled anomalies in its train split)"
    write_train_status(params, "openstack-bgl", status="skipped", reason=reason, methods={})
    evaluate_pair(params, "openstack-bgl")
    metrics = _metrics(params, "openstack-bgl")
    assert metrics["status"] == "skipped" and metrics["reason"] == reason and metrics["methods"] == {}


def test_missing_scores_need_a_recorded_reason(tmp_path):
    params = make_params(tmp_path, only("zerolog", "dann"))
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=2)
    write_pair_scores(params, PAIR, "zerolog", 2.0, seed=1)
    write_train_status(params, PAIR, methods={"zerolog": {"status": "ok"}})
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    with pytest.raises(DataError, match=r"dann/seed-42\.parquet: file not found"):
        evaluate_pair(params, PAIR)
    assert not (Path(params.paths.metrics) / f"{PAIR}.json").exists()
    write_train_status(
        params, PAIR, methods={"zerolog": {"status": "ok"}, "dann": {"status": "failed", "reason": "diverged"}}
    )
    evaluate_pair(params, PAIR)
    assert _metrics(params)["methods"]["dann"] == {
        "status": "not_available",
        "reason": "diverged",
        "kind": "transfer",
        "oracle": False,
    }


def test_level_rule_is_reported_not_available_with_its_reason_where_the_target_has_no_levels(tmp_path):
    params = make_params(
        tmp_path, {**only("zerolog", "level_rule"), "evaluate.baselines": ["pca_mixture", "pca", "level_rule"]}
    )
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=2)  # no level field
    write_pair_scores(params, PAIR, "zerolog", 2.0, seed=1)
    write_train_status(params, PAIR)
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    evaluate_pair(params, PAIR)
    entry = _metrics(params)["methods"]["level_rule"]
    assert entry["status"] == "not_available" and entry["oracle"] is False
    assert "bgl (bgl_100k): the data carries no level field" in entry["reason"]


def test_level_rule_decides_by_itself(evaluated):
    """Scores 0/1 read at its own decision (1: a flagged line): anomalous exactly when it has a listed level."""
    params, target = evaluated
    entry = _metrics(params)["methods"]["level_rule"]
    assert entry["threshold_rule"] == "detector" and entry["rules"]["detector"]["threshold"] == 1.0
    test = (target["split"] == 2) & (target["labels"] >= 0)
    flagged = target["level_counts"][test][:, [0, 2]].sum(axis=1) > 0  # ERROR or WARNING
    anomalous = target["labels"][test] == 1
    true_positives = int((flagged & anomalous).sum())
    assert entry["precision"] == pytest.approx(true_positives / flagged.sum())
    assert entry["recall"] == pytest.approx(true_positives / anomalous.sum())


def test_scores_from_another_tensors_build_are_rejected(tmp_path):
    params = make_params(tmp_path, only("zerolog"))
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=2)
    write_pair_scores(params, PAIR, "zerolog", 2.0, seed=1)
    write_train_status(params, PAIR)
    split = np.load(Path(params.paths.tensors) / "bgl" / "split.npy")
    np.save(Path(params.paths.tensors) / "bgl" / "split.npy", split[::-1].copy())
    with pytest.raises(DataError, match="disagree with"):
        evaluate_pair(params, PAIR)


def test_unknown_method_or_pair_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluate\.methods\[0\]: unknown method 'magic'"):
        make_params(tmp_path, {"evaluate.methods": ["magic"]})
    with pytest.raises(ConfigError, match="pair 'nowhere' is not in params"):
        evaluate_pair(make_params(tmp_path), "nowhere")


def test_tracking_metrics_keys():
    entry = {
        "f1": 0.5,
        "precision": 0.4,
        "recall": None,
        "pr_auc": 0.6,
        "roc_auc": 0.7,
        "rules": {
            "fixed_0.5": {
                "status": "evaluated",
                "f1": 0.5,
                "precision": 0.4,
                "recall": 0.66,
                "threshold": 0.5,
                "f1_ci": [0.4, 0.6],
            },
            "source_val": {"status": "not_applicable", "reason": "x"},
        },
    }
    keys = tracking_metrics(entry)
    assert keys["test/f1"] == 0.5 and "test/recall" not in keys
    assert keys["test/fixed_0.5/f1_ci_low"] == 0.4 and not any(k.startswith("test/source_val") for k in keys)


def test_stochastic_methods_report_mean_and_sd_over_model_seeds(tmp_path):
    params = make_params(
        tmp_path,
        {
            "seeds": [42, 43, 44],
            **only("zerolog", "level_rule"),
            "evaluate.baselines": ["pca_mixture", "pca", "level_rule"],
        },
    )
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=400, anomaly_share=0.15, seed=2, levels=True)
    paths = write_pair_scores(params, PAIR, "zerolog", 1.5, seed=7)
    assert [path.name for path in paths] == ["seed-42.parquet", "seed-43.parquet", "seed-44.parquet"]
    write_train_status(params, PAIR)
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    evaluate_pair(params, PAIR)
    zerolog = _metrics(params)["methods"]["zerolog"]
    per_seed = [zerolog["seeds"][seed]["f1"] for seed in ("42", "43", "44")]
    assert zerolog["f1"] == pytest.approx(np.mean(per_seed)) and zerolog["f1_sd"] == pytest.approx(np.std(per_seed))
    assert len(set(per_seed)) > 1  # the seeds' score files differ
    headline = _headline(params)["methods"]
    assert headline["zerolog"]["seeds"]["43"]["f1"] == per_seed[1] and "f1_sd" in headline["zerolog"]
    assert "seeds" not in headline["level_rule"]  # deterministic: one score file, no spread to report


def test_pi_hat_comes_from_the_recommended_detector_and_sets_the_transfer_methods_cut(evaluated):
    params, target = evaluated
    details = _metrics(params)
    scores = Path(params.paths.scores)
    _, recommended = read_scores(scores / "select-bgl" / "loso" / "seed-42.parquet")
    test = (target["split"] == 2) & (target["labels"] >= 0)
    train = (target["split"] == 0) & (target["labels"] >= 0)
    assert details["pi_hat"] == {
        "method": "loso", "estimate": recommended["pi_hat"], "reason": None,
        "true_share_test": pytest.approx(target["labels"][test].mean()),
        "true_share_train": pytest.approx(target["labels"][train].mean()),
    }  # fmt: skip
    assert 0 < recommended["pi_hat"] < 0.5
    frame, _ = read_scores(scores / PAIR / "zerolog" / "seed-42.parquet")
    own_train = frame[(frame["domain"] == "target") & (frame["split"] == "train")]["score"].to_numpy()
    rule = details["methods"]["zerolog"]["rules"]["pi_hat"]
    assert rule["threshold"] == pytest.approx(np.quantile(own_train, 1 - recommended["pi_hat"]))
    assert rule["detail"] == {"pi_hat": recommended["pi_hat"]}
    # The recommended recipe's own cut flags exactly its pi-hat share of the train sessions.
    loso = details["methods"]["loso"]["rules"]["detector"]
    assert loso["threshold"] == recommended["decision_threshold"]


def test_without_a_pi_hat_the_rule_says_why(tmp_path):
    # a recipe that cannot cut (no such thresholder), no reference to choose another: the selection has none
    params = make_params(
        tmp_path,
        {
            "evaluate.methods": ["zerolog", "template_rarity", "loso"],
            "evaluate.baselines": ["template_rarity"],
            "selection.members": ["template_rarity"],
            "selection.sizes": [1],
            "selection.cuts": ["no_such_cut"],
            "selection.fallback": "template_rarity|rank|mean|no_such_cut",
        },
    )
    write_tensors(params, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=2)
    write_pair_scores(params, PAIR, "zerolog", 2.0, seed=1)
    write_train_status(params, PAIR)
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    evaluate_pair(params, PAIR)
    details = _metrics(params)
    assert (
        details["pi_hat"]["estimate"] is None
        and "no score file of the recommended method loso" in details["pi_hat"]["reason"]
    )
    loso = details["methods"]["loso"]
    assert loso["status"] == "not_available" and "selection.fallback cannot cut this system" in loso["reason"]
    zerolog = details["methods"]["zerolog"]
    assert zerolog["rules"]["pi_hat"]["status"] == "not_applicable" and zerolog["f1"] is None
    assert "headline rule pi_hat: no pi-hat" in zerolog["reason"]
