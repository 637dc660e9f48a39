"""The contracts between stages, each written once: where every artifact lives, split codes, statuses, score files
and the tensors reader (the method registry, which decides where a method's scores live: zerolog.methods).

Why one module: a stage that writes a file and the stage that reads it must agree on its name, columns and codes.
When that agreement is written twice it drifts; here it is written once, and every stage imports it. Formats are
described in docs/architecture.md; this module is their executable form.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from zerolog.config import Paths
from zerolog.errors import DataError
from zerolog.io import atomic_path, read_json
from zerolog.methods import MethodKind, method_spec

# ----------------------------------------------------------------------------- splits and statuses

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
UNLABELED = -1  # labels.npy value of a session without ground truth
PADDING = 0  # index.npy value of a padding position (row 0 of vectors.npy is all zeros)


class Status(str, Enum):  # noqa: UP042 - kept a str mixin, not StrEnum: enum behaviour stays exactly as recorded
    """What a stage says of a pair, a method or a rule (metrics files, status.json)."""

    OK = "ok"  # trained or written
    EVALUATED = "evaluated"
    NOT_EVALUABLE = "not_evaluable"  # the target's test split cannot measure it (too few labeled anomalies)
    SKIPPED = "skipped"  # nothing to train on (no usable source)
    NOT_AVAILABLE = "not_available"  # a method that cannot run on this data (the reason is recorded)
    NOT_APPLICABLE = "not_applicable"  # a threshold rule that cannot apply to this method

    def __str__(self) -> str:
        return self.value


# ----------------------------------------------------------------------------- paths


def score_file_name(method: str, seed: int) -> Path:
    """A method's score file within its score folder: ``<method>/seed-<seed>.parquet`` for a stochastic method (one
    per model seed), ``<method>.parquet`` for a deterministic one (``seed`` unused). The stages write it into a
    folder they build atomically; ``ArtifactPaths.score_file`` places it in the folder's final location."""
    return Path(method) / f"seed-{seed}.parquet" if method_spec(method).stochastic else Path(f"{method}.parquet")


def checkpoint_name(method: str, seed: int) -> Path:
    """A transfer method's network within its pair's model folder (``<method>/seed-<seed>/checkpoint.pt``); the
    train stage writes it into a folder it builds atomically, ``ArtifactPaths.checkpoint`` places it."""
    return Path(method) / f"seed-{seed}" / "checkpoint.pt"


@dataclass(frozen=True)
class ArtifactPaths:
    """Every artifact's location, from ``params.paths``: the only place a path is joined by hand."""

    paths: Paths

    def raw(self, dataset: str) -> Path:
        return Path(self.paths.raw) / dataset

    def manifest(self, dataset: str) -> Path:
        return self.raw(dataset) / "manifest.json"

    def parsed(self, dataset: str) -> Path:
        return Path(self.paths.parsed) / dataset

    def parsed_lines(self, dataset: str) -> Path:
        """``parsed/<dataset>/lines.parquet``: the parse stage's lines (a folder of Parquet parts read as one table)."""
        return self.parsed(dataset) / "lines.parquet"

    def sessions(self, dataset: str) -> Path:
        return Path(self.paths.sessions) / dataset

    def sessions_file(self, dataset: str) -> Path:
        return self.sessions(dataset) / "sessions.parquet"

    def template_vectors(self) -> Path:
        return Path(self.paths.features) / "template_vectors.parquet"

    def tensors(self, system: str) -> Path:
        return Path(self.paths.tensors) / system

    def models(self, pair: str) -> Path:
        return Path(self.paths.models) / pair

    def checkpoint(self, pair: str, method: str, seed: int) -> Path:
        """The train stage's network of one transfer method and model seed of ``pair``."""
        return self.models(pair) / checkpoint_name(method, seed)

    def detector(self, system: str) -> Path:
        """``models/target-<system>/detector/``: the system's recommended detector, persisted by the selection stage
        (zerolog.detection.bundle) for ``zerolog detect``, the registry and serving."""
        return Path(self.paths.models) / f"target-{system}" / "detector"

    def pair_scores(self, pair: str) -> Path:
        """Scores of the transfer methods of one pair."""
        return Path(self.paths.scores) / pair

    def target_scores(self, system: str) -> Path:
        """Scores of the target-only, rule and oracle methods of one target system (stage baselines)."""
        return Path(self.paths.scores) / f"target-{system}"

    def selected_scores(self, system: str) -> Path:
        """The system's recipe chosen leave-one-system-out and its scores (stage selection)."""
        return Path(self.paths.scores) / f"select-{system}"

    def score_file(self, method: str, pair: str, target: str, seed: int) -> Path:
        """Where ``method``'s scores for ``pair`` live: per pair for transfer methods, else per target; one file per
        model seed for a stochastic method (``<method>/seed-<seed>.parquet``), one for a deterministic one."""
        spec = method_spec(method)
        folder = (
            self.pair_scores(pair)
            if spec.per_pair
            else self.selected_scores(target)
            if spec.kind is MethodKind.SELECTED
            else self.target_scores(target)
        )
        return folder / score_file_name(method, seed)

    def stage_metrics(self, stage: str, name: str) -> Path:
        """``metrics/<stage>/<name>.json``: a stage's DVC metrics per dataset, system or pair."""
        return Path(self.paths.metrics) / stage / f"{name}.json"

    def data_report(self, stage: str, name: str) -> Path:
        """``reports/data/<stage>/<name>.json``: what a data stage counted (lines, sessions, templates): committed
        beside the results, not DVC metrics, which hold only the numbers a user compares between experiments."""
        return Path(self.paths.reports) / "data" / stage / f"{name}.json"

    def evaluation_details(self, pair: str) -> Path:
        """``reports/evaluate/<pair>.json``: every detail the evaluate stage measured of a pair (each rule, each
        seed, bootstrap intervals); the report stage builds the results table from it."""
        return self.report("evaluate") / f"{pair}.json"

    def pair_metrics(self, pair: str) -> Path:
        """``metrics/<pair>.json``: the evaluate stage's headline metrics of a pair."""
        return Path(self.paths.metrics) / f"{pair}.json"

    def paper_metrics(self, pair: str) -> Path:
        """``metrics/paper/<pair>.json``: stage paper's metrics of a pair under the paper's protocol."""
        return self.stage_metrics("paper", pair)

    def paper_plots(self, pair: str) -> Path:
        """``plots/paper/<pair>/``: per-epoch curves of the paper protocol (``<method>.csv``, ``<method>.png``)."""
        return self.plots("paper", pair)

    def metrics_file(self, name: str) -> Path:
        return Path(self.paths.metrics) / f"{name}.json"

    def plots(self, stage: str, name: str) -> Path:
        return Path(self.paths.plots) / stage / name

    def report(self, name: str) -> Path:
        return Path(self.paths.reports) / name


