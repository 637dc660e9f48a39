"""Stage report: the results table, notes, published figures, heatmap, MLflow run, README block."""

from pathlib import Path

import numpy as np
import pytest
from conftest import call_stage
from evaluation_fixtures import build_pair, make_params, write_tensors, write_train_status

from zerolog.artifacts import ArtifactPaths
from zerolog.errors import DataError
from zerolog.report import (
    README_END,
    README_START,
    ReportSettings,
    compute_report,
    f1_matrix,
    load_report_inputs,
    read_pair_metrics,
    replace_between_markers,
    update_readme_results,
)


def settings_of(params) -> ReportSettings:
    return ReportSettings(params.pairs, params.evaluate)


def pair_metrics(params) -> dict:
    return read_pair_metrics(settings_of(params), ArtifactPaths(params.paths))


SKIP_REASON = "no usable source (source openstack: 0 labeled anomalies in its train split)"


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    """Every pair of params evaluated from generated inputs: HDFS and BGL targets evaluable, OpenStack not
    (2 test anomalies), OpenStack-only sources skipped; then the report stage."""
    params = make_params(
        tmp_path_factory.mktemp("reported"),
        {
            "protocols": ["realistic"],  # paper: test_paper.py
            "selection.min_val_anomalies": 1,
        },
    )
    write_tensors(params, "hdfs", sessions=500, anomaly_share=0.1, seed=1)
    write_tensors(params, "bgl", sessions=500, anomaly_share=0.1, seed=2, levels=True)  # HDFS's data has no levels
    write_tensors(params, "openstack", sessions=300, anomaly_share=0.0, seed=3, test_anomalies=2)
    for system in ("hdfs", "bgl", "openstack"):
        call_stage("baselines", params, system)
    for system in ("hdfs", "bgl", "openstack"):  # each judged on the others
        call_stage("selection", params, system)
    for pair, config in params.pairs.items():
        if config.sources == ["openstack"]:
            write_train_status(params, pair, status="skipped", reason=SKIP_REASON, methods={})
        else:
            build_pair(params, pair)
        call_stage("evaluate", params, pair)
    call_stage("report", params)
    return params


def _results(params) -> str:
    return (Path(params.paths.reports) / "results.md").read_text(encoding="utf-8")


def test_table_has_every_pair_and_method_with_the_data_measured_on(reported):
    text = _results(reported)
    metrics = pair_metrics(reported)
    header = next(line for line in text.splitlines() if line.startswith("| pair | status | measured on"))
    for method in reported.evaluate.methods:
        assert method in header
    assert "supervised_target (ORACLE)" in header
    table = text.split("## F1 per pair and method")[1]  # after the headline table
    for pair, result in metrics.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {pair} |"))
        test = result["test"]
        assert f"{result['dataset']}: {test['size']} test, {test['anomalies']} anomalous" in row
        assert row.split(" | ")[1] == result["status"].replace("_", " ")
        if result["status"] == "evaluated":
            f1 = result["methods"]["zerolog"]["f1"]
            low, high = result["methods"]["zerolog"]["f1_ci"]
            assert f"{f1:.3f} [{low:.3f}, {high:.3f}]" in row
        else:
            assert row.count("| – ") == len(reported.evaluate.methods)


def test_details_name_rules_auc_and_precision_recall(reported):
    text = _results(reported)
    metrics = pair_metrics(reported)["hdfs-bgl"]["methods"]
    zerolog = metrics["zerolog"]
    assert zerolog["threshold_rule"] == "pi_hat"  # params: the transfer methods' headline rule
    line = next(row for row in text.split("### hdfs-bgl")[1].splitlines() if row.startswith("| zerolog | `pi_hat`"))
    for key in ("precision", "recall", "f1", "pr_auc", "roc_auc"):
        assert f"{zerolog[key]:.3f}" in line
    assert "| supervised_target (ORACLE) | `target_val` |" in text
    assert "`target_mixture`" in text and "`target_quantile`" in text and "`fixed_0.5`" in text


