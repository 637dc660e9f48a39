"""Stage parse: turn one dataset's raw files into one row per line with its event template.

Why: every later stage works on templates (the paper's system-agnostic semantic template vectors start from the
template text, method.md §3). Raw logs go through Drain (``zerolog.data.stream_parse``: chunks on worker
processes or a Dask cluster, the same templates line for line as logparser3's Drain); pre-parsed sets are mapped
onto the same table. Nothing is dropped silently: a line that does not match the system's log format or is not
UTF-8 keeps its row, with ``status`` saying why, and its own line number.

Output: ``paths.parsed/<name>/lines.parquet`` (a folder of Parquet parts in line order that reads as one table:
``pandas.read_parquet``, or ``iter_line_batches`` in bounded memory) and ``templates.parquet``; for raw logs also
``drain.json``, Drain's final prefix tree (``zerolog.data.known_templates``: what ``zerolog detect`` matches new
lines against).
"""

from __future__ import annotations

import glob
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from zerolog.artifacts import ArtifactPaths
from zerolog.config import (
    ConfigError,
    DatasetConfig,
    DrainConfig,
    Params,
    ParseConfig,
    SystemConfig,
    TimestampConfig,
)
from zerolog.data import datasets
from zerolog.data.known_templates import DRAIN_STATE_FILE, write_drain_state
from zerolog.data.stream_parse import (
    STATUS_NON_UTF8,
    STATUS_PARSED,
    STATUS_UNMATCHED,
    line_labels,
    line_layout,
    new_miner,
    parse_metrics,
    stream_parse_files,
    write_lines,
)
from zerolog.data.timestamps import parse_timestamps
from zerolog.errors import DataError
from zerolog.io import read_json, write_json, write_parquet
from zerolog.runner import Outputs

#: Log files of one dataset at most: ``file_index`` is an int16.
MAX_LOG_FILES = 32_767


# ----------------------------------------------------------------------------- accuracy


def grouping_accuracy(predicted_event_ids: Sequence[Any], true_event_ids: Sequence[Any]) -> float:
    """Grouping accuracy (Zhu et al., "Tools and Benchmarks for Automated Log Parsing", ICSE-SEIP 2019).

    A line counts as correct when the set of lines sharing its predicted event equals the set of lines sharing
    its true event. Equivalent test used here: the predicted group, the true group and the group of lines with
    the same (predicted, true) pair all have the same size.
    """
    if len(predicted_event_ids) != len(true_event_ids):
        raise ValueError(f"grouping_accuracy: {len(predicted_event_ids)} predictions for {len(true_event_ids)} lines")
    if len(true_event_ids) == 0:
        raise ValueError("grouping_accuracy: no lines")
    frame = pd.DataFrame({"predicted": list(predicted_event_ids), "true": list(true_event_ids)}).astype(str)
    predicted_size = frame.groupby("predicted")["true"].transform("size")
    true_size = frame.groupby("true")["predicted"].transform("size")
    pair_size = frame.groupby(["predicted", "true"])["true"].transform("size")
    correct = (predicted_size == true_size) & (true_size == pair_size)
    return float(correct.mean())


# ----------------------------------------------------------------------------- manifest


def read_manifest(
    paths: ArtifactPaths, name: str, kind: str, required: Sequence[str] = ()
) -> tuple[Path, dict[str, Any]]:
    """Read ``paths.raw/<name>/manifest.json`` (written by the download stage) of a dataset of ``kind``;
    ``required`` files keys must exist."""
    folder, path = paths.raw(name), paths.manifest(name)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run pipeline/download.py {name})")
    manifest = read_json(path)
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise DataError(f"{path}: files: missing key")
    for key in required:
        if key not in files:
            raise DataError(f"{path}: files.{key}: missing key")
    if kind == "raw" and (not isinstance(files.get("logs"), list) or not files["logs"]):
        raise DataError(f"{path}: files.logs: expected a non-empty list of log files")
    return folder, manifest


# ----------------------------------------------------------------------------- kinds


@dataclass
class ParsedTable:
    """What one dataset's parse produced, before it is written."""

    lines: pd.DataFrame
    parser: str
    file_counts: list[dict[str, Any]]
    parser_settings: dict[str, Any] = field(default_factory=dict)


