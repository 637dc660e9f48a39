"""The stage table and the dvc.yaml generated from it: honest params and code deps, per-pair inputs, no drift."""

from __future__ import annotations

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from conftest import REPOSITORY, call_stage, make_params

from zerolog.config import PairConfig
from zerolog.config_loader import load_params, parse_params, read_yaml
from zerolog.errors import ConfigError
from zerolog.params_access import RecordingParams, minimal_keys, unwrap
from zerolog.pipeline_file import import_closure, pipeline_definition, render
from zerolog.stages import STAGES, stage_named


def _definition(params) -> dict:
    return pipeline_definition(params, REPOSITORY)["stages"]


def test_committed_dvc_yaml_is_what_params_and_code_give() -> None:
    """Editing params.yaml's systems/datasets/pairs or a stage's imports without regenerating dvc.yaml fails here."""
    params = load_params(REPOSITORY / "params.yaml")
    committed = (REPOSITORY / "dvc.yaml").read_text(encoding="utf-8")
    assert committed == render(params, REPOSITORY), "dvc.yaml is stale: run `python -m zerolog.pipeline_file`"


def test_every_stage_has_its_script() -> None:
    for stage in STAGES:
        script = REPOSITORY / "pipeline" / f"{stage.name}.py"
        assert script.is_file() and f'run_stage("{stage.name}"' in script.read_text(encoding="utf-8")


def test_recorded_params_are_the_keys_a_stage_picks() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    stages = _definition(params)
    assert stages["train-hdfs-bgl"]["params"] == [
        "evaluate.detectors.pca.variance", "evaluate.detectors.pca.weighting", "mlflow", "pairs.hdfs-bgl", "seed",
        "seeds", "train",
    ]  # fmt: skip  # zerolog_adapt's target detector: pca_mixture's PCA settings and the mixture's seed
    assert stages["parse-hdfs_logs"]["params"] == [
        "datasets.hdfs_logs", "parse", "systems.hdfs.drain", "systems.hdfs.log_format",
        "systems.hdfs.regex", "systems.hdfs.timestamp",
    ]  # fmt: skip
    assert "evaluate" in stages["evaluate-hdfs-bgl"]["params"] and "train" not in stages["evaluate-hdfs-bgl"]["params"]


def test_recording_keeps_the_depth_at_which_a_value_leaves_the_view() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    view = RecordingParams(params)
    picked = {"whole": view.train, "leaf": view.systems["bgl"].regex, "seed": view.seed}
    unwrap(picked)
    assert minimal_keys(view.recorded) == ["seed", "systems.bgl.regex", "train"]


def test_code_deps_are_the_import_closure_and_respect_the_layers() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    stages = _definition(params)
    train = stages["train-hdfs-bgl"]["deps"]
    assert {"pipeline/train.py", "src/zerolog/training/loop.py", "src/zerolog/model/encoder.py",
            "src/zerolog/artifacts.py"} <= set(train)  # fmt: skip
    assert not any("evaluation/" in dep for dep in train)
    evaluate = stages["evaluate-hdfs-bgl"]["deps"]
    assert "src/zerolog/evaluation/thresholds.py" in evaluate and not any("training/" in dep for dep in evaluate)
    assert not any(
        dep.endswith(("stages.py", "pipeline_file.py")) for stage in stages.values() for dep in stage["deps"]
    )
    closure = {path.name for path in import_closure("zerolog.metrics")}
    assert closure == {"__init__.py", "metrics.py", "errors.py"}


def test_models_from_code_scripts_are_declared_where_they_are_logged() -> None:
    """The scripts MLflow runs (never imported, so outside the import closure) are deps of the stages that log them."""
    from zerolog import tracking
    from zerolog.detection import registry
    from zerolog.stages import NETWORK_CODE, SERVED_MODEL_CODE

    stages = _definition(load_params(REPOSITORY / "params.yaml"))
    assert tracking.NETWORK_CODE == REPOSITORY / NETWORK_CODE
    assert registry.SERVED_MODEL == REPOSITORY / SERVED_MODEL_CODE
    assert str(NETWORK_CODE) in stages["train-hdfs-bgl"]["deps"] and str(SERVED_MODEL_CODE) in stages["report"]["deps"]


def test_a_pair_depends_on_its_own_systems_only() -> None:
    params = load_params(REPOSITORY / "params.yaml")
    stages = _definition(params)
    data = lambda name: [dep for dep in stages[name]["deps"] if dep.startswith(params.paths.tensors)]  # noqa: E731
    assert data("train-hdfs-bgl") == [f"{params.paths.tensors}/hdfs", f"{params.paths.tensors}/bgl"]
    assert data("train-bgl_openstack-hdfs") == [f"{params.paths.tensors}/{s}" for s in ("bgl", "openstack", "hdfs")]


