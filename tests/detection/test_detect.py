"""``zerolog detect`` on the bundled raw logs, against what the pipeline's own stages wrote for the same sessions.

One small pipeline per module, on real bundled data (conftest.make_params: tiny model, short runs): DevStack OpenStack
(the target; its raw log is what detect reads again) and HDFS_2k (a raw source for the transfer method), BGL_2k (a
window session rule). The stages run as ``dvc repro`` runs them (``call_stage``).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPOSITORY, call_stage, make_params

from zerolog.artifacts import ArtifactPaths, read_scores
from zerolog.config import MultilineRule, Params, as_dict
from zerolog.detection.bundle import read_bundle
from zerolog.detection.cli import main as detect_main
from zerolog.detection.detect import DetectOptions, run_detect
from zerolog.detection.loading import from_pipeline
from zerolog.errors import DataError

DEVSTACK = REPOSITORY / "data" / "bundled" / "OpenStack" / "devstack" / "openstack-nova-sample.log.gz"
BGL_2K = REPOSITORY / "data" / "bundled" / "BGL" / "BGL_2k.log"
DATASETS = ("openstack_devstack", "hdfs_logs", "bgl_logs")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """download -> ... -> baselines (openstack, bgl) and train (hdfs-openstack, zerolog only) on the bundled data; the
    pair hdfs-bgl is declared (the bgl bundle is reached through it) but not trained."""
    tmp = tmp_path_factory.mktemp("detect")
    params = make_params(tmp, {
        "systems.hdfs.dataset": "hdfs_logs", "systems.bgl.dataset": "bgl_logs", "embed.method": "hashing",
        "train.methods": ["zerolog"], "pairs": {"hdfs-openstack": {"sources": ["hdfs"], "target": "openstack"},
                                                "hdfs-bgl": {"sources": ["hdfs"], "target": "bgl"}},
        "paper.pairs": ["hdfs-openstack"],  # paper pairs must be pairs (the paper stage is not run here)
        "selection.min_val_anomalies": 1,  # the 2k samples' validation splits hold a few anomalies
    })  # fmt: skip
    for dataset in DATASETS:
        for stage in ("download", "parse", "sessionize"):
            call_stage(stage, params, dataset)
    call_stage("embed", params)
    for system in ("openstack", "hdfs", "bgl"):
        call_stage("tensors", params, system)
    for system in ("openstack", "hdfs", "bgl"):
        call_stage("baselines", params, system)
    for system in ("openstack", "bgl"):  # each system's recipe, chosen on the other two
        call_stage("selection", params, system)
    call_stage("train", params, "hdfs-openstack")
    (tmp / "params.yaml").write_text(yaml.safe_dump(as_dict(params), sort_keys=False), encoding="utf-8")
    return params


def _options(params: Params, **changes: object) -> DetectOptions:
    settings = {"top_templates": params.detect.top_templates, "partition_bytes": params.detect.partition_bytes,
                "chunk_bytes": params.parse.chunk_bytes, "progress": False, **changes}  # fmt: skip
    return DetectOptions(**settings)  # type: ignore[arg-type]


def _stage_scores(params: Params, path: Path, system: str) -> pd.DataFrame:
    """A score file of the pipeline with each row's session id (tensors order)."""
    frame, _ = read_scores(path)
    ids = json.loads((ArtifactPaths(params.paths).tensors(system) / "session_ids.json").read_text())
    frame = frame[frame["system"] == system]
    return frame.assign(session_id=[ids[row] for row in frame["row"]]).set_index("session_id")


def _detect(params: Params, pair: str, method: str, system: str, logs: list[str], output: Path,
            **changes: object) -> pd.DataFrame:  # fmt: skip
    detector = from_pipeline(params, system, pair, method, params.detect.top_templates)
    run_detect(detector, logs, output, _options(params, **changes))
    return pd.read_parquet(output) if output.suffix == ".parquet" else pd.read_csv(output)


def test_recommended_recipe_scores_the_raw_log_as_the_selection_stage_scored_its_sessions(pipeline, tmp_path):
    paths = ArtifactPaths(pipeline.paths)
    stage = _stage_scores(pipeline, paths.score_file("loso", "", "openstack", pipeline.seeds[0]), "openstack")
    found = _detect(pipeline, "hdfs-openstack", "loso", "openstack", [str(DEVSTACK)], tmp_path / "out.parquet")
    assert found["session_id"].tolist() == list(stage.index)  # every session, in the sessionize stage's order
    np.testing.assert_allclose(found["score"].to_numpy(), stage["score"].to_numpy(), rtol=1e-9, atol=1e-12)
    bundle = read_bundle(paths.detector("openstack"))
    _, metadata = read_scores(paths.score_file("loso", "", "openstack", pipeline.seeds[0]))
    assert bundle.recipe is not None and bundle.recipe.recipe.key == metadata["detector"]
    assert bundle.threshold.value == pytest.approx(metadata["decision_threshold"], rel=1e-12)
    assert (found["flagged"] == (found["score"] >= bundle.threshold.value)).all()
    assert found["new_templates"].eq(0).all()  # the pipeline's own log: every template is known
    assert found["top_templates"].map(len).between(1, pipeline.detect.top_templates).all()