def _parse_events(section: ParseSection, folder: Path, manifest: dict[str, Any]) -> ParsedTable:
    """Map a pre-parsed ``events`` dataset (CSV of ``label,time,event_id``, one row a log line) onto lines.

    ``line_number`` is the row's position among the data rows (the line of the original log it stands for);
    error messages name the CSV's own line (row + 1 for the header).
    """
    rule = section.config.label
    events_path = folder / manifest["files"]["events"]
    templates = datasets.read_template_table(folder / manifest["files"]["templates"])
    label_column = rule.field if rule is not None and rule.rule == "line_field" else None
    required = ["time", "event_id"] + ([label_column] if label_column else [])
    frame = datasets.read_event_csv(events_path, required)
    known = frame["event_id"].isin(templates.keys())
    if not known.all():
        first = int(np.flatnonzero(~known.to_numpy())[0])
        bad_id = frame["event_id"].iloc[first]
        raise DataError(f"{events_path}: line {first + 2}: unknown event id {bad_id!r} (not in the templates file)")
    lines = pd.DataFrame(
        {
            "file_index": pd.Series(np.zeros(len(frame)), dtype="int16"),
            "line_number": pd.Series(np.arange(1, len(frame) + 1), dtype="int64"),
            "timestamp": parse_timestamps(frame["time"].replace("", None), section.system_timestamp.format),
            "level": pd.Series([None] * len(frame), dtype="string"),
            "component": pd.Series([None] * len(frame), dtype="string"),
            "content": pd.Series([None] * len(frame), dtype="string"),
            "event_id": frame["event_id"].astype("string"),
            "template": frame["event_id"].map(templates).astype("string"),
        }
    )
    if label_column:  # load_params refuses a line_field rule without normal_value
        lines["label"] = line_labels(frame[label_column].replace("", None), rule.normal_value)  # type: ignore[union-attr,arg-type]
    else:
        lines["label"] = pd.Series(pd.NA, index=lines.index, dtype="Int8")
    lines["status"] = pd.Series([STATUS_PARSED] * len(frame), dtype="string")
    counts = {
        "file": events_path.name,
        "lines": len(frame),
        STATUS_PARSED: len(frame),
        STATUS_UNMATCHED: 0,
        STATUS_NON_UTF8: 0,
    }
    return ParsedTable(lines=lines, parser="preparsed", file_counts=[counts])


#: The two DeepLog session files and the label of every session in each (file_index = position here).
DEEPLOG_FILES = (("normal", 0), ("abnormal", 1))
#: The three sequence files of the anomaly-detection-log-datasets layout and the label each gives its sequences:
#: the collection's own split (train and test_normal normal, test_abnormal anomalous); file_index = position here.
SEQUENCE_FILES = (("train", 0), ("test_normal", 0), ("test_abnormal", 1))


@dataclass
class _SessionEvents:
    """The rows of a pre-parsed ``sessions`` dataset's lines.parquet as they are read: one per event."""

    columns: dict[str, list[Any]] = field(
        default_factory=lambda: {
            key: [] for key in ("file_index", "line_number", "event_id", "template", "label", "session_key")
        }
    )

    def add(
        self, file_index: int, line_number: int, key: str, label: int, event_ids: list[str], names: list[str]
    ) -> None:
        """One session's events (all sharing its file, line, key and label)."""
        size = len(names)
        self.columns["file_index"].extend([file_index] * size)
        self.columns["line_number"].extend([line_number] * size)
        self.columns["event_id"].extend(event_ids)
        self.columns["template"].extend(names)
        self.columns["label"].extend([label] * size)
        self.columns["session_key"].extend([key] * size)

    def frame(self) -> pd.DataFrame:
        size = len(self.columns["event_id"])
        return pd.DataFrame(
            {
                "file_index": pd.Series(self.columns["file_index"], dtype="int16"),
                "line_number": pd.Series(self.columns["line_number"], dtype="int64"),
                "timestamp": pd.Series(np.full(size, np.nan), dtype="float64"),
                "level": pd.Series([None] * size, dtype="string"),
                "component": pd.Series([None] * size, dtype="string"),
                "content": pd.Series([None] * size, dtype="string"),
                "event_id": pd.Series(self.columns["event_id"], dtype="string"),
                "template": pd.Series(self.columns["template"], dtype="string"),
                "label": pd.Series(self.columns["label"], dtype="Int8"),
                "status": pd.Series([STATUS_PARSED] * size, dtype="string"),
                "session_key": pd.Series(self.columns["session_key"], dtype="string"),
            }
        )


