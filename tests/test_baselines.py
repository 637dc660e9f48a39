"""Target-only baselines: the label-free detector (train split only, no labels) and the supervised oracle."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from conftest import call_stage
from evaluation_fixtures import make_params, write_tensors
from zerolog.errors import DataError
from zerolog.evaluation.baselines import pca_scores
from zerolog.artifacts import SPLIT_NAMES, read_scores


def _test_auc(frame, arrays):
    test = frame[frame["split"] == "test"]
    labels = arrays["labels"][test["row"].to_numpy()]
    known = labels >= 0
    return roc_auc_score(labels[known], test["score"].to_numpy()[known])


@pytest.mark.parametrize("detector,scale", [("isolation_forest", "unit"), ("pca", "unbounded")])
def test_unsupervised_detector_scores_every_row(tmp_path, detector, scale):
    # PCA keeps half the variance here: with anomalies in the unlabeled train split, a larger normal subspace
    # absorbs their direction (the detector's known weakness, not what this test is about).
    params = make_params(tmp_path, {"evaluate.unsupervised.method": detector, "evaluate.unsupervised.n_estimators": 50,
                                    "evaluate.unsupervised.pca_variance": 0.5})
    arrays = write_tensors(params, "bgl", sessions=400, anomaly_share=0.08, seed=1)
    call_stage("baselines", params, "bgl")
    frame, metadata = read_scores(Path(params.paths.scores) / "target-bgl" / "unsupervised_target" / "seed-42.parquet")
    assert metadata["method"] == "unsupervised_target" and metadata["detector"] == detector
    assert metadata["score_scale"] == scale and "oracle" not in metadata
    assert list(frame["row"]) == list(range(400))
    assert list(frame["split"]) == [SPLIT_NAMES[int(code)] for code in arrays["split"]]
    assert set(frame["domain"]) == {"target"} and set(frame["system"]) == {"bgl"}
    if scale == "unit":
        assert frame["score"].between(0, 1).all()
    assert _test_auc(frame, arrays) > 0.8  # anomalies carry extra events


def test_unsupervised_detector_reads_no_label_and_fits_on_train_only(tmp_path):
    params = make_params(tmp_path, {"evaluate.unsupervised.n_estimators": 30})
    arrays = write_tensors(params, "bgl", sessions=300, anomaly_share=0.1, seed=2)
    call_stage("baselines", params, "bgl")
    path = Path(params.paths.scores) / "target-bgl" / "unsupervised_target" / "seed-42.parquet"
    before = read_scores(path)[0]["score"].to_numpy()

    directory = Path(params.paths.tensors) / "bgl"
    np.save(directory / "labels.npy", np.full(300, -1, dtype=np.int8))  # no label at all
    counts = arrays["counts"].copy()
    counts[arrays["split"] == 2] *= 3  # the test split changes: the fit must not
    np.save(directory / "counts.npy", counts)
    call_stage("baselines", params, "bgl")
    after = read_scores(path)[0]["score"].to_numpy()
    train = arrays["split"] == 0
    np.testing.assert_array_equal(before[train], after[train])
    assert not np.array_equal(before[~train & (arrays["split"] == 2)], after[arrays["split"] == 2])
    status = json.loads((path.parent.parent / "status.json").read_text())
    assert status["methods"]["supervised_target"]["status"] == "not_available"
    assert "no labeled session" in status["methods"]["supervised_target"]["reason"]


def test_oracle_is_written_and_marked(tmp_path):
    params = make_params(tmp_path, {"evaluate.unsupervised.n_estimators": 20})
    arrays = write_tensors(params, "bgl", sessions=500, anomaly_share=0.12, seed=3)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    frame, metadata = read_scores(directory / "supervised_target" / "seed-42.parquet")
    assert metadata["oracle"] is True and metadata["detector"] == "logistic_regression"
    assert metadata["train_anomalies"] == int(((arrays["split"] == 0) & (arrays["labels"] == 1)).sum())
    assert _test_auc(frame, arrays) > 0.9
    status = json.loads((directory / "status.json").read_text())
    assert status["methods"]["supervised_target"] == {
        "status": "written", "detector": "logistic_regression", "oracle": True,
        "train_sessions": metadata["train_sessions"], "train_anomalies": metadata["train_anomalies"],
        "mlflow_run_ids": {"42": metadata["mlflow_run_id"]},
    }


def test_oracle_needs_enough_train_anomalies(tmp_path):
    params = make_params(tmp_path, {"evaluate.oracle.min_train_anomalies": 50, "evaluate.unsupervised.n_estimators": 20})
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.05, seed=4)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    assert not (directory / "supervised_target" / "seed-42.parquet").exists()
    reason = json.loads((directory / "status.json").read_text())["methods"]["supervised_target"]["reason"]
    assert "evaluate.oracle.min_train_anomalies = 50" in reason


def test_pca_residual_is_zero_inside_the_train_subspace_and_positive_off_it():
    workflows = np.zeros((3, 9))
    workflows[0, [1, 2]], workflows[1, [3, 4]], workflows[2, [5, 6]] = 1, 2, 3  # disjoint supports
    train = workflows[np.arange(90) % 3] * (1 + np.arange(90) % 4)[:, None]  # (90, 9) rank-3 counts
    anomaly = workflows[0] + np.eye(9)[8] * 2  # a workflow plus an event never seen in train
    scores = pca_scores(train, np.vstack([train, anomaly]), variance=0.99)
    assert scores.shape == (91,)
    assert np.all(scores[:90] < 1e-9) and scores[90] > 1.0


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
    params = make_params(tmp_path, {"evaluate.unsupervised.n_estimators": 20,
                                    "evaluate.level_rule.levels": ["error", "FATAL"]})  # case-insensitive
    arrays = write_tensors(params, "bgl", sessions=300, anomaly_share=0.1, seed=6, levels=True)
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    frame, metadata = read_scores(directory / "level_rule.parquet")
    expected = (arrays["level_counts"][:, 0] > 0).astype(float)  # column 0 is ERROR; WARNING is not listed here
    np.testing.assert_array_equal(frame["score"].to_numpy(), expected)
    assert list(frame["row"]) == list(range(300)) and metadata["levels"] == ["error", "FATAL"]
    assert "oracle" not in metadata and metadata["threshold_source_val"] is None
    status = json.loads((directory / "status.json").read_text())["methods"]["level_rule"]
    assert status["status"] == "written" and status["flagged_sessions"] == int(expected.sum())
    np.save(Path(params.paths.tensors) / "bgl" / "labels.npy", np.full(300, -1, dtype=np.int8))  # no label at all
    call_stage("baselines", params, "bgl")
    np.testing.assert_array_equal(read_scores(directory / "level_rule.parquet")[0]["score"].to_numpy(), expected)


def test_level_rule_is_not_available_with_its_reason_where_the_data_has_no_levels(tmp_path):
    params = make_params(tmp_path, {"evaluate.unsupervised.n_estimators": 20})
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.1, seed=7)  # meta.json names no levels
    call_stage("baselines", params, "bgl")
    directory = Path(params.paths.scores) / "target-bgl"
    assert not (directory / "level_rule.parquet").exists()
    status = json.loads((directory / "status.json").read_text())["methods"]["level_rule"]
    assert status["status"] == "not_available" and "bgl (bgl_100k): the data carries no level field" in status["reason"]
