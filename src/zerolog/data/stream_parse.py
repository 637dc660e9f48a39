"""Streaming parse: full-size raw logs (Loghub HDFS_v1, 11.2M lines) to ``lines.parquet`` in bounded memory.

Why: the in-memory parse (parse.py) hands every message to logparser3's Drain at once, which loads the file into
pandas and walks it row by row (7–10k lines/s, memory growing with the file). This path gives the same result,
line for line, at a fraction of the time and with memory bounded by the chunk and row-group sizes:

1. **Read** the log files in chunks of ``parse.streaming.chunk_lines`` raw lines (never the whole file).
2. **Mine**: the first ``sample_lines`` lines are parsed in the main process and fed, in order, to the live
   ``DrainMiner`` (logparser3's own Drain steps, matcher.py), which builds the templates.
3. **Match** (``parse_chunk``, a pure function ``(chunk, layout, miner copy) -> ChunkResult`` whose result holds
   the chunk's row group as a ``pyarrow.Table``): per line UTF-8 decode, header regex, masking, and the chunk's
   distinct messages matched against a *copy* of the miner through Drain's prefix tree. Chunks run in
   ``workers`` processes; being pure, the same function could run on Dask or Ray workers unchanged.
4. **Fall back**, in the main process and in file order (``resolve_chunk``): a line whose message the copy could
   not place without changing a template (a new cluster, or a template gaining a ``<*>``), and every later line
   once the live state has moved past the copy, goes through the live miner, so new templates found here are
   added and later chunks are matched against them. The result is exactly logparser3 Drain's sequential run.
5. **Write** each row group as it is complete (``pyarrow.parquet.ParquetWriter``) to a temporary file. Drain
   gives a line the *final* template of its cluster; a template that gained a ``<*>`` after some of its lines
   were written is fixed by one streaming rewrite pass over the row groups (cluster indices are kept in a side
   file of 4 bytes per line). The caller renames the folder into place (atomic).

Output schema: identical to parse.py's ``lines.parquet`` / ``templates.parquet`` (docs/architecture.md); the
per-line building blocks (``header_regex``, ``parse_timestamps``, ``line_labels``, the status values) are
parse.py's own.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import operator
import os
import pickle
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from zerolog.config import ConfigError, LabelRule, ParseConfig, Params, StreamingConfig, SystemConfig, dataset_system
from zerolog.data import datasets
from zerolog.data.matcher import DrainMiner
from zerolog.data.parse import (
    EMPTY_TEMPLATE,
    RENAMED_FIELDS,
    RESERVED_COLUMNS,
    STATUS_NON_UTF8,
    STATUS_PARSED,
    STATUS_UNMATCHED,
    check_file_counts,
    dataset_config,
    header_regex,
    line_labels,
    parse_timestamps,
    parser_arguments,
    read_manifest,
)
from zerolog.errors import DataError
from zerolog.io import atomic_directory, write_json, write_parquet

#: ``key_of_line`` codes of lines without a message for Drain.
NO_MESSAGE = -1  # the line did not match the log format or is not UTF-8: no template
EMPTY_MESSAGE = -2  # the line matched but its message part is empty: the empty template (parse.py's rule)

#: Chunks submitted to the workers ahead of the one being written, per worker (bounds memory).
CHUNKS_AHEAD_PER_WORKER = 2


# ----------------------------------------------------------------------------- line layout


@dataclass(frozen=True)
class LineLayout:
    """How one system's raw lines become ``lines.parquet`` columns; small and picklable (sent with each chunk)."""

    log_format: str
    fields: tuple[str, ...]  # every <Field> of the log format, in order (Content included)
    timestamp_fields: tuple[str, ...]
    timestamp_format: str
    label_field: str | None  # label.rule line_field: the header field holding the line label
    label_normal_value: str | None

    @property
    def header_columns(self) -> list[tuple[str, str]]:
        """(field, column) of every header field except Content, in log-format order."""
        return [(name, RENAMED_FIELDS.get(name, name)) for name in self.fields if name != "Content"]

    @property
    def columns(self) -> list[str]:
        """``lines.parquet`` column order, as parse.py builds it."""
        names = ["file_index", "line_number", "timestamp", "level", "component"]
        for _, column in self.header_columns:
            if column not in names:
                names.append(column)
        return [*names, "content", "event_id", "template", "label", "status"]


def line_layout(system_name: str, system: SystemConfig, label: LabelRule | None, dataset_name: str) -> LineLayout:
    """Build (and check) a system's ``LineLayout``; a bad log format or label field is a one-line ConfigError."""
    where = f"systems.{system_name}"
    try:
        _, fields = header_regex(system.log_format)
    except Exception as error:  # re.error
        raise ConfigError(f"{where}.log_format: invalid regex ({error})") from None
    if "Content" not in fields:
        raise ConfigError(f"{where}.log_format: has no <Content> field")
    for name in fields:
        if name != "Content" and name not in RENAMED_FIELDS and name in RESERVED_COLUMNS:
            raise ConfigError(f"{where}.log_format: field <{name}> would overwrite the column {name!r}")
    for name in system.timestamp.fields:
        if name not in fields:
            raise ConfigError(f"{where}.timestamp.fields: {name!r} is not a field of the log format")
    label_field = normal_value = None
    if label is not None and label.rule == "line_field":
        if label.field not in fields:
            raise ConfigError(f"datasets.{dataset_name}.label.field: {label.field!r} is not a field of the log format")
        if label.normal_value is None:
            raise ConfigError(f"datasets.{dataset_name}.label.normal_value: missing key (required for rule line_field)")
        label_field, normal_value = label.field, label.normal_value
    return LineLayout(
        log_format=system.log_format,
        fields=tuple(fields),
        timestamp_fields=tuple(system.timestamp.fields),
        timestamp_format=system.timestamp.format,
        label_field=label_field,
        label_normal_value=normal_value,
    )


