"""Stage parse: turn one dataset's raw files into one row per line with its event template.

Why: every later stage works on templates (the paper's system-agnostic semantic template vectors start from the
template text, method.md §3). Raw logs go through a logparser3 parser (Drain by default); pre-parsed sets are
mapped onto the same table. Nothing is dropped silently: a line that does not match the system's log format or
is not UTF-8 keeps its row, with ``status`` saying why, and its own line number.

The per-line work is split into small public functions (``header_regex``, ``read_lines``, ``match_header``,
``parse_timestamps``, ``line_labels``) so that a streaming parser can reuse the same line accounting.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import re
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from zerolog.config import LOWER_CASE_FIELDS, ConfigError, DatasetConfig, LabelRule, Params, dataset_system
from zerolog.data import datasets
from zerolog.errors import DataError
from zerolog.io import atomic_directory, read_json, write_json, write_parquet

#: Line status values (``lines.parquet`` column ``status``).
STATUS_PARSED = "parsed"
STATUS_UNMATCHED = "unmatched"
STATUS_NON_UTF8 = "non_utf8"

#: Header fields stored under a lower-case column name; every other field keeps its log-format name.
RENAMED_FIELDS = LOWER_CASE_FIELDS

#: Columns of ``lines.parquet`` that a header field must not shadow.
RESERVED_COLUMNS = (
    "file_index", "line_number", "timestamp", "level", "component", "content",
    "event_id", "template", "label", "status", "session_key",
)  # fmt: skip

#: logparser3 parsers: module, and params setting name -> constructor argument name.
PARSERS: dict[str, tuple[str, dict[str, str]]] = {
    "Drain": ("logparser.Drain", {"depth": "depth", "st": "st", "maxChild": "maxChild"}),
    "Spell": ("logparser.Spell", {"tau": "tau"}),
    "IPLoM": (
        "logparser.IPLoM",
        {name: name for name in ("CT", "lowerBound", "upperBound", "maxEventLen", "step2Support", "PST")},
    ),
    "AEL": ("logparser.AEL", {"minEventCount": "minEventCount", "merge_percent": "merge_percent"}),
    "Brain": ("logparser.Brain", {"threshold": "threshold", "delimiter": "delimeter"}),
}

#: Template given to a matched line whose message part is empty (parsers cannot tokenise it).
EMPTY_TEMPLATE = ""


# ----------------------------------------------------------------------------- per-line building blocks


def header_regex(log_format: str) -> tuple[re.Pattern[str], list[str]]:
    """Compile a loghub log format (``'<Date> <Time> <Level>: <Content>'``) into a header regex and its fields.

    Built exactly as logparser3 builds it: each ``<Field>`` becomes a lazy named group ``(?P<Field>.*?)``,
    runs of spaces between fields match any whitespace run, the rest is regex text as written, anchored at
    both ends. Applied to a line with surrounding whitespace stripped (``match_header``).
    """
    fields: list[str] = []
    pattern = ""
    for index, part in enumerate(re.split(r"(<[^<>]+>)", log_format)):
        if index % 2 == 0:
            pattern += re.sub(" +", r"\\s+", part)
        else:
            name = part[1:-1]
            fields.append(name)
            pattern += f"(?P<{name}>.*?)"
    return re.compile(f"^{pattern}$"), fields


def match_header(regex: re.Pattern[str], fields: Sequence[str], text: str) -> list[str | None] | None:
    """Split one decoded line into its header field values (in ``fields`` order), or None if it does not match."""
    match = regex.match(text.strip())
    if match is None:
        return None
    return [match.group(name) for name in fields]


def read_lines(path: str | Path) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line_number, text)`` for every line of a log file (gzip if ``.gz``); ``text`` is None if not UTF-8.

    Lines are split on ``\\n`` only (a trailing ``\\r`` is removed), numbered from 1 as the file numbers them,
    and decoded one by one, so a single bad byte costs one line, not the file. A missing file or a broken
    gzip stream is a ``DataError``.
    """
    path = Path(path)
    line_number = 0
    try:
        with datasets.open_binary(path) as handle:
            for line_number, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                try:
                    yield line_number, raw.decode("utf-8")
                except UnicodeDecodeError:
                    yield line_number, None
    except FileNotFoundError:
        raise DataError(f"{path}: log file not found") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: line {line_number + 1}: unreadable ({error})") from None


def parse_timestamps(values: pd.Series, timestamp_format: str) -> pd.Series:
    """Seconds since the epoch (float64, NaN where a value is missing or does not fit ``timestamp_format``).

    Times are read as UTC: the logs carry no zone, and only differences and order matter downstream.
    """
    parsed = pd.to_datetime(values, format=timestamp_format, errors="coerce", utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) / pd.Timedelta(seconds=1)).astype("float64")


