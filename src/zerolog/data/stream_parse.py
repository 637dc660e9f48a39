"""The parse engine for raw logs: Drain over chunks, on worker processes or a Dask cluster, to Parquet parts.

Why: logparser3's ``Drain.LogParser.parse`` loads the whole file into pandas and walks it row by row (7–10k
lines/s, memory growing with the file). This engine gives the same templates line for line (a sequential Drain
run over every line in input order) with memory bounded by chunks, on as many workers as there are:

1. **Plan** (client): each log file is cut into chunks of about ``parse.chunk_bytes`` of whole lines: a byte
   range of a plain file (found by seeking: the client does not read the data), or, for a gzip file, the lines
   themselves (a gzip stream cannot be entered in the middle, so the client decompresses it in order).
2. **Mine** (client): chunks are parsed in the client against the live Drain state (``DrainMiner``, matcher.py)
   until ``parse.sample_lines`` lines are done, so the prefix tree is built from the head of the input, in order.
3. **Map** (workers, ``zerolog.parallel``): every further chunk goes to a worker with a *copy* of the tree as it
   is when the chunk is sent (each leaf cut to its distinct templates; shipped once per version).
   ``parse_chunk_task`` reads the chunk, decodes it line by line (UTF-8), splits the header, masks and matches
   each distinct masked message against the copy without changing it, writes every column but the template, the
   event id and the line number as a *draft* (Arrow IPC) named after the chunk, and returns only the small part:
   the distinct messages, each line's message code (4 bytes a line), the copy's answers and the counts.
4. **Reconcile** (client, chunk order): ``resolve_chunk`` keeps a copy's answer while it still holds in the live
   tree (same tree epoch, same version of the message's leaf) and sends every other line through the live miner
   in input order, so new templates are found centrally, in chunk order, and later chunks are sent with them.
   The result is exactly the sequential Drain run. Each line's cluster index goes to a side file.
5. **Write** (workers): with every chunk reconciled the templates are final (Drain gives a line its cluster's
   final template); ``write_part_task`` turns each draft into ``lines.parquet/part-<chunk>.parquet`` with the
   final template, event id and line number of every line.

Failure (README "Parse on a Dask cluster"): both tasks are idempotent (same bytes under the chunk's name, renamed
into place), the client takes each chunk's result once and in order, and each part must hold exactly its chunk's
lines, so a task the scheduler reruns loses or doubles no line (tests/data/test_dask_parse.py kills a worker).

Output: ``lines.parquet`` is a folder of parts in line order, one per chunk, that reads as one table
(``pandas.read_parquet``, pyarrow.dataset, ``iter_line_batches``); schema in docs/architecture.md.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import operator
import os
import re
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from zerolog.config import LabelRule, MultilineRule, ParseConfig, SystemConfig
from zerolog.data import LOWER_CASE_FIELDS, datasets
from zerolog.data.matcher import WILDCARD, DrainMiner
from zerolog.data.timestamps import parse_timestamps
from zerolog.errors import DataError
from zerolog.io import write_parquet
from zerolog.parallel import InlinePool, Pickled, Pool, map_ordered, open_pool, worker_count

#: Line status values (``lines.parquet`` column ``status``).
STATUS_PARSED = "parsed"
STATUS_UNMATCHED = "unmatched"
STATUS_NON_UTF8 = "non_utf8"
STATUS_CONTINUATION = "continuation"  # a line that continues the record before it (multiline.start: header)
#: Every status, in the order of the per-file counts.
STATUSES = (STATUS_PARSED, STATUS_UNMATCHED, STATUS_NON_UTF8, STATUS_CONTINUATION)

#: Template given to a matched line whose message part is empty (Drain has no token to place it by).
EMPTY_TEMPLATE = ""

#: ``key_of_line`` / cluster codes of lines without a message for Drain.
NO_MESSAGE = -1  # the line did not match the log format or is not UTF-8: no template
EMPTY_MESSAGE = -2  # the line matched but its message part is empty: the empty template

#: Chunks submitted to the workers ahead of the one being reconciled, per worker (bounds memory).
CHUNKS_AHEAD_PER_WORKER = 2

#: The lines dataset: a folder of Parquet parts named after their chunk, in line order.
LINES_FOLDER = "lines.parquet"
PART_PATTERN = re.compile(r"part-(\d{6})\.parquet")

#: Bytes read at a time when looking for the end of a line (chunk planning).
_PROBE_BYTES = 1 << 16


# ----------------------------------------------------------------------------- header


def header_regex(log_format: str) -> tuple[re.Pattern[str], list[str]]:
    r"""Compile a loghub log format (``'<Date> <Time> <Level>: <Content>'``) into a header regex and its fields.

    Built as logparser3 builds it (each ``<Field>`` a lazy group ``(?P<Field>.*?)``, runs of spaces any whitespace
    run, anchored at both ends; matched on the stripped line), except that a match costs time linear in the line.
    Why: logparser3's regex backtracks over every way of spreading a non-matching line's spaces across the fields
    (an OpenStack nova line without its ``[req-...]``: 80 spaces 1.6 s). Each field but the last keeps the lazy
    regex's first answer: its run of non-space characters where whitespace alone follows it, else the shortest text
    before its separator, in an atomic group, the separator never starting inside a whitespace run nor giving
    spaces back. Lines the lazy regex matches on its first path get the same fields (every bundled log,
    tests/data/test_stream_parse.py); a line that matched only by a later path is now unmatched. Adjacent fields
    (``<A><B>``) keep the lazy group.
    """
    parts = re.split(r"(<[^<>]+>)", log_format)
    literals = [re.sub(" +", r"\\s+", part) for part in parts[0::2]]
    fields = [part[1:-1] for part in parts[1::2]]
    pattern = literals[0]
    for position, name in enumerate(fields):
        separator = literals[position + 1]
        if position == len(fields) - 1 or not separator:
            pattern += f"(?P<{name}>.*?){separator}"
            continue
        if separator == r"\s+":  # the first path of the lazy group: the field's run of non-space characters
            pattern += f"(?P<{name}>\\S*+)\\s++"
            continue
        possessive = separator.replace(r"\s+", r"\s++")
        guard = r"(?<!\s)" if possessive.startswith(r"\s") else ""
        pattern += f"(?>(?P<{name}>.*?){guard}{possessive})"
    return re.compile(f"^{pattern}$"), fields


def line_labels(values: pd.Series, normal_value: str) -> pd.Series:
    """Line labels of a ``line_field`` rule: ``normal_value`` -> 0, any other value -> 1, missing -> null."""
    labels = pd.Series(pd.NA, index=values.index, dtype="Int8")
    present = values.notna()
    labels[present] = (values[present] != normal_value).astype("int8")
    return labels


@dataclass(frozen=True)
class LineLayout:
    """How one system's raw lines become ``lines.parquet`` columns; small and picklable (sent with each chunk)."""

    log_format: str
    fields: tuple[str, ...]  # every <Field> of the log format, in order (Content included)
    timestamp_fields: tuple[str, ...]
    timestamp_format: str
    label_field: str | None  # label.rule line_field: the header field holding the line label
    label_normal_value: str | None
    continues: bool = True  # multiline.start header: a line that does not match continues the record before it
    continuation_events: bool = False  # multiline.events each_line: continuation lines are Drain messages too

    @property
    def header_columns(self) -> list[tuple[str, str]]:
        """(field, column) of every header field except Content, in log-format order."""
        return [(name, LOWER_CASE_FIELDS.get(name, name)) for name in self.fields if name != "Content"]

    @property
    def columns(self) -> list[str]:
        """``lines.parquet`` column order."""
        names = ["file_index", "line_number", "timestamp", "level", "component"]
        for _, column in self.header_columns:
            if column not in names:
                names.append(column)
        return [*names, "content", "event_id", "template", "label", "status"]


