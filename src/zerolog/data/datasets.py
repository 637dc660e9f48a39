"""Readers for the dataset files that do not go through a log parser, and for label files.

Why: the pre-parsed sets in the bundle (BGL_100k event ids, the DeepLog HDFS sessions, the HDFS_100k JSON
lines), the sequence files of the anomaly-detection-log-datasets collection (Landauer et al., FSE 2024) and the
label files (HDFS block labels, the DevStack instance labels, loghub's OpenStack ``anomaly_labels.txt``) each have
their own layout. Each reader turns one layout into plain Python/pandas data and rejects a malformed file with a
one-line ``DataError`` naming the file and line, so that ``parse`` and ``sessionize`` never guess.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import pandas as pd

from zerolog.errors import DataError

#: Label strings of a ``key_file``, compared in lower case: loghub's HDFS ``anomaly_label.csv`` writes ``Anomaly`` /
#: ``Normal``, the DevStack ``instance_labels.csv`` ``Anomaly`` / ``normal``.
KEY_FILE_LABELS = {"anomaly": 1, "normal": 0}


def template_event_id(template: str) -> str:
    """A stable event id for a template text: the first 8 hex digits of its MD5 (the id Drain itself uses)."""
    return hashlib.md5(template.encode("utf-8")).hexdigest()[:8]


def open_binary(path: Path) -> IO[bytes]:
    """Open a file for reading bytes, transparently gunzipping ``.gz``."""
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))  # a binary file object by duck typing
    return open(path, "rb")


def iterate_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` of a UTF-8 text file (gzip if ``.gz``), line endings removed.

    A file that is not valid UTF-8 or a broken gzip stream is a ``DataError`` naming the file and line.
    """
    line_number = 0
    try:
        with open_binary(path) as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    yield line_number, raw.rstrip(b"\r\n").decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}: line {line_number}: not valid UTF-8") from None
    except (OSError, EOFError, zlib.error) as error:
        if isinstance(error, FileNotFoundError):
            raise DataError(f"{path}: file not found") from None
        raise DataError(f"{path}: line {line_number + 1}: unreadable ({error})") from None


def read_template_table(path: Path) -> dict[str, str]:
    """Read a loghub-style template table (CSV with ``EventId``, ``EventTemplate``) into ``{event_id: template}``."""
    if not path.is_file():
        raise DataError(f"{path}: template file not found")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"EventId", "EventTemplate"} - set(reader.fieldnames or [])
        if missing:
            raise DataError(f"{path}: line 1: missing column(s) {', '.join(sorted(missing))}")
        templates: dict[str, str] = {}
        for row in reader:
            line = reader.line_num
            event_id, template = row["EventId"], row["EventTemplate"]
            if not event_id or template is None:
                raise DataError(f"{path}: line {line}: empty EventId or EventTemplate")
            if event_id in templates:
                raise DataError(f"{path}: line {line}: duplicate EventId {event_id!r}")
            templates[event_id] = template
    if not templates:
        raise DataError(f"{path}: no templates")
    return templates