def line_labels(values: pd.Series, normal_value: str) -> pd.Series:
    """Line labels of a ``line_field`` rule: ``normal_value`` -> 0, any other value -> 1, missing -> null."""
    labels = pd.Series(pd.NA, index=values.index, dtype="Int8")
    present = values.notna()
    labels[present] = (values[present] != normal_value).astype("int8")
    return labels


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


# ----------------------------------------------------------------------------- parser driver


@dataclass
class _LogParserProgress:
    """Counts lines as the parser preprocesses them, to drive a progress bar from outside logparser3."""

    bar: Any
    every: int
    pending: int = field(default=0)

    def wrap(self, function: Any) -> Any:
        def counted(line: str) -> Any:
            self.pending += 1
            if self.pending >= self.every:
                self.bar.update(self.pending)
                self.pending = 0
            return function(line)

        return counted


def parser_arguments(parser: str, settings: dict[str, Any], where: str) -> dict[str, Any]:
    """Translate ``systems.<s>.parser_settings.<Parser>`` into the logparser3 constructor's arguments."""
    if parser not in PARSERS:
        raise ConfigError(f"parse.parser: unknown parser {parser!r} (expected one of {', '.join(PARSERS)})")
    _, names = PARSERS[parser]
    arguments = {}
    for key, value in settings.items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown setting for {parser} (expected one of {', '.join(names)})")
        arguments[names[key]] = value
    return arguments


def run_log_parser(
    contents: list[str], parser: str, settings: dict[str, Any], masking: list[str], description: str, progress_every: int
) -> list[str]:
    """Run a logparser3 parser over message parts and return each one's template text.

    logparser3 reads its input by path and renumbers or skips lines itself; here it is handed the already
    accounted-for messages as its DataFrame (its ``log_to_dataframe`` is replaced on the instance), its prints
    are silenced and its CSV outputs go to a temporary folder. ``settings`` are already translated by
    ``parser_arguments``; ``masking`` are the system's regexes replaced by ``<*>`` before parsing.
    """
    module_name, _ = PARSERS[parser]
    parser_class = importlib.import_module(module_name).LogParser
    frame = pd.DataFrame({"LineId": np.arange(1, len(contents) + 1), "Content": contents})
    bar = tqdm(total=len(contents), desc=description, unit="line", disable=True if progress_every <= 0 else None)
    with tempfile.TemporaryDirectory(prefix="zerolog-logparser-") as folder:
        arguments: dict[str, Any] = {"log_format": "<Content>", "indir": folder, "outdir": folder, "rex": masking}
        accepted = inspect.signature(parser_class.__init__).parameters
        if "keep_para" in accepted:
            arguments["keep_para"] = False  # parameter lists are not needed and cost a regex per line
        if "logname" in accepted:  # Brain keys dataset-specific token splitting on this name; use none of them
            arguments["logname"] = "lines"
        instance = parser_class(**arguments, **settings)
        instance.log_to_dataframe = lambda *unused: frame.copy()
        if progress_every > 0 and hasattr(instance, "preprocess"):
            instance.preprocess = _LogParserProgress(bar, progress_every).wrap(instance.preprocess)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            instance.parse("lines.log")
        bar.update(bar.total - bar.n)
        bar.close()
        result = instance.df_log
    if len(result) != len(contents) or "EventTemplate" not in result:
        raise DataError(f"{description}: {parser} returned {len(result)} results for {len(contents)} lines")
    templates = result["EventTemplate"].tolist()
    if any(not isinstance(template, str) for template in templates):
        raise DataError(f"{description}: {parser} left some lines without a template")
    return templates


# ----------------------------------------------------------------------------- manifest