def test_not_evaluable_and_skipped_pairs_are_listed_with_reasons(reported):
    text = _results(reported)
    section = text.split("## Pairs not evaluated")[1].split("##")[0]
    assert "**hdfs-openstack** (not evaluable)" in section and "2 labeled anomalies" in section
    assert f"**openstack-bgl** (skipped): {SKIP_REASON}" in section
    assert "**hdfs-bgl**" not in section


def test_published_figures_and_the_subset_note(reported):
    text = _results(reported)
    for figure in ("81.12%", "79.34%", "73.59%", "71.34%", "F1 > 0.80"):
        assert figure in text
    assert "full HDFS_v1, BGL and OpenStack datasets" in text and "bundled subsets" in text
    ours = pair_metrics(reported)["hdfs-bgl"]["methods"]["zerolog"]
    row = next(line for line in text.splitlines() if line.startswith("| hdfs-bgl | > 0.80"))
    assert "| 81.12% |" in row and row.endswith(f"{ours['f1']:.3f} [{ours['f1_ci'][0]:.3f}, {ours['f1_ci'][1]:.3f}], "
                                                 f"P {ours['precision']:.2f} |")  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith("| openstack-bgl | > 0.80"))
    assert "| 73.59% |" in row and row.endswith("| skipped | skipped |") and "not measured" in row  # paper: off