def lines_schema(layout: LineLayout) -> pa.Schema:
    """The Arrow schema (with pandas metadata) that ``io.write_parquet`` gives parse.py's lines table."""
    frame = pd.DataFrame(
        {
            column: pd.Series(
                [],
                dtype={"file_index": "int16", "line_number": "int64", "timestamp": "float64", "label": "Int8"}.get(
                    column, "string"
                ),
            )
            for column in layout.columns
        }
    )
    return pa.Table.from_pandas(frame, preserve_index=False).schema


# ----------------------------------------------------------------------------- timestamps

#: Fixed-width strptime directives the fast path reads itself: width (None: %f, set per call) and the strict
#: RE2 pattern of a valid value. Anything else in a format sends every value to parse.py's parse_timestamps.
_DIRECTIVES: dict[str, tuple[int | None, str]] = {
    "Y": (4, r"\d{4}"),
    "y": (2, r"\d{2}"),
    "m": (2, r"(?:0[1-9]|1[0-2])"),
    "d": (2, r"(?:0[1-9]|[12]\d|3[01])"),
    "H": (2, r"(?:[01]\d|2[0-3])"),
    "M": (2, r"[0-5]\d"),
    "S": (2, r"[0-5]\d"),
    "f": (None, ""),
}
_NANOSECONDS = {"H": 3_600 * 10**9, "M": 60 * 10**9, "S": 10**9}


#: ISO 8601 formats: pandas reads these with its own fast ISO parser, faster than the path below.
_ISO_FORMAT = re.compile(r"%Y-%m-%d(?:[ T]%H(?::%M(?::%S(?:\.%f)?)?)?)?")


def _timestamp_plan(timestamp_format: str) -> list[tuple[str, str]] | None:
    """The format as [("directive", letter) | ("literal", text)], or None if the fast path does not read it."""
    if _ISO_FORMAT.fullmatch(timestamp_format):
        return None
    plan: list[tuple[str, str]] = []
    position = 0
    while position < len(timestamp_format):
        character = timestamp_format[position]
        if character == "%":
            letter = timestamp_format[position + 1 : position + 2]
            if letter not in _DIRECTIVES:
                return None
            plan.append(("directive", letter))
            position += 2
        else:
            if not character.isascii():
                return None
            plan.append(("literal", character))
            position += 1
    letters = [value for kind, value in plan if kind == "directive"]
    if len(set(letters)) != len(letters) or not {"m", "d"} <= set(letters) or not {"Y", "y"} & set(letters):
        return None
    return plan


