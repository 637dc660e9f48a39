"""MLflow tracking: where runs go, what a train run holds (read back through MlflowClient): its name, tags and input
datasets as the UI shows them; the experiment declared a model-training one with the runs table's default view."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import call_stage, make_params
from mlflow.tracking import MlflowClient
from training_fixtures import write_system

from zerolog.config import MlflowConfig
from zerolog.config_loader import load_params
from zerolog.tracking import (
    EXPERIMENT_KIND_TAG,
    RUNS_VIEW_KEY,
    SHARED_VIEW_PREFIX,
    InputData,
    Tracker,
    flatten_params,
    inputs_md5,
    repository_root,
    resolve_tracking_uri,
)
from zerolog.training.loop import load_checkpoint

REPOSITORY = Path(__file__).resolve().parents[1]


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///from-env.db")
    assert resolve_tracking_uri(MlflowConfig(tracking_uri="http://server:5000", experiment="x")) == "http://server:5000"
    assert resolve_tracking_uri(MlflowConfig(tracking_uri=None, experiment="x")) == "sqlite:///from-env.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    assert (
        resolve_tracking_uri(MlflowConfig(tracking_uri=None, experiment="x"))
        == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    )


def test_repository_root_of_a_dvc_experiment_copy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Inside `dvc exp run --temp` copies, runs must go to the ORIGINAL repository's store."""
    monkeypatch.delenv("DVC_ROOT", raising=False)
    copy = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    copy.mkdir(parents=True)
    (copy / "dvc.yaml").write_text("stages: {}\n")
    assert repository_root(copy) == (tmp_path / "repo").resolve()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "elsewhere"))
    assert repository_root(copy) == (tmp_path / "elsewhere").resolve()


def test_flatten_params_keeps_every_value_under_a_valid_key() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    flat = flatten_params(params)
    assert flat["train.optimizer.learning_rate"] == json.dumps(params.train.optimizer.learning_rate)
    assert flat["train.methods"] == json.dumps(params.train.methods)
    assert flat["seed"] == str(params.seed)
    assert flat["mlflow.tracking_uri"] == json.dumps(params.mlflow.tracking_uri)
    assert "pairs.bgl_openstack-hdfs.sources" in flat  # '+' is not allowed in MLflow keys
    assert flatten_params({"seed": 1, "train": params.train})["train.epochs"] == str(params.train.epochs)
    assert all("+" not in key for key in flat)


def test_inputs_md5_changes_with_content(tmp_path: Path) -> None:
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, np.arange(5))
    np.save(second, np.ones(3))
    digest = inputs_md5([first, second])
    assert digest == inputs_md5([second, first])  # order-independent
    np.save(second, np.zeros(3))
    assert inputs_md5([first, second]) != digest


def _train_params(tmp_path: Path, **train_changes):
    overrides = {"train.methods": ["zerolog", "source_only"], "train.epochs": 2, "train.max_steps_per_epoch": 2,
                 **{f"train.{key}": value for key, value in train_changes.items()}}  # fmt: skip
    return make_params(tmp_path, overrides)


