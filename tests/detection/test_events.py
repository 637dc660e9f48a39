"""``zerolog detect`` on raw lines of systems whose dataset is pre-parsed (src/zerolog/detection/events.py, the
template table of known_templates.WildcardTable): HDFS's DeepLog sessions and BGL's events, on the real 2k samples.

The detectors come from the stages as ``dvc repro`` runs them (conftest.make_params: tiny models, short runs), on
the default systems' pre-parsed datasets (hdfs_deeplog, bgl_100k).
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPOSITORY, call_stage, make_params

from zerolog.config import Params
from zerolog.data.datasets import read_template_table
from zerolog.data.known_templates import WildcardTable
from zerolog.data.parse import grouping_accuracy
from zerolog.detection.detect import DetectOptions, run_detect
from zerolog.detection.loading import from_pipeline

BUNDLED = REPOSITORY / "data" / "bundled"
#: system -> (its pre-parsed dataset, its template file, the raw 2k sample, loghub's structured 2k sample)
SAMPLES = {
    "hdfs": ("hdfs_deeplog", "HDFS/HDFS_templates.csv", "HDFS/HDFS_2k.log", "HDFS/HDFS_2k.log_structured.csv"),
    "bgl": ("bgl_100k", "BGL/BGL_100k_templates.csv", "BGL/BGL_2k.log", "BGL/BGL_2k.log_structured.csv"),
}


@pytest.mark.parametrize(("system", "accuracy"), [("hdfs", 1.0), ("bgl", 0.987)])
def test_template_table_groups_raw_messages_as_loghub_did(system, accuracy):
    """Every message of the 2k sample fits a template of the dataset's table, grouped as loghub's own templates of
    the sample group it (grouping accuracy; measured 1.0 on HDFS, 0.987 on BGL, whose two tables differ)."""
    _, templates, _, structured = SAMPLES[system]
    table = WildcardTable(list(read_template_table(BUNDLED / templates).values()))
    frame = pd.read_csv(BUNDLED / structured)
    found = [table.match(content) for content in frame["Content"].astype(str)]
    assert all(text is not None for text in found)
    assert grouping_accuracy(found, frame["EventId"].tolist()) >= accuracy


def test_the_most_specific_template_wins_and_matching_is_linear():
    table = WildcardTable(["<*> failed <*>", "disk <*> failed on node <*>", "<*>"])
    assert table.match("disk  sda1 failed on node  7") == "disk <*> failed on node <*>"
    assert table.match("job 3 failed now") == "<*> failed <*>"
    assert WildcardTable(["a<*>b<*>c"]).match("a" + "b" * 100_000) is None  # no backtracking: one scan


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Params:
    """download -> ... -> baselines of hdfs (hdfs_deeplog) and bgl (bgl_100k), then each one's recipe chosen on the
    other (selection)."""
    params = make_params(tmp_path_factory.mktemp("preparsed"), {
        "embed.method": "hashing", "pairs": {"hdfs-bgl": {"sources": ["hdfs"], "target": "bgl"},
                                             "bgl-hdfs": {"sources": ["bgl"], "target": "hdfs"}},
        "paper.pairs": ["hdfs-bgl"]})  # fmt: skip
    for system in SAMPLES:
        dataset = SAMPLES[system][0]
        for stage in ("download", "parse", "sessionize"):
            call_stage(stage, params, dataset)
    call_stage("embed", params)
    for system in SAMPLES:
        call_stage("tensors", params, system)
        call_stage("baselines", params, system)
    for system in SAMPLES:
        call_stage("selection", params, system)
    return params


@pytest.mark.parametrize(("system", "pair", "session_count"), [("hdfs", "bgl-hdfs", None), ("bgl", "hdfs-bgl", 100)])
def test_detect_scores_raw_lines_of_a_preparsed_system(pipeline, tmp_path, system, pair, session_count):
    """HDFS_2k.log by block and BGL_2k.log in windows of 20 lines: every session scored, no line unmatched, and a
    line is new exactly when its message fits none of the templates the detector was fit on."""
    _, _, sample, structured = SAMPLES[system]
    detector = from_pipeline(pipeline, system, pair, "loso", pipeline.detect.top_templates)
    options = DetectOptions(
        top_templates=3, partition_bytes=pipeline.detect.partition_bytes, chunk_bytes=50_000, progress=False
    )  # several chunks
    result = run_detect(detector, [str(BUNDLED / sample)], tmp_path / "out.parquet", options)
    rows = pd.read_parquet(tmp_path / "out.parquet")
    if session_count is None:  # HDFS: one session per block named in the sample
        session_count = len(pd.read_csv(BUNDLED / "HDFS/HDFS_2k_block_labels.csv"))
    assert len(rows) == session_count and rows["score"].notna().all()
    assert result.counts.total("unmatched") == 0 and result.counts.total("parsed") == 2000
    assert detector.known.table is not None
    contents = pd.read_csv(BUNDLED / structured)["Content"].astype(str)
    new_lines = sum(detector.known.table.match(content) is None for content in contents)
    assert sum(result.counts.new_template_events.values()) == new_lines
    # measured: 5 of 2,000 lines (HDFS: 28 templates in the sessions), 809 (BGL: 52 of the table's 378)
    assert new_lines < (20 if system == "hdfs" else 1000)


def test_preparsed_systems_detectors_are_registered_with_their_data(pipeline):
    """The report stage registers HDFS's and BGL's recommended detectors too (their bundles read raw lines through
    the template table); each version leads to its run, and the run to the bundle it holds (an MLflow dataset). The
    registered model, registered without an input example, scores raw lines."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from zerolog.artifacts import ArtifactPaths
    from zerolog.detection.registry import register_recommended

    entries = register_recommended(list(SAMPLES), pipeline.mlflow, ArtifactPaths(pipeline.paths), pipeline.detect,
                                   pipeline.parse.chunk_bytes)  # fmt: skip
    client = MlflowClient(tracking_uri=pipeline.mlflow.tracking_uri, registry_uri=pipeline.mlflow.tracking_uri)
    for system, entry in entries.items():
        assert entry["version"] is not None, entry
        version = client.get_model_version(entry["name"], entry["version"])
        run = client.get_run(version.run_id)
        assert run.info.run_name == f"register {system}" and run.data.tags["target"] == system
        (dataset,) = [item.dataset for item in run.inputs.dataset_inputs]
        assert dataset.name == f"target-{system}/detector" and len(dataset.digest) == 32
        mlflow.set_registry_uri(pipeline.mlflow.tracking_uri)
        lines = (BUNDLED / SAMPLES[system][2]).read_text(encoding="utf-8").splitlines()[:200]
        assert len(mlflow.pyfunc.load_model(entry["uri"]).predict(lines)) > 0
