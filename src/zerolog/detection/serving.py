"""The registered detector served: raw log lines in, one row per session out (what ``served_model.py`` calls).

Input (``mlflow models serve`` JSON): the raw log lines, ``{"inputs": ["line 1", "line 2", ...]}``. They form one
log, in order, and are run through ``zerolog detect`` exactly (a temporary file, the same parse, sessions, scores and
checks), so a bad request (no line matching the system's log format) is refused with the same one-line error.

Output: one record per session, the ``zerolog detect`` row (``session_id``, ``score``, ``flagged``, ``events``,
``new_templates``, ``top_templates``, ``first_file``, ``first_line``); MLflow answers ``{"predictions": [...]}``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from zerolog.detection.bundle import read_bundle
from zerolog.detection.detect import DetectOptions, run_detect
from zerolog.detection.loading import LoadedDetector, from_bundle
from zerolog.errors import DataError
from zerolog.io import read_json

REQUEST_FILE = "request.log"


def load_served(bundle_folder: Path, settings_file: Path) -> tuple[LoadedDetector, DetectOptions]:
    """The detector and run options of a registered model's artifacts."""
    bundle = read_bundle(bundle_folder)
    settings = read_json(settings_file)
    detector = from_bundle(bundle, bundle.context.system, int(settings["top_templates"]), "registered model")
    options = DetectOptions(int(settings["top_templates"]), int(settings["partition_bytes"]),
                            int(settings["chunk_bytes"]), workers=1, output_format="parquet",
                            progress=False)  # fmt: skip
    return detector, options


def score_lines(detector: LoadedDetector, options: DetectOptions, lines: list[str]) -> list[dict[str, Any]]:
    """One record per session of ``lines`` (one log, in order), as ``zerolog detect`` writes its rows."""
    if not all(isinstance(line, str) for line in lines):
        raise DataError("request: every line must be a string")
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / REQUEST_FILE
        log.write_text("".join(f"{line.rstrip(chr(10))}\n" for line in lines), encoding="utf-8")
        result = run_detect(detector, [str(log)], Path(scratch) / "sessions.parquet", options)
        return pq.read_table(result.output).to_pylist()


__all__ = ["REQUEST_FILE", "load_served", "score_lines"]