def line_layout(system: SystemConfig, label: LabelRule | None, multiline: MultilineRule | None = None) -> LineLayout:
    """A system's ``LineLayout`` (with the dataset's line-label field, for ``label.rule: line_field``, and its
    ``multiline`` rule; None: the rule's defaults)."""
    multiline = multiline if multiline is not None else MultilineRule()
    _, fields = header_regex(system.log_format)
    line_field = label is not None and label.rule == "line_field"
    return LineLayout(
        log_format=system.log_format,
        fields=tuple(fields),
        timestamp_fields=tuple(system.timestamp.fields),
        timestamp_format=system.timestamp.format,
        label_field=label.field if line_field else None,  # type: ignore[union-attr]
        label_normal_value=label.normal_value if line_field else None,  # type: ignore[union-attr]
        continues=multiline.start == "header",
        continuation_events=multiline.events == "each_line",
    )


@functools.lru_cache(maxsize=16)
def lines_schema(layout: LineLayout) -> pa.Schema:
    """The Arrow schema, with its pandas metadata, of every part of ``lines.parquet`` (built once per layout: a
    pandas round trip costs more than writing a small part)."""
    types = {"file_index": "int16", "line_number": "int64", "timestamp": "float64", "label": "Int8"}
    frame = pd.DataFrame({column: pd.Series([], dtype=types.get(column, "string")) for column in layout.columns})
    return pa.Table.from_pandas(frame, preserve_index=False).schema


def new_miner(system: SystemConfig) -> DrainMiner:
    """An empty Drain state with the system's Drain settings and masking regexes."""
    return DrainMiner(system.drain, system.regex)


# ----------------------------------------------------------------------------- chunks


@dataclass(frozen=True)
class LineChunk:
    """Consecutive whole lines of one log file: the byte range ``[start, end)`` of ``path``, or ``data`` itself."""

    index: int  # position in the run (0-based): names the draft and the part
    file_index: int
    path: str
    start: int = 0
    end: int = 0
    data: bytes | None = None  # the lines, line ends included (compressed files); None: read the range
    starts_file: bool = False  # the chunk's first line is its file's first line (no earlier record to continue)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.start)
                data = handle.read(self.end - self.start)
        except OSError as error:
            raise DataError(f"{self.path}: bytes {self.start}-{self.end}: unreadable ({error})") from None
        if len(data) != self.end - self.start:
            raise DataError(
                f"{self.path}: shorter than when the parse began ({self.start + len(data)} < {self.end} bytes)"
            )
        return data

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.end - self.start

    @property
    def pieces(self) -> tuple[LineChunk, ...]:
        return (self,)


@dataclass(frozen=True)
class PackedChunk:
    """Consecutive chunks parsed as one unit of work and written as one part: a chunk followed by whole small files.

    Why: a folder of many small files (a run per file) made one chunk, one task, one draft and one part per file;
    at 5,000 files of 60 lines that overhead, not Drain, set the speed (2,700 lines/s against 33,000 on the same
    lines in one file, bench/results.md). Every piece after the first starts its file, so only the first piece's
    leading lines can continue a record of an earlier chunk (``settle_leading_lines``)."""

    index: int
    pieces: tuple[LineChunk, ...]

    @property
    def size(self) -> int:
        return sum(piece.size for piece in self.pieces)

    @property
    def file_index(self) -> int:
        return self.pieces[0].file_index


def pack_chunks(chunks: Iterator[LineChunk], chunk_bytes: int) -> Iterator[PackedChunk]:
    """``chunks`` in order, consecutive ones packed while they hold at most ``chunk_bytes`` together and each
    packed one starts its file; numbered from 0."""
    counter = itertools.count()
    pieces: list[LineChunk] = []
    for chunk in chunks:
        if pieces and (not chunk.starts_file or sum(piece.size for piece in pieces) + chunk.size > chunk_bytes):
            yield PackedChunk(next(counter), tuple(pieces))
            pieces = []
        pieces.append(chunk)
    if pieces:
        yield PackedChunk(next(counter), tuple(pieces))


def plan_chunks(log_files: Sequence[Path], chunk_bytes: int) -> Iterator[LineChunk]:
    """Cut every file, in order, into chunks of at least ``chunk_bytes`` (to the end of the line) or the rest.

    A chunk never spans two files; an empty file has none. gzip (``.gz``) is decompressed here, in order; a broken
    gzip stream is a one-line DataError naming the file and the first line of the chunk it broke in.
    """
    counter = itertools.count()
    for file_index, path in enumerate(log_files):
        if path.suffix == ".gz":
            yield from _compressed_chunks(path, file_index, chunk_bytes, counter)
        else:
            yield from _plain_chunks(path, file_index, chunk_bytes, counter)


def _plain_chunks(path: Path, file_index: int, chunk_bytes: int, counter: Iterator[int]) -> Iterator[LineChunk]:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        start = 0
        while start < size:
            end = _end_of_line(handle, min(start + chunk_bytes, size) - 1, size)
            yield LineChunk(
                index=next(counter), file_index=file_index, path=str(path), start=start, end=end, starts_file=start == 0
            )
            start = end


def _end_of_line(handle: Any, position: int, size: int) -> int:
    """The offset just past the first ``\\n`` at or after ``position`` (the file's size when there is none)."""
    handle.seek(position)
    while position < size:
        block = handle.read(_PROBE_BYTES)
        if not block:
            break
        found = block.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(block)
    return size


def stream_chunks(handle: IO[bytes], file_index: int, name: str, chunk_bytes: int,
                  counter: Iterator[int]) -> Iterator[LineChunk]:  # fmt: skip
    """Chunks of whole lines read from a stream in order, the lines travelling with each chunk: a gzip file (only
    the reader can decompress it in order) or ``zerolog detect``'s standard input."""
    for position in itertools.count():
        data = handle.read(chunk_bytes)
        if not data:
            return
        if not data.endswith(b"\n"):
            data += handle.readline()
        yield LineChunk(index=next(counter), file_index=file_index, path=name, data=data, starts_file=position == 0)


