"""MLflow tracking: the ONLY module of zerolog that imports mlflow.

Where runs go: ``mlflow.tracking_uri`` from params, else the environment's ``MLFLOW_TRACKING_URI``, else
``sqlite:///<repository root>/mlflow.db`` with artifacts in ``<repository root>/mlartifacts``. The root is absolute and
is the ORIGINAL repository even inside a ``dvc exp run --temp``/``--queue`` copy (DVC sets ``DVC_ROOT`` to it; a path
inside DVC's experiment folder ``exps`` under ``.dvc`` is recognised as well), so every experiment logs into one store.

One experiment (``mlflow.experiment``), declared a model-training experiment (``EXPERIMENT_KIND_TAG``) and holding
the runs table's default view (``RUNS_VIEW_KEY``: which columns show; ``experiment_url`` opens the UI on it). The
train stage opens one run per pair, method and seed, named ``run_name`` (``<pair> <method> s<seed>``). Each run
carries:
- tags: ``pair``, ``sources``, ``target``, ``method``, ``kind``, ``seed``, ``git_commit`` (``git rev-parse HEAD``
  or ``unknown``), ``git_dirty``, ``dvc_experiment`` (env ``DVC_EXP_NAME`` or ``workspace``), ``inputs_md5`` (md5
  of the stage's input files), and MLflow's own ``mlflow.source.git.commit``;
- params: all of params.yaml as loaded (the validated ``Params``), flattened to dotted keys;
- metrics: per epoch with ``step = epoch``, then the final ones; the evaluate stage logs the test numbers under
  ``HEADLINE_METRICS`` (``f1``, ``roc_auc``, ...) into its run and into the train run of each seed;
- inputs: the data it read as MLflow datasets (``log_datasets``: the DVC output's path as source, its dvc.lock md5 as
  digest, the split sizes as profile), so that the UI's Dataset column and a model's lineage reach the data;
- artifacts: the model (a models-from-code pyfunc over its weights, input example, pinned requirements) and plots.

The Model Registry (``register_detector``): each target's recommended detector is an MLflow pyfunc logged as
models-from-code (``src/zerolog/detection/served_model.py``; no pickle), its bundle folder as an artifact, registered
under ``detect.registered_model``; ``PythonModel`` and ``set_served_model`` are re-exported for that script, so that
mlflow is imported here only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import yaml
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient

from zerolog.config import MlflowConfig, as_dict

DATABASE_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "mlartifacts"
#: The trained network's MLflow models-from-code script, logged by ``Tracker.log_model`` (never imported).
NETWORK_CODE = Path(__file__).resolve().parent / "training" / "served_network.py"
_BATCH_PARAMS = 100  # MLflow's log_batch limit for params per request
_BATCH_METRICS = 1000  # and for metrics
_KEY_CHARACTERS = re.compile(r"[^\w\-. /]")  # characters MLflow does not allow in a param or metric key
#: The experiment tag MLflow 3's UI reads as the experiment's type; ``custom_model_development`` is its "Machine
#: learning" type, whose landing page is the runs table (a GenAI experiment lands on traces).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: MLflow 3.17's UI picks the landing page from its "GenAI / Model training" switch (the URL's ``workflowType``, else
#: the browser's last choice, GenAI at first); ``experiment_url`` sets it to model training.
WORKFLOW_TYPE = "machine_learning"
#: The runs table's default view, stored as the UI stores a shared view (an experiment tag
#: ``mlflow.sharedViewState.<key>``) and opened by ``experiment_url`` (``viewStateShareKey``).
RUNS_VIEW_KEY = "zerolog-runs"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
#: The headline test metrics under stable names: the runs table's columns.
HEADLINE_METRICS = ("f1", "roc_auc", "pr_auc", "precision", "recall")
RUNS_VIEW_TAGS = ("pair", "method", "kind", "seed", "stage")


# ----------------------------------------------------------------------------- where and what


def repository_root(start: str | Path | None = None) -> Path:
    """The original repository's root, absolute (see module docstring)."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    start = Path(start or Path.cwd()).resolve()
    parts = start.parts
    for position in range(len(parts) - 2):
        if parts[position : position + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:position])
    for candidate in (start, *start.parents):
        if (candidate / "dvc.yaml").is_file() or (candidate / ".git").exists():
            return candidate
    return start


def resolve_tracking_uri(config: MlflowConfig) -> str:
    """params ``mlflow.tracking_uri``, else env ``MLFLOW_TRACKING_URI``, else the repository's sqlite store."""
    if config.tracking_uri:
        return config.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{repository_root() / DATABASE_FILE}"


