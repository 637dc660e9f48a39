"""Shared test fixtures: the repository's params.yaml made small and pointed at a temporary folder, and a way to run
a stage exactly as ``pipeline/<stage>.py`` does (through the stage table, so only its declared params reach it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zerolog.artifacts import ArtifactPaths, SystemTensors
from zerolog.config import Params
from zerolog.config_loader import parse_params, read_yaml
from zerolog.stages import stage_named

REPOSITORY = Path(__file__).resolve().parents[1]
OUTPUT_PATHS = ("raw", "parsed", "sessions", "features", "tensors", "models", "scores", "metrics", "plots", "reports")


_STORE: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def shared_mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's MLflow store folder (make_params points every test's params at it)."""
    _STORE["folder"] = tmp_path_factory.mktemp("mlflow-store")
    return _STORE["folder"]


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``raw["a"]["b"] = value`` for ``dotted`` ``a.b`` (a params override, as ``dvc exp run -S`` gives it)."""
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value


def make_params(tmp_path: Path, overrides: dict[str, Any] | None = None) -> Params:
    """The repository's params.yaml with every output under ``tmp_path``, a tiny model and short runs.

    ``overrides`` maps dotted keys to values, applied last.
    """
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    raw["paths"]["bundled"] = str(REPOSITORY / raw["paths"]["bundled"])
    for name in OUTPUT_PATHS:
        raw["paths"][name] = str(tmp_path / name)
    raw["paths"]["checksums"] = str(tmp_path / "checksums.json")
    raw["paths"]["archives"] = str(tmp_path / "archives")
    raw["seeds"] = [42]  # one model seed: tests of the seed contract name more
    raw["evaluate"]["bootstrap"]["samples"] = 50
    raw["evaluate"]["detectors"]["isolation_forest"]["n_estimators"] = 30
    raw["evaluate"]["detectors"]["deeplog"].update({"epochs": 2, "hidden_size": 8, "layers": 1})
    raw["evaluate"]["oracle"]["model"] = "logistic_regression"  # the neural oracle has its own test
    raw["train"].update({"epochs": 1, "max_steps_per_epoch": 3, "batch_size": 32, "device": "cpu", "torch_threads": 1,
                         "method_workers": 1})  # fmt: skip
    raw["train"]["encoder"].update({"hidden_size": 8, "num_layers": 1})
    raw["train"]["domain"]["discriminator_hidden_size"] = 8
    # One MLflow store for the whole session (creating a sqlite store costs seconds); an experiment per test folder.
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{_STORE['folder'] / 'mlflow.db'}"
    raw["mlflow"]["experiment"] = f"test-{tmp_path.name}-{abs(hash(str(tmp_path)))}"
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return parse_params(raw, "params.yaml")


@pytest.fixture
def small_params(tmp_path: Path) -> Params:
    """make_params(tmp_path): the pipeline's own params, small and in a temporary folder."""
    return make_params(tmp_path)


def loso_of(member: str) -> dict[str, object]:
    """Params overrides for tests that run only a few baselines: the selection's recipes made of ``member`` alone."""
    return {"selection.members": [member], "selection.sizes": [1], "selection.fallback": f"{member}|rank|mean|mixture"}


LOSO_PCA = loso_of("pca")


def _output_files(params: Params) -> dict[Path, tuple[int, int]]:
    """Every file under the params' output folders, with its (size, modification time)."""
    roots = [Path(getattr(params.paths, name)) for name in OUTPUT_PATHS]
    return {
        path: (path.stat().st_size, path.stat().st_mtime_ns)
        for root in roots
        if root.exists()
        for path in root.rglob("*")
        if path.is_file()
    }


def call_stage(name: str, params: Params, item: str = "", progress: Any = None) -> Any:
    """Run stage ``name`` for ``item`` as pipeline/<name>.py does (through the stage table and zerolog.runner) and
    return its result; fails when the stage created, changed or removed a file outside its declared outputs."""
    stage = stage_named(name)
    before = _output_files(params)
    result = stage.call(params, item, progress)
    after = _output_files(params)
    declared = [output.path for output in stage.outputs(params, ArtifactPaths(params.paths), item)]
    touched = {path for path in after.keys() | before.keys() if before.get(path) != after.get(path)}
    undeclared = sorted(
        str(path) for path in touched if not any(path == out or out in path.parents for out in declared)
    )
    assert not undeclared, f"stage {name} {item} wrote outside its declared outputs: {undeclared}"
    return result


@pytest.fixture(scope="module")
def systems(tmp_path_factory: pytest.TempPathFactory) -> tuple[SystemTensors, SystemTensors]:
    """Training tests: a source and a target whose tables are noisy copies of each other (same semantics,
    different systems)."""
    from training_fixtures import write_system  # a sibling module of this file (imports torch: only when used)

    root = tmp_path_factory.mktemp("tensors")
    table = np.random.default_rng(7).normal(size=(12, 16)).astype(np.float32)
    source = write_system(root / "source", "source", seed=1, table=table)
    shifted = table + 0.3 * np.random.default_rng(8).normal(size=table.shape).astype(np.float32)
    target = write_system(root / "target", "target", sessions=200, seed=2, table=shifted, anomaly_share=0.2)
    return source, target