def _compressed_chunks(path: Path, file_index: int, chunk_bytes: int, counter: Iterator[int]) -> Iterator[LineChunk]:
    line_number = 1
    try:
        with datasets.open_binary(path) as handle:
            for chunk in stream_chunks(handle, file_index, str(path), chunk_bytes, counter):
                yield chunk
                line_number += chunk.data.count(b"\n") if chunk.data is not None else 0
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: line {line_number}: unreadable ({error})") from None


def _decode_lines(data: bytes) -> list[str | None]:
    """Each line of ``data`` (split on ``\\n`` only) as text, None where it is not UTF-8.

    Decoded in one call when the chunk is valid UTF-8 (a newline byte never occurs inside a UTF-8 sequence, so
    the lines come out the same), line by line otherwise, so one bad byte costs one line. A trailing ``\\r`` is
    left in place: the header regex is matched on the stripped text.
    """
    try:
        texts: list[str | None] = data.decode("utf-8").split("\n")  # type: ignore[assignment]
    except UnicodeDecodeError:
        texts = []
        for raw in data.split(b"\n"):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
    if data.endswith(b"\n") or not data:
        texts.pop()
    return texts


# ----------------------------------------------------------------------------- one chunk (pure)


@dataclass
class PieceCounts:
    """One piece of a chunk (``PackedChunk``): its file, lines, status counts and first bad line (0-based offset in
    the piece); ``first_bad_if_continued``: the same should its leading lines continue a record (first piece only)."""

    file_index: int
    lines: int
    status_counts: dict[str, int]
    first_bad_offset: int | None
    first_bad_if_continued: int | None


@dataclass
class ChunkSummary:
    """What a worker sends back for one chunk: everything but the rows (those stay in its draft). The counts are
    the chunk's; ``pieces`` splits them by file (the client's per-file checks and line numbers)."""

    index: int
    file_index: int
    lines: int
    raw_bytes: int
    keys: list[str]  # distinct masked messages (Drain's input), first-seen order
    key_of_line: np.ndarray  # (lines,) int32: index into keys, NO_MESSAGE or EMPTY_MESSAGE
    key_cluster: np.ndarray  # (keys,) int32: cluster index on the miner copy, -1 where only the live miner can say
    key_leaf: np.ndarray  # (keys,) int32: leaf serial each key was routed to (NO_LEAF if none)
    key_leaf_version: np.ndarray  # (keys,) int64: that leaf's version on the copy
    key_tokens: np.ndarray  # (keys,) int32: each key's token count
    key_epoch: np.ndarray  # (keys,) int64: the copy's epoch of that token count (DrainMiner.length_epochs)
    status_counts: dict[str, int]
    first_bad_offset: int | None  # 0-based offset in the chunk of its first unmatched or non-UTF-8 line
    # multiline.start header: the lines before the chunk's first header (``leading_end`` of them) continue a record
    # of an earlier chunk when the file has one (only the client knows): ``leading_unmatched`` of them are unmatched
    # here; ``first_bad_if_continued`` is ``first_bad_offset`` should they turn out to be continuation lines.
    leading_end: int
    leading_unmatched: int
    first_bad_if_continued: int | None
    timestamps_unparseable: int  # parsed lines without a readable timestamp
    labeled_lines: int
    anomalous_lines: int
    pieces: list[PieceCounts] = field(default_factory=list)


@dataclass
class _Headers:
    """The header split of a chunk's lines (``_split_headers``)."""

    rows: list[tuple[str | None, ...]]  # per line: every field's value (all None when not parsed; a continuation
    # line, or a line before the chunk's first header that may be one: its stripped text as Content)
    status_codes: np.ndarray  # (lines,) int8: 0 parsed, 1 unmatched, 2 non_utf8, 3 continuation
    message_contents: list[str]  # the non-blank messages, in line order
    message_offsets: list[int]
    empty_offsets: list[int]  # parsed lines with a blank message
    stamps: list[str]  # distinct timestamp texts, first-seen order
    stamp_of_line: list[int]  # (lines,) index into stamps, -1 where none
    leading_end: int = 0  # offset of the chunk's first header (multiline.start header; the chunk's size if none)


def _split_headers(texts: list[str | None], layout: LineLayout, file_starts: Sequence[int] = ()) -> _Headers:
    """Match every line's stripped text against the header regex; collect messages and distinct timestamps.

    With ``layout.continues`` a line that does not match continues the record before it (status 3): its stripped
    text is its Content, and a Drain message when ``layout.continuation_events``. Lines before the chunk's first
    header may continue a record of an earlier chunk: they are unmatched here, with their text and message kept,
    and the client settles them (``settle_leading_lines``). ``file_starts``: offsets where a later file's first
    line begins (``PackedChunk``); lines before that file's first header continue nothing: unmatched, no text kept,
    no message (what the client's settlement gives lines before a file's first header)."""
    regex, fields = header_regex(layout.log_format)
    field_count = len(fields)
    content_position = fields.index("Content")
    # groups() is group(*fields) when the format adds no unnamed group of its own (a one-field format gives a str)
    plain_groups = regex.groups == field_count and field_count > 1
    empty_row: tuple[None, ...] = (None,) * field_count
    stamp_positions = [fields.index(name) for name in layout.timestamp_fields]
    stamp_getter = operator.itemgetter(*stamp_positions) if stamp_positions else None
    single_stamp = len(stamp_positions) == 1
    headers = _Headers([], np.zeros(len(texts), dtype=np.int8), [], [], [], [], [], len(texts))
    stamp_index: dict[str, int] = {}
    match = regex.match
    in_record, fresh_file, starts = False, False, set(file_starts)
    for offset, text in enumerate(texts):
        if offset in starts:
            if not (in_record or fresh_file):  # the first piece held no header: all its lines are leading lines
                headers.leading_end = offset
            in_record, fresh_file = False, True
        stripped = text.strip() if text is not None else None
        found = match(stripped) if stripped is not None else None
        if found is None:
            headers.stamp_of_line.append(-1)
            if stripped is None or not layout.continues or (fresh_file and not in_record):
                headers.status_codes[offset] = 1 if text is not None else 2
                headers.rows.append(empty_row)
                continue
            headers.status_codes[offset] = 3 if in_record else 1
            headers.rows.append(empty_row[:content_position] + (stripped,) + empty_row[content_position + 1 :])
            if layout.continuation_events and stripped:
                headers.message_contents.append(stripped)
                headers.message_offsets.append(offset)
            continue
        if not in_record:
            in_record = True
            if not fresh_file:
                headers.leading_end = offset
        values = found.groups() if plain_groups else found.group(*fields)
        if field_count == 1:
            values = (values,)
        headers.rows.append(values)
        if stamp_getter is not None:
            stamp = stamp_getter(values) if single_stamp else " ".join(stamp_getter(values))
            headers.stamp_of_line.append(stamp_index.setdefault(stamp, len(stamp_index)))
        content = values[content_position]
        if content and content.strip():
            headers.message_contents.append(content)
            headers.message_offsets.append(offset)
        else:
            headers.empty_offsets.append(offset)
    headers.stamps = list(stamp_index)
    return headers