def test_train_pair_writes_outputs_and_one_mlflow_run_per_method(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    params = _train_params(tmp_path)
    table = np.random.default_rng(3).normal(size=(12, 16)).astype(np.float32)
    write_system(tmp_path / "tensors" / "hdfs", "hdfs", seed=1, table=table)
    target = write_system(tmp_path / "tensors" / "bgl", "bgl", sessions=150, seed=2, table=table)

    call_stage("train", params, "hdfs-bgl")

    summary = json.loads((tmp_path / "scores" / "hdfs-bgl" / "training.json").read_text())
    assert summary["status"] == "ok" and set(summary["methods"]) == {"zerolog", "source_only"}
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    assert experiment.artifact_location.startswith("file://") and "mlartifacts" in experiment.artifact_location
    runs = {run.data.tags["method"]: run for run in client.search_runs([experiment.experiment_id])}
    assert {run.data.tags["model_seed"] for run in runs.values()} == {"42"}
    assert set(runs) == {"zerolog", "source_only"}
    for method, run in runs.items():
        entry = summary["methods"][method]["seeds"]["42"]
        assert entry["mlflow_run_id"] == run.info.run_id and run.info.status == "FINISHED"
        assert entry["epochs"] == 2 and "seconds" not in entry  # timings go to MLflow, not to committed files
        assert run.data.metrics["time/seconds"] > 0 and run.data.metrics["memory/peak_rss_mb"] > 0
        tags = run.data.tags
        assert tags["sources"] == "hdfs" and tags["target"] == "bgl" and tags["pair"] == "hdfs-bgl"
        assert run.info.run_name == f"hdfs-bgl {method} s42" and tags["seed"] == "42" and tags["kind"] == "transfer"
        inputs = _datasets(run)
        assert set(inputs) == {"tensors/hdfs", "tensors/bgl"}  # what it read: the sources' and the target's tensors
        assert inputs["tensors/bgl"]["context"] == "target" and inputs["tensors/hdfs"]["context"] == "train"
        assert inputs["tensors/bgl"]["profile"]["sessions"] == 150 and len(inputs["tensors/bgl"]["digest"]) == 32
        assert tags["dvc_experiment"] == "workspace" and len(tags["inputs_md5"]) == 32 and tags["git_commit"]
        # Only the stage's own params: MLflow never shows a value that did not produce the run's numbers.
        assert run.data.params["train.epochs"] == "2" and run.data.params["seed"] == str(params.seed)
        assert set(run.data.params) == set(
            flatten_params({"train": params.train, "seed": 42, "pairs": {"hdfs-bgl": params.pairs["hdfs-bgl"]}})
        )
        history = client.get_metric_history(run.info.run_id, "loss/classification")
        assert sorted(metric.step for metric in history) == [1, 2]
        assert "val/f1" in run.data.metrics and "final/val/f1" in run.data.metrics
        assert ("loss/domain" in run.data.metrics) == (method == "zerolog")
        artifacts = [item.path for item in client.list_artifacts(run.info.run_id, "plots")]
        assert "plots/seed-42.png" in artifacts and "plots/seed-42.csv" in artifacts

        # the logged model predicts what the checkpoint predicts
        mlflow.set_tracking_uri(params.mlflow.tracking_uri)
        (logged,) = mlflow.search_logged_models(
            experiment_ids=[experiment.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'",
            output_format="list",
        )  # fmt: skip
        # models-from-code over the weights (no pickle, so no pickle warning), not the pytorch flavour
        assert set(mlflow.models.get_model_info(logged.model_uri).flavors) == {"python_function"}
        served = mlflow.pyfunc.load_model(logged.model_uri)
        checkpoint_model, checkpoint = load_checkpoint(
            tmp_path / "models" / "hdfs-bgl" / method / "seed-42" / "checkpoint.pt"
        )
        assert checkpoint["epoch"] == 2
        example = torch.from_numpy(target.vectors[target.index[:3, :10]])
        with torch.no_grad():
            expected = checkpoint_model(example).numpy()
        np.testing.assert_allclose(served.predict(example.numpy().tolist()), expected, rtol=1e-6)

        # score file: contract columns, no labels, metadata with the run id
        table = pq.read_table(tmp_path / "scores" / "hdfs-bgl" / method / "seed-42.parquet")
        assert table.column_names == ["domain", "split", "row", "system", "score"]
        metadata = {key.decode(): json.loads(value) for key, value in table.schema.metadata.items() if key != b"pandas"}
        assert metadata["method"] == method and metadata["mlflow_run_id"] == run.info.run_id
        assert metadata["threshold_source_val"] == entry["threshold_source_val"]
        frame = table.to_pandas()
        assert (frame.loc[frame.domain == "target", "row"].sort_values().to_numpy() == np.arange(150)).all()
        assert set(frame.loc[frame.domain == "source", "split"]) == {"val"}
        assert (tmp_path / "plots" / "train" / "hdfs-bgl" / method / "seed-42.png").stat().st_size > 1000


def _datasets(run) -> dict[str, dict]:
    """A run's input datasets as the UI lists them: name -> digest, source, profile and context."""
    found = {}
    for item in run.inputs.dataset_inputs:
        context = {tag.key: tag.value for tag in item.tags}.get("mlflow.data.context")
        found[item.dataset.name] = {"digest": item.dataset.digest, "source": json.loads(item.dataset.source),
                                    "profile": json.loads(item.dataset.profile), "context": context}  # fmt: skip
    return found


def test_the_experiment_is_a_model_training_one_with_a_default_runs_view(tmp_path: Path) -> None:
    """MLflow 3's UI opens a model-training experiment on its runs; the runs table's view shows the headline metrics.
    An experiment created before (an older store, no such tags) gets them on first use."""
    uri = make_params(tmp_path).mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri)
    older = client.create_experiment(f"older-{tmp_path.name}")
    for name in (f"new-{tmp_path.name}", f"older-{tmp_path.name}"):
        tracker = Tracker(MlflowConfig(tracking_uri=uri, experiment=name))
        tags = client.get_experiment(tracker.experiment_id()).tags
        assert tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
        view = json.loads(tags[SHARED_VIEW_PREFIX + RUNS_VIEW_KEY])
        columns = {"metrics.`f1`", "metrics.`roc_auc`", "tags.`pair`", "attributes.`Dataset`"}
        assert columns <= set(view["selectedColumns"])
        url = tracker.experiment_url("http://127.0.0.1:5000/")
        assert url == (f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id()}/runs"
                       f"?workflowType=machine_learning&viewStateShareKey={RUNS_VIEW_KEY}")  # fmt: skip
    assert Tracker(MlflowConfig(tracking_uri=uri, experiment=f"older-{tmp_path.name}")).experiment_id() == older