def test_heatmap_is_a_png_and_nan_where_not_evaluated(reported):
    data = (Path(reported.paths.reports) / "f1_heatmap.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    results = pair_metrics(reported)
    matrix = f1_matrix(results, reported.evaluate.methods)
    pairs = list(results)
    assert np.isnan(matrix[pairs.index("hdfs-openstack")]).all()
    evaluated = [
        results["hdfs-bgl"]["methods"][method]["status"] == "evaluated" for method in reported.evaluate.methods
    ]
    assert list(~np.isnan(matrix[pairs.index("hdfs-bgl")])) == evaluated  # NaN = not available (e.g. no loglead)


def test_level_rule_is_a_column_of_the_table(reported):
    text = _results(reported)
    entry = pair_metrics(reported)["hdfs-bgl"]["methods"]["level_rule"]
    assert entry["threshold_rule"] == "detector" and entry["oracle"] is False  # its own decision: a flagged line
    row = next(line for line in text.splitlines() if line.startswith("| hdfs-bgl |"))
    assert f"{entry['f1']:.3f}" in row


def test_headline_names_the_recommended_detector_the_best_baselines_and_pi_hat(reported):
    """The headline row: the recommended detector, zerolog, the best OTHER target-only detector and the best rule
    by test F1 (named), the oracle, pi-hat beside the true test share; kinds listed under the full table."""
    text = _results(reported)
    result = pair_metrics(reported)["hdfs-bgl"]
    recommended = reported.evaluate.recommended
    assert result["recommended"] == recommended
    header = next(line for line in text.splitlines() if line.startswith("| pair | measured on | recommended:"))
    assert f"recommended: {recommended}" in header and "pi-hat" in header and "true share (test)" in header
    cells = next(line for line in text.splitlines() if line.startswith("| hdfs-bgl | ")).split(" | ")
    methods = result["methods"]
    assert (
        cells[2].startswith(f"{methods[recommended]['f1']:.3f}")
        and cells[3].startswith(f"{methods['pca_mixture']['f1']:.3f}")
        and cells[4].startswith(f"{methods['zerolog']['f1']:.3f}")
    )
    assert f"bgl: `{methods[recommended]['detector']}`" in text  # the recipe the selection chose
    others = {method: entry["f1"] for method, entry in methods.items() if entry.get("kind") == "target_only"
              and method != recommended and entry.get("status") == "evaluated"}  # fmt: skip
    best = max(others, key=others.get)
    assert cells[5].startswith(f"{best}: {others[best]:.3f}")
    assert cells[6].startswith(f"level_rule: {methods['level_rule']['f1']:.3f}")
    assert cells[7].startswith(f"{methods['supervised_target']['f1']:.3f}")
    pi_hat = result["pi_hat"]
    assert pi_hat["method"] == recommended and 0 < pi_hat["estimate"] < 1
    assert cells[8] == f"{pi_hat['estimate']:.3f}" and cells[9] == f"{pi_hat['true_share_test']:.3f} |"
    not_evaluable = next(line for line in text.splitlines() if line.startswith("| hdfs-openstack | "))
    assert "| not evaluable |" in not_evaluable
    assert "Kinds: selected: loso; transfer: zerolog" in text and "oracle: supervised_target" in text


def test_report_run_holds_both_artifacts(reported):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=reported.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(reported.mlflow.experiment)
    (run,) = client.search_runs([experiment.experiment_id], "tags.stage = 'report' and attributes.run_name = 'report'")
    names = {artifact.path for artifact in client.list_artifacts(run.info.run_id, "report")}
    assert names == {"report/results.md", "report/f1_heatmap.png"}
    zerolog = pair_metrics(reported)["hdfs-bgl"]["methods"]["zerolog"]["f1"]
    assert run.data.metrics["f1/hdfs-bgl/zerolog"] == pytest.approx(zerolog)


def test_the_core_computes_the_written_report_and_its_metrics_from_the_inputs_alone(reported):
    inputs = load_report_inputs(settings_of(reported), ArtifactPaths(reported.paths))
    result = compute_report(settings_of(reported), inputs)
    assert result.markdown == _results(reported)
    assert result.metrics()["f1/hdfs-bgl/zerolog"] == pytest.approx(
        inputs.results["hdfs-bgl"]["methods"]["zerolog"]["f1"]
    )
    assert not any(key.startswith("f1/hdfs-openstack/") for key in result.metrics())  # not evaluable: no number


def test_report_registers_each_targets_detector_with_its_run_and_data(reported):
    """After the report stage the registry holds every target's recommended detector (HDFS and BGL, pre-parsed by
    default, included); each version's run names its target and logs the bundle as its dataset (dvc.lock's md5, or
    the md5 of its files outside a DVC repository)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=reported.mlflow.tracking_uri, registry_uri=reported.mlflow.tracking_uri)
    registered = {}
    for system in ("hdfs", "bgl", "openstack"):
        versions = client.search_model_versions(f"name = 'zerolog-{system}'")
        registered[system] = max(versions, key=lambda version: int(version.version)) if versions else None
    assert registered["hdfs"] is not None and registered["bgl"] is not None, registered
    for system, version in registered.items():
        if version is None:
            continue
        run = client.get_run(version.run_id)
        assert run.data.tags["target"] == system and run.info.run_name == f"register {system}"
        (dataset,) = [item.dataset for item in run.inputs.dataset_inputs]
        assert dataset.name == f"target-{system}/detector" and len(dataset.digest) == 32


def test_readme_block_is_replaced_between_markers(reported, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{README_START}\nold table\n{README_END}\n\nafter\n", encoding="utf-8")
    update_readme_results(settings_of(reported), ArtifactPaths(reported.paths), readme)
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text and text.startswith("# title") and text.endswith("after\n")
    assert "| pair | status | measured on" in text.split(README_START)[1].split(README_END)[0]


@pytest.mark.parametrize(
    "content", ["# no markers\n", f"{README_END}\n{README_START}\n", f"{README_START}\n{README_START}\n{README_END}\n"]
)
def test_readme_without_proper_markers_fails_and_stays_untouched(reported, tmp_path, content):
    readme = tmp_path / "README.md"
    readme.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="README.md"):
        update_readme_results(settings_of(reported), ArtifactPaths(reported.paths), readme)
    assert readme.read_text(encoding="utf-8") == content


def test_replace_between_markers_names_the_missing_marker():
    with pytest.raises(DataError, match="results:end"):
        replace_between_markers(f"{README_START}\n", "table", "README.md")


def test_missing_pair_metrics_is_a_data_error(tmp_path):
    params = make_params(tmp_path)
    with pytest.raises(DataError, match="hdfs-bgl.json: file not found"):
        call_stage("report", params)
