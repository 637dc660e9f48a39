"""Stage sessionize: group one dataset's parsed lines into labeled sessions and split them train/val/test.

Why: the model classifies sessions (event sequences), not lines (docs/method.md, "Data and sessions"). A session is
a block or an instance (``key`` rule), a window of lines or seconds (``window`` rule), or a session given by a
pre-parsed dataset. Labels come only from real ground truth (``label`` rules below); a session with no ground truth
keeps a null label and is counted, never guessed.

Session rules (``datasets.<name>.session``):
- ``key``: ``key_regex`` (one group) over each parsed line's ``content``; a line naming several keys joins each
  of their sessions; sessions in first-seen order; lines with no key are counted and belong to no session. A
  continuation line that is an event (``multiline.events: each_line``) joins its record's sessions.
- ``file``: one session per log file (one file per run, container, ...), keyed by the file's path in the download
  stage's manifest (relative to the dataset folder; a folder or glob in ``files.logs`` keeps the path below it);
  with ``key_regex`` (one group) the key is the group it finds in that path, and files sharing a key form one
  session (their events in file order, then line order), e.g. ``'^([^/]+)/'`` is one session per folder. Files
  whose path the regex does not match are counted and belong to no session.
- ``window``: ``size``/``step`` lines (``unit: lines``) or seconds (``unit: seconds``) in line order, separately
  per log file and, with ``group_by``, per value of that header column (MetaLog windows BGL per node);
  session id ``<group>:<first line number>``.
- pre-parsed ``sessions`` datasets: one session per ``session_key``.

Label rules (``datasets.<name>.label.rule``): ``key_file`` (CSV of key, Anomaly/Normal; a key missing from it
gets a null label), ``key_list`` (keys listed in the file are anomalous, every other session normal),
``source_file`` (sessions from log file 0 are anomalous, the MetaLog convention for OpenStack), ``line_field``
(a session is anomalous if any of its lines is; null if none is and some line has no label).

Levels: where the parsed lines carry a ``level`` (the log format has a ``<Level>`` field), each session keeps its
events' levels in ``levels``, parallel to ``templates`` (for the label-free ``level_rule`` baseline); where no line
has one, ``levels`` is null for every session.

Splits (``sessionize.split`` fractions, ``datasets.<name>.split``): ``chronological`` sorts by start time (line
order when a session has none) and cuts; ``random`` shuffles with ``params.seed`` **within each label class**
(anomalous, normal, unlabeled), so every split keeps the dataset's anomaly share even when anomalies are few;
``stratify_by: file`` applies the method within each log file separately.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from zerolog.artifacts import ArtifactPaths
from zerolog.config import (
    ConfigError,
    DatasetConfig,
    ParallelConfig,
    Params,
    SessionizeConfig,
    SessionRule,
    SplitFractions,
    SplitRule,
)
from zerolog.data import LOWER_CASE_FIELDS, datasets
from zerolog.data.parse import read_manifest
from zerolog.data.stream_parse import STATUS_CONTINUATION, line_parts, usable_lines
from zerolog.errors import DataError
from zerolog.io import write_json
from zerolog.parallel import InlinePool, map_ordered, open_pool, worker_count
from zerolog.runner import Outputs

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
        ("levels", pa.list_(pa.string())),  # parallel to templates; null where the data has no level field
    ]
)

LINE_COLUMNS = ["file_index", "line_number", "timestamp", "content", "template", "label", "status", "event_id"]

#: Lines read from lines.parquet at a time: memory is bounded by this batch plus compact per-event integer arrays.
BATCH_LINES = 200_000
#: Parts read by the workers ahead of the one being merged, per worker (bounds the results held at once).
PARTS_AHEAD_PER_WORKER = 2
#: Sessions written to sessions.parquet per row group: bounds the template strings materialised at once.
WRITE_SESSIONS = 65_536
#: Unknown line label in ``Events.labels`` (the column is nullable).
UNKNOWN_LABEL = -1


@dataclass
class Events:
    """The parsed events of a dataset (lines with a template), in file order, as compact columns.

    Why not a DataFrame of strings: at full size (HDFS_v1, 11M lines) one Python string per line and column
    costs gigabytes. Templates, groups and pre-parsed session keys are integer codes into small vocabularies;
    the key rule's session keys are extracted while the lines stream by (``KeyCollector``), so ``content`` is
    never held for the whole file.
    """

    file_index: np.ndarray  # (events,) int16
    line_number: np.ndarray  # (events,) int64
    timestamp: np.ndarray  # (events,) float64, NaN unknown
    labels: np.ndarray  # (events,) int8: 1, 0, UNKNOWN_LABEL
    template_codes: np.ndarray  # (events,) int32 into ``templates``
    templates: list[str]  # template text per code, first-seen order
    group_codes: np.ndarray | None = None  # (events,) int32 into ``groups``: group_by column or session_key
    groups: list[str] = field(default_factory=list)
    level_codes: np.ndarray | None = None  # (events,) int32 into ``levels``, -1 no level; None: no line has one
    levels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.template_codes)


@dataclass
class Sessions:
    """Sessions as positions into the events, flattened, in generation order, plus what was counted.

    Session ``i`` is ``positions[offsets[i]:offsets[i + 1]]`` (never empty), its events in event order.
    """

    ids: list[str]
    positions: np.ndarray  # (members,) int64 positions into the events, session after session
    offsets: np.ndarray  # (sessions + 1,) int64
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def lengths(self) -> np.ndarray:
        """(sessions,) int64 events per session."""
        return np.diff(self.offsets)

    @property
    def first_positions(self) -> np.ndarray:
        """(sessions,) int64 position of each session's first event."""
        return self.positions[self.offsets[:-1]]