def timestamp_seconds(values: list[str], timestamp_format: str) -> np.ndarray:
    """``parse.parse_timestamps`` (seconds since the epoch, UTC, NaN when unreadable) for header texts, fast.

    Values in the strict fixed-width form of the format (every field at its full width and in its valid range,
    the literal characters exactly) are read with vectorised arithmetic: for them pandas' strptime reads the
    same fields (its first alternative of every directive takes the full width) and gives the same nanoseconds,
    divided the same way. Every other value (and every value of a format with other directives) goes to
    ``parse_timestamps`` itself, so odd inputs keep pandas' exact behaviour.
    """
    size = len(values)
    result = np.full(size, np.nan)
    plan = _timestamp_plan(timestamp_format)
    if size == 0:
        return result
    fast = np.zeros(size, dtype=bool)
    if plan is not None:
        array = pa.array(values, type=pa.string())
        lengths = pc.binary_length(array).to_numpy(zero_copy_only=False)
        width = int(np.bincount(lengths).argmax())
        fixed = sum(1 if kind == "literal" else _DIRECTIVES[value][0] or 0 for kind, value in plan)
        fraction_width = width - fixed
        has_fraction = any(value == "f" for kind, value in plan if kind == "directive")
        if not has_fraction or 1 <= fraction_width <= 9:
            pattern = "^" + "".join(
                re.escape(value) if kind == "literal" else (rf"\d{{{fraction_width}}}" if value == "f" else _DIRECTIVES[value][1])
                for kind, value in plan
            ) + "$"
            fast = pc.match_substring_regex(array, pattern).to_numpy(zero_copy_only=False) & (lengths == width)
        if fast.any():
            chosen = pc.filter(array, pa.array(fast))
            offsets = np.frombuffer(chosen.buffers()[1], dtype=np.int32)[chosen.offset : chosen.offset + len(chosen) + 1]
            data = np.frombuffer(chosen.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
            digits = data.reshape(len(chosen), width).astype(np.int64) - ord("0")  # (values, width)
            fields: dict[str, np.ndarray] = {}
            column = 0
            for kind, value in plan:
                if kind == "literal":
                    column += 1
                    continue
                field_width = fraction_width if value == "f" else _DIRECTIVES[value][0] or 0
                number = np.zeros(len(chosen), dtype=np.int64)
                for offset in range(field_width):
                    number = number * 10 + digits[:, column + offset]
                fields[value] = number
                column += field_width
            if "Y" in fields:
                year = fields["Y"]
            else:  # strptime's two-digit years: 69-99 -> 1900s, 00-68 -> 2000s
                year = np.where(fields["y"] <= 68, 2000, 1900) + fields["y"]
            month, day = fields["m"], fields["d"]
            leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
            month_days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[month - 1] + (leap & (month == 2))
            valid = (day <= month_days) & (year >= 1678) & (year <= 2261)  # pandas' nanosecond range, with margin
            # days since 1970-01-01 of a proleptic Gregorian date (civil-from-days inverse)
            shifted = year - (month <= 2)
            era = np.floor_divide(shifted, 400)
            year_of_era = shifted - era * 400
            day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
            day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
            days = era * 146_097 + day_of_era - 719_468
            nanoseconds = days * 86_400 * 10**9
            for letter, scale in _NANOSECONDS.items():
                if letter in fields:
                    nanoseconds = nanoseconds + fields[letter] * scale
            if "f" in fields:
                nanoseconds = nanoseconds + fields["f"] * 10 ** (9 - fraction_width)
            # as pandas: (timestamp - epoch) / Timedelta(seconds=1), an int64 / int64 true division
            seconds = nanoseconds / np.int64(10**9)
            positions = np.flatnonzero(fast)
            result[positions[valid]] = seconds[valid]
            fast[positions[~valid]] = False
    rest = np.flatnonzero(~fast)
    if len(rest):
        others = pd.Series([values[index] for index in rest], dtype="object")
        result[rest] = parse_timestamps(others, timestamp_format).to_numpy(dtype=np.float64)
    return result


# ----------------------------------------------------------------------------- chunks (pure)


@dataclass(frozen=True)
class LineChunk:
    """``chunk_lines`` consecutive raw lines of one log file, as read (line ends included)."""

    file_index: int
    first_line_number: int  # 1-based number of ``lines[0]`` in its file
    lines: list[bytes]


@dataclass
class ChunkResult:
    """What ``parse_chunk`` returns: the chunk's rows, except the two columns only the live miner can fill."""

    table: pa.Table  # every lines.parquet column except template and event_id, one row per line
    keys: list[str]  # distinct masked messages (Drain's input), first-seen order
    key_of_line: np.ndarray  # (lines,) int32: index into keys, NO_MESSAGE or EMPTY_MESSAGE
    key_cluster: np.ndarray  # (keys,) int32: cluster index on the miner copy, -1 where only the live miner can say
    key_leaf: np.ndarray  # (keys,) int32: leaf serial each key was routed to (NO_LEAF if none)
    key_leaf_version: np.ndarray  # (keys,) int64: that leaf's version on the copy
    epoch: int  # tree epoch of the miner copy the keys were matched against
    file_index: int
    status_counts: dict[str, int]
    first_bad_line: int | None  # first line number of the chunk that is unmatched or not UTF-8
    timestamps_unparseable: int  # parsed lines without a readable timestamp
    raw_bytes: int


def _decode_lines(lines: list[bytes]) -> list[str | None]:
    """Each raw line as text without its line end, None where it is not UTF-8 (read_lines' rule, per line).

    The chunk is decoded in one call when it is all valid UTF-8 (a newline byte never occurs inside a UTF-8
    sequence, so the lines come out the same), line by line otherwise. A trailing ``\r`` is left in place: the
    header regex is matched on the stripped text, as in parse.py, so it makes no difference.
    """
    joined = b"".join(lines)
    try:
        texts: list[str | None] = joined.decode("utf-8").split("\n")  # type: ignore[assignment]
    except UnicodeDecodeError:
        texts = []
        for raw in lines:
            try:
                texts.append(raw.decode("utf-8").rstrip("\n"))
            except UnicodeDecodeError:
                texts.append(None)
        return texts
    if joined.endswith(b"\n"):
        texts.pop()
    return texts


#: Status column values by code (0 parsed, 1 unmatched, 2 non_utf8).
_STATUSES = pa.array([STATUS_PARSED, STATUS_UNMATCHED, STATUS_NON_UTF8], type=pa.string())


def parse_chunk(chunk: LineChunk, layout: LineLayout, miner: DrainMiner) -> ChunkResult:
    """Parse one chunk against a (copy of the) miner. Pure: reads only its arguments, changes none of them.

    Per line, exactly as parse.py: split on ``\\n``, decode UTF-8 (a bad line gets status ``non_utf8``), match the
    header regex on the stripped text (``unmatched`` if it does not), take the header fields. Messages
    (``<Content>``, when not blank) are masked once per line and matched once per distinct masked message;
    timestamps are read once per distinct text. This is the function a distributed runner (Dask, Ray) would map
    over chunks.
    """
    regex, fields = header_regex(layout.log_format)
    field_count = len(fields)
    content_position = fields.index("Content")
    # groups() is group(*fields) when the format adds no unnamed group of its own (a one-field format gives a str)
    plain_groups = regex.groups == field_count and field_count > 1
    empty_row: tuple[None, ...] = (None,) * field_count
    rows: list[tuple[str | None, ...]] = []
    message_contents: list[str] = []  # the non-blank messages, in line order
    message_offsets: list[int] = []
    empty_offsets: list[int] = []
    bad_lines: list[tuple[int, int]] = []  # (offset, status code) of lines that are not parsed
    match = regex.match
    # Timestamps are read once per distinct text (many lines share a second in real logs).
    stamp_positions = [fields.index(name) for name in layout.timestamp_fields]
    stamp_getter = operator.itemgetter(*stamp_positions) if stamp_positions else None
    single_stamp = len(stamp_positions) == 1
    stamp_index: dict[str, int] = {}
    stamp_of_line: list[int] = []
    for offset, text in enumerate(_decode_lines(chunk.lines)):
        found = match(text.strip()) if text is not None else None
        if found is None:
            bad_lines.append((offset, 1 if text is not None else 2))
            rows.append(empty_row)
            stamp_of_line.append(-1)
            continue
        values = found.groups() if plain_groups else found.group(*fields)
        if field_count == 1:
            values = (values,)
        rows.append(values)
        if stamp_getter is not None:
            stamp = stamp_getter(values) if single_stamp else " ".join(stamp_getter(values))
            stamp_of_line.append(stamp_index.setdefault(stamp, len(stamp_index)))
        content = values[content_position]
        if content and content.strip():
            message_contents.append(content)
            message_offsets.append(offset)
        else:
            empty_offsets.append(offset)
    size = len(rows)
    # Drain's input: the masked messages, each distinct one matched once against the miner copy.
    encoded = pc.dictionary_encode(miner.mask_array(message_contents))
    keys = encoded.dictionary.to_pylist()
    key_of_line = np.full(size, NO_MESSAGE, dtype=np.int32)
    key_of_line[np.asarray(empty_offsets, dtype=np.int64)] = EMPTY_MESSAGE
    key_of_line[np.asarray(message_offsets, dtype=np.int64)] = encoded.indices.to_numpy(zero_copy_only=False)
    answers = np.array([miner.match(key.split()) for key in keys], dtype=np.int64).reshape(len(keys), 3)

    status_codes = np.zeros(size, dtype=np.int8)
    for offset, code in bad_lines:
        status_codes[offset] = code
    counts = {
        STATUS_PARSED: int(size - len(bad_lines)),
        STATUS_UNMATCHED: int((status_codes == 1).sum()),
        STATUS_NON_UTF8: int((status_codes == 2).sum()),
    }
    columns = list(zip(*rows)) if rows else [()] * field_count
    by_field = dict(zip(fields, columns, strict=True))
    arrays: dict[str, pa.Array] = {
        "file_index": pa.array(np.full(size, chunk.file_index, dtype=np.int16)),
        "line_number": pa.array(np.arange(chunk.first_line_number, chunk.first_line_number + size, dtype=np.int64)),
    }
    if stamp_getter is not None:
        distinct = timestamp_seconds(list(stamp_index), layout.timestamp_format)
        # index -1 (no header) picks the NaN appended last
        stamps = np.append(distinct, np.nan)[np.asarray(stamp_of_line, dtype=np.int64)]
    else:
        stamps = np.full(size, np.nan)
    arrays["timestamp"] = pa.array(stamps, type=pa.float64(), from_pandas=True)
    unparseable = int((np.isnan(stamps) & (status_codes == 0)).sum())
    arrays["level"] = arrays["component"] = pa.nulls(size, pa.string())
    for name, column in layout.header_columns:
        arrays[column] = pa.array(by_field[name], type=pa.string())
    arrays["content"] = pa.array(by_field["Content"], type=pa.string())
    if layout.label_field is not None:
        labels = line_labels(pd.Series(by_field[layout.label_field], dtype="object"), layout.label_normal_value or "")
        arrays["label"] = pa.array(labels, type=pa.int8(), from_pandas=True)
    else:
        arrays["label"] = pa.nulls(size, pa.int8())
    arrays["status"] = _STATUSES.take(pa.array(status_codes))
    names = [column for column in layout.columns if column not in ("template", "event_id")]
    return ChunkResult(
        table=pa.table([arrays[name] for name in names], names=names),
        keys=keys,
        key_of_line=key_of_line,
        key_cluster=answers[:, 0].astype(np.int32),
        key_leaf=answers[:, 1].astype(np.int32),
        key_leaf_version=answers[:, 2],
        epoch=miner.epoch,
        file_index=chunk.file_index,
        status_counts=counts,
        first_bad_line=chunk.first_line_number + bad_lines[0][0] if bad_lines else None,
        timestamps_unparseable=unparseable,
        raw_bytes=sum(map(len, chunk.lines)),
    )


#: Worker-process memo of the last miner copy: (pickled bytes, miner), so a copy is unpickled once per version.
_WORKER_MINER: tuple[bytes, DrainMiner] | None = None


def _parse_chunk_task(chunk: LineChunk, layout: LineLayout, miner_bytes: bytes) -> ChunkResult:
    """Worker entry point: ``parse_chunk`` on a miner copy sent as pickled bytes (taken when the chunk was sent)."""
    global _WORKER_MINER
    if _WORKER_MINER is None or _WORKER_MINER[0] != miner_bytes:
        _WORKER_MINER = (miner_bytes, pickle.loads(miner_bytes))
    return parse_chunk(chunk, layout, _WORKER_MINER[1])


def resolve_chunk(result: ChunkResult, miner: DrainMiner) -> np.ndarray:
    """Each line's cluster index in the live miner, exactly as a sequential Drain run over every line would give.

    Returns ``(lines,) int32``: a cluster index, ``NO_MESSAGE`` or ``EMPTY_MESSAGE``. A copy's answer for a key
    is taken while it still holds (same tree epoch, same version of the key's leaf, see matcher.py); the other
    lines go, in file order, through the live miner (``DrainMiner.assign``: cached match, else a Drain step),
    and after each change the remaining answers are checked again.
    """
    key_of_line = result.key_of_line
    clusters = np.where(key_of_line < 0, key_of_line, -1).astype(np.int32)
    rows = np.flatnonzero(key_of_line >= 0)
    size = len(rows)
    if size == 0:
        return clusters
    row_keys = key_of_line[rows]
    keys = result.keys
    copy_clusters = result.key_cluster
    assign = miner.assign
    assigned = np.empty(size, dtype=np.int32)

    def still_valid() -> np.ndarray | None:
        """Per key: does the copy's answer hold in the live miner now? None when the tree has changed."""
        if result.epoch != miner.epoch:
            return None
        live_versions = np.asarray(miner.leaf_version, dtype=np.int64)
        valid = (copy_clusters >= 0) & (result.key_leaf >= 0)
        valid[valid] = live_versions[result.key_leaf[valid]] == result.key_leaf_version[valid]
        return valid

    valid = still_valid()
    position = 0
    while position < size:
        if valid is None:  # routing may have changed: every remaining line through the live miner
            assigned[position:] = [assign(keys[key]) for key in row_keys[position:].tolist()]
            break
        pending = np.flatnonzero(~valid[row_keys[position:]]) + position
        changed = False
        for row in pending.tolist():
            assigned[position:row] = copy_clusters[row_keys[position:row]]
            changes, epoch = miner.changes, miner.epoch
            assigned[row] = assign(keys[row_keys[row]])
            position = row + 1
            if miner.epoch != epoch or miner.changes != changes:
                valid, changed = still_valid(), True
                break
        if not changed:
            assigned[position:] = copy_clusters[row_keys[position:]]
            position = size
    clusters[rows] = assigned
    return clusters


# ----------------------------------------------------------------------------- reading


def read_chunks(log_files: list[Path], chunk_lines: int) -> Iterator[LineChunk]:
    """Yield every file's lines in chunks of at most ``chunk_lines`` (a chunk never spans two files).

    gzip (``.gz``) is read transparently. A missing file or a broken gzip stream is a one-line DataError.
    """
    for file_index, path in enumerate(log_files):
        next_line = 1
        try:
            with datasets.open_binary(path) as handle:
                while True:
                    lines = list(itertools.islice(handle, chunk_lines))
                    if not lines:
                        break
                    yield LineChunk(file_index=file_index, first_line_number=next_line, lines=lines)
                    next_line += len(lines)
        except FileNotFoundError:
            raise DataError(f"{path}: log file not found") from None
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"{path}: line {next_line}: unreadable ({error})") from None


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- writing