def with_origins(message: str, paths: ArtifactPaths) -> str:
    """``message`` with each downloaded copy it names (``raw/<dataset>/<file>``) followed by its origin (the
    bundled file or the archive member, from ``manifest.json``): a user edits the original, not the copy."""
    for manifest in sorted(Path(paths.paths.raw).glob("*/manifest.json")):
        try:
            origins = read_json(manifest).get("origins") or {}
        except (DataError, OSError):
            continue
        for copied, origin in origins.items():
            copy_path = str(manifest.parent / copied)
            if copy_path in message and origin not in message:
                message = message.replace(copy_path, f"{copy_path} (a copy of {origin})")
    return message


# ----------------------------------------------------------------------------- score files

SCORE_COLUMNS = ("domain", "split", "row", "system", "score")

# Score-file metadata keys other stages rely on (JSON values; absent = null). Written by the baselines stage for
# every target-only and rule method; readers: evaluate (thresholds.py rules ``detector`` and ``pi_hat``), and any
# stage that needs the recommended detector's view of a target (``evaluate.recommended``).
DECISION_THRESHOLD = "decision_threshold"  # float | null: the detector's own label-free cut, score >= it is anomalous
DECISION_RULE = "decision_rule"  # str: that decision in words ("s(x) >= 0.5", "any miss"), or why there is none
PI_HAT = "pi_hat"  # float | null: the share of the target's TRAIN sessions the detector's own decision flags, a
#                    label-free estimate of the target's anomaly share; null where the detector has no decision.
#                    The pipeline's pi-hat is the one in the score file of ``evaluate.recommended``.
SCORE_SCALE = "score_scale"  # "unit" (scores in [0, 1]) or "unbounded"
TRAINING_SUMMARY = "training.json"  # scores/<pair>/: the train stage's status of the pair and of each method
TARGET_STATUS = "status.json"  # scores/target-<system>/: the baselines stage's status of each method
RECIPE_FILE = "recipe.json"  # scores/select-<system>/: the selection stage's choice and its evidence


def score_frame(system: str, split: np.ndarray, rows: np.ndarray, scores: np.ndarray, domain: str) -> pd.DataFrame:
    """A score frame in the contract's column order; ``rows`` index the system's tensors, ``split`` its codes."""
    return pd.DataFrame(
        {
            "domain": domain,
            "split": [SPLIT_NAMES[int(code)] for code in np.asarray(split)[rows]],
            "row": np.asarray(rows, dtype=np.int64),
            "system": system,
            "score": np.asarray(scores, dtype=np.float64),
        }
    )