def test_transfer_method_scores_as_the_train_stage_scored_the_target(pipeline, tmp_path):
    path = ArtifactPaths(pipeline.paths).score_file("zerolog", "hdfs-openstack", "openstack", pipeline.seeds[0])
    stage = _stage_scores(pipeline, path, "openstack")
    found = _detect(pipeline, "hdfs-openstack", "zerolog", "openstack", [str(DEVSTACK)], tmp_path / "out.parquet")
    aligned = stage.loc[found["session_id"], "score"].to_numpy()
    np.testing.assert_allclose(found["score"].to_numpy(), aligned, rtol=0, atol=1e-5)  # float32 GRU, other batches
    assert ((found["score"] >= 0) & (found["score"] <= 1)).all() and found["flagged"].notna().all()


def test_window_sessions_of_raw_bgl_score_as_the_selection_stage(pipeline, tmp_path):
    stage = _stage_scores(pipeline, ArtifactPaths(pipeline.paths).score_file("loso", "", "bgl", pipeline.seeds[0]),
                          "bgl")  # fmt: skip
    found = _detect(pipeline, "hdfs-bgl", "loso", "bgl", [str(BGL_2K)], tmp_path / "bgl.parquet")
    assert found["session_id"].tolist() == list(stage.index)  # windows "<file>:<first line>", in order
    np.testing.assert_allclose(found["score"].to_numpy(), stage["score"].to_numpy(), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- the command and its errors


def _run_command(pipeline: Params, arguments: list[str]) -> None:
    params_file = Path(pipeline.paths.models).parent / "params.yaml"
    detect_main([*arguments, "--params", str(params_file), "--no-progress"])


def test_command_writes_csv_rows_and_a_summary(pipeline, tmp_path, capsys):
    output = tmp_path / "out" / "sessions.csv"
    _run_command(pipeline, [str(DEVSTACK), "--system", "openstack", "--pair", "hdfs-openstack", "--method",
                            "loso", "-o", str(output)])  # fmt: skip
    summary = capsys.readouterr().out
    rows = pd.read_csv(output)
    loso = ArtifactPaths(pipeline.paths).score_file("loso", "", "openstack", pipeline.seeds[0])
    stage = _stage_scores(pipeline, loso, "openstack")
    assert rows["session_id"].tolist() == list(stage.index)
    np.testing.assert_allclose(rows["score"].to_numpy(), stage["score"].to_numpy(), rtol=1e-9, atol=1e-12)
    assert f"sessions   {len(rows):,}: {int(rows['flagged'].sum()):,} flagged" in summary
    assert all(isinstance(json.loads(value), list) for value in rows["top_templates"])  # a list as JSON text
    assert sorted(path.name for path in output.parent.iterdir()) == ["sessions.csv"]  # no scratch left behind


def _no_match(folder: Path) -> str:
    path = folder / "other.log"
    path.write_text("this is no nova line\nnor is this one\n", encoding="utf-8")
    return str(path)


def _empty(folder: Path) -> str:
    path = folder / "empty.log"
    path.write_bytes(b"")
    return str(path)


BAD_INPUTS = {
    "unknown system": (lambda folder: str(DEVSTACK), ["--system", "nosuch", "--pair", "hdfs-openstack"],
                       "systems.nosuch: unknown system"),
    "a detector of another system": (lambda folder: str(DEVSTACK), ["--system", "openstack", "--pair", "hdfs-bgl"],
                                     "trained for system 'bgl', not 'openstack'"),
    "no line matches the format": (_no_match, ["--system", "openstack", "--pair", "hdfs-openstack"],
                                   "other.log: log format of system openstack"),
    "an empty file": (_empty, ["--system", "openstack", "--pair", "hdfs-openstack"], "empty.log: empty log file"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_output(pipeline, tmp_path, case):
    make_input, arguments, expected = BAD_INPUTS[case]
    log = make_input(tmp_path)
    output = tmp_path / "out" / "sessions.parquet"
    output.parent.mkdir()
    with pytest.raises(SystemExit) as raised:
        _run_command(pipeline, [log, *arguments, "--method", "loso", "-o", str(output)])
    message = str(raised.value.code)
    assert message.startswith("error: ") and "\n" not in message and expected in message, message
    assert list(output.parent.iterdir()) == []  # neither the output nor a partial or scratch file


def test_python_dash_m_runs_the_command_on_standard_input(pipeline, tmp_path):
    """``python -m zerolog detect -``: the log on standard input, as the console script runs it."""
    import subprocess
    import sys

    output = tmp_path / "stdin.parquet"
    params_file = Path(pipeline.paths.models).parent / "params.yaml"
    command = [sys.executable, "-m", "zerolog", "detect", "-", "--system", "openstack", "--pair", "hdfs-openstack",
               "--method", "loso", "--params", str(params_file), "-o", str(output), "--no-progress"]  # fmt: skip
    done = subprocess.run(command, input=gzip.decompress(DEVSTACK.read_bytes()), capture_output=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPOSITORY / "src")})  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"zerolog detect: <stdin>" in done.stdout
    found = pd.read_parquet(output).set_index("session_id")
    loso = ArtifactPaths(pipeline.paths).score_file("loso", "", "openstack", pipeline.seeds[0])
    stage = _stage_scores(pipeline, loso, "openstack")
    assert sorted(found.index) == sorted(stage.index)
    np.testing.assert_allclose(found.loc[stage.index, "score"].to_numpy(), stage["score"].to_numpy(), rtol=1e-9)


# ----------------------------------------------------------------------------- registry and serving


@pytest.fixture(scope="module")
def registered(pipeline) -> dict:
    """The report stage's registration of openstack's recommended detector (bgl's, a raw dataset too, is not needed)."""
    import logging
    import warnings

    from zerolog.detection.registry import register_recommended

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("mlflow").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            entries = register_recommended(["openstack"], pipeline.mlflow, ArtifactPaths(pipeline.paths),
                                           pipeline.detect, pipeline.parse.chunk_bytes)  # fmt: skip
    finally:
        logging.getLogger("mlflow").removeHandler(handler)
    said = [str(warning.message) for warning in caught] + [record.getMessage() for record in records]
    assert not [text for text in said if "pickle" in text.lower()], said  # models-from-code: nothing is pickled
    return entries["openstack"]


def test_registered_detector_is_reused_and_detect_reads_its_uri(pipeline, registered, tmp_path):
    from zerolog.detection.registry import register_recommended

    assert registered["uri"] == f"models:/zerolog-openstack/{registered['version']}"
    again = register_recommended(["openstack"], pipeline.mlflow, ArtifactPaths(pipeline.paths), pipeline.detect,
                                 pipeline.parse.chunk_bytes)["openstack"]  # fmt: skip
    assert again["version"] == registered["version"]  # same bundle: no new version
    output = tmp_path / "registered.parquet"
    _run_command(pipeline, [str(DEVSTACK), "--system", "openstack", "--model", registered["uri"], "-o", str(output)])
    found = pd.read_parquet(output)
    expected = _detect(pipeline, "hdfs-openstack", "loso", "openstack", [str(DEVSTACK)], tmp_path / "p.parquet")
    assert found["session_id"].tolist() == expected["session_id"].tolist()
    np.testing.assert_allclose(found["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-12)
    with pytest.raises(SystemExit) as raised:
        _run_command(pipeline, [str(DEVSTACK), "--system", "bgl", "--model", registered["uri"], "-o",
                                str(tmp_path / "x")])  # fmt: skip
    assert "trained for system 'openstack', not 'bgl'" in str(raised.value.code)
    assert not (tmp_path / "x").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_mlflow_models_serve_answers_raw_lines_with_session_scores(pipeline, registered, tmp_path):
    """A real ``mlflow models serve`` of the registered model on 127.0.0.1, a JSON request of raw log lines."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    lines = gzip.decompress(DEVSTACK.read_bytes()).decode("utf-8").splitlines()[:400]
    log = tmp_path / "request.log"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = _detect(pipeline, "hdfs-openstack", "loso", "openstack", [str(log)], tmp_path / "e.parquet")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", registered["uri"], "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    environment = {**os.environ, "MLFLOW_TRACKING_URI": pipeline.mlflow.tracking_uri,
                   "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    server = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer /ping within 180 s"
            time.sleep(1)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", method="POST",
                                         data=json.dumps({"inputs": lines}).encode("utf-8"),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as answer:
            predictions = json.loads(answer.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    served = pd.DataFrame(predictions)
    assert served["session_id"].tolist() == expected["session_id"].tolist()
    np.testing.assert_allclose(served["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-9)
    assert served["flagged"].tolist() == expected["flagged"].tolist()


def test_a_recommended_detector_without_a_persisted_form_is_recorded_and_detect_says_why(tmp_path):
    """The selection may find no recipe for a system (here: none can cut it and no reference can judge another):
    the stage still writes its declared output (a record of why), and reading the detector fails in one line with
    that reason."""
    from evaluation_fixtures import write_tensors

    from zerolog.errors import DataError

    params = make_params(tmp_path, {"evaluate.methods": ["zerolog", "template_rarity", "loso"],
                                    "evaluate.baselines": ["template_rarity"], "selection.members": ["template_rarity"],
                                    "selection.sizes": [1], "selection.cuts": ["no_such_cut"],
                                    "selection.fallback": "template_rarity|rank|mean|no_such_cut"})  # fmt: skip
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.15, seed=2)
    call_stage("baselines", params, "bgl")
    call_stage("selection", params, "bgl")
    folder = ArtifactPaths(params.paths).detector("bgl")
    with pytest.raises(DataError, match="no detector to apply .*fallback cannot cut this system") as caught:
        read_bundle(folder)
    assert "\n" not in str(caught.value)


def test_detect_on_a_dask_local_cluster_gives_the_in_process_rows(pipeline, tmp_path):
    """Issue 14: detect's chunk map on dask.distributed (a LocalCluster of 2 workers, the Drain state shared with
    them) gives the same rows as parsing in this process."""
    logs = [str(DEVSTACK)]
    alone = _detect(pipeline, "hdfs-openstack", "loso", "openstack", logs, tmp_path / "alone.parquet")
    on_dask = _detect(
        pipeline,
        "hdfs-openstack",
        "loso",
        "openstack",
        logs,
        tmp_path / "dask.parquet",
        workers=2,
        backend="dask",
        chunk_bytes=200_000,
    )  # several chunks: real work for the workers
    pd.testing.assert_frame_equal(on_dask, alone)


@pytest.mark.parametrize("events", ["first_line", "each_line"])
def test_multiline_records_give_the_same_rows_whatever_the_chunks(pipeline, tmp_path, events):
    """Tracebacks under DevStack records, read in chunks cut inside them: the rows equal one chunk's, each_line
    counts the traceback lines as events of their record's instance, first_line does not."""
    lines = gzip.decompress(DEVSTACK.read_bytes()).splitlines(keepends=True)[:3_000]
    traceback = b"Traceback (most recent call last):\n  raise Timeout()\nnova.exception.Timeout - no reply\n"
    log = tmp_path / "nova.log"
    log.write_bytes(
        b"".join(
            line + (traceback if b"[instance: " in line and position % 5 == 0 else b"")
            for position, line in enumerate(lines)
        )
    )
    detector = from_pipeline(pipeline, "openstack", "hdfs-openstack", "loso", pipeline.detect.top_templates)
    multiline = MultilineRule(start="header", events=events)
    detector = dataclasses.replace(detector, context=dataclasses.replace(detector.context, multiline=multiline))
    rows = {}
    for chunk_bytes in (10**8, 3_000):
        output = tmp_path / f"{chunk_bytes}.parquet"
        result = run_detect(detector, [str(log)], output, _options(pipeline, chunk_bytes=chunk_bytes))
        rows[chunk_bytes] = pd.read_parquet(output)
        assert result.counts.total("continuation") >= traceback.count(b"\n") * 100
        assert result.counts.total("unmatched") == 0
    pd.testing.assert_frame_equal(rows[3_000], rows[10**8])
    plain = _detect(pipeline, "hdfs-openstack", "loso", "openstack", [str(log)], tmp_path / "plain.parquet")
    extra = rows[10**8]["events"].sum() - plain["events"].sum()  # the pipeline's detector reads first_line
    assert extra > 0 if events == "each_line" else extra == 0


def test_a_folder_of_runs_with_empty_files_is_read_and_an_all_empty_input_fails(pipeline, tmp_path):
    """A folder input whose runs hold empty service logs (the dataset's empty_files: skip): they are counted, the
    others scored; a folder of empty files alone is one line naming the first."""
    runs = REPOSITORY / "tests" / "fixtures" / "nova_runs" / "runs"
    detector = from_pipeline(pipeline, "openstack", "hdfs-openstack", "loso", pipeline.detect.top_templates)
    result = run_detect(detector, [str(runs)], tmp_path / "runs.parquet", _options(pipeline))
    empty = [path for path in runs.rglob("*.log") if path.stat().st_size == 0]
    assert sum(entry["lines"] == 0 for entry in result.counts.files) == len(empty) > 0
    assert result.counts.total("continuation") == 4 * len(list(runs.iterdir()))  # the wrapped warning's lines
    assert len(pd.read_parquet(tmp_path / "runs.parquet")) > 0
    folder = tmp_path / "empty_runs"
    for run in ("a", "b"):
        (folder / run).mkdir(parents=True)
        (folder / run / "nova.log").write_bytes(b"")
    with pytest.raises(DataError, match=r"^every one of the 2 input files is empty \("):
        run_detect(detector, [str(folder)], tmp_path / "none.parquet", _options(pipeline))
    assert not (tmp_path / "none.parquet").exists()