#: Status column values by code (0 parsed, 1 unmatched, 2 non_utf8, 3 continuation).
_STATUSES = pa.array([STATUS_PARSED, STATUS_UNMATCHED, STATUS_NON_UTF8, STATUS_CONTINUATION], type=pa.string())


def _draft_table(headers: _Headers, layout: LineLayout, file_indices: np.ndarray) -> pa.Table:
    """Every ``lines.parquet`` column of the chunk except line_number, template and event_id; ``file_indices``:
    ``(lines,)`` each line's file."""
    size = len(headers.rows)
    columns = list(zip(*headers.rows, strict=True)) if headers.rows else [()] * len(layout.fields)
    by_field = dict(zip(layout.fields, columns, strict=True))
    arrays: dict[str, pa.Array] = {"file_index": pa.array(np.asarray(file_indices, dtype=np.int16))}
    if layout.timestamp_fields:
        distinct = parse_timestamps(pd.Series(headers.stamps, dtype="object"), layout.timestamp_format).to_numpy()
        # index -1 (no header) picks the NaN appended last
        stamps = np.append(distinct, np.nan)[np.asarray(headers.stamp_of_line, dtype=np.int64)]
    else:
        stamps = np.full(size, np.nan)
    arrays["timestamp"] = pa.array(stamps, type=pa.float64(), from_pandas=True)
    arrays["level"] = arrays["component"] = pa.nulls(size, pa.string())
    for name, column in layout.header_columns:
        arrays[column] = pa.array(by_field[name], type=pa.string())
    arrays["content"] = pa.array(by_field["Content"], type=pa.string())
    if layout.label_field is not None:
        labels = line_labels(pd.Series(by_field[layout.label_field], dtype="object"), layout.label_normal_value or "")
        arrays["label"] = pa.array(labels, type=pa.int8(), from_pandas=True)
    else:
        arrays["label"] = pa.nulls(size, pa.int8())
    arrays["status"] = _STATUSES.take(pa.array(headers.status_codes))
    names = [column for column in layout.columns if column not in ("line_number", "template", "event_id")]
    return pa.table([arrays[name] for name in names], names=names)


def parse_chunk(chunk: LineChunk | PackedChunk, layout: LineLayout,
                miner: DrainMiner) -> tuple[pa.Table, ChunkSummary]:  # fmt: skip
    """Parse one chunk against a (copy of the) miner: its draft table and its summary. Changes no argument.
    Messages are masked once per line and matched once per distinct masked message; timestamps are read once per
    distinct text. A packed chunk's pieces are parsed as one list of lines, each later piece a file's start."""
    texts: list[str | None] = []
    piece_starts = []  # (pieces,) offset of each piece's first line
    for piece in chunk.pieces:
        piece_starts.append(len(texts))
        texts.extend(_decode_lines(piece.read()))
    headers = _split_headers(texts, layout, piece_starts[1:])
    size = len(headers.rows)
    # Drain's input: the masked messages, each distinct one matched once against the miner.
    encoded = pc.dictionary_encode(miner.mask_array(headers.message_contents))
    keys = encoded.dictionary.to_pylist()
    key_of_line = np.full(size, NO_MESSAGE, dtype=np.int32)
    key_of_line[np.asarray(headers.empty_offsets, dtype=np.int64)] = EMPTY_MESSAGE
    key_of_line[np.asarray(headers.message_offsets, dtype=np.int64)] = encoded.indices.to_numpy(zero_copy_only=False)
    tokens = [key.split() for key in keys]
    answers = np.array([miner.match(key_tokens) for key_tokens in tokens], dtype=np.int64).reshape(len(keys), 3)
    lengths = np.array([len(key_tokens) for key_tokens in tokens], dtype=np.int32)
    piece_lines = np.diff([*piece_starts, size])
    table = _draft_table(headers, layout, np.repeat([piece.file_index for piece in chunk.pieces], piece_lines))
    codes = headers.status_codes
    leading_end = headers.leading_end if layout.continues else 0
    pieces = [_piece_counts(piece.file_index, codes[start: start + lines], leading_end if not position else 0)
              for position, (piece, start, lines) in enumerate(zip(chunk.pieces, piece_starts, piece_lines,
                                                                   strict=True))]  # fmt: skip
    whole = _piece_counts(chunk.file_index, codes, leading_end)
    labels = table.column("label")
    return table, ChunkSummary(
        index=chunk.index,
        file_index=chunk.file_index,
        lines=size,
        raw_bytes=chunk.size,
        keys=keys,
        key_of_line=key_of_line,
        key_cluster=answers[:, 0].astype(np.int32),
        key_leaf=answers[:, 1].astype(np.int32),
        key_leaf_version=answers[:, 2],
        key_tokens=lengths,
        key_epoch=np.array([miner.length_epochs.get(length, 0) for length in lengths.tolist()], dtype=np.int64),
        status_counts=whole.status_counts,
        first_bad_offset=whole.first_bad_offset,
        leading_end=leading_end,
        leading_unmatched=int((codes[:leading_end] == 1).sum()),  # unmatched lines that may continue a record
        first_bad_if_continued=whole.first_bad_if_continued,
        timestamps_unparseable=int(
            (table.column("timestamp").is_null().to_numpy(zero_copy_only=False) & (codes == 0)).sum()
        ),
        labeled_lines=size - labels.null_count,
        anomalous_lines=int(pc.sum(labels).as_py() or 0),
        pieces=pieces,
    )


def _piece_counts(file_index: int, codes: np.ndarray, leading_end: int) -> PieceCounts:
    """The counts of lines with status ``codes`` (``(lines,) int8``) whose first ``leading_end`` may continue a
    record of an earlier chunk."""
    bad = np.flatnonzero((codes == 1) | (codes == 2))
    bad_if_continued = bad[(bad >= leading_end) | (codes[bad] == 2)]
    return PieceCounts(
        file_index=file_index,
        lines=len(codes),
        status_counts={status: int((codes == code).sum()) for code, status in enumerate(STATUSES)},
        first_bad_offset=int(bad[0]) if len(bad) else None,
        first_bad_if_continued=int(bad_if_continued[0]) if len(bad_if_continued) else None,
    )


def continued_counts(status_counts: dict[str, int], leading_unmatched: int) -> dict[str, int]:
    """A chunk's status counts once its ``leading_unmatched`` lines before the first header turn out to continue a
    record of an earlier chunk (``settle_leading_lines``; ``zerolog detect``'s ``ChunkEvents.settled``)."""
    return {**status_counts, STATUS_UNMATCHED: status_counts[STATUS_UNMATCHED] - leading_unmatched,
            STATUS_CONTINUATION: status_counts[STATUS_CONTINUATION] + leading_unmatched}  # fmt: skip