def read_manifest(params: Params, name: str, required: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Read ``paths.raw/<name>/manifest.json`` (written by the download stage); ``required`` files keys must exist."""
    dataset = dataset_config(params, name)
    folder = Path(params.paths.raw) / name
    path = folder / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run pipeline/download.py {name})")
    try:
        manifest = read_json(path)
    except ValueError as error:
        raise DataError(str(error)) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise DataError(f"{path}: files: missing key")
    for key in required:
        if key not in files:
            raise DataError(f"{path}: files.{key}: missing key")
    if dataset.kind == "raw" and (not isinstance(files.get("logs"), list) or not files["logs"]):
        raise DataError(f"{path}: files.logs: expected a non-empty list of log files")
    return folder, manifest


def dataset_config(params: Params, name: str) -> DatasetConfig:
    """The ``datasets.<name>`` section, or a ConfigError naming the unknown dataset."""
    if name not in params.datasets:
        raise ConfigError(f"datasets.{name}: unknown dataset (expected one of {', '.join(params.datasets)})")
    return params.datasets[name]


# ----------------------------------------------------------------------------- kinds


@dataclass
class ParsedTable:
    """What one dataset's parse produced, before it is written."""

    lines: pd.DataFrame
    parser: str
    file_counts: list[dict[str, Any]]
    parser_settings: dict[str, Any] = field(default_factory=dict)


def _header_column(field_name: str) -> str:
    return RENAMED_FIELDS.get(field_name, field_name)


def _parse_raw(params: Params, name: str, folder: Path, manifest: dict[str, Any]) -> ParsedTable:
    """Parse the log files of a ``raw`` dataset together (one template set); see the module docstring."""
    dataset = params.datasets[name]
    system = dataset_system(params, name)  # the system's settings with the dataset's own log_format / timestamp
    where = f"systems.{dataset.system}"
    parser = params.parse.parser
    arguments = parser_arguments(parser, system.parser_settings.get(parser, {}), f"{where}.parser_settings.{parser}")
    if parser not in system.parser_settings:
        raise ConfigError(f"{where}.parser_settings.{parser}: missing key")
    try:
        regex, fields = header_regex(system.log_format)
    except re.error as error:
        raise ConfigError(f"{where}.log_format: invalid regex ({error})") from None
    if "Content" not in fields:
        raise ConfigError(f"{where}.log_format: has no <Content> field")
    header_fields = [name_ for name_ in fields if name_ != "Content"]
    for field_name in header_fields:
        if field_name not in RENAMED_FIELDS and _header_column(field_name) in RESERVED_COLUMNS:
            raise ConfigError(f"{where}.log_format: field <{field_name}> would overwrite the column {field_name!r}")

    file_indices: list[int] = []
    line_numbers: list[int] = []
    statuses: list[str] = []
    values: list[list[str | None] | None] = []
    file_counts: list[dict[str, Any]] = []
    log_files = [folder / relative for relative in manifest["files"]["logs"]]
    for path in log_files:
        if not path.is_file():
            raise DataError(f"{path}: log file not found (listed in {folder / 'manifest.json'})")
    for file_index, path in enumerate(log_files):
        counts = {"file": path.name, "lines": 0, STATUS_PARSED: 0, STATUS_UNMATCHED: 0, STATUS_NON_UTF8: 0}
        first_bad_line = None
        for line_number, text in tqdm(read_lines(path), desc=f"read {path.name}", unit="line", disable=None):
            if text is None:
                status, fields_found = STATUS_NON_UTF8, None
            else:
                fields_found = match_header(regex, fields, text)
                status = STATUS_PARSED if fields_found is not None else STATUS_UNMATCHED
            if status != STATUS_PARSED and first_bad_line is None:
                first_bad_line = line_number
            counts["lines"] += 1
            counts[status] += 1
            file_indices.append(file_index)
            line_numbers.append(line_number)
            statuses.append(status)
            values.append(fields_found)
        check_file_counts(path, counts, first_bad_line, params.parse.max_unmatched_share, f"{where}.log_format")
        file_counts.append(counts)

    matched = [index for index, status in enumerate(statuses) if status == STATUS_PARSED]
    columns: dict[str, list[str | None]] = {field_name: [None] * len(statuses) for field_name in fields}
    for index in matched:
        for position, field_name in enumerate(fields):
            columns[field_name][index] = values[index][position]  # type: ignore[index]
    del values
    contents = columns["Content"]

    # Lines with an empty message cannot be tokenised by every parser (IPLoM drops them and misaligns its
    # output): they get the empty template directly.
    to_parser = [index for index in matched if contents[index] and contents[index].strip()]  # type: ignore[union-attr]
    parsed_templates = run_log_parser(
        [contents[index] for index in to_parser],  # type: ignore[misc]
        parser,
        arguments,
        system.regex,
        f"{parser} {name}",
        params.parse.progress_every_lines,
    )
    templates: list[str | None] = [None] * len(statuses)
    for index in matched:
        templates[index] = EMPTY_TEMPLATE
    for index, template in zip(to_parser, parsed_templates, strict=True):
        templates[index] = template

    lines = pd.DataFrame(
        {
            "file_index": pd.Series(file_indices, dtype="int16"),
            "line_number": pd.Series(line_numbers, dtype="int64"),
        }
    )
    if system.timestamp.fields:
        parts = zip(*(columns[field_name] for field_name in system.timestamp.fields))
        stamp_text = [None if None in stamp else " ".join(stamp) for stamp in parts]  # type: ignore[arg-type]
        lines["timestamp"] = parse_timestamps(pd.Series(stamp_text, dtype="object"), system.timestamp.format)
    else:
        lines["timestamp"] = np.nan
    for renamed in ("level", "component"):
        lines[renamed] = pd.Series([None] * len(lines), dtype="string")
    for field_name in header_fields:
        lines[_header_column(field_name)] = pd.Series(columns[field_name], dtype="string")
    lines["content"] = pd.Series(contents, dtype="string")
    template_column = pd.Series(templates, dtype="string")
    lines["event_id"] = template_column.map(datasets.template_event_id, na_action="ignore").astype("string")
    lines["template"] = template_column
    lines["label"] = _raw_line_labels(dataset, name, columns, len(lines))
    lines["status"] = pd.Series(statuses, dtype="string")
    settings = {"masking": list(system.regex), **system.parser_settings[parser]}
    return ParsedTable(lines=lines, parser=parser, file_counts=file_counts, parser_settings=settings)


def _raw_line_labels(dataset: DatasetConfig, name: str, columns: dict[str, list[str | None]], size: int) -> pd.Series:
    """Line labels for ``label.rule: line_field`` (null everywhere else)."""
    rule = dataset.label
    if rule is None or rule.rule != "line_field":
        return pd.Series(pd.NA, index=range(size), dtype="Int8")
    if rule.field not in columns:
        raise ConfigError(f"datasets.{name}.label.field: {rule.field!r} is not a field of the log format")
    return line_labels(pd.Series(columns[rule.field], dtype="object"), _normal_value(rule, name))


def _normal_value(rule: LabelRule, name: str) -> str:
    if rule.normal_value is None:
        raise ConfigError(f"datasets.{name}.label.normal_value: missing key (required for rule line_field)")
    return rule.normal_value


def check_file_counts(
    path: Path, counts: dict[str, Any], first_bad_line: int | None, max_share: float, where: str
) -> None:
    """Refuse an empty file, a format that matches nothing, or too many lines that do not match (also used by the
    streaming parse, stream_parse.py, so both paths accept and refuse the same files)."""
    total = counts["lines"]
    if total == 0:
        raise DataError(f"{path}: empty log file")
    if counts[STATUS_PARSED] == 0:
        raise DataError(f"{path}: log format of {where} matches none of {total} lines")
    bad = counts[STATUS_UNMATCHED] + counts[STATUS_NON_UTF8]
    if bad / total > max_share:
        raise DataError(
            f"{path}: {bad} of {total} lines ({bad / total:.1%}) do not match {where} or are not UTF-8, "
            f"above parse.max_unmatched_share {max_share}; first at line {first_bad_line}"
        )


def _parse_events(params: Params, name: str, folder: Path, manifest: dict[str, Any]) -> ParsedTable:
    """Map a pre-parsed ``events`` dataset (CSV of ``label,time,event_id``, one row a log line) onto lines.

    ``line_number`` is the row's position among the data rows (the line of the original log it stands for);
    error messages name the CSV's own line (row + 1 for the header).
    """
    dataset = params.datasets[name]
    system = params.systems[dataset.system]
    rule = dataset.label
    events_path = folder / manifest["files"]["events"]
    templates = datasets.read_template_table(folder / manifest["files"]["templates"])
    label_column = rule.field if rule is not None and rule.rule == "line_field" else None
    required = ["time", "event_id"] + ([label_column] if label_column else [])
    frame = datasets.read_event_csv(events_path, required)  # type: ignore[arg-type]
    known = frame["event_id"].isin(templates.keys())
    if not known.all():
        first = int(np.flatnonzero(~known.to_numpy())[0])
        bad_id = frame["event_id"].iloc[first]
        raise DataError(f"{events_path}: line {first + 2}: unknown event id {bad_id!r} (not in the templates file)")
    lines = pd.DataFrame(
        {
            "file_index": pd.Series(np.zeros(len(frame)), dtype="int16"),
            "line_number": pd.Series(np.arange(1, len(frame) + 1), dtype="int64"),
            "timestamp": parse_timestamps(frame["time"].replace("", None), system.timestamp.format),
            "level": pd.Series([None] * len(frame), dtype="string"),
            "component": pd.Series([None] * len(frame), dtype="string"),
            "content": pd.Series([None] * len(frame), dtype="string"),
            "event_id": frame["event_id"].astype("string"),
            "template": frame["event_id"].map(templates).astype("string"),
        }
    )
    if label_column:
        lines["label"] = line_labels(frame[label_column].replace("", None), _normal_value(rule, name))  # type: ignore[arg-type]
    else:
        lines["label"] = pd.Series(pd.NA, index=lines.index, dtype="Int8")
    lines["status"] = pd.Series([STATUS_PARSED] * len(frame), dtype="string")
    counts = {"file": events_path.name, "lines": len(frame), STATUS_PARSED: len(frame), STATUS_UNMATCHED: 0, STATUS_NON_UTF8: 0}
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

    def add(self, file_index: int, line_number: int, key: str, label: int, event_ids: list[str], names: list[str]) -> None:
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
            events.add(file_index, line_number, f"{key}:{line_number}", file_index, event_ids, [templates[e] for e in event_ids])
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
            datasets.read_sequence_file(path, templates, templates_path), desc=f"read {path.name}", unit="session",
            disable=None,
        ):
            if session_key is None and not event_ids:
                blank += 1
                continue
            session_key = f"{key}:{line_number}" if session_key is None else session_key
            if session_key in seen:
                raise DataError(f"{path}: line {line_number}: sequence key {session_key!r} already at {seen[session_key]}")
            seen[session_key] = f"{path.name}: line {line_number}"
            sessions += 1
            empty += not event_ids
            events.add(file_index, line_number, session_key, label, event_ids, [templates[e] for e in event_ids])
        file_counts.append({"file": path.name, "label": label, "sessions": sessions, "empty_sessions": empty,
                            "blank_lines": blank})
    if not seen:
        raise DataError(f"{folder}: no sequence in {', '.join(str(files[key]) for key, _ in SEQUENCE_FILES)}")
    return file_counts