@dataclass
class StreamSummary:
    """What a streaming parse counted (metrics), and the final templates with their line counts."""

    lines: int = 0
    status_counts: dict[str, int] = field(default_factory=lambda: {STATUS_PARSED: 0, STATUS_UNMATCHED: 0, STATUS_NON_UTF8: 0})
    file_counts: list[dict[str, Any]] = field(default_factory=list)
    timestamps_unparseable: int = 0
    labeled_lines: int = 0
    anomalous_lines: int = 0
    templates: pd.DataFrame | None = None  # templates.parquet: event_id, template, count
    chunks: int = 0
    workers: int = 1
    row_groups: int = 0
    miner_changes_after_sample: int = 0  # state changes (new / generalised templates) after the mined prefix
    clusters: int = 0  # Drain clusters (several can end with the same template text)
    rewritten: bool = False  # a template changed after some of its lines were written: one rewrite pass ran
    seconds: float = 0.0


class _LinesWriter:
    """Writes resolved chunks as row groups of ``row_group_lines`` (whole chunks) and keeps what a rewrite needs."""

    def __init__(self, path: Path, side_path: Path, schema: pa.Schema, row_group_lines: int) -> None:
        self.path = path
        self.schema = schema
        self.row_group_lines = row_group_lines
        # Dictionary-encode every column but the message text (near-unique: the dictionary would be thrown away).
        dictionary_columns = [name for name in schema.names if name != "content"]
        self.writer = pq.ParquetWriter(path, schema, use_dictionary=dictionary_columns)
        self.side = open(side_path, "wb")  # noqa: SIM115 (closed in close())
        self.side_path = side_path
        self.pending: list[pa.Table] = []
        self.pending_lines = 0
        self.row_groups = 0
        self.written_template: dict[int, str] = {}  # cluster -> template text its last written lines carry
        self.stale = False  # some written line carries a template its cluster no longer has
        self.cluster_counts = np.zeros(0, dtype=np.int64)
        self.empty_count = 0

    def add(self, result: ChunkResult, clusters: np.ndarray, dictionary: _TemplateDictionary) -> None:
        # Template and event id columns from the live miner's current templates; -1 (no message) is null.
        take = np.where(clusters == EMPTY_MESSAGE, dictionary.empty_position, clusters)
        indices = pa.array(take, type=pa.int32(), mask=clusters == NO_MESSAGE)
        template = dictionary.texts.take(indices)
        event_id = dictionary.event_ids.take(indices)
        table = result.table
        columns = [
            template if name == "template" else event_id if name == "event_id" else table.column(name)
            for name in self.schema.names
        ]
        self.pending.append(pa.Table.from_arrays(columns, schema=self.schema))
        self.pending_lines += len(clusters)
        clusters.astype(np.int32).tofile(self.side)
        used = clusters[clusters >= 0]
        counts = np.bincount(used, minlength=dictionary.size) if len(used) else np.zeros(dictionary.size, np.int64)
        if len(counts) > len(self.cluster_counts):
            self.cluster_counts = np.concatenate([self.cluster_counts, np.zeros(len(counts) - len(self.cluster_counts), np.int64)])
        self.cluster_counts[: len(counts)] += counts
        self.empty_count += int((clusters == EMPTY_MESSAGE).sum())
        for cluster in np.flatnonzero(counts).tolist():
            text = dictionary.text_list[cluster]
            previous = self.written_template.get(cluster)
            if previous is not None and previous != text:
                self.stale = True
            self.written_template[cluster] = text
        if self.pending_lines >= self.row_group_lines:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pa.concat_tables(self.pending)
            self.writer.write_table(table, row_group_size=max(len(table), 1))
            self.row_groups += 1
            self.pending, self.pending_lines = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.side.close()