def settle_leading_lines(result: ChunkSummary, continued: bool) -> None:
    """Settle, in place, the unmatched lines before a chunk's first header, once the client knows whether the file
    had a record before the chunk (``continued``): then they continue it (counted as continuation lines, not bad
    ones); else they belong to no record and are no Drain message (``multiline.events: each_line`` sent them).
    The part's rows follow in ``write_part_task``. The result is the same as one pass over the whole file."""
    if not result.leading_end:
        return
    if continued:
        result.status_counts = continued_counts(result.status_counts, result.leading_unmatched)
        result.first_bad_offset = result.first_bad_if_continued
        if result.pieces:
            first = result.pieces[0]
            first.status_counts = continued_counts(first.status_counts, result.leading_unmatched)
            first.first_bad_offset = first.first_bad_if_continued
        return
    leading = result.key_of_line[: result.leading_end]
    leading[leading >= 0] = NO_MESSAGE


def _settled_rows(table: pa.Table, leading_end: int, continued: bool) -> pa.Table:
    """A draft's rows with the lines before its first header settled (``settle_leading_lines``): unmatched ones
    become continuation lines, or lose the text the worker kept for them."""
    if not leading_end:
        return table
    head, tail = table.slice(0, leading_end), table.slice(leading_end)
    unmatched = pc.equal(head.column("status"), STATUS_UNMATCHED)
    if continued:
        status = pc.if_else(unmatched, STATUS_CONTINUATION, head.column("status"))
        head = head.set_column(head.schema.get_field_index("status"), "status", status)
    else:
        content = pc.if_else(unmatched, pa.scalar(None, pa.string()), head.column("content"))
        head = head.set_column(head.schema.get_field_index("content"), "content", content)
    return pa.concat_tables([head, tail])


def draft_path(scratch: Path, index: int) -> Path:
    return scratch / f"draft-{index:06d}.arrow"


def clusters_path(scratch: Path, index: int) -> Path:
    return scratch / f"clusters-{index:06d}.npy"


def part_path(parts: Path, index: int) -> Path:
    return parts / f"part-{index:06d}.parquet"


@contextlib.contextmanager
def _replacing(target: Path, scratch: Path) -> Iterator[Path]:
    """A temporary path in ``scratch`` (same file system), renamed onto ``target`` on success: a rerun of a task
    replaces, never adds, and what a killed task leaves behind is in ``scratch``, never among the parts."""
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=scratch)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def parse_chunk_task(
    chunk: LineChunk | PackedChunk, layout: LineLayout, miner: DrainMiner | Pickled, scratch: str
) -> ChunkSummary:
    """``parse_chunk``, its draft written to ``scratch`` under the chunk's name; runs in the client (live miner)
    or on a worker (a copy). Idempotent: a rerun writes the same draft under the same name."""
    live = miner if isinstance(miner, DrainMiner) else miner.value()  # a copy: DrainMiner.matching_copy
    table, summary = parse_chunk(chunk, layout, live)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with (
        _replacing(draft_path(Path(scratch), chunk.index), Path(scratch)) as temporary,
        pa.OSFile(str(temporary), "wb") as sink,
        pa.ipc.new_file(sink, table.schema, options=options) as writer,
    ):
        writer.write_table(table)
    return summary


# ----------------------------------------------------------------------------- reconcile (client)


def resolve_chunk(result: ChunkSummary, miner: DrainMiner) -> np.ndarray:
    """Each line's cluster index in the live miner, exactly as a sequential Drain run over every line would give.

    Returns ``(lines,) int32``: a cluster index, ``NO_MESSAGE`` or ``EMPTY_MESSAGE``. A copy's answer for a key is
    taken while it still holds (same epoch of the key's token count, same version of its leaf, see matcher.py); the
    other lines go, in input order, through the live miner (``DrainMiner.assign``: cached match, else a Drain step),
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

    def still_valid() -> np.ndarray:
        """Per key: does the copy's answer hold in the live miner now?"""
        live_epochs = np.zeros(int(result.key_tokens.max(initial=0)) + 1, dtype=np.int64)
        for length, epoch in miner.length_epochs.items():
            if length < len(live_epochs):
                live_epochs[length] = epoch
        live_versions = np.asarray(miner.leaf_version, dtype=np.int64)
        valid = (copy_clusters >= 0) & (result.key_leaf >= 0) & (live_epochs[result.key_tokens] == result.key_epoch)
        valid[valid] = live_versions[result.key_leaf[valid]] == result.key_leaf_version[valid]
        return valid

    valid = still_valid()
    position = 0
    while position < size:
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


def check_file_counts(
    path: Path,
    counts: dict[str, Any],
    first_bad_line: int | None,
    max_share: float,
    where: str,
    skip_empty: bool = False,
) -> None:
    """Refuse an empty file (unless ``skip_empty``: the dataset's ``empty_files: skip``, the caller counts it), a
    format that matches nothing, or too many lines that do not match."""
    total = counts["lines"]
    if total == 0 and skip_empty:
        return
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


class FilePiece(Protocol):
    """Lines of one file read in one go: a chunk's ``PieceCounts`` here, a ``ChunkEvents`` in ``zerolog detect``."""

    @property
    def file_index(self) -> int: ...
    @property
    def lines(self) -> int: ...
    @property
    def status_counts(self) -> dict[str, int]: ...
    @property
    def first_bad_offset(self) -> int | None: ...


def add_file_counts(file_counts: list[dict[str, Any]], first_bad: list[int | None], piece: FilePiece) -> int:
    """Add ``piece``'s lines and status counts to its file's counts, in file order; the file's first bad line (for
    ``check_file_counts``) is the first piece's with one. Returns the number (1-based, in its file) of the piece's
    first line."""
    counts = file_counts[piece.file_index]
    first_line: int = counts["lines"] + 1
    if first_bad[piece.file_index] is None and piece.first_bad_offset is not None:
        first_bad[piece.file_index] = first_line + piece.first_bad_offset
    counts["lines"] += piece.lines
    for status, count in piece.status_counts.items():
        counts[status] += count
    return first_line