def write_scores(path: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """Write a score file (no labels) with JSON-encoded key-value metadata, atomically."""
    missing = [column for column in SCORE_COLUMNS if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    table = pa.Table.from_pandas(frame.loc[:, list(SCORE_COLUMNS)], preserve_index=False)
    encoded = {key.encode("utf-8"): json.dumps(value).encode("utf-8") for key, value in metadata.items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def _decode_metadata_value(raw: bytes) -> Any:
    text = raw.decode("utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_scores(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a score file and its metadata (``method``, ``threshold_source_val``, ``mlflow_run_id``, ...), checked.

    Metadata values are read as JSON where they parse, else as strings.
    """
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None
    metadata = {
        key.decode("utf-8"): _decode_metadata_value(value)
        for key, value in (table.schema.metadata or {}).items()
        if key != b"pandas"
    }
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


# ----------------------------------------------------------------------------- tensors

ARRAY_FILES = ("index", "lengths", "labels", "split", "vectors", "counts", "level_counts")
LEVEL_COUNTS_FILE = "level_counts.npy"


@dataclass(frozen=True, eq=False)
class SystemTensors:
    """One system's ``tensors/<system>/``, memory-mapped read-only (nothing is read until indexed).

    Shapes: ``index`` (sessions, max_len) int32 rows of ``vectors``, 0 padding; ``lengths`` (sessions,) int32;
    ``labels`` (sessions,) int8 1/0/-1 (None when a stage must not read them: the target in training);
    ``split`` (sessions,) int8 0/1/2; ``vectors`` (templates + 1, dim) float32; ``counts`` (sessions,
    templates + 1) float32 event counts; ``level_counts`` (sessions, levels) int32 lines per level of
    ``meta["level_names"]`` over the whole session ((sessions, 0) where the data has no level field).
    """

    directory: Path
    index: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray | None
    split: np.ndarray
    vectors: np.ndarray
    counts: np.ndarray
    level_counts: np.ndarray
    meta: dict[str, Any] = field(repr=False)

    @property
    def system(self) -> str:
        return str(self.meta.get("system") or self.directory.name)

    @property
    def dataset(self) -> str:
        return str(self.meta.get("dataset", ""))

    @property
    def label_rule(self) -> str | None:
        rule = self.meta.get("label_rule")
        return None if rule is None else str(rule)

    @property
    def level_names(self) -> list[str]:
        """Columns of ``level_counts``; empty where the data carries no level field."""
        return [str(name) for name in self.meta.get("level_names") or []]

    @property
    def sessions(self) -> int:
        return int(self.index.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.index.shape[1])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, split: str) -> np.ndarray:
        """Row numbers (int64) of the sessions in ``split`` (train, val or test), in file order."""
        if split not in SPLIT_CODES:
            raise ValueError(f"unknown split {split!r} (expected train, val or test)")
        return np.flatnonzero(np.asarray(self.split) == SPLIT_CODES[split])

    def session_ids(self) -> list[str]:
        """Session ids in row order (read on demand: large for full-size datasets)."""
        return read_json(self.directory / "session_ids.json")


def load_tensors(directory: str | Path) -> SystemTensors:
    """Open ``tensors/<system>/`` lazily (``mmap_mode="r"``) and check that shapes and codes agree."""
    directory = Path(directory)
    missing = [f"{name}.npy" for name in ARRAY_FILES if not (directory / f"{name}.npy").is_file()]
    missing += [name for name in ("meta.json", "session_ids.json") if not (directory / name).is_file()]
    if missing:
        raise DataError(f"{directory}: missing {', '.join(missing)} (run the tensors stage)")
    try:
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in ARRAY_FILES}
        meta = read_json(directory / "meta.json")
    except (DataError, ValueError, OSError) as error:
        raise DataError(f"{directory}: unreadable tensors: {error}") from None
    sessions, max_len = arrays["index"].shape
    expected = {
        "lengths": (sessions,),
        "labels": (sessions,),
        "split": (sessions,),
        "counts": (sessions, arrays["vectors"].shape[0]),
        "level_counts": (sessions, len(meta.get("level_names") or [])),
    }
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise DataError(f"{directory / (name + '.npy')}: shape {arrays[name].shape}, expected {shape}")
    if meta.get("sessions") != sessions or meta.get("max_len") != max_len:
        raise DataError(
            f"{directory / 'meta.json'}: sessions/max_len disagree with index.npy shape {(sessions, max_len)}"
        )
    if not np.isin(arrays["labels"], (UNLABELED, 0, 1)).all():
        raise DataError(f"{directory / 'labels.npy'}: values must be -1, 0 or 1")
    if not np.isin(arrays["split"], list(SPLIT_CODES.values())).all():
        raise DataError(f"{directory / 'split.npy'}: values must be 0 (train), 1 (val) or 2 (test)")
    return SystemTensors(directory=directory, meta=meta, **arrays)