def test_a_dataset_digest_is_the_dvc_lock_md5_of_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a DVC repository a dataset's digest is dvc.lock's md5 of the output; outside, the md5 of its files."""
    folder = tmp_path / "data" / "tensors" / "hdfs"
    folder.mkdir(parents=True)
    np.save(folder / "split.npy", np.zeros(3, dtype=np.int8))
    monkeypatch.chdir(tmp_path)
    outside = InputData(folder, "train", {"sessions": 3}).dataset()
    assert outside.digest == inputs_md5([folder / "split.npy"]) and outside.name == "tensors/hdfs"
    lock = {
        "schema": "2.0",
        "stages": {
            "tensors-hdfs": {
                "cmd": "x",
                "outs": [
                    {
                        "path": "data/tensors/hdfs",
                        "hash": "md5",
                        "md5": "0123456789abcdef0123456789abcdef.dir",
                        "size": 1,
                    }
                ],
            }
        },
    }
    (tmp_path / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    dataset = InputData(folder, "train", {"sessions": 3}).dataset()
    assert dataset.digest == "0123456789abcdef0123456789abcdef.dir"
    assert json.loads(dataset.source) == {"uri": "data/tensors/hdfs"} and json.loads(dataset.profile) == {"sessions": 3}


def test_the_evaluate_stage_gives_each_scored_run_its_own_test_numbers(tmp_path: Path) -> None:
    """A train (or baselines) run shows its seed's test f1 and roc_auc in the runs table: the evaluate stage logs
    them into the run named by the score file; a run this store lacks is left alone."""
    from zerolog.evaluation.evaluate import scored_run_metrics

    entry = {"f1": 0.5, "roc_auc": 0.7, "train_run_id": "unused", "seeds": {
        "1": {"f1": 0.4, "roc_auc": 0.6, "pr_auc": None, "train_run_id": "first"},
        "2": {"f1": 0.6, "roc_auc": 0.8, "train_run_id": "second"}}}  # fmt: skip
    assert scored_run_metrics(entry) == {"first": {"f1": 0.4, "roc_auc": 0.6}, "second": {"f1": 0.6, "roc_auc": 0.8}}
    assert scored_run_metrics({"f1": 0.5, "train_run_id": "only"}) == {"only": {"f1": 0.5}}
    tracker = Tracker(MlflowConfig(tracking_uri=make_params(tmp_path).mlflow.tracking_uri,
                                   experiment=f"scored-{tmp_path.name}"))  # fmt: skip
    with tracker.run("hdfs-bgl zerolog s1", {}, {}) as run_id:
        pass
    assert tracker.add_metrics(run_id, {"f1": 0.4}) and not tracker.add_metrics("0" * 32, {"f1": 0.4})
    assert tracker.client.get_run(run_id).data.metrics == {"f1": 0.4}


def test_a_run_finishes_or_fails_with_its_block_and_a_key_reuses_it(tmp_path: Path) -> None:
    config = MlflowConfig(tracking_uri=make_params(tmp_path).mlflow.tracking_uri, experiment=f"runs-{tmp_path.name}")
    tracker = Tracker(config)
    with tracker.run("report", {"stage": "report"}, {"seed": "42"}) as first:
        tracker.log_metrics(first, {"f1": 0.25, "undefined": float("nan")})
    run = tracker.client.get_run(first)
    assert run.info.status == "FINISHED" and run.data.params == {"seed": "42"} and run.data.metrics == {"f1": 0.25}
    with pytest.raises(RuntimeError), tracker.run("report", {"stage": "report"}, {"seed": "42"}) as failed:
        raise RuntimeError("boom")
    assert tracker.client.get_run(failed).info.status == "FAILED"
    with tracker.run("evaluate", {}, {"seed": "42"}, key="abc") as keyed:
        pass
    with tracker.run("evaluate", {}, {"seed": "42"}, key="abc") as again:
        pass
    with tracker.run("evaluate", {}, {"seed": "42"}, key="other") as other:
        pass
    assert keyed == again != other and tracker.client.get_run(again).data.tags["run_key"] == "abc"


@pytest.mark.slow
def test_methods_in_worker_processes_equal_methods_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train.method_workers: 2 workers of 1 thread give the same checkpoints and scores as in-process on 1 thread."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    table = np.random.default_rng(5).normal(size=(12, 16)).astype(np.float32)
    outputs = {}
    for workers, threads in ((1, 1), (2, 2)):
        root = tmp_path / f"workers-{workers}"
        params = _train_params(root, methods=["zerolog", "dann"], max_steps_per_epoch=3, method_workers=workers,
                               torch_threads=threads)  # fmt: skip
        write_system(root / "tensors" / "hdfs", "hdfs", seed=3, table=table)
        write_system(root / "tensors" / "bgl", "bgl", sessions=150, seed=4, table=table)
        call_stage("train", params, "hdfs-bgl")
        outputs[workers] = root
    for method in ("zerolog", "dann"):
        scores = [
            pq.read_table(outputs[w] / "scores" / "hdfs-bgl" / method / "seed-42.parquet").column("score")
            for w in (1, 2)
        ]
        assert scores[0].equals(scores[1]), method
        first, second = (
            load_checkpoint(outputs[w] / "models" / "hdfs-bgl" / method / "seed-42" / "checkpoint.pt")[0]
            for w in (1, 2)
        )
        for name, tensor in first.state_dict().items():
            assert torch.equal(tensor, second.state_dict()[name]), (method, name)


def test_an_evaluate_only_experiment_shows_its_own_numbers_under_its_own_params(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc exp run -S evaluate.contamination_prior=0.2` then the MLflow store: the experiment's evaluate runs hold
    the new prior and the numbers it gave; the workspace's runs keep theirs, untouched."""
    from evaluation_fixtures import build_pair, write_tensors

    def evaluate_runs(params):
        client = MlflowClient(tracking_uri=params.mlflow.tracking_uri)
        experiment = client.get_experiment_by_name(params.mlflow.experiment)
        runs = client.search_runs([experiment.experiment_id], "tags.stage = 'evaluate' and tags.method = 'zerolog'")
        return {run.data.tags["dvc_experiment"]: run for run in runs}

    overrides = {"evaluate.methods": ["zerolog"], "evaluate.primary_threshold_rule": "target_quantile"}
    workspace = make_params(tmp_path, overrides)
    write_tensors(workspace, "hdfs", sessions=300, anomaly_share=0.1, seed=1)
    write_tensors(workspace, "bgl", sessions=600, anomaly_share=0.15, seed=2)
    build_pair(workspace, "hdfs-bgl")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    call_stage("evaluate", workspace, "hdfs-bgl")
    before = evaluate_runs(workspace)["workspace"]

    experiment = make_params(tmp_path, {**overrides, "evaluate.contamination_prior": 0.2})
    monkeypatch.setenv("DVC_EXP_NAME", "prior-0.2")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0" * 40)
    call_stage("evaluate", experiment, "hdfs-bgl")
    details = json.loads((tmp_path / "reports" / "evaluate" / "hdfs-bgl.json").read_text())

    runs = evaluate_runs(workspace)
    assert set(runs) == {"workspace", "prior-0.2"}
    ours = runs["prior-0.2"]
    assert ours.data.params["evaluate.contamination_prior"] == "0.2" and ours.data.tags["dvc_baseline_rev"] == "0" * 40
    assert ours.data.metrics["test/f1"] == pytest.approx(details["methods"]["zerolog"]["f1"])
    assert ours.data.metrics["f1"] == ours.data.metrics["test/f1"] and "roc_auc" in ours.data.metrics  # the columns
    assert ours.info.run_name == "hdfs-bgl zerolog evaluate" and ours.data.tags["seed"] == "42"
    inputs = _datasets(ours)
    assert inputs["tensors/bgl"]["context"] == "test" and inputs["tensors/bgl"]["profile"]["sessions"] == 600
    assert inputs["scores/hdfs-bgl"]["context"] == "scores"
    assert details["methods"]["zerolog"]["mlflow_run_id"] == ours.info.run_id  # the metrics name the run behind them
    still = runs["workspace"]
    assert still.info.run_id == before.info.run_id and still.data.params["evaluate.contamination_prior"] == "0.05"
    assert still.data.metrics == before.data.metrics and still.data.metrics["test/f1"] != ours.data.metrics["test/f1"]