@dataclass
class StreamSummary:
    """What a parse counted (metrics), and the final templates with their line counts."""

    lines: int = 0
    status_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    file_counts: list[dict[str, Any]] = field(default_factory=list)
    timestamps_unparseable: int = 0
    labeled_lines: int = 0
    anomalous_lines: int = 0
    templates: pd.DataFrame | None = None  # templates.parquet: event_id, template, count
    chunk_lines: list[int] = field(default_factory=list)  # lines per chunk, by chunk index
    chunk_first_lines: list[list[int]] = field(default_factory=list)  # per chunk, per piece: the line number (in its
    # file) of the piece's first line
    chunk_leading: list[tuple[int, bool]] = field(default_factory=list)  # per chunk: lines before its first header,
    # and whether they continue a record of an earlier chunk (settle_leading_lines)
    pool: str = "in-process"  # where the chunks after the sample ran
    workers: int = 1
    miner_changes_after_sample: int = 0  # state changes (new / generalised templates) after the mined prefix
    matched_after_sample: int = 0  # lines this process matched itself after the mined prefix (resolve_chunk's
    # re-matching, or every line without a pool): the serial part of a parallel parse
    clusters: int = 0  # Drain clusters (several can end with the same template text)
    template_first_lines: list[int] = field(default_factory=list)  # per distinct final template: the position (from
    # 0, over all files) of its first line (template_growth)
    seconds: float = 0.0


