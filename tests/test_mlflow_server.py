"""A REAL MLflow tracking server over a sqlite store written by zerolog.tracking, read back over HTTP.

What `make ui` serves: the runs of every pair and method, with their tags and metrics, readable by any MLflow client.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from evaluation_fixtures import make_params

from zerolog.tracking import Tracker, flatten_params
from zerolog.ui_check import free_port, wait_until_healthy

METHODS = ("zerolog", "source_only", "dann", "meta")


@pytest.fixture()
def store(tmp_path):
    """One finished run per pair and method, with the train stage's tags, all params and a few metrics."""
    params = make_params(tmp_path)
    tracker = Tracker(params.mlflow)
    logged = flatten_params(params)
    expected = {}
    for index, (pair, config) in enumerate(params.pairs.items()):
        for offset, method in enumerate(METHODS):
            tags = {"pair": pair, "sources": ",".join(config.sources), "target": config.target, "method": method}
            run_id = tracker.start_run(f"{pair}/{method}", tags, logged)
            f1 = round(0.1 + 0.02 * index + 0.01 * offset, 4)
            if (pair, method) == ("hdfs-bgl", "zerolog"):  # one per-epoch history is enough to read back
                for epoch in (1, 2):
                    tracker.log_metrics(run_id, {"loss/classification": 1.0 / epoch}, step=epoch)
            tracker.log_metrics(run_id, {"test/f1": f1, "test/pr_auc": f1 + 0.05})
            tracker.finish(run_id)
            expected[(pair, method)] = (run_id, f1)
    return params, expected


@pytest.mark.slow
def test_server_serves_every_pair_and_method(store, tmp_path):
    from mlflow.tracking import MlflowClient

    params, expected = store
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--backend-store-uri", params.mlflow.tracking_uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - the server writes to it until the finally below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(server, url, timeout=90)
        client = MlflowClient(tracking_uri=url)
        experiment = client.get_experiment_by_name(params.mlflow.experiment)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        assert len(runs) == len(params.pairs) * len(METHODS)
        seen = {}
        for run in runs:
            key = (run.data.tags["pair"], run.data.tags["method"])
            seen[key] = run
            run_id, f1 = expected[key]
            assert run.info.run_id == run_id and run.info.status == "FINISHED"
            assert run.data.metrics["test/f1"] == pytest.approx(f1)
            assert run.data.tags["target"] == params.pairs[key[0]].target
            assert run.data.params["train.epochs"] == str(params.train.epochs)
            assert "git_commit" in run.data.tags
        assert set(seen) == set(expected)
        # A filtered query per pair, as the UI's search box does it.
        for pair in params.pairs:
            pair_runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.pair = '{pair}'")
            assert {run.data.tags["method"] for run in pair_runs} == set(METHODS)
        history = client.get_metric_history(expected[("hdfs-bgl", "zerolog")][0], "loss/classification")
        assert [(point.step, point.value) for point in history] == [(1, 1.0), (2, 0.5)]
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


@pytest.mark.slow
def test_ui_check_reads_the_experiment_type_and_the_columns_from_a_real_ui(tmp_path, monkeypatch, capsys):
    """`make ui-check` over a store holding one run with the headline metrics and a dataset: a real `mlflow ui`
    answers that the experiment is a model-training one and that the run shows f1, roc_auc and its data."""
    import numpy as np

    from zerolog import ui_check
    from zerolog.tracking import InputData, run_name

    params = make_params(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", params.mlflow.tracking_uri)
    folder = tmp_path / "tensors" / "hdfs"
    folder.mkdir(parents=True)
    np.save(folder / "split.npy", np.zeros(3, dtype=np.int8))
    monkeypatch.setattr("zerolog.ui_check.load_params", lambda: params)  # not the repository's params.yaml
    tracker = Tracker(params.mlflow)
    with tracker.run(run_name("hdfs-bgl", "zerolog", 42), {"pair": "hdfs-bgl", "method": "zerolog"}, {}) as run_id:
        tracker.log_metrics(run_id, {"f1": 0.5, "roc_auc": 0.8})
        tracker.log_datasets([run_id], [InputData(folder, "train", {"sessions": 3})])
    monkeypatch.setattr("zerolog.ui_check.BROWSERS", ())  # the screenshot is the browser's part, not this test's
    ui_check.main(["--output", str(tmp_path / "ui.png")])
    said = capsys.readouterr().out
    assert "mlflow.experimentKind = custom_model_development" in said
    assert "1 runs: 1 with f1, 1 with roc_auc, 1 with datasets" in said and "screenshot skipped" in said