def _session_file(folder: Path, files: dict[str, Any], key: str) -> Path:
    path = folder / files[key]
    if not path.is_file():
        raise DataError(f"{path}: session file not found")
    return path


def _read_jsonl(folder: Path, files: dict[str, Any], events: _SessionEvents) -> list[dict[str, Any]]:
    """JSON lines (``files.sessions``): key ``block_id``, label and template texts from each line."""
    path = _session_file(folder, files, "sessions")
    sessions = empty = 0
    for line_number, key, label, session_templates in tqdm(
        datasets.read_jsonl_sessions(path), desc=f"read {path.name}", unit="session", disable=None
    ):
        sessions += 1
        empty += not session_templates
        event_ids = [datasets.template_event_id(template) for template in session_templates]
        events.add(0, line_number, key, label, event_ids, session_templates)
    return [{"file": path.name, "sessions": sessions, "empty_sessions": empty}]


def _read_deeplog(folder: Path, files: dict[str, Any], events: _SessionEvents) -> list[dict[str, Any]]:
    """DeepLog id files (``normal``/``abnormal`` + CSV ``templates``): session key ``<file key>:<line>``."""
    templates = datasets.read_template_table(folder / files["templates"])
    file_counts = []
    for key, file_index in DEEPLOG_FILES:
        path = _session_file(folder, files, key)
        sessions = empty = 0
        for line_number, event_ids in tqdm(
            datasets.read_deeplog_sessions(path, templates), desc=f"read {path.name}", unit="session", disable=None
        ):
            sessions += 1
            empty += not event_ids
            names = [templates[e] for e in event_ids]
            events.add(file_index, line_number, f"{key}:{line_number}", file_index, event_ids, names)
        if sessions == 0:
            raise DataError(f"{path}: empty session file")
        file_counts.append({"file": path.name, "sessions": sessions, "empty_sessions": empty})
    return file_counts


def _read_sequences(folder: Path, files: dict[str, Any], events: _SessionEvents) -> list[dict[str, Any]]:
    """The anomaly-detection-log-datasets layout (``train``, ``test_normal``, ``test_abnormal`` + line ``templates``):
    labels from file origin, session key the line's key (``<file key>:<line>`` on a line without one); a key seen
    twice, in one file or across the three, is a DataError naming both places."""
    templates_path = folder / files["templates"]
    templates = datasets.read_line_templates(templates_path)
    seen: dict[str, str] = {}  # session key -> "file: line N" where it first appeared
    file_counts = []
    for file_index, (key, label) in enumerate(SEQUENCE_FILES):
        path = _session_file(folder, files, key)
        sessions = empty = blank = 0
        for line_number, session_key, event_ids in tqdm(
            datasets.read_sequence_file(path, templates, templates_path),
            desc=f"read {path.name}",
            unit="session",
            disable=None,
        ):
            if session_key is None and not event_ids:
                blank += 1
                continue
            session_key = f"{key}:{line_number}" if session_key is None else session_key
            if session_key in seen:
                raise DataError(
                    f"{path}: line {line_number}: sequence key {session_key!r} already at {seen[session_key]}"
                )
            seen[session_key] = f"{path.name}: line {line_number}"
            sessions += 1
            empty += not event_ids
            events.add(file_index, line_number, session_key, label, event_ids, [templates[e] for e in event_ids])
        file_counts.append(
            {"file": path.name, "label": label, "sessions": sessions, "empty_sessions": empty, "blank_lines": blank}
        )
    if not seen:
        raise DataError(f"{folder}: no sequence in {', '.join(str(files[key]) for key, _ in SEQUENCE_FILES)}")
    return file_counts


