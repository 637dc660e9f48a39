"""Stage sessionize: group one dataset's parsed lines into labeled sessions and split them train/val/test.

Why: the model classifies sessions (event sequences), not lines (method.md §2). A session is a block or an
instance (``key`` rule), a window of lines or seconds (``window`` rule), or a session given by a pre-parsed
dataset. Labels come only from real ground truth (``label`` rules below); a session with no ground truth keeps
a null label and is counted, never guessed.

Session rules (``datasets.<name>.session``):
- ``key``: ``key_regex`` (one group) over each parsed line's ``content``; a line naming several keys joins each
  of their sessions; sessions in first-seen order; lines with no key are counted and belong to no session.
- ``window``: ``size``/``step`` lines (``unit: lines``) or seconds (``unit: seconds``) in line order, separately
  per log file and, with ``group_by``, per value of that header column (MetaLog windows BGL per node);
  session id ``<group>:<first line number>``.
- pre-parsed ``sessions`` datasets: one session per ``session_key``.

Label rules (``datasets.<name>.label.rule``): ``key_file`` (CSV of key, Anomaly/Normal; a key missing from it
gets a null label), ``key_list`` (keys listed in the file are anomalous, every other session normal),
``source_file`` (sessions from log file 0 are anomalous, the MetaLog convention for OpenStack), ``line_field``
(a session is anomalous if any of its lines is; null if none is and some line has no label).

Splits (``sessionize.split`` fractions, ``datasets.<name>.split``): ``chronological`` sorts by start time (line
order when a session has none) and cuts; ``random`` shuffles with ``params.seed`` **within each label class**
(anomalous, normal, unlabeled), so every split keeps the dataset's anomaly share even when anomalies are few;
``stratify_by: file`` applies the method within each log file separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from zerolog.config import LOWER_CASE_FIELDS, ConfigError, Params, SessionRule, SplitFractions, SplitRule
from zerolog.data import datasets
from zerolog.data.parse import STATUS_PARSED, dataset_config, read_manifest
from zerolog.errors import DataError
from zerolog.io import atomic_directory, atomic_path, write_json

SPLITS = ("train", "val", "test")

#: ``label_rule`` recorded for pre-parsed session datasets, whose labels come with the sessions.
PREPARSED_LABEL_RULE = "preparsed"
#: ``label_rule`` recorded for a dataset without any label rule (every session unlabeled).
NO_LABEL_RULE = "none"

SESSION_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("templates", pa.list_(pa.string())),
        ("label", pa.int8()),
        ("start_time", pa.float64()),
        ("split", pa.string()),
        ("file_index", pa.int16()),
    ]
)

LINE_COLUMNS = ["file_index", "line_number", "timestamp", "content", "template", "label", "status", "event_id"]


@dataclass
class Sessions:
    """Sessions as row positions into the parsed events table, in generation order, plus what was counted."""

    ids: list[str]
    rows: list[np.ndarray]  # per session: (length,) positions into the events table, in event order
    counts: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- session rules


def key_sessions(events: pd.DataFrame, key_regex: str) -> Sessions:
    """``key`` rule: one session per distinct key found by ``key_regex``'s group in the lines' content."""
    pattern = re.compile(key_regex)
    members: dict[str, list[int]] = {}
    without_key = several_keys = 0
    contents = events["content"].tolist()
    for position, content in enumerate(tqdm(contents, desc="session keys", unit="line", disable=None)):
        keys = dict.fromkeys(pattern.findall(content)) if isinstance(content, str) else {}
        without_key += not keys
        several_keys += len(keys) > 1
        for key in keys:
            members.setdefault(key, []).append(position)
    ids = list(members)
    rows = [np.asarray(members[key], dtype=np.int64) for key in ids]
    return Sessions(ids, rows, {"lines_without_key": without_key, "lines_with_several_keys": several_keys})


def _window_bounds_lines(size: int, step: int, count: int) -> list[tuple[int, int]]:
    """Windows of ``size`` positions every ``step``; the last one ends at ``count`` (it may be shorter)."""
    bounds = []
    start = 0
    while start < count:
        end = min(start + size, count)
        bounds.append((start, end))
        if end >= count:
            break
        start += step
    return bounds


def _window_bounds_seconds(size: float, step: float, times: np.ndarray) -> list[tuple[int, int]]:
    """Windows ``[t0 + k step, t0 + k step + size)`` over sorted ``times``; empty windows are skipped."""
    bounds = []
    first, last = float(times[0]), float(times[-1])
    start = first
    while start <= last:
        low = int(np.searchsorted(times, start, side="left"))
        high = int(np.searchsorted(times, start + size, side="left"))
        if high > low:
            bounds.append((low, high))
        if start + size > last:
            break
        start += step
    return bounds


def group_by_column(rule: SessionRule | None) -> str | None:
    """The lines.parquet column of a window rule's ``group_by`` field (Level and Component are lower-cased there)."""
    if rule is None or rule.group_by is None:
        return None
    return LOWER_CASE_FIELDS.get(rule.group_by, rule.group_by)