def _artifact_location(tracking_uri: str) -> str | None:
    """For a sqlite store: ``mlartifacts/`` beside the database (absolute). Other stores choose their own."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        return (database.parent / ARTIFACTS_FOLDER).resolve().as_uri()
    return None


def git_commit(root: str | Path | None = None) -> tuple[str, bool]:
    """(HEAD commit or ``unknown``, whether tracked files differ from it)."""
    directory = Path(root or repository_root())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown", bool(status.strip())


def inputs_md5(files: Iterable[str | Path], params: Mapping[str, str] | None = None) -> str:
    """md5 over the given files (sorted by path; each path's name and bytes) and params, identifying a stage's exact
    inputs."""
    digest = hashlib.md5(json.dumps(dict(params or {}), sort_keys=True).encode("utf-8"))
    for path in sorted(Path(file) for file in files):
        digest.update(str(path).encode("utf-8") + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _key(name: str) -> str:
    return _KEY_CHARACTERS.sub("_", name)


def run_name(pair: str, method: str, seed: int | str | None = None) -> str:
    """A run's short name, readable in the runs table: ``<pair> <method>`` and `` s<seed>`` when it has one."""
    return f"{pair} {method}" + (f" s{seed}" if seed is not None else "")


def runs_view() -> dict[str, Any]:
    """The runs table's default view (the UI's shared-view state, keys as MLflow 3.17's runs table names its
    columns): the Dataset and Models columns, the headline metrics and the run tags, newest runs first."""
    columns = [f"metrics.`{name}`" for name in HEADLINE_METRICS] + [f"tags.`{name}`" for name in RUNS_VIEW_TAGS]
    return {
        "selectedColumns": ["attributes.`Dataset`", "attributes.`Models`", *columns],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }


@cache
def _dvc_lock_outputs(lock: Path, modified: float) -> dict[str, str]:
    """dvc.lock's outputs: path -> md5 (``modified``: the file's mtime, so that a rewritten lock is read again)."""
    stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
    return {out["path"]: str(out["md5"]) for stage in stages.values() for out in stage.get("outs", []) if "md5" in out}


def dvc_md5(path: str | Path) -> str | None:
    """The md5 dvc.lock (in the working directory, where DVC runs a stage) records for output ``path``, or None."""
    lock = Path("dvc.lock")
    if not lock.is_file():
        return None
    return _dvc_lock_outputs(lock.resolve(), lock.stat().st_mtime).get(_display_path(Path(path)))  # relative paths


@dataclass(frozen=True)
class InputData:
    """Data a run read: a DVC output folder, what the run used it for (``context``: train, target, test, scores) and
    its profile (e.g. the split sizes)."""

    path: Path
    context: str
    profile: Mapping[str, int]

    def dataset(self) -> Dataset:
        """The MLflow dataset: named ``<folder>/<name>``, source its path, digest dvc.lock's md5 (else the md5 of its
        files, e.g. outside a DVC repository)."""
        files = [path for path in self.path.rglob("*") if path.is_file()] if self.path.is_dir() else [self.path]
        digest = dvc_md5(self.path) or inputs_md5(files)
        return Dataset(
            name=f"{self.path.parent.name}/{self.path.name}",
            digest=digest,
            source_type="local",
            source=json.dumps({"uri": _display_path(self.path)}),
            profile=json.dumps(dict(self.profile)),
        )


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when under it (the repository's own paths), else absolute."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def split_sizes(arrays: Any) -> dict[str, int]:
    """A tensors folder's profile: its session count and the size of each split (a ``SystemTensors``)."""
    sizes = {name: int(arrays.rows(name).size) for name in ("train", "val", "test")}
    return {"sessions": int(arrays.sessions), **sizes}


def flatten_params(params: Any) -> dict[str, str]:
    """A stage's params (a mapping of sections, or a config dataclass) as ``dotted.key -> value`` strings.

    Lists and nulls are JSON. Only what the stage received is logged: MLflow must never show, under a run's params,
    a value that did not produce its numbers.
    """
    flat: dict[str, str] = {}

    def visit(value: Any, prefix: str) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                visit(item, f"{prefix}.{key}" if prefix else str(key))
        elif isinstance(value, str):
            flat[_key(prefix)] = value
        else:
            flat[_key(prefix)] = json.dumps(value)

    visit(as_dict(params), "")
    return flat


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model: torch (what it runs on) plus what zerolog.model imports."""
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in ("torch", "numpy", "pyyaml")]


def _trimmed_sessions(vectors: np.ndarray) -> list[list[list[float]]]:
    """Zero-padded template vectors (sessions, seq_len, dim) as the served network's input: each session's vectors
    up to its last non-zero one."""
    sessions = []
    for session in np.asarray(vectors, dtype=np.float32):
        nonzero = np.flatnonzero(np.abs(session).sum(axis=1) > 0)  # (true events,)
        sessions.append(session[: (nonzero[-1] + 1) if len(nonzero) else 1].tolist())
    return sessions


def detector_requirements() -> list[str]:
    """Pinned requirements of a registered detector: what its bundle is read and scored with (no torch)."""
    names = ("numpy", "pandas", "pyarrow", "scikit-learn", "scipy", "logparser3", "regex", "tqdm", "pyyaml",
             "ruamel.yaml", "psutil")  # fmt: skip
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in names]


def set_served_model(model: PythonModel) -> None:
    """``mlflow.models.set_model``: what a models-from-code script calls to name its model."""
    set_model(model)


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Metrics MLflow can store: numeric and finite (NaN marks 'not defined', e.g. loss/meta of a plain method)."""
    result = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            continue
        if math.isfinite(float(value)):
            result[_key(name)] = float(value)
    return result


# ----------------------------------------------------------------------------- runs


class Tracker:
    """One MLflow store and experiment (from ``MlflowConfig``); runs are addressed by id."""

    def __init__(self, config: MlflowConfig) -> None:
        self.tracking_uri = resolve_tracking_uri(config)
        self.experiment_name = config.experiment
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self._experiment_id: str | None = None

    def experiment_id(self) -> str:
        """The experiment's id, created on first use (a concurrent creator is tolerated)."""
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                try:
                    self._experiment_id = self.client.create_experiment(
                        self.experiment_name, artifact_location=_artifact_location(self.tracking_uri),
                        tags=self.experiment_tags(),
                    )  # fmt: skip
                    return self._experiment_id
                except MlflowException:
                    experiment = self.client.get_experiment_by_name(self.experiment_name)
                    if experiment is None:
                        raise
            self._experiment_id = experiment.experiment_id
            self._declare(experiment.tags)
        return self._experiment_id

    @staticmethod
    def experiment_tags() -> dict[str, str]:
        """The experiment's type (model training: the UI opens on its runs) and the runs table's default view."""
        return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, SHARED_VIEW_PREFIX + RUNS_VIEW_KEY: json.dumps(runs_view())}

    def _declare(self, tags: Mapping[str, str]) -> None:
        """Set on an existing experiment (an older store) those of ``experiment_tags`` it lacks or holds otherwise."""
        assert self._experiment_id is not None
        for key, value in self.experiment_tags().items():
            if tags.get(key) != value:
                self.client.set_experiment_tag(self._experiment_id, key, value)

    def experiment_url(self, server: str) -> str:
        """The UI address (``server``, e.g. ``http://127.0.0.1:5000``) of the experiment's runs table, model-training
        workflow and default view."""
        query = f"workflowType={WORKFLOW_TYPE}&viewStateShareKey={RUNS_VIEW_KEY}"
        return f"{server.rstrip('/')}/#/experiments/{self.experiment_id()}/runs?{query}"

    def start_run(self, run_name: str, tags: Mapping[str, str], params: Mapping[str, str]) -> str:
        """Create a run with ``tags`` (plus git and DVC tags) and ``params``; returns its id."""
        commit, dirty = git_commit()
        all_tags = {
            "git_commit": commit,
            "git_dirty": str(dirty).lower(),
            "dvc_experiment": os.environ.get("DVC_EXP_NAME") or "workspace",
            "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV") or commit,
            **tags,
        }
        if commit != "unknown":
            all_tags["mlflow.source.git.commit"] = commit
        run = self.client.create_run(self.experiment_id(), run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), _BATCH_PARAMS):
            self.client.log_batch(run_id, params=items[start : start + _BATCH_PARAMS])
        return run_id

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the finite numeric entries of ``metrics`` (at ``step``, e.g. the epoch)."""
        timestamp = int(time.time() * 1000)
        items = [Metric(name, value, timestamp, step or 0) for name, value in _finite(metrics).items()]
        for start in range(0, len(items), _BATCH_METRICS):
            self.client.log_batch(run_id, metrics=items[start : start + _BATCH_METRICS])

    def log_datasets(self, run_ids: Iterable[str], inputs: Iterable[InputData]) -> None:
        """Log what each of ``run_ids`` read as MLflow datasets (context tag ``mlflow.data.context``): the runs
        table's Dataset column and a registered model's lineage back to its data."""
        datasets = [DatasetInput(item.dataset(), [InputTag("mlflow.data.context", item.context)]) for item in inputs]
        for run_id in run_ids if datasets else []:
            self.client.log_inputs(run_id, datasets=datasets)

    def add_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> bool:
        """Log ``metrics`` into an earlier run (e.g. a train run's test numbers) when this store holds it; whether
        it did (a score file written under another store names a run this one lacks)."""
        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        self.log_metrics(run_id, metrics)
        return True

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifacts(self, run_id: str, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_model(self, run_id: str, network: Path, input_example: np.ndarray) -> None:
        """Log a trained network into run ``run_id`` as ``model``: a models-from-code pyfunc (``NETWORK_CODE``) over
        ``network``, a weights-only file in the checkpoint layout, with the zerolog package as code.

        Why not ``mlflow.pytorch``: its default (pt2, torch.export) cannot trace the packed-sequence GRU and its
        pickle format warns on every run (issue 12); a state dict read with ``weights_only=True`` runs no code.
        MLflow runs ``input_example`` (zero-padded vectors (sessions, seq_len, dim), sent as lists) through the
        loaded model once here.
        """
        package = Path(__file__).resolve().parent
        mlflow.set_tracking_uri(self.tracking_uri)
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            mlflow.pyfunc.log_model(name="model", python_model=str(NETWORK_CODE), artifacts={"network": str(network)},
                                    code_paths=[str(package)], pip_requirements=pip_requirements(),
                                    input_example=_trimmed_sessions(input_example))  # fmt: skip

    def registered_version(self, name: str, tag: str, value: str) -> str | None:
        """The version of registered model ``name`` tagged ``tag = value`` (the newest), or None."""
        try:
            versions = self.client.search_model_versions(f"name = '{name}'")
        except MlflowException:
            return None
        found = [version for version in versions if version.tags.get(tag) == value]
        return str(max(found, key=lambda version: int(version.version)).version) if found else None

    def register_detector(self, run_id: str, name: str, code: Path, artifacts: dict[str, Path],
                          example: list[str], tags: Mapping[str, str], description: str) -> str:  # fmt: skip
        """Log a models-from-code pyfunc (``code``, with ``artifacts``, the zerolog package as code) into run
        ``run_id`` and register it as a new version of ``name``; returns the version. Its input is raw log lines: one
        list of strings; ``example``: such lines (the input example, run through the model once here; none for a
        pre-parsed dataset's bundle, which holds no raw lines)."""
        package = Path(__file__).resolve().parent
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            # the signature comes from predict's type hints (list[str] -> list[SessionScore]); MLflow runs the
            # example (when the bundle holds one) through the model here, so a model that cannot serve is not
            # registered
            info = mlflow.pyfunc.log_model(name="detector", python_model=str(code),
                                           artifacts={key: str(path) for key, path in artifacts.items()},
                                           code_paths=[str(package)], input_example=list(example) or None,
                                           pip_requirements=detector_requirements())  # fmt: skip
        if self.client.search_registered_models(f"name = '{name}'") == []:
            self.client.create_registered_model(name, description=description)
        version = self.client.create_model_version(name, info.model_uri, run_id=run_id, tags=dict(tags),
                                                   description=description)  # fmt: skip
        return str(version.version)

    def download_model(self, uri: str, folder: Path) -> Path:
        """The files of a logged or registered model (``models:/<name>/<version>``) under ``folder``."""
        mlflow.set_registry_uri(self.tracking_uri)
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(folder),
                                                        tracking_uri=self.tracking_uri))  # fmt: skip

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status)

    def find_run(self, key: str) -> str | None:
        """The run of this DVC experiment (or the workspace) keyed ``key``, if one exists."""
        experiment = os.environ.get("DVC_EXP_NAME") or "workspace"
        found = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.run_key = '{key}' and tags.dvc_experiment = '{experiment}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    @contextlib.contextmanager
    def run(self, run_name: str, tags: Mapping[str, str], params: Mapping[str, str],
            key: str | None = None) -> Iterator[str]:  # fmt: skip
        """Open a run for the block: FINISHED when the block ends, FAILED when it raises (the error goes on).

        ``key`` (a digest of the stage's exact inputs, data and params): the run of the same key in the same DVC
        experiment is reused instead of a copy with the same name and numbers; a new key opens a new run, tagged
        ``run_key`` so that repeated runs of the same inputs are recognisable.
        """
        run_id = self.find_run(key) if key is not None else None
        if run_id is None:
            run_id = self.start_run(run_name, {**tags, **({"run_key": key} if key else {})}, params)
        else:
            self.client.update_run(run_id, status="RUNNING")
        try:
            yield run_id
        except BaseException:
            self.finish(run_id, "FAILED")
            raise
        self.finish(run_id)


# ----------------------------------------------------------------------------- the UI


def main(argv: list[str] | None = None) -> None:
    """``make ui``'s first step: declare the experiment (model training, the runs table's default view) on the
    project's store, new or older, and print the address that opens the UI on its training runs."""
    import argparse

    from zerolog.config_loader import load_params

    parser = argparse.ArgumentParser(description="print the MLflow UI address of the project's runs table")
    parser.add_argument("--server", default="http://127.0.0.1:5000", help="where `mlflow ui` listens")
    arguments = parser.parse_args(argv)
    tracker = Tracker(load_params().mlflow)
    print(f"MLflow UI: open {tracker.experiment_url(arguments.server)}", flush=True)


if __name__ == "__main__":
    main()
