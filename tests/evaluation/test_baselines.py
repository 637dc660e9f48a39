"""Stage baselines: every target-only detector (train split only, no labels; the seed contract; its own decision and
pi-hat in the score file), the level rule and the supervised oracle."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import call_stage, loso_of
from evaluation_fixtures import make_params, write_tensors
from sklearn.metrics import roc_auc_score

from zerolog.artifacts import DECISION_RULE, DECISION_THRESHOLD, PI_HAT, SCORE_SCALE, SPLIT_NAMES, read_scores
from zerolog.errors import DataError
from zerolog.methods import MethodKind, method_spec


def _test_auc(frame, arrays):
    test = frame[frame["split"] == "test"]
    labels = arrays["labels"][test["row"].to_numpy()]
    known = labels >= 0
    return roc_auc_score(labels[known], test["score"].to_numpy()[known])


DETERMINISTIC = [
    "pca_mixture",
    "pca",
    "invariants_mining",
    "template_rarity",
    "template_set_rarity",
    "loglead_rarity",
    "loglead_ngram",
]
STOCHASTIC = ["isolation_forest", "deeplog"]


def _score_path(params, method, seed=42):
    folder = Path(params.paths.scores) / "target-bgl"
    return folder / method / f"seed-{seed}.parquet" if method in STOCHASTIC else folder / f"{method}.parquet"


def test_every_detector_follows_the_seed_contract_and_records_its_decision(tmp_path):
    params = make_params(tmp_path, {"seeds": [42, 43]})
    arrays = write_tensors(params, "bgl", sessions=400, anomaly_share=0.08, seed=1)
    result = call_stage("baselines", params, "bgl")
    status = json.loads((Path(params.paths.scores) / "target-bgl" / "status.json").read_text())
    assert set(status["methods"]) == set(params.evaluate.baselines) == set(result.methods)
    for method, entry in result.methods.items():  # the files are the result's, with the ids of the runs it logged
        assert status["methods"][method] == json.loads(json.dumps(entry.status())), method
        for fit in entry.fits:
            frame, metadata = read_scores(Path(params.paths.scores) / "target-bgl" / fit.file)
            np.testing.assert_array_equal(frame["score"].to_numpy(), fit.scores)
            assert metadata["mlflow_run_id"] == fit.metadata["mlflow_run_id"] is not None, method
    available = [method for method in DETERMINISTIC + STOCHASTIC if status["methods"][method]["status"] == "written"]
    assert set(DETERMINISTIC + STOCHASTIC) - set(available) <= {"loglead_rarity", "loglead_ngram"}  # not installed
    for method in available:
        assert method_spec(method).kind is MethodKind.TARGET_ONLY
        seeds = [42, 43] if method in STOCHASTIC else [42]
        assert method_spec(method).stochastic == (method in STOCHASTIC)
        for seed in seeds:
            frame, metadata = read_scores(_score_path(params, method, seed))
            assert (
                metadata["method"] == method
                and "oracle" not in metadata
                and metadata.get("seed") == (seed if method in STOCHASTIC else None)
            )
            assert list(frame["row"]) == list(range(400)) and set(frame["domain"]) == {"target"}
            assert list(frame["split"]) == [SPLIT_NAMES[int(code)] for code in arrays["split"]]
            assert {DECISION_THRESHOLD, DECISION_RULE, PI_HAT, SCORE_SCALE} <= set(metadata)
            train = frame["split"] == "train"
            if metadata[DECISION_THRESHOLD] is None:
                assert metadata[PI_HAT] is None
            else:  # pi_hat: the train share the detector's own decision flags
                share = float((frame.loc[train, "score"] >= metadata[DECISION_THRESHOLD]).mean())
                assert metadata[PI_HAT] == pytest.approx(share)
        assert not (_score_path(params, method).parent / f"{method}.parquet").exists() or method not in STOCHASTIC
    assert _test_auc(read_scores(_score_path(params, "template_rarity"))[0], arrays) > 0.8  # extra rare events
    assert _test_auc(read_scores(_score_path(params, "isolation_forest"))[0], arrays) > 0.8
    assert read_scores(_score_path(params, "isolation_forest", 42))[1][DECISION_THRESHOLD] == 0.5
    differs = read_scores(_score_path(params, "isolation_forest", 43))[0]["score"]
    assert not np.array_equal(differs, read_scores(_score_path(params, "isolation_forest", 42))[0]["score"])


def test_detectors_read_no_label_and_fit_on_train_only(tmp_path):
    params = make_params(tmp_path)
    arrays = write_tensors(params, "bgl", sessions=300, anomaly_share=0.1, seed=2)
    call_stage("baselines", params, "bgl")
    methods = [method for method in DETERMINISTIC + STOCHASTIC if _score_path(params, method).exists()]
    before = {method: read_scores(_score_path(params, method)) for method in methods}

    directory = Path(params.paths.tensors) / "bgl"
    np.save(directory / "labels.npy", np.full(300, -1, dtype=np.int8))  # no label at all
    counts = arrays["counts"].copy()
    counts[arrays["split"] == 2] *= 3  # the test split changes: the fit must not
    np.save(directory / "counts.npy", counts)
    call_stage("baselines", params, "bgl")
    train = arrays["split"] == 0
    for method in methods:
        frame, metadata = read_scores(_score_path(params, method))
        np.testing.assert_array_equal(before[method][0]["score"].to_numpy()[train], frame["score"].to_numpy()[train],
                                      err_msg=method)  # fmt: skip
        assert metadata[DECISION_THRESHOLD] == before[method][1][DECISION_THRESHOLD], method
        assert metadata[PI_HAT] == before[method][1][PI_HAT], method
    status = json.loads((_score_path(params, "pca").parent / "status.json").read_text())
    assert status["methods"]["supervised_target"]["status"] == "not_available"
    assert "no labeled session" in status["methods"]["supervised_target"]["reason"]


def test_a_detector_left_out_of_evaluate_baselines_is_not_run(tmp_path):
    baselines = ["pca_mixture", "isolation_forest", "level_rule", "supervised_target"]
    params = make_params(
        tmp_path,
        {
            "evaluate.baselines": baselines,
            **loso_of("pca_mixture"),
            "evaluate.methods": ["zerolog", "loso", *baselines],
        },
    )
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.1, seed=3)
    call_stage("baselines", params, "bgl")
    folder = Path(params.paths.scores) / "target-bgl"
    # no level field in these data: level_rule is not available, so no file
    assert sorted(path.name for path in folder.iterdir()) == [
        "isolation_forest",
        "pca_mixture.parquet",
        "status.json",
    ]  # and too few labeled anomalies for the oracle


def test_loglead_not_installed_is_not_available_with_the_reason(tmp_path, monkeypatch):
    import sys

    # import loglead... now raises ImportError, also where an earlier test imported its submodules
    for name in ["loglead", "loglead.RarityModel", "loglead.next_event_prediction",
                 *[module for module in sys.modules if module.startswith("loglead.")]]:  # fmt: skip
        monkeypatch.setitem(sys.modules, name, None)
    params = make_params(tmp_path)
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.1, seed=4)
    call_stage("baselines", params, "bgl")
    status = json.loads((Path(params.paths.scores) / "target-bgl" / "status.json").read_text())
    for method in ("loglead_rarity", "loglead_ngram"):
        assert status["methods"][method]["status"] == "not_available"
        assert "loglead is not importable" in status["methods"][method]["reason"]
        assert "pip install --no-deps loglead==2.0.0" in status["methods"][method]["reason"]
    assert status["methods"]["pca_mixture"]["status"] == "written"


def test_oracle_is_written_and_marked(tmp_path):
    params = make_params(tmp_path)
    arrays = write_tensors(params, "bgl", sessions=500, anomaly_share=0.12, seed=3)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    frame, metadata = read_scores(directory / "supervised_target" / "seed-42.parquet")
    assert metadata["oracle"] is True and metadata["detector"] == "logistic_regression"
    assert metadata["train_anomalies"] == int(((arrays["split"] == 0) & (arrays["labels"] == 1)).sum())
    assert _test_auc(frame, arrays) > 0.9
    status = json.loads((directory / "status.json").read_text())
    assert status["methods"]["supervised_target"] == {
        "status": "written",
        "detector": "logistic_regression",
        "oracle": True,
        "train_sessions": metadata["train_sessions"],
        "train_anomalies": metadata["train_anomalies"],
        "mlflow_run_ids": {"42": metadata["mlflow_run_id"]},
    }


def test_oracle_needs_enough_train_anomalies(tmp_path):
    params = make_params(tmp_path, {"evaluate.oracle.min_train_anomalies": 50})
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.05, seed=4)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    assert not (directory / "supervised_target" / "seed-42.parquet").exists()
    reason = json.loads((directory / "status.json").read_text())["methods"]["supervised_target"]["reason"]
    assert "evaluate.oracle.min_train_anomalies = 50" in reason


def test_missing_tensors_name_the_file(tmp_path):
    params = make_params(tmp_path)
    with pytest.raises(DataError, match="labels.npy"):
        call_stage("baselines", params, "bgl")
    assert not (Path(params.paths.scores) / "target-bgl").exists()


def test_neural_oracle_uses_the_training_loop_and_logs_a_run(tmp_path):
    from mlflow.tracking import MlflowClient

    params = make_params(tmp_path, {"evaluate.oracle.model": "neural", "train.epochs": 2})
    arrays = write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=5)
    call_stage("baselines", params, "bgl")
    frame, metadata = read_scores(Path(params.paths.scores) / "target-bgl" / "supervised_target" / "seed-42.parquet")
    assert metadata["detector"] == "neural" and metadata["oracle"] is True
    assert len(frame) == 300 and frame["score"].between(0, 1).all()
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    run = client.get_run(metadata["mlflow_run_id"])
    assert run.data.tags["method"] == "supervised_target" and run.data.tags["kind"] == "oracle"
    assert run.data.tags["pair"] == "target-bgl" and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/f1")] == [1, 2]  # per-epoch, oracle val
    assert arrays["labels"].size == 300


def test_level_rule_flags_exactly_the_sessions_with_a_listed_level_and_reads_no_label(tmp_path):
    params = make_params(tmp_path, {"evaluate.level_rule.levels": ["error", "FATAL"]})  # case-insensitive
    arrays = write_tensors(params, "bgl", sessions=300, anomaly_share=0.1, seed=6, levels=True)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    frame, metadata = read_scores(directory / "level_rule.parquet")
    expected = (arrays["level_counts"][:, 0] > 0).astype(float)  # column 0 is ERROR; WARNING is not listed here
    np.testing.assert_array_equal(frame["score"].to_numpy(), expected)
    assert list(frame["row"]) == list(range(300)) and metadata["levels"] == ["error", "FATAL"]
    assert "oracle" not in metadata and metadata["threshold_source_val"] is None
    assert metadata[DECISION_THRESHOLD] == 1.0  # its own decision: any such line
    status = json.loads((directory / "status.json").read_text())["methods"]["level_rule"]
    assert status["status"] == "written" and status["flagged_sessions"] == int(expected.sum())
    np.save(Path(params.paths.tensors) / "bgl" / "labels.npy", np.full(300, -1, dtype=np.int8))  # no label at all
    call_stage("baselines", params, "bgl")
    np.testing.assert_array_equal(read_scores(directory / "level_rule.parquet")[0]["score"].to_numpy(), expected)


def test_level_rule_is_not_available_with_its_reason_where_the_data_has_no_levels(tmp_path):
    params = make_params(tmp_path)
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.1, seed=7)  # meta.json names no levels
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    assert not (directory / "level_rule.parquet").exists()
    status = json.loads((directory / "status.json").read_text())["methods"]["level_rule"]
    assert status["status"] == "not_available" and "bgl (bgl_100k): the data carries no level field" in status["reason"]