def _parse_sessions(name: str, folder: Path, manifest: dict[str, Any]) -> ParsedTable:
    """Map a pre-parsed ``sessions`` dataset onto one row per event with its ``session_key`` and session label.

    Three layouts, told apart by the ``files`` keys: JSON lines (``sessions``), DeepLog id files (``normal``,
    ``abnormal``, CSV ``templates``) and the anomaly-detection-log-datasets sequence files (``train``,
    ``test_normal``, ``test_abnormal``, one-template-a-line ``templates``). ``line_number`` is the session's line
    in its own file, shared by all its events.
    """
    files = manifest["files"]
    events = _SessionEvents()
    if "sessions" in files:
        file_counts = _read_jsonl(folder, files, events)
    elif all(key in files for key, _ in DEEPLOG_FILES) and "templates" in files:
        file_counts = _read_deeplog(folder, files, events)
    elif all(key in files for key, _ in SEQUENCE_FILES) and "templates" in files:
        file_counts = _read_sequences(folder, files, events)
    else:
        raise ConfigError(
            f"datasets.{name}.files: a sessions dataset needs sessions (JSON lines), or normal, abnormal and templates "
            "(DeepLog), or train, test_normal, test_abnormal and templates (anomaly-detection-log-datasets)"
        )
    if not events.columns["event_id"]:
        raise DataError(f"{folder}: no events in any session file")
    return ParsedTable(lines=events.frame(), parser="preparsed", file_counts=file_counts)


# ----------------------------------------------------------------------------- stage