def read_event_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    """Read a (gzipped) CSV of pre-parsed lines as strings; every name in ``columns`` must be a column."""
    if not path.is_file():
        raise DataError(f"{path}: events file not found")
    try:
        with open_binary(path) as handle:
            frame = pd.read_csv(io.BytesIO(handle.read()), dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: unreadable CSV ({str(error).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty events file") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(f"{path}: line 1: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise DataError(f"{path}: empty events file")
    return frame


def read_deeplog_sessions(path: Path, templates: dict[str, str]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, event_ids)`` of a DeepLog session file: one session a line, space-separated ids.

    Id ``N`` means template ``EN`` of the template table (the DeepLog preprocessing numbered loghub's HDFS
    templates from 1). Trailing spaces are ignored; an empty line is a session without events and yields an
    empty list (the caller counts it). An id that is not an integer or names no template is a ``DataError``.
    """
    for line_number, text in iterate_text_lines(path):
        event_ids = []
        for token in text.split():
            event_id = f"E{token}"
            if not token.isdigit() or event_id not in templates:
                raise DataError(f"{path}: line {line_number}: unknown event id {token!r}")
            event_ids.append(event_id)
        yield line_number, event_ids


def read_jsonl_sessions(path: Path) -> Iterator[tuple[int, str, int, list[str]]]:
    """Yield ``(line_number, session_key, label, templates)`` of a JSON-lines session file.

    Each line is an object with ``block_id`` (string), ``label`` (0 or 1) and ``templates`` (list of strings).
    """
    for line_number, text in iterate_text_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {line_number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {line_number}: expected a JSON object")
        block_id, label, session_templates = record.get("block_id"), record.get("label"), record.get("templates")
        if not isinstance(block_id, str) or not block_id:
            raise DataError(f"{path}: line {line_number}: block_id must be a non-empty string")
        if label not in (0, 1) or isinstance(label, bool):
            raise DataError(f"{path}: line {line_number}: label must be 0 or 1, got {label!r}")
        if not isinstance(session_templates, list) or not all(isinstance(t, str) for t in session_templates):
            raise DataError(f"{path}: line {line_number}: templates must be a list of strings")
        yield line_number, block_id, int(label), session_templates


def read_key_file(path: Path) -> dict[str, int]:
    """Read a ``key_file`` label table (CSV: a header, then key, ``Anomaly``/``Normal`` in any case) into
    ``{key: 0/1}``, keys in file order."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or len(header) < 2:
            raise DataError(f"{path}: line 1: expected a header with a key column and a Label column")
        labels: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            value = row[1].strip().lower() if len(row) > 1 else ""
            if value not in KEY_FILE_LABELS:
                raise DataError(
                    f"{path}: line {line}: label must be Anomaly or Normal, got {row[1] if len(row) > 1 else ''!r}"
                )
            if row[0] in labels and labels[row[0]] != KEY_FILE_LABELS[value]:
                raise DataError(f"{path}: line {line}: key {row[0]!r} labeled twice with different labels")
            labels[row[0]] = KEY_FILE_LABELS[value]
    if not labels:
        raise DataError(f"{path}: no labels after the header")
    return labels


def read_key_list(path: Path) -> tuple[set[str], int]:
    """Read a ``key_list`` label file: the keys of the anomalous sessions, one per line.

    loghub's ``anomaly_labels.txt`` starts with a prose sentence; a line is taken as a key only when it is a
    single whitespace-free token, other non-empty lines are skipped. Returns ``(keys, skipped_lines)``.
    """
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    keys: set[str] = set()
    skipped = 0
    for _, text in iterate_text_lines(path):
        token = text.strip()
        if not token:
            continue
        if len(token.split()) == 1:
            keys.add(token)
        else:
            skipped += 1
    return keys, skipped


# ----------------------------------------------------------------------------- anomaly-detection-log-datasets layout
#
# The collection of Landauer et al. ("Deep Learning for Anomaly Detection in Log Data: A Survey", and the FSE 2024
# benchmark; github.com/ait-aecid/anomaly-detection-log-datasets) ships each data set as three sequence files,
# ``<name>_train``, ``<name>_test_normal`` and ``<name>_test_abnormal``, one sequence a line: ``<key>,<event ids>``
# (ids space-separated; the collection's own analyze.py also reads lines without a comma, whose key is their line
# number), and a template table ``<System>_templates.csv`` that is no CSV: one template a line, no header, event id
# ``k`` is line ``k`` (its parsers write ``template_id = i + 1``). A line that matched no template was written as
# ``None``; such an id is not in the table and is refused like any other unknown id.


def read_line_templates(path: Path) -> dict[str, str]:
    """Read a one-template-a-line table into ``{"1": first line, "2": second line, ...}`` (ids as strings).

    An empty line in the middle would silently shift no id but gives a template with no text to embed: refused.
    """
    if not path.is_file():
        raise DataError(f"{path}: template file not found")
    templates: dict[str, str] = {}
    for line_number, text in iterate_text_lines(path):
        if not text.strip():
            raise DataError(f"{path}: line {line_number}: empty template (event id {line_number} would have no text)")
        templates[str(line_number)] = text
    if not templates:
        raise DataError(f"{path}: no templates")
    return templates


def read_sequence_file(
    path: Path, templates: dict[str, str], templates_path: Path
) -> Iterator[tuple[int, str | None, list[str]]]:
    """Yield ``(line_number, key, event_ids)`` of a sequence file: ``key,<space-separated ids>`` a line.

    ``key`` is None on a line without a comma (ids only). A blank line yields ``(line_number, None, [])`` for the
    caller to count. An id missing from ``templates`` is a ``DataError`` naming the file, line and id.
    """
    if not path.is_file():
        raise DataError(f"{path}: sequence file not found")
    for line_number, text in iterate_text_lines(path):
        found_key, separator, ids = text.partition(",")
        key: str | None = found_key
        if not separator:
            key, ids = None, text
        event_ids = ids.split()
        for event_id in event_ids:
            if event_id not in templates:
                raise DataError(
                    f"{path}: line {line_number}: event id {event_id!r} is not in the template table {templates_path} "
                    f"({len(templates)} templates)"
                )
        yield line_number, key, event_ids