def window_sessions(events: pd.DataFrame, rule: SessionRule, multiple_files: bool, where: str) -> Sessions:
    """``window`` rule: windows over lines or seconds, per log file and per ``group_by`` value, in line order."""
    if rule.size is None or rule.step is None:
        raise ConfigError(f"{where}: size and step are required for rule window")
    group_column = group_by_column(rule)
    if group_column is not None and group_column not in events.columns:
        raise ConfigError(f"{where}.group_by: {rule.group_by!r} is not a column of the parsed lines")
    group_values = (
        events[group_column].astype("string").fillna("<none>")
        if group_column is not None
        else pd.Series("", index=events.index)
    )
    frame = pd.DataFrame(
        {"file_index": events["file_index"].to_numpy(), "group": group_values.to_numpy(), "position": np.arange(len(events))}
    )
    ids: list[str] = []
    rows: list[np.ndarray] = []
    without_time = 0
    line_numbers = events["line_number"].to_numpy()
    times_all = events["timestamp"].to_numpy(dtype="float64")
    for (file_index, group), members in frame.groupby(["file_index", "group"], sort=False):
        positions = members["position"].to_numpy()
        if rule.group_by is None:
            name = str(file_index)
        else:
            name = f"{file_index}/{group}" if multiple_files else str(group)
        if rule.unit == "lines":
            bounds = _window_bounds_lines(rule.size, rule.step, len(positions))
        else:
            times = times_all[positions]
            known = ~np.isnan(times)
            without_time += int((~known).sum())
            positions = positions[known]
            if len(positions) == 0:
                continue
            order = np.argsort(times[known], kind="stable")
            positions = positions[order]
            bounds = _window_bounds_seconds(float(rule.size), float(rule.step), times_all[positions])
        for low, high in bounds:
            window = positions[low:high]
            ids.append(f"{name}:{line_numbers[window[0]]}")
            rows.append(window)
    return Sessions(ids, rows, {"lines_without_timestamp": without_time} if rule.unit == "seconds" else {})


def preparsed_sessions(events: pd.DataFrame) -> Sessions:
    """Pre-parsed ``sessions`` datasets: one session per (file, ``session_key``), in file order."""
    frame = pd.DataFrame(
        {"file_index": events["file_index"].to_numpy(), "key": events["session_key"].to_numpy(), "position": np.arange(len(events))}
    )
    ids, rows = [], []
    for (_, key), members in frame.groupby(["file_index", "key"], sort=False):
        ids.append(str(key))
        rows.append(members["position"].to_numpy())
    return Sessions(ids, rows)


# ----------------------------------------------------------------------------- label rules


def any_anomalous(line_labels: np.ndarray) -> float:
    """A session's label from its lines' labels (NaN = unknown): 1 if any is 1, else NaN if any unknown, else 0."""
    if np.any(line_labels == 1):
        return 1.0
    if np.any(np.isnan(line_labels)):
        return np.nan
    return 0.0