class _TemplateDictionary:
    """The live miner's template texts and event ids as Arrow arrays (index = cluster, then the empty template).

    Updated incrementally: clusters added as shadowed duplicates only append; any other change rebuilds the
    texts (event ids are memoised by text).
    """

    def __init__(self) -> None:
        self.changes = -1
        self.size = 0
        self.text_list: list[str] = []
        self.id_list: list[str] = []
        self._event_ids: dict[str, str] = {}
        self.texts = pa.array([EMPTY_TEMPLATE], pa.string())
        self.event_ids = pa.array([datasets.template_event_id(EMPTY_TEMPLATE)], pa.string())
        self.empty_position = 0

    def _event_id(self, text: str) -> str:
        event_id = self._event_ids.get(text)
        if event_id is None:
            event_id = self._event_ids[text] = datasets.template_event_id(text)
        return event_id

    def update(self, miner: DrainMiner) -> _TemplateDictionary:
        count = len(miner.clusters)
        if miner.changes == self.changes and count == self.size:
            return self
        if miner.changes != self.changes:
            self.text_list = miner.templates()
        else:
            self.text_list.extend(miner.template(index) for index in range(self.size, count))
        self.id_list = [self._event_id(text) for text in self.text_list]
        self.size = count
        self.changes = miner.changes
        self.empty_position = count  # the empty template sits after every cluster
        self.texts = pa.array([*self.text_list, EMPTY_TEMPLATE], pa.string())
        self.event_ids = pa.array([*self.id_list, self._event_id(EMPTY_TEMPLATE)], pa.string())
        return self