def template_table(lines: pd.DataFrame) -> pd.DataFrame:
    """``templates.parquet``: each distinct (event_id, template) with its number of lines, most frequent first."""
    parsed = lines.loc[lines["event_id"].notna(), ["event_id", "template"]]
    table = parsed.groupby(["event_id", "template"], sort=False, dropna=False).size().reset_index(name="count")
    table = table.sort_values(["count", "event_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table["count"] = table["count"].astype("int64")
    return table


def log_file_paths(folder: Path, manifest: dict[str, Any]) -> list[Path]:
    """The log files of a raw dataset's manifest (``files.logs``), in order; ``file_index`` is the position here.

    An entry is a file name (relative to the dataset's folder, or absolute) or a glob pattern (``*``, ``?``,
    ``[...]``; ``**`` spans folders), which stands for the files it matches in sorted order. A missing file, a
    pattern that matches nothing and a file listed twice are one-line DataErrors naming the manifest.
    """
    where = folder / "manifest.json"
    paths: list[Path] = []
    for entry in manifest["files"]["logs"]:
        if not isinstance(entry, str) or not entry:
            raise DataError(f"{where}: files.logs: expected file names or glob patterns, got {entry!r}")
        if re.search(r"[*?[]", entry):
            matches = sorted(glob.glob(entry, root_dir=folder, recursive=True))
            files = [folder / match for match in matches if (folder / match).is_file()]
            if not files:
                raise DataError(f"{where}: files.logs: {entry!r} matches no file")
            paths.extend(files)
        elif not (folder / entry).is_file():
            raise DataError(f"{folder / entry}: log file not found (listed in {where})")
        else:
            paths.append(folder / entry)
    seen: set[Path] = set()
    for path in paths:
        if path.resolve() in seen:
            raise DataError(f"{where}: files.logs: {path} is listed twice")
        seen.add(path.resolve())
    if len(paths) > MAX_LOG_FILES:
        raise DataError(f"{where}: files.logs: {len(paths)} log files, at most {MAX_LOG_FILES} (file_index is int16)")
    return paths


def _check_times(section: ParseSection, parsed: int, unreadable: int) -> None:
    """A wrong timestamp format must not leave every time empty in silence: above
    ``parse.max_unreadable_time_share`` of the parsed lines without a time, the parse fails naming the format's key
    (nothing is written)."""
    system, limit = section.system, section.parse.max_unreadable_time_share
    if not system.timestamp.fields or not parsed or unreadable / parsed <= limit:
        return
    raise DataError(
        f"{section.key('timestamp')}.format: {system.timestamp.format!r} reads no time from {unreadable} of {parsed} "
        f"parsed lines of {section.dataset} ({unreadable / parsed:.1%} > parse.max_unreadable_time_share = {limit}); "
        "'%s' reads epoch seconds"
    )


def _without_timings(metrics: dict[str, Any]) -> dict[str, Any]:
    """The committed report of a parse: counts only (timings change on every rerun; they are printed, and measured
    properly by ``make bench``)."""
    return {key: value for key, value in metrics.items() if key not in ("seconds", "lines_per_second")}


def _warn_on_continuations(metrics: dict[str, Any], share: float, format_key: str) -> None:
    """A warning (not an error: tracebacks can be long) when more lines continue a record than the unmatched guard
    lets fail to match: records the log format does not fit are read as continuation lines."""
    lines, continuation = metrics["lines"], metrics.get("continuation", 0)
    if lines and continuation / lines > share:
        print(
            f"warning: {metrics['dataset']}: {continuation:,} of {lines:,} lines ({continuation / lines:.1%}) "
            f"continue a multi-line record, above parse.max_unmatched_share {share}: if some are records, "
            f"{format_key} is too strict for them (README 'Multi-line records')",
            file=sys.stderr,
        )


def _report(metrics: dict[str, Any]) -> None:
    growth = metrics.get("template_growth") or {}
    if growth.get("grows_with_input"):
        halves, shapes = growth["new_templates_by_half"], growth["variable_token_shapes"]
        advice = (
            (
                "mask the variable tokens (README 'Masks'), most common unmasked: "
                + ", ".join(f"{entry['shape']!r} ({entry['templates']:,} templates)" for entry in shapes)
            )
            if shapes
            else ("no value-like token is left unmasked: the later lines carry message types the earlier ones lack")
        )
        print(
            f"warning: {metrics['dataset']}: templates grow with the input ({halves['first']:,} first seen in the "
            f"first half of the lines, {halves['second']:,} in the second): {advice}",
            file=sys.stderr,
        )
    print(
        f"{metrics['dataset']}: {metrics['lines']} lines, {metrics['parsed']} parsed, "
        f"{metrics['unmatched']} unmatched, {metrics['non_utf8']} non-UTF-8, "
        f"{metrics.get('continuation', 0)} continuation, {metrics['templates']} templates "
        f"({metrics['parser']}, {metrics['lines_per_second']} lines/s)",
        file=sys.stdout,
    )


@dataclass(frozen=True)
class ParseSection:
    """Stage parse's settings: the dataset, its section, its system's parse keys and ``parse``."""

    dataset: str
    config: DatasetConfig
    system_log_format: str
    system_timestamp: TimestampConfig
    regex: list[str]
    drain: DrainConfig
    parse: ParseConfig

    @property
    def system(self) -> SystemConfig:
        """The system settings the dataset is parsed with: the dataset's own ``log_format`` and ``timestamp`` where
        it names them (``Params.dataset_system``)."""
        config = self.config
        log_format = config.log_format if config.log_format is not None else self.system_log_format
        timestamp = config.timestamp if config.timestamp is not None else self.system_timestamp
        return SystemConfig(self.dataset, log_format, timestamp, self.regex, self.drain)

    def key(self, field_name: str) -> str:
        """The params key that sets the system's ``log_format`` or ``timestamp`` for this dataset."""
        own = getattr(self.config, field_name) is not None
        return f"datasets.{self.dataset}.{field_name}" if own else f"systems.{self.config.system}.{field_name}"


def parse_section(params: Params, dataset: str) -> ParseSection:
    config = params.datasets[dataset]
    system = params.systems[config.system]
    return ParseSection(dataset, config, system.log_format, system.timestamp, system.regex, system.drain, params.parse)


@dataclass(frozen=True)
class ParseInputs:
    """A raw dataset's log files (streamed by the core), or a pre-parsed dataset's table, read here."""

    manifest: dict[str, Any]
    log_files: list[Path] = field(default_factory=list)
    table: ParsedTable | None = None
    seconds: float = 0.0  # reading the pre-parsed table


def load_parse_inputs(section: ParseSection, paths: ArtifactPaths) -> ParseInputs:
    kind = section.config.kind
    required = {"raw": ["logs"], "events": ["events", "templates"], "sessions": []}[kind]
    folder, manifest = read_manifest(paths, section.dataset, kind, required)
    if kind == "raw":
        return ParseInputs(manifest, log_file_paths(folder, manifest))
    started = time.perf_counter()
    if kind == "events":
        table = _parse_events(section, folder, manifest)
    else:
        table = _parse_sessions(section.dataset, folder, manifest)
    return ParseInputs(manifest, table=table, seconds=time.perf_counter() - started)


@dataclass
class ParseResult:
    """``paths.parsed/<name>/`` and its counts (``reports/data/parse/<name>.json``, timings left out).

    ``fill`` writes the parsed folder it is given and returns the metrics: a raw dataset's lines are parsed while
    they stream into that folder's Parquet parts (memory stays bounded), so its metrics exist once it has run.
    """

    fill: Callable[[Path], dict[str, Any]]
    report: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        return self.report

    def write(self, outputs: Outputs) -> None:
        metrics = self.fill(outputs["parsed"])
        self.report = _without_timings(metrics)
        write_json(outputs["report"], self.report)
        _report(metrics)


def compute_parse(section: ParseSection, inputs: ParseInputs, progress: Callable[[int], None] | None = None
                  ) -> ParseResult:  # fmt: skip
    """Stage parse: Drain over a raw dataset's log files (``stream_parse_files``), or a pre-parsed dataset's table.
    ``progress``: called with the lines done after each chunk (the benchmark's timer)."""
    if section.config.kind == "raw":
        return ParseResult(lambda folder: _stream_raw(section, inputs, folder, progress))
    assert inputs.table is not None
    lines = inputs.table.lines
    templates = template_table(lines)
    seconds = inputs.seconds
    status_counts = lines["status"].value_counts()
    parsed = lines["status"] == STATUS_PARSED
    kind = section.config.kind
    metrics = {
        "dataset": section.dataset,
        "kind": kind,
        "parser": inputs.table.parser,
        "parser_settings": inputs.table.parser_settings,
        "lines": int(len(lines)),
        "parsed": int(status_counts.get(STATUS_PARSED, 0)),
        "unmatched": int(status_counts.get(STATUS_UNMATCHED, 0)),
        "non_utf8": int(status_counts.get(STATUS_NON_UTF8, 0)),
        "templates": int(len(templates)),
        "timestamps_unparseable": int((lines["timestamp"].isna() & parsed).sum()) if kind != "sessions" else 0,
        "labeled_lines": int(lines["label"].notna().sum()),
        "anomalous_lines": int((lines["label"] == 1).sum()),
        "files": inputs.table.file_counts,
        "seconds": round(seconds, 3),
        "lines_per_second": round(len(lines) / seconds, 1) if seconds > 0 else None,
    }

    def fill(folder: Path) -> dict[str, Any]:
        write_lines(folder, lines)
        write_parquet(folder / "templates.parquet", templates)
        return metrics

    return ParseResult(fill)


def _stream_raw(section: ParseSection, inputs: ParseInputs, folder: Path,
                progress: Callable[[int], None] | None) -> dict[str, Any]:  # fmt: skip
    """Drain over the raw dataset's log files into ``folder`` (lines.parquet parts as they come, templates.parquet,
    drain.json); its metrics. A DataError (unmatched share, unreadable times) leaves the folder to the runner."""
    system, dataset = section.system, section.config
    miner = new_miner(system)
    format_key = section.key("log_format")
    summary = stream_parse_files(inputs.log_files, line_layout(system, dataset.label, dataset.multiline), miner,
                                 section.parse, folder, format_key, progress)  # fmt: skip
    _check_times(section, summary.status_counts[STATUS_PARSED], summary.timestamps_unparseable)
    write_drain_state(folder / DRAIN_STATE_FILE, miner)  # the final tree: zerolog detect matches new lines on it
    metrics = parse_metrics(section.dataset, summary, system, section.parse)
    metrics["empty_files_skipped"] = len(inputs.manifest.get("empty_files", []))  # download's empty_files: skip
    _warn_on_continuations(metrics, section.parse.max_unmatched_share, format_key)
    return metrics