class _Reconciler:
    """The client's side of the map: takes chunk summaries in chunk order, reconciles them with the live miner,
    writes each chunk's cluster indices to ``scratch`` and keeps the counts and per-file checks."""

    def __init__(
        self,
        log_files: Sequence[Path],
        miner: DrainMiner,
        scratch: Path,
        parse: ParseConfig,
        where: str,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.log_files, self.miner, self.scratch, self.where, self.progress = log_files, miner, scratch, where, progress
        self.max_share = parse.max_unmatched_share
        self.summary = StreamSummary()
        self.summary.file_counts = [{"file": path.name, "lines": 0, **dict.fromkeys(STATUSES, 0)} for path in log_files]
        self.first_bad: list[int | None] = [None] * len(log_files)
        self.checked_files = 0
        self.cluster_counts = np.zeros(0, dtype=np.int64)
        self.cluster_first_line = np.zeros(0, dtype=np.int64)  # (clusters,) position of each cluster's first line
        self.empty_count = 0
        gzipped = any(path.suffix == ".gz" for path in log_files)
        total = None if gzipped else sum(path.stat().st_size for path in log_files)
        self.bar = tqdm(
            total=total,
            desc=f"parse {log_files[0].parent.name}",
            unit="B",
            unit_scale=True,
            leave=False,
            mininterval=1.0,
            disable=None,
        )

    def take(self, result: ChunkSummary) -> None:
        summary = self.summary
        if result.index != len(summary.chunk_lines):
            raise RuntimeError(f"parse: chunk {result.index} arrived as chunk {len(summary.chunk_lines)}")
        self.check_files(before=result.file_index)
        # the file had a record (a header line) before this chunk
        continued = summary.file_counts[result.file_index][STATUS_PARSED] > 0
        settle_leading_lines(result, continued)
        clusters = resolve_chunk(result, self.miner)
        np.save(clusters_path(self.scratch, result.index), clusters)
        summary.chunk_leading.append((result.leading_end, continued))
        summary.chunk_first_lines.append([self._take_piece(piece) for piece in result.pieces])
        summary.chunk_lines.append(result.lines)
        for status, count in result.status_counts.items():
            summary.status_counts[status] += count
        self._count_clusters(clusters, summary.lines)
        summary.lines += result.lines
        summary.timestamps_unparseable += result.timestamps_unparseable
        summary.labeled_lines += result.labeled_lines
        summary.anomalous_lines += result.anomalous_lines
        self.bar.update(result.raw_bytes)
        if self.progress is not None:
            self.progress(summary.lines)

    def _take_piece(self, piece: PieceCounts) -> int:
        """Add one piece's counts to its file's (checking the files before it); returns its first line's number."""
        self.check_files(before=piece.file_index)
        return add_file_counts(self.summary.file_counts, self.first_bad, piece)

    def _count_clusters(self, clusters: np.ndarray, first_position: int) -> None:
        """Lines per cluster, and each cluster's first line; ``first_position``: the chunk's first line's position."""
        rows = np.flatnonzero(clusters >= 0)
        used = clusters[rows]
        counts = np.bincount(used, minlength=len(self.miner.clusters)) if len(used) else np.zeros(0, np.int64)
        if len(counts) > len(self.cluster_counts):
            missing = len(counts) - len(self.cluster_counts)
            self.cluster_counts = np.concatenate([self.cluster_counts, np.zeros(missing, np.int64)])
            self.cluster_first_line = np.concatenate([self.cluster_first_line,
                                                      np.full(missing, np.iinfo(np.int64).max)])  # fmt: skip
        self.cluster_counts[: len(counts)] += counts
        np.minimum.at(self.cluster_first_line, used, rows + first_position)
        self.empty_count += int((clusters == EMPTY_MESSAGE).sum())

    def check_files(self, before: int) -> None:
        """Check every file before index ``before`` (complete once a later file's chunk arrives) not yet checked."""
        while self.checked_files < before:
            index = self.checked_files
            check_file_counts(
                self.log_files[index],
                self.summary.file_counts[index],
                self.first_bad[index],
                self.max_share,
                self.where,
            )
            self.checked_files += 1

    def templates(self) -> tuple[pd.DataFrame, list[int]]:
        """``templates.parquet``: (event_id, template, count), most frequent first, ties by event id; clusters
        that ended with the same text are one row. And each distinct template's first line (``template_growth``)."""
        texts = self.miner.templates()
        rows: dict[str, int] = collections.defaultdict(int)
        first_lines: dict[str, int] = {}
        for cluster, count in enumerate(self.cluster_counts.tolist()):
            if count:
                rows[texts[cluster]] += count
                first = int(self.cluster_first_line[cluster])
                first_lines[texts[cluster]] = min(first, first_lines.get(texts[cluster], first))
        if self.empty_count:
            rows[EMPTY_TEMPLATE] += self.empty_count
        table = pd.DataFrame(
            {
                "event_id": pd.Series([datasets.template_event_id(text) for text in rows], dtype="string"),
                "template": pd.Series(list(rows), dtype="string"),
                "count": pd.Series(list(rows.values()), dtype="int64"),
            }
        )
        table = table.sort_values(["count", "event_id"], ascending=[False, True], kind="stable")
        return table.reset_index(drop=True), list(first_lines.values())


# ----------------------------------------------------------------------------- write (workers)


@dataclass(frozen=True)
class TemplateDictionary:
    """The final template text and event id of every cluster, by cluster index; the empty template last."""

    texts: list[str]
    event_ids: list[str]

    @classmethod
    def of(cls, miner: DrainMiner) -> TemplateDictionary:
        texts = [*miner.templates(), EMPTY_TEMPLATE]
        # many clusters can share a text (shadowed duplicates): one md5 per distinct text
        ids = {text: datasets.template_event_id(text) for text in dict.fromkeys(texts)}
        return cls(texts, [ids[text] for text in texts])


def write_part_task(
    index: int,
    first_line_numbers: list[int],
    scratch: str,
    parts: str,
    layout: LineLayout,
    dictionary: TemplateDictionary,
    leading: tuple[int, bool] = (0, False),
) -> int:
    """Turn chunk ``index``'s draft and cluster indices into its part of ``lines.parquet``; returns its rows.
    ``first_line_numbers``: each piece's first line number in its file (the pieces' lines follow from the draft's
    file indices); ``leading``: the chunk's lines before its first header and whether they continue a record
    (``_settled_rows``).

    Idempotent: a part already in place (an earlier run of this task) is left as it is and counted.
    """
    target = part_path(Path(parts), index)
    draft, side = draft_path(Path(scratch), index), clusters_path(Path(scratch), index)
    try:
        table = pa.ipc.open_file(pa.memory_map(str(draft))).read_all()
        clusters = np.load(side)
    except FileNotFoundError:
        if target.exists():  # an earlier run of this task wrote the part (and removed its inputs)
            return pq.read_metadata(target).num_rows
        raise
    if len(clusters) != table.num_rows:
        raise DataError(f"{draft}: {table.num_rows} lines, {len(clusters)} cluster indices")
    table = _settled_rows(table, *leading)
    take = np.where(clusters == EMPTY_MESSAGE, len(dictionary.texts) - 1, clusters)
    indices = pa.array(take, type=pa.int32(), mask=clusters == NO_MESSAGE)
    added = {
        "line_number": pa.array(_line_numbers(table.column("file_index").to_numpy(), first_line_numbers)),
        "template": pa.array(dictionary.texts, pa.string()).take(indices),
        "event_id": pa.array(dictionary.event_ids, pa.string()).take(indices),
    }
    schema = lines_schema(layout)
    columns = [added[name] if name in added else table.column(name) for name in schema.names]
    final = pa.Table.from_arrays(columns, schema=schema)
    # Dictionary-encode every column but the message text (near-unique: the dictionary would be thrown away).
    dictionary_columns = [name for name in schema.names if name != "content"]
    with _replacing(target, Path(scratch)) as temporary:
        pq.write_table(final, temporary, row_group_size=max(final.num_rows, 1), use_dictionary=dictionary_columns)
    draft.unlink(missing_ok=True)
    side.unlink(missing_ok=True)
    return final.num_rows


def _line_numbers(file_indices: np.ndarray, first_line_numbers: list[int]) -> np.ndarray:
    """``(lines,) int64`` line numbers of a chunk whose pieces (runs of equal ``file_indices``) start at
    ``first_line_numbers``."""
    starts = np.flatnonzero(np.diff(file_indices, prepend=np.int16(-1))) if len(file_indices) else np.zeros(0, int)
    if len(starts) != len(first_line_numbers):
        raise DataError(f"parse: {len(starts)} files in a chunk of {len(first_line_numbers)} pieces")
    lengths = np.diff([*starts, len(file_indices)])
    offsets = np.arange(len(file_indices), dtype=np.int64) - np.repeat(starts, lengths)
    return offsets + np.repeat(np.asarray(first_line_numbers, dtype=np.int64), lengths)


# ----------------------------------------------------------------------------- driver


def _with_copies(
    chunks: Iterator[PackedChunk], layout: LineLayout, miner: DrainMiner, pool: Pool, scratch: str
) -> Iterator[tuple[PackedChunk, LineLayout, Any, str]]:
    """``parse_chunk_task`` arguments per chunk, with a copy of the miner as it is when the chunk is drawn
    (``map_ordered`` draws it just before sending it); a new copy is shared only when the miner has changed."""
    version, shared = -1, None
    for chunk in chunks:
        if version != miner.changes:
            version, shared = miner.changes, pool.share(Pickled.of_bytes(miner.matching_copy()))
        yield chunk, layout, shared, scratch


def _write_parts(
    pool: Pool, summary: StreamSummary, miner: DrainMiner, layout: LineLayout, scratch: Path, parts: Path
) -> None:
    """Every chunk's part, on the pool; each must hold exactly its chunk's lines (nothing lost, nothing twice)."""
    dictionary = pool.share(TemplateDictionary.of(miner))
    items = (
        (index, first, str(scratch), str(parts), layout, dictionary, leading)
        for index, (first, leading) in enumerate(zip(summary.chunk_first_lines, summary.chunk_leading, strict=True))
    )
    ahead = CHUNKS_AHEAD_PER_WORKER * pool.workers
    for index, rows in enumerate(map_ordered(pool, write_part_task, items, ahead)):
        if rows != summary.chunk_lines[index]:
            raise DataError(
                f"{part_path(parts, index)}: {rows} lines written for a chunk of {summary.chunk_lines[index]}"
            )
    written = sorted(path.name for path in parts.iterdir())
    if written != [part_path(parts, index).name for index in range(len(summary.chunk_lines))]:
        raise DataError(f"{parts}: {len(written)} parts for {len(summary.chunk_lines)} chunks")


def stream_parse_files(
    log_files: Sequence[Path],
    layout: LineLayout,
    miner: DrainMiner,
    parse: ParseConfig,
    output: Path,
    where: str,
    progress: Callable[[int], None] | None = None,
) -> StreamSummary:
    """Parse ``log_files`` (one Drain run over all of them, in order) into ``output/lines.parquet/`` (parts) and
    ``output/templates.parquet``; ``output`` is a folder the caller renames into place (atomic).

    ``miner`` is the (usually empty) live Drain state and ends holding the final templates. ``where`` names the
    log-format key in error messages; ``progress`` (if given) is called with the number of lines reconciled so
    far after each chunk (the benchmark times the start and end of a file with it).
    """
    started = time.perf_counter()
    for path in log_files:
        if not path.is_file():
            raise DataError(f"{path}: log file not found")
    parts = output / LINES_FOLDER
    parts.mkdir()
    # Absolute: workers of a cluster may run elsewhere (shared storage), never in this process' folder.
    scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=output)).resolve()
    reconciler = _Reconciler(log_files, miner, scratch, parse, where, progress)
    summary = reconciler.summary
    chunks = pack_chunks(plan_chunks(log_files, parse.chunk_bytes), parse.chunk_bytes)
    try:
        for chunk in chunks:  # Mine: the head of the input through the live miner, in this process
            reconciler.take(parse_chunk_task(chunk, layout, miner, str(scratch)))
            if summary.lines >= parse.sample_lines:
                break
        sample_changes, sample_assigned = miner.changes, miner.assigned
        following = next(chunks, None)
        rest = itertools.chain([following], chunks) if following is not None else iter(())
        remote = following is not None and (worker_count(parse.parallel) > 1 or bool(parse.parallel.scheduler_address))
        pool_context = open_pool(parse.parallel, "parse.parallel") if remote else contextlib.nullcontext(InlinePool())
        with pool_context as pool:
            summary.pool, summary.workers = pool.description, pool.workers
            arguments = (
                _with_copies(rest, layout, miner, pool, str(scratch))
                if remote
                else ((chunk, layout, miner, str(scratch)) for chunk in rest)
            )
            for result in map_ordered(pool, parse_chunk_task, arguments, CHUNKS_AHEAD_PER_WORKER * pool.workers):
                reconciler.take(result)
            reconciler.check_files(before=len(log_files))
            _write_parts(pool, summary, miner, layout, scratch, parts)
    finally:
        reconciler.bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    summary.miner_changes_after_sample = miner.changes - sample_changes
    summary.matched_after_sample = miner.assigned - sample_assigned
    summary.clusters = len(miner.clusters)
    summary.templates, summary.template_first_lines = reconciler.templates()
    write_parquet(output / "templates.parquet", summary.templates)
    summary.seconds = time.perf_counter() - started
    return summary