def _rewrite_templates(source: Path, side_path: Path, target: Path, schema: pa.Schema, miner: DrainMiner) -> None:
    """Copy ``source`` to ``target`` row group by row group, giving every line its cluster's final template."""
    dictionary = _TemplateDictionary().update(miner)
    parquet = pq.ParquetFile(source)
    template_position = schema.get_field_index("template")
    event_position = schema.get_field_index("event_id")
    with open(side_path, "rb") as side, pq.ParquetWriter(target, schema) as writer:
        for group in tqdm(range(parquet.num_row_groups), desc="rewrite templates", unit="row group", leave=False):
            table = parquet.read_row_group(group)
            clusters = np.fromfile(side, dtype=np.int32, count=table.num_rows)
            take = np.where(clusters == EMPTY_MESSAGE, dictionary.empty_position, clusters)
            indices = pa.array(take, type=pa.int32(), mask=clusters == NO_MESSAGE)
            table = table.set_column(template_position, schema.field(template_position), dictionary.texts.take(indices))
            table = table.set_column(event_position, schema.field(event_position), dictionary.event_ids.take(indices))
            writer.write_table(table.replace_schema_metadata(schema.metadata), row_group_size=max(table.num_rows, 1))


def _template_table(writer: _LinesWriter, miner: DrainMiner) -> pd.DataFrame:
    """``templates.parquet`` as parse.py's ``template_table`` builds it: (event_id, template, count), most frequent
    first, ties by event id; clusters that ended with the same text are one row."""
    texts = miner.templates()
    rows: dict[str, int] = collections.defaultdict(int)
    for cluster, count in enumerate(writer.cluster_counts.tolist()):
        if count:
            rows[texts[cluster]] += count
    if writer.empty_count:
        rows[EMPTY_TEMPLATE] += writer.empty_count
    table = pd.DataFrame(
        {
            "event_id": pd.Series([datasets.template_event_id(text) for text in rows], dtype="string"),
            "template": pd.Series(list(rows), dtype="string"),
            "count": pd.Series(list(rows.values()), dtype="int64"),
        }
    )
    return table.sort_values(["count", "event_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------- driver


def stream_parse_files(
    log_files: list[Path],
    layout: LineLayout,
    miner: DrainMiner,
    parse: ParseConfig,
    output: Path,
    description: str,
    where: str,
    progress: Callable[[int], None] | None = None,
) -> StreamSummary:
    """Parse ``log_files`` (one Drain run over all of them, in order) into ``output/lines.parquet`` and
    ``output/templates.parquet``; ``output`` is a folder the caller renames into place (atomic).

    ``miner`` is the (usually empty) live Drain state and ends holding the final templates. ``where`` names the
    log-format key in error messages; ``progress`` (if given) is called with the number of lines written so far
    after each chunk (the benchmark uses it to time the start and end of a file).
    """
    streaming: StreamingConfig = parse.streaming
    started = time.perf_counter()
    summary = StreamSummary()
    summary.file_counts = [
        {"file": path.name, "lines": 0, STATUS_PARSED: 0, STATUS_UNMATCHED: 0, STATUS_NON_UTF8: 0} for path in log_files
    ]
    for path in log_files:
        if not path.is_file():
            raise DataError(f"{path}: log file not found")
    first_bad: list[int | None] = [None] * len(log_files)
    workers = streaming.workers or available_cores()
    summary.workers = workers
    schema = lines_schema(layout)
    dictionary = _TemplateDictionary()
    gzipped = any(path.suffix == ".gz" for path in log_files)
    total_bytes = None if gzipped else sum(path.stat().st_size for path in log_files)
    bar = tqdm(total=total_bytes, desc=description, unit="B", unit_scale=True, leave=False, mininterval=1.0)
    sample_changes: int | None = None
    checked_files = 0

    with tempfile.TemporaryDirectory(prefix=".stream-parse-", dir=output) as scratch:
        scratch_path = Path(scratch)
        draft = scratch_path / "lines.parquet"
        writer = _LinesWriter(draft, scratch_path / "clusters.int32", schema, streaming.row_group_lines)

        def write(result: ChunkResult) -> None:
            nonlocal checked_files
            while checked_files < result.file_index:  # every earlier file is complete: check it
                check_file_counts(log_files[checked_files], summary.file_counts[checked_files], first_bad[checked_files],
                            parse.max_unmatched_share, where)
                checked_files += 1
            clusters = resolve_chunk(result, miner)
            writer.add(result, clusters, dictionary.update(miner))
            size = len(clusters)
            counts = summary.file_counts[result.file_index]
            counts["lines"] += size
            for status, count in result.status_counts.items():
                counts[status] += count
                summary.status_counts[status] += count
            if first_bad[result.file_index] is None:
                first_bad[result.file_index] = result.first_bad_line
            summary.lines += size
            summary.timestamps_unparseable += result.timestamps_unparseable
            labels = result.table.column("label")
            summary.labeled_lines += size - labels.null_count
            summary.anomalous_lines += int(pc.sum(labels).as_py() or 0)
            summary.chunks += 1
            bar.update(result.raw_bytes)
            if progress is not None:
                progress(summary.lines)

        try:
            chunks = read_chunks(log_files, streaming.chunk_lines)
            # Mining: the prefix goes through the live miner in this process.
            for chunk in chunks:
                write(parse_chunk(chunk, layout, miner))
                if summary.lines >= streaming.sample_lines:
                    break
            sample_changes = miner.changes
            # Matching: the rest in worker processes, against copies of the miner taken when each chunk is sent.
            following = next(chunks, None)
            chunks = itertools.chain([following] if following is not None else [], chunks)
            if workers > 1 and following is not None:  # no pool (seconds to start) when the sample was everything
                context = multiprocessing.get_context("spawn")  # no fork: the parent holds pyarrow thread pools
                with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    in_flight: collections.deque[Future[ChunkResult]] = collections.deque()
                    copy_changes, copy = -1, b""
                    try:
                        for chunk in itertools.chain(chunks, [None]):
                            if chunk is not None:
                                if copy_changes != miner.changes:
                                    copy_changes, copy = miner.changes, miner.matching_copy()
                                in_flight.append(pool.submit(_parse_chunk_task, chunk, layout, copy))
                            while in_flight and (chunk is None or len(in_flight) > CHUNKS_AHEAD_PER_WORKER * workers):
                                write(in_flight.popleft().result())
                    finally:
                        for future in in_flight:
                            future.cancel()
            else:
                for chunk in chunks:
                    write(parse_chunk(chunk, layout, miner))
            for index in range(checked_files, len(log_files)):
                check_file_counts(log_files[index], summary.file_counts[index], first_bad[index], parse.max_unmatched_share, where)
        finally:
            writer.close()
            bar.close()

        summary.row_groups = writer.row_groups
        summary.miner_changes_after_sample = miner.changes - (sample_changes or 0)
        summary.clusters = len(miner.clusters)
        # A cluster whose template changed after some of its lines were written: rewrite those lines' templates.
        final = miner.templates()
        summary.rewritten = writer.stale or any(final[c] != text for c, text in writer.written_template.items())
        if summary.rewritten:
            _rewrite_templates(draft, writer.side_path, output / "lines.parquet", schema, miner)
        else:
            os.replace(draft, output / "lines.parquet")
        summary.templates = _template_table(writer, miner)
        write_parquet(output / "templates.parquet", summary.templates)
    summary.seconds = time.perf_counter() - started
    return summary


def new_miner(system_name: str, system: SystemConfig) -> DrainMiner:
    """An empty Drain miner with ``systems.<name>.parser_settings.Drain`` and the system's masking regexes."""
    where = f"systems.{system_name}.parser_settings.Drain"
    if "Drain" not in system.parser_settings:
        raise ConfigError(f"{where}: missing key")
    return DrainMiner(parser_arguments("Drain", system.parser_settings["Drain"], where), system.regex)


def stream_parse_dataset(params: Params, name: str, progress: Callable[[int], None] | None = None) -> None:
    """Stage parse for a ``raw`` dataset through the streaming path: the same outputs as
    ``zerolog.data.parse.parse_dataset`` (``paths.parsed/<name>/{lines,templates}.parquet``,
    ``paths.metrics/parse/<name>.json``), nothing written on error. ``progress``: as in ``stream_parse_files``."""
    dataset = dataset_config(params, name)
    if dataset.kind != "raw":
        raise ConfigError(f"datasets.{name}.kind: the streaming parse reads raw logs, not {dataset.kind}")
    if params.parse.parser != "Drain":
        raise ConfigError(f"parse.streaming.enabled: the streaming parse runs Drain only, parse.parser is {params.parse.parser!r}")
    folder, manifest = read_manifest(params, name, ["logs"])
    system = dataset_system(params, name)  # the system's settings with the dataset's own log_format / timestamp
    layout = line_layout(dataset.system, system, dataset.label, name)
    miner = new_miner(dataset.system, system)
    log_files = [folder / relative for relative in manifest["files"]["logs"]]
    for path in log_files:
        if not path.is_file():
            raise DataError(f"{path}: log file not found (listed in {folder / 'manifest.json'})")
    with atomic_directory(Path(params.paths.parsed) / name) as output:
        summary = stream_parse_files(
            log_files, layout, miner, params.parse, output, f"stream-parse {name}", f"systems.{dataset.system}.log_format",
            progress,
        )
    settings = {"masking": list(system.regex), **system.parser_settings["Drain"]}
    metrics = parse_metrics(name, summary, settings, params.parse.streaming)
    write_json(Path(params.paths.metrics) / "parse" / f"{name}.json", metrics)
    print(
        f"{name}: {metrics['lines']} lines, {metrics['parsed']} parsed, {metrics['unmatched']} unmatched, "
        f"{metrics['non_utf8']} non-UTF-8, {metrics['templates']} templates "
        f"(Drain, streaming, {metrics['lines_per_second']} lines/s)",
        file=sys.stdout,
    )


def parse_metrics(
    name: str, summary: StreamSummary, parser_settings: dict[str, Any], streaming: StreamingConfig
) -> dict[str, Any]:
    """``metrics/parse/<name>.json``: parse.py's keys, plus a ``streaming`` block."""
    seconds = summary.seconds
    return {
        "dataset": name,
        "kind": "raw",
        "parser": "Drain",
        "parser_settings": parser_settings,
        "lines": summary.lines,
        "parsed": summary.status_counts[STATUS_PARSED],
        "unmatched": summary.status_counts[STATUS_UNMATCHED],
        "non_utf8": summary.status_counts[STATUS_NON_UTF8],
        "templates": int(len(summary.templates)) if summary.templates is not None else 0,
        "timestamps_unparseable": summary.timestamps_unparseable,
        "labeled_lines": summary.labeled_lines,
        "anomalous_lines": summary.anomalous_lines,
        "files": summary.file_counts,
        "seconds": round(seconds, 3),
        "lines_per_second": round(summary.lines / seconds, 1) if seconds > 0 else None,
        "streaming": {
            "chunk_lines": streaming.chunk_lines,
            "sample_lines": streaming.sample_lines,
            "workers": summary.workers,
            "chunks": summary.chunks,
            "row_groups": summary.row_groups,
            "miner_changes_after_sample": summary.miner_changes_after_sample,
            "drain_clusters": summary.clusters,
            "rewritten": summary.rewritten,
        },
    }


__all__ = [
    "ChunkResult",
    "LineChunk",
    "LineLayout",
    "StreamSummary",
    "available_cores",
    "line_layout",
    "lines_schema",
    "new_miner",
    "parse_chunk",
    "parse_metrics",
    "read_chunks",
    "resolve_chunk",
    "stream_parse_dataset",
    "stream_parse_files",
    "timestamp_seconds",
]