def _with_new_system(tmp_path: Path) -> tuple[dict, dict]:
    """The stage graph of params.yaml, and of params.yaml plus a system `zookeeper` and its pairs (added by params)."""
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    before = _definition(parse_params(raw))
    raw["systems"]["zookeeper"] = {**raw["systems"]["hdfs"], "dataset": "zookeeper_logs"}
    raw["datasets"]["zookeeper_logs"] = {**raw["datasets"]["hdfs_logs"], "system": "zookeeper"}
    raw["datasets"]["zookeeper_logs"].pop("loghub")
    raw["pairs"]["hdfs-zookeeper"] = {"sources": ["hdfs"], "target": "zookeeper"}
    raw["pairs"]["zookeeper-bgl"] = {"sources": ["zookeeper"], "target": "bgl"}
    return before, _definition(parse_params(raw))


def test_adding_a_system_touches_only_its_stages_its_pairs_and_the_summaries(tmp_path: Path) -> None:
    """What DVC reruns after a system is added: the new system's own stages, its pairs, embed and report (whose
    inputs grow), and every system's selection (the new system is one more reference, leave-one-system-out). Every
    existing train/evaluate/baselines/tensors entry is unchanged, so those rerun only if their
    input files change (embedding each template alone keeps the existing systems' vectors, and tensors, identical)."""
    before, after = _with_new_system(tmp_path)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {
        "download-zookeeper_logs", "parse-zookeeper_logs", "sessionize-zookeeper_logs", "tensors-zookeeper",
        "baselines-zookeeper", "train-hdfs-zookeeper", "train-zookeeper-bgl", "evaluate-hdfs-zookeeper",
        "evaluate-zookeeper-bgl", "embed", "report",
        "selection-hdfs", "selection-bgl", "selection-openstack", "selection-zookeeper",
    }  # fmt: skip
    assert set(before) <= set(after)


def test_a_mistyped_key_in_a_dataset_is_the_projects_one_line_error(tmp_path: Path) -> None:
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    raw["datasets"]["hdfs_logs"]["sytem"] = raw["datasets"]["hdfs_logs"].pop("system")
    with pytest.raises(ConfigError, match=r"datasets\.hdfs_logs\.sytem: unknown key"):
        parse_params(raw)


def test_stage_names_are_dvc_names_and_unknown_items_are_refused(tmp_path: Path) -> None:
    params = make_params(tmp_path)
    names = list(_definition(params))
    assert all(set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-") for name in names)
    with pytest.raises(ConfigError, match="pair 'nowhere' is not in params"):
        stage_named("train").call(params, "nowhere")
    clash = dataclasses.replace(params, pairs={**params.pairs, "bgl_openstack-hdfs": PairConfig(["bgl"], "hdfs")})
    with pytest.raises(ConfigError, match="twice"):
        pipeline_definition(clash, REPOSITORY)


def test_generated_file_is_valid_yaml_with_a_header() -> None:
    text = (REPOSITORY / "dvc.yaml").read_text(encoding="utf-8")
    assert text.startswith("# GENERATED")
    assert set(yaml.safe_load(text)) == {"stages"}


@pytest.mark.parametrize("dataset", ["openstack_devstack", "hdfs_logs"])
def test_download_and_parse_run_through_their_declared_views(tmp_path: Path, dataset: str) -> None:
    # Regression: both stages once read params through keys their declaration does not name (datasets.get,
    # Params.dataset_system on a system whose `dataset` key parse does not declare), so `dvc repro` failed at once.
    params = make_params(tmp_path)
    call_stage("download", params, dataset)
    call_stage("parse", params, dataset)
    assert (Path(params.paths.parsed) / dataset / "lines.parquet").exists()


def test_an_error_about_a_downloaded_copy_names_the_file_the_user_edits(tmp_path: Path) -> None:
    from zerolog.artifacts import ArtifactPaths, with_origins

    params = make_params(tmp_path)
    stage_named("download").call(params, "hdfs_logs")
    copy = Path(params.paths.raw) / "hdfs_logs" / "HDFS_2k.log"
    message = with_origins(f"{copy}: line 7: unreadable", ArtifactPaths(params.paths))
    assert message == f"{copy} (a copy of {Path(params.paths.bundled) / 'HDFS' / 'HDFS_2k.log'}): line 7: unreadable"


LAYERS = ("data", "features", "model", "training", "evaluation", "detection")  # docs/architecture.md's order


def _imported_layers(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        imported.update(name.split(".")[1] for name in names if name.startswith("zerolog.") and "." in name)
    return imported


def test_every_layer_imports_only_its_own_and_the_ones_before_it() -> None:
    package = REPOSITORY / "src" / "zerolog"
    climbs = [
        f"{path.relative_to(package)} imports zerolog.{other}"
        for layer in LAYERS
        for path in sorted((package / layer).glob("*.py"))
        for other in _imported_layers(path)
        if other in LAYERS and LAYERS.index(other) > LAYERS.index(layer)
    ]
    assert not climbs


def test_every_row_reaches_its_three_functions_in_one_hop() -> None:
    """A stage's module holds ``<name>_section``, ``load_<name>_inputs`` and ``compute_<name>``: the runner's shape."""
    for stage in STAGES:
        module = importlib.import_module(stage.module)
        for function in (f"{stage.name}_section", f"load_{stage.name}_inputs", f"compute_{stage.name}"):
            assert callable(getattr(module, function, None)), f"{stage.module} lacks {function}"