def _codes_in_first_seen_order(values: pa.Array, codes: dict[str, int]) -> np.ndarray:
    """Integer codes (int32) of string ``values`` (no nulls), extending ``codes`` (text -> code) with new texts."""
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    local = np.fromiter(
        (codes.setdefault(text, len(codes)) for text in encoded.dictionary.to_pylist()), dtype=np.int32
    )  # (distinct in batch,) batch dictionary -> global code
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    return local[indices] if len(local) else np.zeros(len(indices), dtype=np.int32)


def flat_groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group event positions by integer ``keys`` (events,), groups in first-seen order, positions in event order.

    Returns ``(first, positions, offsets)``: ``first`` (groups,) position of each group's first event,
    ``positions`` (events,) int64 and ``offsets`` (groups + 1,) int64 as in ``Sessions``.
    """
    uniques, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    by_first = np.argsort(first, kind="stable")  # (groups,) unique index in first-seen order
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[by_first] = np.arange(len(uniques))
    group_of_event = rank[inverse.reshape(-1)]  # (events,)
    positions = np.argsort(group_of_event, kind="stable").astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(np.bincount(group_of_event, minlength=len(uniques))))).astype(np.int64)
    return first[by_first], positions, offsets


# ----------------------------------------------------------------------------- session rules


def _code_map(values: list[Any], global_codes: dict[Any, int]) -> np.ndarray:
    """(values,) int32: the code of each of a part's values in ``global_codes``, which gains the values it lacks in
    the order given (a part's own first-seen order), so merged parts keep one pass's first-seen codes."""
    return np.fromiter((global_codes.setdefault(value, len(global_codes)) for value in values), dtype=np.int32,
                       count=len(values))  # fmt: skip


def keys_in(content: str | None, find_all: Callable[[str], list[Any]]) -> list[Any]:
    """The ``key`` rule on one line: the distinct keys ``find_all`` (a compiled ``key_regex``'s ``findall``) finds
    in its content, in order of appearance (a key named twice in a line counts once); none for a line without
    content. The one home of the rule, for this stage and ``zerolog detect``."""
    found = find_all(content) if isinstance(content, str) else []
    return found if len(found) <= 1 else list(dict.fromkeys(found))


class KeyCollector:
    """``key`` rule, batch by batch: one session per distinct key found by ``key_regex``'s group in the content.

    Each batch's contents are matched (Python ``re``, the rule's own engine) and dropped; what stays is one
    (session code, event position) pair per line and key, as int arrays, and the key -> code dict (one entry per
    session). ``sessions()`` groups the pairs by a stable sort on the code: sessions in first-seen order, each
    session's events in line order.
    """

    def __init__(self, key_regex: str) -> None:
        self.key_regex = key_regex
        self.find_all = re.compile(key_regex).findall
        self.codes: dict[Any, int] = {}  # key -> session code, first-seen order
        self.session_chunks: list[np.ndarray] = []  # per batch: (pairs,) int32 session codes
        self.position_chunks: list[np.ndarray] = []  # per batch: (pairs,) int64 event positions
        self.without_key = 0
        self.several_keys = 0
        self.record_keys: list[Any] | None = None  # keys of the last record's first line (None: none seen yet)
        self.waiting: list[int] = []  # continuation events before this collector's first record (another part's)

    def add(self, contents: list[str | None], first_position: int, continuation: list[bool] | None = None) -> None:
        """Match one batch of events' contents; ``first_position`` is the first one's event position. An event
        marked in ``continuation`` takes the keys of its record (the last event not so marked)."""
        find_all = self.find_all
        session_codes: list[int] = []
        positions: list[int] = []
        continued = continuation if continuation is not None else [False] * len(contents)
        for position, (content, is_continuation) in enumerate(zip(contents, continued, strict=True),
                                                              start=first_position):  # fmt: skip
            if not is_continuation:
                self.record_keys = keys = keys_in(content, find_all)
            elif self.record_keys is None:
                self.waiting.append(position)
                continue
            else:
                keys = self.record_keys
            self._pair(keys, position, session_codes, positions)
        self.session_chunks.append(np.array(session_codes, dtype=np.int32))
        self.position_chunks.append(np.array(positions, dtype=np.int64))

    def _pair(self, keys: list[Any], position: int, session_codes: list[int], positions: list[int]) -> None:
        """One event's (session code, position) pairs, one per key; counted when it has none or several."""
        if not keys:
            self.without_key += 1
            return
        self.several_keys += len(keys) > 1
        for key in keys:
            session_codes.append(self.codes.setdefault(key, len(self.codes)))
            positions.append(position)

    def merge(self, part: KeyCollector, first_position: int) -> None:
        """Append what ``part`` collected from the events that follow (its positions start at 0, here at
        ``first_position``): its keys new here get codes in its first-seen order, so merging the parts of a file
        in order gives the codes, pairs and counts of one collector over the whole file."""
        if part.waiting:  # continuation events of a record in an earlier part: its keys, before the part's own
            waiting_codes: list[int] = []
            waiting_positions: list[int] = []
            for position in part.waiting:
                self._pair(self.record_keys or [], position + first_position, waiting_codes, waiting_positions)
            self.session_chunks.append(np.array(waiting_codes, dtype=np.int32))
            self.position_chunks.append(np.array(waiting_positions, dtype=np.int64))
        remap = _code_map(list(part.codes), self.codes)  # (part keys,) part code -> code here
        for session_codes, positions in zip(part.session_chunks, part.position_chunks, strict=True):
            self.session_chunks.append(remap[session_codes] if len(session_codes) else session_codes)
            self.position_chunks.append(positions + first_position)
        self.without_key += part.without_key
        self.several_keys += part.several_keys
        if part.record_keys is not None:
            self.record_keys = part.record_keys

    def sessions(self) -> Sessions:
        """The collected sessions (ids are the keys, in first-seen order)."""
        session_codes = np.concatenate(self.session_chunks) if self.session_chunks else np.zeros(0, np.int32)
        self.session_chunks = []
        positions = np.concatenate(self.position_chunks) if self.position_chunks else np.zeros(0, np.int64)
        self.position_chunks = []
        if len(positions) and positions[-1] < np.iinfo(np.int32).max:
            positions = positions.astype(np.int32)  # halves the largest array while it is sorted
        order = np.argsort(session_codes, kind="stable")  # (pairs,) grouped by session, line order within
        positions = positions[order].astype(np.int64)
        counts = np.bincount(session_codes, minlength=len(self.codes))  # (sessions,)
        del order, session_codes
        offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        return Sessions(
            list(self.codes),
            positions,
            offsets,
            {"lines_without_key": self.without_key, "lines_with_several_keys": self.several_keys},
        )


def _window_bounds_lines(size: int, step: int, count: int) -> list[tuple[int, int]]:
    """Windows of ``size`` positions every ``step``; the last one ends at ``count`` (it may be shorter)."""
    bounds = []
    for start in range(0, count, step):
        bounds.append((start, min(start + size, count)))
        if start + size >= count:
            break
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


def window_sessions(events: Events, rule: SessionRule, multiple_files: bool, where: str) -> Sessions:
    """``window`` rule: windows over lines or seconds, per log file and per ``group_by`` value, in line order.

    ``events.group_codes`` holds the ``group_by`` values (null read as ``<none>``) when the rule has one.
    """
    if rule.size is None or rule.step is None:
        raise ConfigError(f"{where}: size and step are required for rule window")
    if rule.group_by is not None and events.group_codes is None:
        raise ConfigError(f"{where}.group_by: {rule.group_by!r} is not a column of the parsed lines")
    file_index = events.file_index.astype(np.int64)
    group_codes = events.group_codes
    if rule.group_by is None or group_codes is None:  # checked above: a group_by has group codes
        group_codes = np.zeros(len(events), dtype=np.int32)
    group_count = max(len(events.groups), 1)
    first, members, member_offsets = flat_groups(file_index * group_count + group_codes)
    ids: list[str] = []
    windows: list[np.ndarray] = []
    without_time = 0
    line_numbers = events.line_number
    times_all = events.timestamp
    for group, first_position in enumerate(first):
        positions = members[member_offsets[group] : member_offsets[group + 1]]
        file_value = int(events.file_index[first_position])
        if rule.group_by is None:
            name = str(file_value)
        else:
            value = events.groups[group_codes[first_position]]
            name = f"{file_value}/{value}" if multiple_files else str(value)
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
            windows.append(window)
    lengths = np.array([len(window) for window in windows], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    positions_all = np.concatenate(windows).astype(np.int64) if windows else np.zeros(0, np.int64)
    counts = {"lines_without_timestamp": without_time} if rule.unit == "seconds" else {}
    return Sessions(ids, positions_all, offsets, counts)


def file_sessions(events: Events, rule: SessionRule, log_paths: list[str]) -> Sessions:
    """``file`` rule: a session per distinct key of the log files (the path, or ``key_regex``'s group in it).

    ``log_paths`` are the manifest's ``logs`` in file_index order (sorted by the download stage). Sessions come in
    first-seen order, i.e. the files' order; each session's events in file order, then line order.
    """
    pattern = re.compile(rule.key_regex) if rule.key_regex else None
    codes: dict[str, int] = {}
    code_of_file = np.full(len(log_paths), -1, dtype=np.int64)  # (files,) session code, -1 no key
    for index, path in enumerate(log_paths):
        found = pattern.search(path) if pattern is not None else None
        if pattern is not None and found is None:
            continue
        code_of_file[index] = codes.setdefault(found.group(1) if found is not None else path, len(codes))
    if events.file_index.size and int(events.file_index.max()) >= len(log_paths):
        raise DataError(
            f"parsed lines name log file {int(events.file_index.max())}; the manifest lists {len(log_paths)}"
        )
    event_codes = code_of_file[events.file_index.astype(np.int64)]  # (events,)
    keyed = np.flatnonzero(event_codes >= 0)  # (keyed events,) positions
    first, positions, offsets = flat_groups(event_codes[keyed])
    names = list(codes)
    ids = [names[code] for code in event_codes[keyed[first]]]
    counts = {
        "log_files": len(log_paths),
        "files_without_key": int((code_of_file < 0).sum()),
        "lines_without_key": int(len(events) - len(keyed)),
    }
    return Sessions(ids, keyed[positions].astype(np.int64), offsets, counts)


def preparsed_sessions(events: Events) -> Sessions:
    """Pre-parsed ``sessions`` datasets: one session per (file, ``session_key``), in file order.

    ``events.group_codes`` holds the ``session_key`` codes (into ``events.groups``).
    """
    if events.group_codes is None:
        raise ConfigError("pre-parsed sessions need the session_key column")
    key_count = max(len(events.groups), 1)
    first, positions, offsets = flat_groups(events.file_index.astype(np.int64) * key_count + events.group_codes)
    ids = [str(events.groups[code]) for code in events.group_codes[first]]
    return Sessions(ids, positions, offsets)


# ----------------------------------------------------------------------------- label rules


def any_anomalous(line_labels: np.ndarray, sessions: Sessions) -> np.ndarray:
    """(sessions,) float labels from line labels (events,) int8: 1 if any line is 1, else NaN if any is unknown
    (``UNKNOWN_LABEL``), else 0."""
    member_labels = line_labels[sessions.positions]  # (members,)
    starts = sessions.offsets[:-1]
    anomalous = np.logical_or.reduceat(member_labels == 1, starts) if len(starts) else np.zeros(0, bool)
    unknown = np.logical_or.reduceat(member_labels == UNKNOWN_LABEL, starts) if len(starts) else np.zeros(0, bool)
    return np.where(anomalous, 1.0, np.where(unknown, np.nan, 0.0))


def session_labels(
    dataset: DatasetConfig, name: str, events: Events, sessions: Sessions, label_file: LabelFile | None = None
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Labels (float: 1, 0, NaN unknown) of every session, the rule used, and what the rule counted;
    ``label_file``: the manifest's label file, read for a ``key_file`` or ``key_list`` rule."""
    where = f"datasets.{name}.label"
    if dataset.kind == "sessions":
        return any_anomalous(events.labels, sessions), PREPARSED_LABEL_RULE, {}
    rule = dataset.label
    if rule is None:
        return np.full(len(sessions.ids), np.nan), NO_LABEL_RULE, {}
    if rule.rule == "line_field":
        return any_anomalous(events.labels, sessions), rule.rule, {}
    if rule.rule == "source_file":
        labels = np.where(events.file_index[sessions.first_positions] == 0, 1.0, 0.0)
        return labels, rule.rule, {}
    if rule.rule not in LABEL_FILE_RULES or label_file is None:
        raise ConfigError(f"{where}.rule: unknown rule {rule.rule!r}")
    label_path = label_file.path
    if rule.rule == "key_file":
        table = label_file.content
        labels = np.array([float(table[key]) if key in table else np.nan for key in sessions.ids], dtype="float64")
        found = int(np.count_nonzero(~np.isnan(labels)))
        if found == 0:
            # A full label table that labels no session means the keys do not match (another key format, another
            # log): every session would be unlabeled and the dataset silently useless.
            raise DataError(
                f"{label_path}: none of its {len(table)} keys names a session of the log (its first key "
                f"{next(iter(table))!r}, the first session {sessions.ids[0]!r}); check datasets.{name}.session"
            )
        return (
            labels,
            rule.rule,
            {
                "keys_missing_from_label_file": len(sessions.ids) - found,
                "label_file_keys": len(table),
                "label_file_keys_without_session": len(table) - found,
            },
        )
    listed, skipped = label_file.content  # key_list
    labels = np.array([1.0 if key in listed else 0.0 for key in sessions.ids], dtype="float64")
    present = set(sessions.ids)
    return (
        labels,
        rule.rule,
        {
            "listed_keys": len(listed),
            "listed_keys_found": sum(key in present for key in listed),
            "label_file_lines_skipped": skipped,
        },
    )


#: The label rules that read the manifest's ``labels`` file.
LABEL_FILE_RULES = ("key_file", "key_list")


@dataclass(frozen=True)
class LabelFile:
    """The manifest's label file and what it holds: ``{key: label}`` (key_file) or ``(listed keys, lines skipped)``
    (key_list)."""

    path: Path
    content: Any


# ----------------------------------------------------------------------------- subsampling and splits


def subsample_anomalies(
    labels: np.ndarray, share: float, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
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


def _columns_to_read(path: Path, dataset: Any, collector: KeyCollector | None) -> tuple[list[str], str | None, bool]:
    """The ``lines.parquet`` columns sessionize reads, the grouping column (or None) and whether lines carry a level.
    A missing required column is a one-line DataError naming the file."""
    columns = [column for column in LINE_COLUMNS if column not in ("content", "event_id")]
    required = list(LINE_COLUMNS)
    group_column = "session_key" if dataset.kind == "sessions" else group_by_column(dataset.session)
    if group_column is not None:
        required.append(group_column)
        columns.append(group_column)
    if collector is not None:
        columns.append("content")
    available = pq.read_schema(line_parts(path)[0]).names  # every part has the same schema
    missing = [column for column in required if column not in available]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    has_level = "level" in available
    if has_level:
        columns.append("level")
    return columns, group_column, has_level


def _remapped(codes: np.ndarray, texts: list[str], global_codes: dict[str, int]) -> np.ndarray:
    """(events,) int32 ``codes`` into ``texts`` as codes into ``global_codes`` (extended in the order of
    ``texts``); -1 (no value) stays -1."""
    remap = _code_map(texts, global_codes)
    if not len(remap):
        return codes.astype(np.int32)
    return np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int32)


@dataclass
class _EventChunks:
    """The usable events of line batches as arrays per column; strings as codes in first-seen order."""

    group_column: str | None
    has_level: bool
    chunks: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {
            key: [] for key in ("file_index", "line_number", "timestamp", "labels", "templates", "groups", "levels")
        }
    )
    template_codes: dict[str, int] = field(default_factory=dict)
    group_codes: dict[str, int] = field(default_factory=dict)
    level_codes: dict[str, int] = field(default_factory=dict)

    def add(self, batch: pa.RecordBatch) -> None:
        """Append one batch of usable lines (parsed, with a template)."""
        self.chunks["file_index"].append(batch.column("file_index").to_numpy(zero_copy_only=False).astype(np.int16))
        self.chunks["line_number"].append(batch.column("line_number").to_numpy(zero_copy_only=False).astype(np.int64))
        timestamp = pc.cast(batch.column("timestamp"), pa.float64())
        self.chunks["timestamp"].append(pc.fill_null(timestamp, np.nan).to_numpy(zero_copy_only=False))
        label = pc.fill_null(pc.cast(batch.column("label"), pa.int8()), UNKNOWN_LABEL)
        self.chunks["labels"].append(label.to_numpy(zero_copy_only=False).astype(np.int8))
        self.chunks["templates"].append(_codes_in_first_seen_order(batch.column("template"), self.template_codes))
        if self.group_column is not None:
            values = pc.fill_null(pc.cast(batch.column(self.group_column), pa.string()), "<none>")
            self.chunks["groups"].append(_codes_in_first_seen_order(values, self.group_codes))
        if self.has_level:  # -1 where a line has no level
            level = batch.column("level")
            valid = pc.is_valid(level).to_numpy(zero_copy_only=False)  # (lines,)
            codes = np.full(len(level), -1, dtype=np.int32)
            if valid.any():
                codes[valid] = _codes_in_first_seen_order(level.filter(pa.array(valid)), self.level_codes)
            self.chunks["levels"].append(codes)

    def merge(self, part: Events) -> None:
        """Append the events of the next part, read by another ``_EventChunks``: its codes are mapped to codes here
        in its first-seen order, which gives what reading that part's batches here would have given."""
        for key in ("file_index", "line_number", "timestamp", "labels"):
            self.chunks[key].append(getattr(part, key))
        self.chunks["templates"].append(_remapped(part.template_codes, part.templates, self.template_codes))
        if self.group_column is not None:
            assert part.group_codes is not None  # read with the same group column
            self.chunks["groups"].append(_remapped(part.group_codes, part.groups, self.group_codes))
        if self.has_level:
            levels = part.level_codes if part.level_codes is not None else np.full(len(part), -1, dtype=np.int32)
            self.chunks["levels"].append(_remapped(levels, part.levels, self.level_codes))

    def _joined(self, key: str) -> np.ndarray:
        array = np.concatenate(self.chunks[key])
        self.chunks[key] = []  # hand the pieces back as soon as they are joined
        return array

    def events(self) -> Events:
        return Events(
            file_index=self._joined("file_index"),
            line_number=self._joined("line_number"),
            timestamp=self._joined("timestamp"),
            labels=self._joined("labels"),
            template_codes=self._joined("templates"),
            templates=list(self.template_codes),
            group_codes=self._joined("groups") if self.group_column is not None else None,
            groups=list(self.group_codes),
            # no line with a level: the data has no level field
            level_codes=self._joined("levels") if self.level_codes else None,
            levels=list(self.level_codes),
        )


@dataclass
class _PartEvents:
    """What one part of ``lines.parquet`` gives (``_read_part``): its usable events with codes of its own, its
    ``key`` rule pairs (positions from 0 within the part; None for other rules) and how many lines it holds."""

    events: Events | None  # None: no usable line in the part
    keys: KeyCollector | None
    lines: int


def _read_part(part: str, columns: list[str], group_column: str | None, has_level: bool,
               key_regex: str | None) -> _PartEvents:  # fmt: skip
    """The chunk map of sessionize (a worker's task): read one part in batches of ``BATCH_LINES``, keep the usable
    lines (parsed, with a template) as compact codes and match the key rule on their ``content``. Reads one file
    and writes nothing, so a task run twice (its worker died) gives the same result once."""
    chunks = _EventChunks(group_column, has_level)
    keys = KeyCollector(key_regex) if key_regex is not None else None
    lines = events = 0
    # template, status and level are read as dictionary indices (never one string per line); pre_buffer=False: with
    # it, Arrow reads ahead and holds several row groups (hundreds of MiB at full size).
    reader = pq.ParquetFile(part, pre_buffer=False,
                            read_dictionary=["template", "status", *(["level"] if has_level else [])])  # fmt: skip
    for batch in reader.iter_batches(batch_size=BATCH_LINES, columns=columns, use_threads=False):
        lines += batch.num_rows
        usable = usable_lines(batch)
        if usable.num_rows == 0:
            continue
        chunks.add(usable)
        if keys is not None:
            status = usable.column("status")
            continuation = [text == STATUS_CONTINUATION for text in status.dictionary.to_pylist()]
            marks = [continuation[code] for code in status.indices.to_pylist()] if any(continuation) else None
            keys.add(usable.column("content").to_pylist(), events, marks)
        events += usable.num_rows
    return _PartEvents(chunks.events() if events else None, keys, lines)


def _part_results(parallel: ParallelConfig, parts: list[Path], arguments: tuple[Any, ...]) -> Iterator[_PartEvents]:
    """``_read_part`` of every part, in part order: in this process for one part, else on the pool that
    ``sessionize.parallel`` names (a Dask LocalCluster by default; zerolog.parallel)."""
    remote = len(parts) > 1 and (worker_count(parallel) > 1 or bool(parallel.scheduler_address))
    items = ((str(part.resolve()), *arguments) for part in parts)  # absolute: a cluster's workers run elsewhere
    with open_pool(parallel, "sessionize.parallel") if remote else contextlib.nullcontext(InlinePool()) as pool:
        yield from map_ordered(pool, _read_part, items, PARTS_AHEAD_PER_WORKER * pool.workers)


def _load_events(path: Path, config: DatasetConfig, parallel: ParallelConfig, name: str,
                 collector: KeyCollector | None = None) -> tuple[Events, dict[str, int]]:  # fmt: skip
    """The parsed events of a dataset (rows with a template of ``lines.parquet`` at ``path``), in file order, and
    the lines left out.

    The parts of ``lines.parquet`` are read by ``_read_part`` (on workers when there are several) and merged here in
    part order, so the codes, events and key pairs are those of one pass over the file; ``content`` goes to the key
    rule part by part and is not kept.
    """
    if not path.exists():
        raise DataError(f"{path}: parsed lines not found (run pipeline/parse.py {name})")
    columns, group_column, has_level = _columns_to_read(path, config, collector)
    chunks = _EventChunks(group_column, has_level)
    key_regex = None if collector is None else collector.key_regex
    lines = events_so_far = 0
    arguments = (columns, group_column, has_level, key_regex)
    for part in _part_results(parallel, line_parts(path), arguments):
        lines += part.lines
        if part.events is None:
            continue
        chunks.merge(part.events)
        if collector is not None:
            assert part.keys is not None
            collector.merge(part.keys, events_so_far)
        events_so_far += len(part.events)
    if events_so_far == 0:
        raise DataError(f"{path}: no parsed lines to sessionize")
    pa.default_memory_pool().release_unused()  # the batches are gone: hand Arrow's freed pages back
    return chunks.events(), {"lines": int(lines), "lines_not_parsed": int(lines - events_so_far)}


@dataclass
class SessionTable:
    """The sessions of ``sessions.parquet`` in row order, compactly: template codes instead of template lists.

    Session ``i`` has the events ``template_codes[offsets[i]:offsets[i + 1]]`` (codes into ``templates``).
    """

    session_ids: list[str]
    templates: list[str]  # template text per code
    template_codes: np.ndarray  # (events of kept sessions,) int32
    offsets: np.ndarray  # (sessions + 1,) int64
    labels: np.ndarray  # (sessions,) float64: 1, 0, NaN unlabeled
    start_times: np.ndarray  # (sessions,) float64
    split: np.ndarray  # (sessions,) object: train / val / test
    file_indices: np.ndarray  # (sessions,) int16
    level_codes: np.ndarray | None = None  # (events of kept sessions,) int32 into ``levels``, -1 none; None: no levels
    levels: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.session_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def arrow(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Sessions ``start:stop`` as an Arrow table of ``SESSION_SCHEMA`` (the template texts materialised)."""
        stop = len(self) if stop is None else stop
        offsets = self.offsets[start : stop + 1]
        codes = self.template_codes[offsets[0] : offsets[-1]]  # (events of these sessions,)
        values = pa.array(self.templates, type=pa.string()).take(pa.array(codes))
        templates = pa.ListArray.from_arrays(pa.array(offsets - offsets[0], type=pa.int32()), values)
        labels = self.labels[start:stop]
        columns = [
            pa.array(self.session_ids[start:stop], type=pa.string()),
            templates,
            pa.array(np.nan_to_num(labels, nan=0).astype(np.int8), mask=np.isnan(labels), type=pa.int8()),
            pa.array(self.start_times[start:stop], type=pa.float64()),
            pa.array(self.split[start:stop].tolist(), type=pa.string()),
            pa.array(self.file_indices[start:stop], type=pa.int16()),
            self._levels(offsets),
        ]
        return pa.Table.from_arrays(columns, schema=SESSION_SCHEMA)

    def _levels(self, offsets: np.ndarray) -> pa.Array:
        """The ``levels`` lists of the sessions whose event ranges ``offsets`` (sessions + 1,) delimit."""
        if self.level_codes is None:
            return pa.nulls(len(offsets) - 1, pa.list_(pa.string()))
        codes = self.level_codes[offsets[0] : offsets[-1]]  # (events of these sessions,)
        values = pa.array(self.levels, type=pa.string()).take(pa.array(codes, mask=codes < 0))
        return pa.ListArray.from_arrays(pa.array(offsets - offsets[0], type=pa.int32()), values)


def _key_collector(dataset: Any, where: str) -> KeyCollector | None:
    """The collector of session keys for ``session.rule: key`` (None for other rules); missing keys are refused."""
    if dataset.kind == "sessions":
        return None
    if dataset.session is None:
        raise ConfigError(f"{where}: missing key (required for kind {dataset.kind})")
    if dataset.session.rule != "key":
        return None
    if not dataset.session.key_regex:
        raise ConfigError(f"{where}.key_regex: missing key (required for rule key)")
    return KeyCollector(dataset.session.key_regex)


def _group_sessions(section: SessionizeSection, inputs: SessionizeInputs) -> Sessions:
    """The dataset's sessions by its rule: pre-parsed, a key in each line, one per file, or windows."""
    dataset, events = section.config, inputs.events
    where = f"datasets.{section.dataset}.session"
    if dataset.kind == "sessions":
        sessions = preparsed_sessions(events)
    elif inputs.collector is not None:
        sessions = inputs.collector.sessions()
    else:
        # kinds raw and events: load_params refuses them without a session rule
        assert dataset.session is not None
        if dataset.session.rule == "file":
            assert inputs.log_paths is not None
            sessions = file_sessions(events, dataset.session, inputs.log_paths)
        else:
            multiple_files = len(np.unique(events.file_index)) > 1
            sessions = window_sessions(events, dataset.session, multiple_files, where)
    if not sessions.ids:
        raise DataError(f"{inputs.lines_path}: no sessions ({where} found none)")
    if len(set(sessions.ids)) != len(sessions.ids):
        raise DataError(f"{where}: session ids are not unique")
    return sessions


def _kept_table(events: Events, sessions: Sessions, labels: np.ndarray, keep: np.ndarray) -> SessionTable:
    """The table of the kept sessions (all, unless anomalies were subsampled), their splits still to assign."""
    kept = np.flatnonzero(keep)  # (kept sessions,)
    first_positions = sessions.first_positions[kept]
    lengths = sessions.lengths[kept]
    if len(kept) == len(sessions.ids):
        member_positions = sessions.positions
    else:
        starts = sessions.offsets[:-1][kept]
        # (kept members,) positions of the kept sessions' events: each kept session's range, concatenated.
        member_positions = sessions.positions[
            np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
        ]
    labels = labels[kept]
    start_times = events.timestamp[first_positions]
    file_indices = events.file_index[first_positions].astype(np.int16)
    return SessionTable(
        session_ids=[sessions.ids[index] for index in kept] if len(kept) != len(sessions.ids) else sessions.ids,
        templates=events.templates,
        template_codes=events.template_codes[member_positions],
        offsets=np.concatenate(([0], np.cumsum(lengths))).astype(np.int64),
        labels=labels,
        start_times=start_times,
        split=np.full(len(kept), "", dtype=object),
        file_indices=file_indices,
        level_codes=events.level_codes[member_positions] if events.level_codes is not None else None,
        levels=events.levels,
    )


@dataclass(frozen=True)
class SessionizeSection:
    """Stage sessionize's settings: the dataset, its section, ``sessionize`` and the data ``seed``."""

    dataset: str
    config: DatasetConfig
    sessionize: SessionizeConfig
    seed: int


def sessionize_section(params: Params, dataset: str) -> SessionizeSection:
    return SessionizeSection(dataset, params.datasets[dataset], params.sessionize, params.seed)


@dataclass
class SessionizeInputs:
    """The parsed events (and, for the key rule, the keys collected while they streamed by), what the rules read
    from the manifest (log paths of the file rule, the label file)."""

    events: Events
    counts: dict[str, int]
    lines_path: Path
    collector: KeyCollector | None = None
    log_paths: list[str] | None = None
    label_file: LabelFile | None = None


def load_sessionize_inputs(section: SessionizeSection, paths: ArtifactPaths) -> SessionizeInputs:
    """The parsed lines as compact events (``lines.parquet`` streamed part by part), and the manifest's files that
    the session and label rules read."""
    name, dataset = section.dataset, section.config
    collector = _key_collector(dataset, f"datasets.{name}.session")
    lines_path = paths.parsed_lines(name)
    events, counts = _load_events(lines_path, dataset, section.sessionize.parallel, name, collector)
    inputs = SessionizeInputs(events, counts, lines_path, collector)
    if dataset.kind != "sessions" and dataset.session is not None and dataset.session.rule == "file":
        inputs.log_paths = list(read_manifest(paths, name, dataset.kind, ["logs"])[1]["files"]["logs"])
    rule = dataset.label.rule if dataset.label is not None and dataset.kind != "sessions" else None
    if rule in LABEL_FILE_RULES:
        folder, manifest = read_manifest(paths, name, dataset.kind, ["labels"])
        path = folder / manifest["files"]["labels"]
        inputs.label_file = LabelFile(
            path, datasets.read_key_file(path) if rule == "key_file" else datasets.read_key_list(path)
        )
    return inputs


@dataclass(frozen=True)
class SessionizeResult:
    """``paths.sessions/<name>/sessions.parquet`` and its counts (``reports/data/sessionize/<name>.json``)."""

    dataset: str
    table: SessionTable
    report: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        return self.report

    def write(self, outputs: Outputs) -> None:
        metrics = self.report
        metadata = {"label_rule": metrics["label_rule"], "dataset": self.dataset}
        write_sessions(outputs["sessions"] / "sessions.parquet", self.table, metadata)
        write_json(outputs["report"], metrics)
        share = metrics["anomalous_share"]
        print(
            f"{self.dataset}: {metrics['sessions']} sessions, "
            f"{'n/a' if share is None else f'{share:.2%}'} anomalous ({metrics['label_rule']}), "
            f"{metrics['unlabeled']} unlabeled, length mean {metrics['mean_length']:.1f} max {metrics['max_length']}"
        )


def compute_sessionize(section: SessionizeSection, inputs: SessionizeInputs) -> SessionizeResult:
    """Stage sessionize: the sessions of one dataset (the rows of ``sessions.parquet``) and its metrics."""
    name, dataset, events = section.dataset, section.config, inputs.events
    sessions = _group_sessions(section, inputs)
    labels, label_rule, label_counts = session_labels(dataset, name, events, sessions, inputs.label_file)
    subsample_rng, split_rng = (np.random.default_rng(seed) for seed in np.random.SeedSequence(section.seed).spawn(2))
    subsampling: dict[str, Any] | None = None
    keep = np.ones(len(labels), dtype=bool)
    if dataset.anomaly_share is not None:
        keep, subsampling = subsample_anomalies(labels, dataset.anomaly_share, subsample_rng)
    table = _kept_table(events, sessions, labels, keep)
    table.split = assign_splits(
        table.labels, table.start_times, table.file_indices, dataset.split, section.sessionize.split, split_rng
    )
    metrics = {**session_metrics(name, table, label_rule), **inputs.counts, **sessions.counts, **label_counts}
    by = dataset.split.stratify_by
    metrics["split_method"] = dataset.split.method + (f", stratified by {by}" if by else "")
    if dataset.split.method == "random":
        metrics["split_method"] += ", stratified by label"
    if subsampling is not None:
        metrics["subsampling"] = subsampling
    return SessionizeResult(name, table, metrics)


def session_metrics(name: str, table: SessionTable, label_rule: str) -> dict[str, Any]:
    """Counts of a sessions table: sessions, anomalous share among labeled ones, lengths, per split."""
    lengths = table.lengths
    labels = table.labels
    labeled = ~np.isnan(labels)
    anomalous = int((labels == 1).sum())
    per_split = {}
    for split in SPLITS:
        chosen = table.split == split
        per_split[split] = {
            "sessions": int(chosen.sum()),
            "anomalous": int((labels[chosen] == 1).sum()),
            "unlabeled": int(np.isnan(labels[chosen]).sum()),
        }
    return {
        "dataset": name,
        "label_rule": label_rule,
        "sessions": len(table),
        "anomalous": anomalous,
        "anomalous_share": round(anomalous / int(labeled.sum()), 6) if labeled.any() else None,
        "unlabeled": int((~labeled).sum()),
        "mean_length": round(float(lengths.mean()), 3),
        "max_length": int(lengths.max()),
        "splits": per_split,
        "level_field": table.level_codes is not None,
        "events_per_level": _events_per_level(table),
    }


def _events_per_level(table: SessionTable) -> dict[str, int] | None:
    """How many events of the sessions carry each level (``<none>``: no level); None where the data has no levels."""
    if table.level_codes is None:
        return None
    counts = np.bincount(table.level_codes + 1, minlength=len(table.levels) + 1)  # (levels + 1,) slot 0: none
    named = {level: int(count) for level, count in zip(table.levels, counts[1:], strict=True) if count}
    return {**named, **({"<none>": int(counts[0])} if counts[0] else {})}


def _pandas_metadata() -> dict[bytes, bytes]:
    """The ``pandas`` key-value metadata that ``pa.Table.from_pandas`` writes for a sessions DataFrame.

    Why: readers (``read_sessions``, ``pd.read_parquet``) restore the nullable dtypes (``string``, ``Int8``) from
    it; the table is built with Arrow directly, so the metadata comes from an empty frame of the same dtypes.
    """
    dtypes = ["string", object, "Int8", "float64", "string", "int16", object]  # SESSION_SCHEMA's columns, in order
    frame = pd.DataFrame(
        {name: pd.Series([], dtype=dtype) for name, dtype in zip(SESSION_SCHEMA.names, dtypes, strict=True)}
    )
    return dict(pa.Table.from_pandas(frame, schema=SESSION_SCHEMA, preserve_index=False).schema.metadata or {})


def write_sessions(target: Path, table: SessionTable, metadata: dict[str, str]) -> None:
    """Write ``sessions.parquet`` with the fixed schema and key-value metadata (``label_rule``, ``dataset``), in row
    groups of ``WRITE_SESSIONS`` sessions so that only one group's template texts are materialised at a time."""
    schema = SESSION_SCHEMA.with_metadata(
        {**_pandas_metadata(), **{key.encode(): value.encode() for key, value in metadata.items()}}
    )
    with pq.ParquetWriter(target, schema) as writer:
        for start in range(0, len(table), WRITE_SESSIONS):
            part = table.arrow(start, min(start + WRITE_SESSIONS, len(table)))
            writer.write_table(part.replace_schema_metadata(schema.metadata))


def read_sessions(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a ``sessions.parquet`` and its key-value metadata (for later stages and tests)."""
    table = pq.read_table(path)
    metadata = {
        key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items() if key != b"pandas"
    }
    return table.to_pandas(), metadata
