"""Reading the evaluation layer's inputs: a system's tensors (labels, splits, counts) and score files.

Why one module: every reader checks shapes and values the same way and fails with a one-line DataError naming the
file, so a truncated array or a score file from another pipeline run cannot be evaluated silently.
The formats are the stage contracts of docs/architecture.md (`tensors/<system>/`, `scores/.../<method>.parquet`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zerolog.config import Params
from zerolog.errors import DataError
from zerolog.io import atomic_path

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
SCORE_COLUMNS = ("domain", "split", "row", "system", "score")
# Methods fit on the target alone (stage baselines); their scores live in scores/target-<system>/.
TARGET_ONLY_METHODS = ("unsupervised_target", "level_rule", "supervised_target")
ORACLE_METHODS = frozenset({"supervised_target"})


@dataclass(frozen=True)
class SystemArrays:
    """One system's labels and splits, row-aligned with its tensors. ``counts`` only when asked for."""

    system: str
    directory: Path
    labels: np.ndarray  # (sessions,) int8: 1 anomalous, 0 normal, -1 unlabeled
    split: np.ndarray  # (sessions,) int8: 0 train, 1 val, 2 test
    meta: dict[str, Any]
    counts: np.ndarray | None = None  # (sessions, templates + 1) float32 event-count vectors

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", ""))

    @property
    def label_rule(self) -> str | None:
        rule = self.meta.get("label_rule")
        return None if rule is None else str(rule)


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found (run the tensors stage first)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: unreadable .npy file: {error}") from None


def load_system_arrays(params: Params, system: str, with_counts: bool = False) -> SystemArrays:
    """Load and check ``tensors/<system>/`` labels, split, meta (and counts, memory-mapped)."""
    if system not in params.systems:
        raise DataError(f"params.yaml: systems.{system}: unknown system")
    directory = Path(params.paths.tensors) / system
    labels = np.asarray(_load_array(directory / "labels.npy", mmap=False))
    split = np.asarray(_load_array(directory / "split.npy", mmap=False))
    if labels.ndim != 1 or split.shape != labels.shape:
        raise DataError(f"{directory}/split.npy: shape {split.shape} differs from labels.npy {labels.shape}")
    if labels.size and not np.isin(labels, (-1, 0, 1)).all():
        raise DataError(f"{directory}/labels.npy: values must be -1, 0 or 1")
    if split.size and not np.isin(split, (0, 1, 2)).all():
        raise DataError(f"{directory}/split.npy: values must be 0 (train), 1 (val) or 2 (test)")
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path}: file not found (run the tensors stage first)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{meta_path}: line {error.lineno}: invalid JSON: {error.msg}") from None
    counts = None
    if with_counts:
        counts = _load_array(directory / "counts.npy", mmap=True)
        if counts.ndim != 2 or counts.shape[0] != labels.shape[0]:
            raise DataError(f"{directory}/counts.npy: shape {counts.shape} does not have {labels.shape[0]} rows")
    return SystemArrays(system, directory, labels.astype(np.int8), split.astype(np.int8), meta, counts)


def _decode_metadata_value(raw: bytes) -> Any:
    text = raw.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_scores(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a score file and its key-value metadata (``method``, ``threshold_source_val``, ``mlflow_run_id``, ...).

    Metadata values are read as JSON where they parse (``null`` -> None, ``0.42`` -> float), else as strings; pandas'
    ``PANDAS_ATTRS`` (``DataFrame.attrs``) is read too, so either way of writing it works.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None
    metadata: dict[str, Any] = {}
    for key, value in (table.schema.metadata or {}).items():
        name = key.decode("utf-8")
        if name == "pandas":
            continue
        if name == "PANDAS_ATTRS":
            attrs = _decode_metadata_value(value)
            if isinstance(attrs, dict):
                metadata.update(attrs)
            continue
        metadata[name] = _decode_metadata_value(value)
    frame = table.to_pandas()
    missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    if "label" in frame.columns:
        raise DataError(f"{path}: score files must carry no labels (column 'label' found)")
    if frame["score"].isna().any() or not np.isfinite(frame["score"].to_numpy(dtype=np.float64)).all():
        raise DataError(f"{path}: column score has NaN or infinite values")
    bad_splits = sorted(set(frame["split"].astype(str)) - set(SPLIT_CODES))
    if bad_splits:
        raise DataError(f"{path}: column split has unknown value(s) {bad_splits}")
    return frame, metadata


def write_scores(path: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """Write a score file with JSON-encoded key-value metadata, atomically."""
    missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    table = pa.Table.from_pandas(frame.loc[:, list(SCORE_COLUMNS)], preserve_index=False)
    encoded = {key.encode("utf-8"): json.dumps(value).encode("utf-8") for key, value in metadata.items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def score_frame(system: str, split: np.ndarray, rows: np.ndarray, scores: np.ndarray, domain: str) -> pd.DataFrame:
    """Build a score frame in the contract's column order (rows index the system's tensors)."""
    return pd.DataFrame(
        {
            "domain": domain,
            "split": [SPLIT_NAMES[int(code)] for code in split[rows]],
            "row": rows.astype(np.int64),
            "system": system,
            "score": np.asarray(scores, dtype=np.float64),
        }
    )