def _parse_sessions(params: Params, name: str, folder: Path, manifest: dict[str, Any]) -> ParsedTable:
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


def parse_dataset(params: Params, name: str) -> None:
    """Stage parse: write ``paths.parsed/<name>/{lines,templates}.parquet`` and ``paths.metrics/parse/<name>.json``.

    Everything is computed before anything is written, so an error leaves no output behind.
    """
    dataset = dataset_config(params, name)
    required = {"raw": ["logs"], "events": ["events", "templates"], "sessions": []}[dataset.kind]
    folder, manifest = read_manifest(params, name, required)
    started = time.perf_counter()
    if dataset.kind == "raw":
        table = _parse_raw(params, name, folder, manifest)
    elif dataset.kind == "events":
        table = _parse_events(params, name, folder, manifest)
    else:
        table = _parse_sessions(params, name, folder, manifest)
    lines = table.lines
    templates = template_table(lines)
    seconds = time.perf_counter() - started

    status_counts = lines["status"].value_counts()
    parsed = lines["status"] == STATUS_PARSED
    metrics = {
        "dataset": name,
        "kind": dataset.kind,
        "parser": table.parser,
        "parser_settings": table.parser_settings,
        "lines": int(len(lines)),
        "parsed": int(status_counts.get(STATUS_PARSED, 0)),
        "unmatched": int(status_counts.get(STATUS_UNMATCHED, 0)),
        "non_utf8": int(status_counts.get(STATUS_NON_UTF8, 0)),
        "templates": int(len(templates)),
        "timestamps_unparseable": int((lines["timestamp"].isna() & parsed).sum()) if dataset.kind != "sessions" else 0,
        "labeled_lines": int(lines["label"].notna().sum()),
        "anomalous_lines": int((lines["label"] == 1).sum()),
        "files": table.file_counts,
        "seconds": round(seconds, 3),
        "lines_per_second": round(len(lines) / seconds, 1) if seconds > 0 else None,
    }
    with atomic_directory(Path(params.paths.parsed) / name) as output:
        write_parquet(output / "lines.parquet", lines)
        write_parquet(output / "templates.parquet", templates)
    write_json(Path(params.paths.metrics) / "parse" / f"{name}.json", metrics)
    print(
        f"{name}: {metrics['lines']} lines, {metrics['parsed']} parsed, {metrics['unmatched']} unmatched, "
        f"{metrics['non_utf8']} non-UTF-8, {metrics['templates']} templates "
        f"({table.parser}, {metrics['lines_per_second']} lines/s)",
        file=sys.stdout,
    )


__all__ = [
    "EMPTY_TEMPLATE",
    "PARSERS",
    "grouping_accuracy",
    "header_regex",
    "line_labels",
    "match_header",
    "parse_dataset",
    "parse_timestamps",
    "read_lines",
    "read_manifest",
    "run_log_parser",
    "template_table",
]
