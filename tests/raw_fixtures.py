"""Test helpers: build a ``raw/<dataset>/`` folder with its ``manifest.json`` without the download stage.

Why: parse and sessionize read the download stage's output (docs/architecture.md, ``raw/<name>/manifest.json``).
Tests build that folder themselves, from the real bundled files or from small generated ones, in ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

from zerolog.config import Params
from zerolog.config_loader import load_params
from zerolog.io import sha256_file

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLED = REPOSITORY / "data" / "bundled"


def project_params(tmp_path: Path) -> Params:
    """The project's params.yaml with every output path moved under ``tmp_path`` (bundled data stays put)."""
    params = load_params(REPOSITORY / "params.yaml")
    paths = params.paths
    moved = {
        field.name: str(tmp_path / Path(getattr(paths, field.name)).name)
        for field in dataclasses.fields(paths)
        if field.name != "bundled"
    }
    moved["bundled"] = str(REPOSITORY / paths.bundled)
    return dataclasses.replace(params, paths=dataclasses.replace(paths, **moved))


def write_manifest(folder: Path, dataset: str, kind: str, files: dict[str, str | list[str]]) -> Path:
    """Write ``manifest.json`` for the files already in ``folder`` (paths relative to it)."""
    names = [name for value in files.values() for name in (value if isinstance(value, list) else [value])]
    manifest = {
        "dataset": dataset,
        "kind": kind,
        "source": "bundled",
        "files": files,
        "sha256": {name: sha256_file(folder / name) for name in names if (folder / name).is_file()},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


def build_raw_folder(params: Params, name: str) -> Path:
    """Copy ``datasets.<name>.files`` from ``paths.bundled`` into ``paths.raw/<name>/`` and write its manifest."""
    dataset = params.datasets[name]
    folder = Path(params.paths.raw) / name
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | list[str]] = {}
    for key, value in dataset.files.items():
        sources = value if isinstance(value, list) else [value]
        names = []
        for source in sources:
            target = folder / Path(source).name
            shutil.copyfile(Path(params.paths.bundled) / source, target)
            names.append(target.name)
        files[key] = names if isinstance(value, list) else names[0]
    write_manifest(folder, name, dataset.kind, files)
    return folder


def write_raw_logs(params: Params, name: str, logs: dict[str, bytes], others: dict[str, bytes] | None = None) -> Path:
    """Write given log files (and other files, e.g. labels) into ``paths.raw/<name>/`` with a manifest.

    ``logs`` maps file names to contents in manifest order; ``others`` maps manifest keys to contents, the
    file being named after the key.
    """
    dataset = params.datasets[name]
    folder = Path(params.paths.raw) / name
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in logs.items():
        (folder / file_name).write_bytes(content)
    files: dict[str, str | list[str]] = {"logs": list(logs)}
    for key, content in (others or {}).items():
        (folder / key).write_bytes(content)
        files[key] = key
    write_manifest(folder, name, dataset.kind, files)
    return folder


def write_deeplog_raw(params: Params, normal: bytes, abnormal: bytes) -> Path:
    """Write ``paths.raw/hdfs_deeplog/``: the DeepLog id files ``normal`` and ``abnormal`` with the given contents,
    the bundled HDFS ``templates.csv`` and a manifest."""
    folder = Path(params.paths.raw) / "hdfs_deeplog"
    folder.mkdir(parents=True)
    (folder / "normal").write_bytes(normal)
    (folder / "abnormal").write_bytes(abnormal)
    (folder / "templates.csv").write_bytes((BUNDLED / "HDFS" / "HDFS_templates.csv").read_bytes())
    write_manifest(
        folder, "hdfs_deeplog", "sessions", {"normal": "normal", "abnormal": "abnormal", "templates": "templates.csv"}
    )
    return folder


def import_bench(name: str) -> ModuleType:
    """Import ``bench/<name>.py`` (bench is a folder of scripts, not a package) with ``bench`` on ``sys.path`` only
    for the import."""
    sys.path.insert(0, str(REPOSITORY / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPOSITORY / "bench"))