def session_labels(
    params: Params, name: str, events: pd.DataFrame, sessions: Sessions
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Labels (float: 1, 0, NaN unknown) of every session, the rule used, and what the rule counted."""
    dataset = params.datasets[name]
    where = f"datasets.{name}.label"
    line_labels = events["label"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    if dataset.kind == "sessions":
        labels = np.array([any_anomalous(line_labels[rows]) for rows in sessions.rows])
        return labels, PREPARSED_LABEL_RULE, {}
    rule = dataset.label
    if rule is None:
        return np.full(len(sessions.ids), np.nan), NO_LABEL_RULE, {}
    if rule.rule == "line_field":
        labels = np.array([any_anomalous(line_labels[rows]) for rows in sessions.rows])
        return labels, rule.rule, {}
    if rule.rule == "source_file":
        file_index = events["file_index"].to_numpy()
        labels = np.array([1.0 if file_index[rows[0]] == 0 else 0.0 for rows in sessions.rows])
        return labels, rule.rule, {}
    folder, manifest = read_manifest(params, name, ["labels"])
    label_path = folder / manifest["files"]["labels"]
    if rule.rule == "key_file":
        table = datasets.read_key_file(label_path)
        labels = np.array([float(table[key]) if key in table else np.nan for key in sessions.ids])
        found = sum(key in table for key in sessions.ids)
        return labels, rule.rule, {"keys_missing_from_label_file": len(sessions.ids) - found, "label_file_keys": len(table)}
    if rule.rule == "key_list":
        listed, skipped = datasets.read_key_list(label_path)
        labels = np.array([1.0 if key in listed else 0.0 for key in sessions.ids])
        present = set(sessions.ids)
        return labels, rule.rule, {
            "listed_keys": len(listed),
            "listed_keys_found": sum(key in present for key in listed),
            "label_file_lines_skipped": skipped,
        }
    raise ConfigError(f"{where}.rule: unknown rule {rule.rule!r}")


# ----------------------------------------------------------------------------- subsampling and splits


def subsample_anomalies(labels: np.ndarray, share: float, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """Keep a seeded random subset of the anomalous sessions so that they make ``share`` of the labeled ones.

    Why: the DeepLog HDFS files hold all 16,838 anomalous blocks but only 4,855 normal ones; HDFS_v1's real
    share is 2.93%. ``n_anomalous = round(n_normal * share / (1 - share))``; all normal and unlabeled sessions
    are kept. Returns the boolean mask of kept sessions (in their original order) and what was done.
    """
    normal = int(np.sum(labels == 0))
    anomalous = np.flatnonzero(labels == 1)
    wanted = int(np.floor(normal * share / (1 - share) + 0.5))
    keep = np.ones(len(labels), dtype=bool)
    if wanted < len(anomalous):
        chosen = rng.choice(anomalous, size=wanted, replace=False)
        keep[anomalous] = False
        keep[chosen] = True
    kept = min(wanted, len(anomalous))
    return keep, {
        "anomaly_share_target": share,
        "anomalous_available": int(len(anomalous)),
        "anomalous_kept": kept,
        "normal": normal,
    }


def split_sizes(count: int, fractions: SplitFractions) -> tuple[int, int, int]:
    """Train, val and test sizes of ``count`` items: train and val rounded half up, test takes the rest."""
    train = min(count, int(np.floor(count * fractions.train + 0.5)))
    val = min(count - train, int(np.floor(count * fractions.val + 0.5)))
    return train, val, count - train - val


def _cut(order: np.ndarray, fractions: SplitFractions, split: np.ndarray) -> None:
    train, val, _ = split_sizes(len(order), fractions)
    split[order[:train]] = "train"
    split[order[train : train + val]] = "val"
    split[order[train + val :]] = "test"


def assign_splits(
    labels: np.ndarray,
    start_times: np.ndarray,
    file_indices: np.ndarray,
    rule: SplitRule,
    fractions: SplitFractions,
    rng: np.random.Generator,
) -> np.ndarray:
    """The split (``train``/``val``/``test``) of every session; sessions are given in generation order."""
    split = np.full(len(labels), "", dtype=object)
    groups = [np.arange(len(labels))]
    if rule.stratify_by == "file":
        groups = [np.flatnonzero(file_indices == value) for value in np.unique(file_indices)]
    for members in groups:
        if rule.method == "chronological":
            times = start_times[members]
            order = members if np.isnan(times).any() else members[np.argsort(times, kind="stable")]
            _cut(order, fractions, split)
            continue
        for stratum in (labels[members] == 1, labels[members] == 0, np.isnan(labels[members])):
            chosen = members[stratum]
            _cut(chosen[rng.permutation(len(chosen))], fractions, split)
    return split


# ----------------------------------------------------------------------------- stage


def _load_events(params: Params, name: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """The parsed events of a dataset (rows with a template), in file order, and the lines left out."""
    dataset = params.datasets[name]
    path = Path(params.paths.parsed) / name / "lines.parquet"
    if not path.is_file():
        raise DataError(f"{path}: parsed lines not found (run pipeline/parse.py {name})")
    columns = list(LINE_COLUMNS)
    if dataset.kind == "sessions":
        columns.append("session_key")
    group_column = group_by_column(dataset.session)
    if group_column is not None:
        columns.append(group_column)
    available = pq.read_schema(path).names
    missing = [column for column in columns if column not in available]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    lines = pd.read_parquet(path, columns=columns)
    usable = (lines["status"] == STATUS_PARSED) & lines["template"].notna()
    events = lines[usable.to_numpy()].reset_index(drop=True)
    if events.empty:
        raise DataError(f"{path}: no parsed lines to sessionize")
    return events, {"lines": int(len(lines)), "lines_not_parsed": int((~usable).sum())}


def build_sessions(params: Params, name: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The sessions table of one dataset (schema of ``sessions.parquet``) and its metrics; writes nothing."""
    dataset = dataset_config(params, name)
    events, counts = _load_events(params, name)
    where = f"datasets.{name}.session"
    if dataset.kind == "sessions":
        sessions = preparsed_sessions(events)
    elif dataset.session is None:
        raise ConfigError(f"{where}: missing key (required for kind {dataset.kind})")
    elif dataset.session.rule == "key":
        if not dataset.session.key_regex:
            raise ConfigError(f"{where}.key_regex: missing key (required for rule key)")
        sessions = key_sessions(events, dataset.session.key_regex)
    else:
        multiple_files = events["file_index"].nunique() > 1
        sessions = window_sessions(events, dataset.session, multiple_files, where)
    if not sessions.ids:
        raise DataError(f"{Path(params.paths.parsed) / name / 'lines.parquet'}: no sessions ({where} found none)")
    if len(set(sessions.ids)) != len(sessions.ids):
        raise DataError(f"{where}: session ids are not unique")

    labels, label_rule, label_counts = session_labels(params, name, events, sessions)
    subsample_rng, split_rng = (np.random.default_rng(seed) for seed in np.random.SeedSequence(params.seed).spawn(2))
    subsampling: dict[str, Any] | None = None
    keep = np.ones(len(labels), dtype=bool)
    if dataset.anomaly_share is not None:
        keep, subsampling = subsample_anomalies(labels, dataset.anomaly_share, subsample_rng)

    kept = np.flatnonzero(keep)
    templates_column = events["template"].to_numpy(dtype=object)
    times = events["timestamp"].to_numpy(dtype="float64")
    file_column = events["file_index"].to_numpy()
    rows = [sessions.rows[index] for index in kept]
    labels = labels[kept]
    start_times = np.array([times[session_rows[0]] for session_rows in rows], dtype="float64")
    file_indices = np.array([file_column[session_rows[0]] for session_rows in rows], dtype="int16")
    split = assign_splits(labels, start_times, file_indices, dataset.split, params.sessionize.split, split_rng)

    table = pd.DataFrame(
        {
            "session_id": pd.Series([sessions.ids[index] for index in kept], dtype="string"),
            "templates": [templates_column[session_rows].tolist() for session_rows in rows],
            "label": pd.Series(pd.array(np.where(np.isnan(labels), None, labels), dtype="Int8")),
            "start_time": start_times,
            "split": pd.Series(split, dtype="string"),
            "file_index": file_indices,
        }
    )
    metrics = session_metrics(name, table, label_rule)
    metrics.update(counts)
    metrics.update(sessions.counts)
    metrics.update(label_counts)
    metrics["split_method"] = dataset.split.method + (f", stratified by {dataset.split.stratify_by}" if dataset.split.stratify_by else "")
    if dataset.split.method == "random":
        metrics["split_method"] += ", stratified by label"
    if subsampling is not None:
        metrics["subsampling"] = subsampling
    return table, metrics


def session_metrics(name: str, table: pd.DataFrame, label_rule: str) -> dict[str, Any]:
    """Counts of a sessions table: sessions, anomalous share among labeled ones, lengths, per split."""
    lengths = table["templates"].map(len)
    labeled = table["label"].notna()
    anomalous = int((table["label"] == 1).sum())
    per_split = {}
    for split in SPLITS:
        chosen = table["split"] == split
        per_split[split] = {
            "sessions": int(chosen.sum()),
            "anomalous": int((table["label"][chosen] == 1).sum()),
            "unlabeled": int(table["label"][chosen].isna().sum()),
        }
    return {
        "dataset": name,
        "label_rule": label_rule,
        "sessions": int(len(table)),
        "anomalous": anomalous,
        "anomalous_share": round(anomalous / int(labeled.sum()), 6) if labeled.any() else None,
        "unlabeled": int((~labeled).sum()),
        "mean_length": round(float(lengths.mean()), 3),
        "max_length": int(lengths.max()),
        "splits": per_split,
    }


def write_sessions(target: Path, table: pd.DataFrame, metadata: dict[str, str]) -> None:
    """Write ``sessions.parquet`` with the fixed schema and key-value metadata (``label_rule``, ``dataset``)."""
    arrow = pa.Table.from_pandas(table, schema=SESSION_SCHEMA, preserve_index=False)
    existing = arrow.schema.metadata or {}
    arrow = arrow.replace_schema_metadata({**existing, **{key.encode(): value.encode() for key, value in metadata.items()}})
    with atomic_path(target) as temporary:
        pq.write_table(arrow, temporary)


def sessionize_dataset(params: Params, name: str) -> None:
    """Stage sessionize: write ``paths.sessions/<name>/sessions.parquet`` and ``paths.metrics/sessionize/<name>.json``."""
    table, metrics = build_sessions(params, name)
    with atomic_directory(Path(params.paths.sessions) / name) as output:
        write_sessions(output / "sessions.parquet", table, {"label_rule": metrics["label_rule"], "dataset": name})
    write_json(Path(params.paths.metrics) / "sessionize" / f"{name}.json", metrics)
    share = metrics["anomalous_share"]
    print(
        f"{name}: {metrics['sessions']} sessions, "
        f"{'n/a' if share is None else f'{share:.2%}'} anomalous ({metrics['label_rule']}), "
        f"{metrics['unlabeled']} unlabeled, length mean {metrics['mean_length']:.1f} max {metrics['max_length']}"
    )


def read_sessions(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a ``sessions.parquet`` and its key-value metadata (for later stages and tests)."""
    table = pq.read_table(path)
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items() if key != b"pandas"}
    return table.to_pandas(), metadata


__all__ = [
    "any_anomalous",
    "assign_splits",
    "build_sessions",
    "key_sessions",
    "preparsed_sessions",
    "read_sessions",
    "session_labels",
    "sessionize_dataset",
    "split_sizes",
    "subsample_anomalies",
    "window_sessions",
]
