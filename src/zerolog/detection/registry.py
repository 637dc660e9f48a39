"""The MLflow Model Registry of detectors: each target's recommended detector, registered by the report stage.

Which detector: ``evaluate.recommended`` (``SELECTION_RULE``), declared in params.yaml before any test number was read
and the same for every target; never the method with the best test F1. What is registered: the system's persisted
bundle (``models/target-<system>/detector/``: threshold, the system's params, the template table, the PCA state and
the Drain state) with the ``detect`` settings, as an MLflow pyfunc logged as models-from-code
(``served_model.py``: no pickle, no pickle warning), under the name ``detect.registered_model`` with ``{system}``
replaced, for every target whose bundle reads raw lines: a raw dataset's (Drain state) and, since ``zerolog detect``
matches raw messages on a pre-parsed dataset's template table, HDFS's and BGL's too (their bundles hold no raw
example: registered without an input example). Its input is raw log lines, its output one row per session
(``zerolog.detection.serving``), so ``mlflow models serve -m models:/<name>/<version>`` answers JSON requests with
per-session scores.

The registering run logs the bundle folder as its MLflow dataset (digest: its dvc.lock md5), so a registered
version leads to its run and to the data it holds.

A bundle is registered once: a version is tagged with the md5 of its files (``bundle_md5``), and a rerun of the
report stage with the same bundle reuses that version instead of adding an identical one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zerolog.artifacts import ArtifactPaths
from zerolog.config import DetectConfig, MlflowConfig
from zerolog.detection.bundle import not_persisted_reason, read_bundle
from zerolog.detection.loading import LoadedDetector, from_bundle

SELECTION_RULE = ("evaluate.recommended: declared in params.yaml before any test number was read, one detector for "
                  "every target; never chosen by test F1")  # fmt: skip
SERVED_MODEL = Path(__file__).resolve().with_name("served_model.py")
SETTINGS_FILE = "settings.json"
BUNDLE_ARTIFACT = "bundle"  # the model's artifacts/bundle/: the bundle folder


def registered_name(pattern: str, system: str) -> str:
    return pattern.replace("{system}", system)


def _settings(detect: DetectConfig, chunk_bytes: int) -> dict[str, int]:
    """What the served model reads new lines with (params ``detect`` and ``parse.chunk_bytes``)."""
    return {
        "top_templates": detect.top_templates,
        "partition_bytes": detect.partition_bytes,
        "chunk_bytes": chunk_bytes,
    }


def bundle_digest(folder: Path, settings: str) -> str:
    """md5 of a bundle's files (each named by its path in the folder) and the settings text: what a version holds."""
    digest = hashlib.md5(settings.encode("utf-8"))
    for path in sorted(path for path in folder.rglob("*") if path.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode("utf-8") + b"\0" + path.read_bytes())
    return digest.hexdigest()


def register_system(tracker: Any, paths: ArtifactPaths, system: str, detect: DetectConfig,
                    chunk_bytes: int) -> dict[str, Any]:  # fmt: skip
    """Register the system's bundle unless a version with the same files exists; returns its registry entry (a
    bundle that cannot read raw lines is not registered: a served model must serve; a pre-parsed dataset's bundle
    reads them through its template table). The registering run logs the bundle as its dataset."""
    folder = paths.detector(system)
    name = registered_name(detect.registered_model, system)
    reason = not_persisted_reason(folder)
    if reason is not None:
        return {"name": name, "version": None, "method": None, "reason": reason}
    bundle = read_bundle(folder)  # a damaged bundle fails here, in one line, not in the registry
    if not bundle.reads_raw_lines:
        return {
            "name": name,
            "version": None,
            "method": bundle.method,
            "reason": (
                f"the bundle of dataset {bundle.context.dataset} cannot read raw lines (no template table or sessions)"
            ),
        }
    settings_text = json.dumps(_settings(detect, chunk_bytes), sort_keys=True) + "\n"
    digest = bundle_digest(folder, settings_text)
    version = tracker.registered_version(name, "bundle_md5", digest)
    with tempfile.TemporaryDirectory() as scratch:
        # the artifacts keep their folder names in the model: copied under the names the served model reads
        settings, copy = Path(scratch) / SETTINGS_FILE, Path(scratch) / BUNDLE_ARTIFACT
        settings.write_text(settings_text, encoding="utf-8")
        shutil.copytree(folder, copy)
        if version is None:
            tags = {"system": system, "method": bundle.method, "bundle_md5": digest, "selection_rule": SELECTION_RULE,
                    "threshold": str(bundle.threshold.value), "pi_hat": str(bundle.threshold.pi_hat)}  # fmt: skip
            description = (
                f"{bundle.method}, the recommended detector of {system} ({SELECTION_RULE}). Input: raw log "
                "lines (column 'line'); output: one row per session (score, flagged, top_templates)."
            )
            with tracker.run(f"register {system}", {"stage": "report", "target": system, **tags}, {}) as run_id:
                tracker.log_datasets([run_id], [bundle_input(bundle)])
                version = tracker.register_detector(run_id, name, SERVED_MODEL,
                                                    {BUNDLE_ARTIFACT: copy, "settings": settings}, bundle.example,
                                                    tags, description)  # fmt: skip
    return {"name": name, "version": version, "uri": f"models:/{name}/{version}", "method": bundle.method,
            "bundle_md5": digest, "selection_rule": SELECTION_RULE}  # fmt: skip


def bundle_input(bundle: Any) -> Any:
    """The registered detector's data, as an MLflow dataset of its run: the bundle folder (a DVC output of the
    selection stage: digest its dvc.lock md5), profiled by its template table and the train sessions it was fit on."""
    from zerolog.tracking import InputData

    profile = {"templates": len(bundle.templates), "train_sessions": int(bundle.subspace.train_sessions)}
    return InputData(bundle.folder, "detector", profile)


def register_recommended(targets: list[str], tracking: MlflowConfig, paths: ArtifactPaths, detect: DetectConfig,
                         chunk_bytes: int) -> dict[str, dict[str, Any]]:  # fmt: skip
    """The report stage's call: every target's recommended detector in the registry; prints where each is."""
    from zerolog.tracking import Tracker

    tracker = Tracker(tracking)
    entries = {system: register_system(tracker, paths, system, detect, chunk_bytes) for system in targets}
    for system, entry in entries.items():
        where = entry["uri"] if entry["version"] is not None else f"not registered ({entry['reason']})"
        print(f"detector {entry['method']} of {system}: {where}")
    return entries


def load_registered(uri: str, system: str, top: int, tracking: MlflowConfig) -> LoadedDetector:
    """``--model models:/<name>/<version>``: the registered bundle, for ``system`` only."""
    from zerolog.errors import ConfigError
    from zerolog.tracking import Tracker

    if not uri.startswith("models:/"):
        raise ConfigError(f"--model: expected models:/<name>/<version>, got {uri!r}")
    with tempfile.TemporaryDirectory() as scratch:
        try:
            folder = Tracker(tracking).download_model(uri, Path(scratch))
        except Exception as error:  # noqa: BLE001 - MLflow raises many types for a missing model; one line here
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            where = Tracker(tracking).tracking_uri
            raise ConfigError(f"--model {uri}: not found in the registry at {where} ({first})") from None
        bundle = read_bundle(folder / "artifacts" / BUNDLE_ARTIFACT)
    return from_bundle(bundle, system, top, uri)


__all__ = ["SELECTION_RULE", "load_registered", "register_recommended", "register_system", "registered_name"]