#: A token that looks like a value: a run of 8+ hex digits, or any digit.
_VARIABLE_TOKEN = re.compile(r"[0-9a-fA-F]{8,}|\d")
#: Variable-looking token shapes listed in the parse report.
TOKEN_SHAPES_SHOWN = 5


def token_shape(token: str) -> str:
    """A token with its values replaced: hex runs of 8+ digits by ``<hex>``, other digit runs by ``0``
    (``req-3f2a9c1e-...`` -> ``req-<hex>-...``), so ids of one kind share a shape."""
    return re.sub(r"\d+", "0", re.sub(r"[0-9a-fA-F]{8,}", "<hex>", token))


def variable_token_shapes(templates: Sequence[str], shown: int) -> list[dict[str, Any]]:
    """The shapes of the unmasked tokens that look like values (a digit, or 8+ hex digits), by the number of
    templates holding one, most first: what a masking regex should catch when templates explode."""
    counts: dict[str, int] = {}  # shape -> templates holding it, first-seen order (ties stay in that order)
    examples: dict[str, str] = {}
    for template in templates:
        shapes: dict[str, None] = {}
        for token in template.split():
            if token != WILDCARD and _VARIABLE_TOKEN.search(token):
                shape = token_shape(token)
                shapes[shape] = None
                examples.setdefault(shape, token)
        for shape in shapes:
            counts[shape] = counts.get(shape, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:shown]
    return [{"shape": shape, "templates": count, "example": examples[shape]} for shape, count in ranked]


def template_growth(summary: StreamSummary, warning: float) -> dict[str, Any]:
    """How the templates grew with the input: templates per 1,000 lines; the distinct templates first seen in each
    half of the lines, and whether the second half's exceed ``warning`` times the first's (a parser that saturates
    finds few late; an unmasked id, a new template at a steady rate); the variable-looking token shapes left
    unmasked."""
    templates = summary.templates["template"].tolist() if summary.templates is not None else []
    half = summary.lines / 2
    early = sum(first < half for first in summary.template_first_lines)
    late = len(summary.template_first_lines) - early
    return {
        "templates_per_1000_lines": round(1000 * len(templates) / summary.lines, 2) if summary.lines else None,
        "new_templates_by_half": {"first": early, "second": late},
        "grows_with_input": bool(late > warning * early) if summary.lines else None,
        "variable_token_shapes": variable_token_shapes(templates, TOKEN_SHAPES_SHOWN),
    }


def parse_metrics(name: str, summary: StreamSummary, system: SystemConfig, parse: ParseConfig) -> dict[str, Any]:
    """``reports/data/parse/<name>.json`` of a raw dataset: the parse stage's keys, plus a ``parallel`` block."""
    seconds = summary.seconds
    drain = system.drain
    return {
        "dataset": name,
        "kind": "raw",
        "parser": "Drain",
        "parser_settings": {
            "masking": list(system.regex),
            "depth": drain.depth,
            "similarity_threshold": drain.similarity_threshold,
            "max_children": drain.max_children,
        },
        "lines": summary.lines,
        "parsed": summary.status_counts[STATUS_PARSED],
        "unmatched": summary.status_counts[STATUS_UNMATCHED],
        "non_utf8": summary.status_counts[STATUS_NON_UTF8],
        "continuation": summary.status_counts[STATUS_CONTINUATION],  # lines of multi-line records after the first
        "templates": int(len(summary.templates)) if summary.templates is not None else 0,
        # null where the log format carries no time (nothing to read), not every parsed line
        "timestamps_unparseable": summary.timestamps_unparseable if system.timestamp.fields else None,
        "labeled_lines": summary.labeled_lines,
        "anomalous_lines": summary.anomalous_lines,
        "files": summary.file_counts,
        "template_growth": template_growth(summary, parse.template_growth_warning),
        "seconds": round(seconds, 3),
        "lines_per_second": round(summary.lines / seconds, 1) if seconds > 0 else None,
        "parallel": {
            "chunk_bytes": parse.chunk_bytes,
            "sample_lines": parse.sample_lines,
            "chunks": len(summary.chunk_lines),
            "pool": summary.pool,
            "workers": summary.workers,
            "miner_changes_after_sample": summary.miner_changes_after_sample,
            "drain_clusters": summary.clusters,
        },
    }


# ----------------------------------------------------------------------------- reading the lines dataset


def line_parts(path: Path) -> list[Path]:
    """The parts of a ``lines.parquet`` folder in line order; a DataError when there is none."""
    if not path.is_dir():
        raise DataError(f"{path}: parsed lines not found (a folder of parts, written by the parse stage)")
    parts = sorted((part for part in path.iterdir() if PART_PATTERN.fullmatch(part.name)), key=lambda part: part.name)
    if not parts:
        raise DataError(f"{path}: no part-<number>.parquet files")
    return parts


def iter_line_batches(
    path: Path, columns: list[str], batch_size: int, read_dictionary: list[str]
) -> Iterator[pa.RecordBatch]:
    """The rows of a ``lines.parquet`` folder in line order, in batches of at most ``batch_size`` (a batch never
    spans two parts); ``read_dictionary`` columns come as dictionary arrays. One part is open at a time, read
    without pre-buffering (with it Arrow reads ahead and holds several row groups)."""
    for part in line_parts(path):
        reader = pq.ParquetFile(part, pre_buffer=False, read_dictionary=read_dictionary)
        yield from reader.iter_batches(batch_size=batch_size, columns=columns, use_threads=False)


def usable_lines(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The lines of a batch that have a template: parsed lines, and continuation lines Drain saw
    (``multiline.events: each_line``); ``status`` is read as a dictionary array."""
    status = batch.column("status")
    parsed = pa.array(
        [text in (STATUS_PARSED, STATUS_CONTINUATION) for text in status.dictionary.to_pylist()], type=pa.bool_()
    )
    usable = pc.and_(parsed.take(status.indices), pc.is_valid(batch.column("template")))
    return batch.filter(pc.fill_null(usable, False))


def write_lines(folder: Path, lines: pd.DataFrame) -> None:
    """Write a whole lines table as ``folder/lines.parquet/`` with one part (the pre-parsed kinds)."""
    parts = folder / LINES_FOLDER
    parts.mkdir()
    write_parquet(part_path(parts, 0), lines)
