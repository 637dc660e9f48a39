"""``zerolog detect``: a trained detector on new raw logs, streamed: parse, sessions, scores, flags, one output file.

1. **Read and parse** (``reader``, ``events``): chunks of whole lines (``parse.chunk_bytes``), each parsed by the
   parse stage's own functions against the system's KNOWN templates (``KnownTemplates``), in this process or on
   worker processes (``--workers``); messages no known template covers are mined in input order by a Drain of their
   own and marked new.
2. **Spill** (``spill``): each event goes to an on-disk partition chosen by its session, so memory holds one chunk.
3. **Sessions and scores**: when the input has ended, each partition is grouped into sessions by the dataset's
   session rule (the sessionize stage's functions), scored by the detector (``scoring``), cut at its stored
   label-free threshold, and appended to the output (Parquet or CSV, written to a temporary file and renamed into
   place at the end: a failure leaves no partial output).

Bad input is one line naming the file (a ``DataError``): an empty file (under the dataset's ``empty_files: fail``;
with ``skip``, the default, it is counted, and only an input whose every file is empty fails), a file no line of
which matches the system's
log format, a file with more unmatched lines than the parse stage allows (``parse.max_unmatched_share``, stored in
the detector). Lines that match no format, are not UTF-8 or name no session are counted and reported, never
silently dropped.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import re
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from zerolog.config import ParallelConfig, SystemConfig
from zerolog.data.known_templates import NewTemplates
from zerolog.data.stream_parse import (
    STATUS_CONTINUATION,
    STATUS_NON_UTF8,
    STATUS_PARSED,
    STATUS_UNMATCHED,
    STATUSES,
    add_file_counts,
    check_file_counts,
    line_layout,
)
from zerolog.detection.events import ChunkEvents, SessionKeying, detect_chunk_task
from zerolog.detection.loading import LoadedDetector, describe
from zerolog.detection.reader import InputFile, chunks, input_files
from zerolog.detection.scoring import BatchScores, SessionBatch
from zerolog.detection.spill import EventSpill, PartitionSessions, keyed_sessions, windowed_sessions
from zerolog.errors import DataError
from zerolog.io import atomic_path
from zerolog.parallel import Pickled, map_ordered, open_pool

#: Sessions scored at a time (bounds the count matrix: sessions x templates).
SCORE_SESSIONS = 4096
#: Chunks in flight per worker process.
CHUNKS_AHEAD_PER_WORKER = 2
#: Sessions and new templates listed in the summary.
SUMMARY_ROWS = 5
OUTPUT_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class DetectOptions:
    """How one run reads and writes (params ``detect`` and ``parse.chunk_bytes``, command-line flags)."""

    top_templates: int
    partition_bytes: int
    chunk_bytes: int
    workers: int = 1  # worker processes parsing chunks; 1: in this process
    output_format: str = "parquet"
    progress: bool | None = None  # tqdm: None shows a bar only on a terminal
    # where the chunks are parsed (zerolog.parallel, as stage parse): a local process pool, or dask.distributed: a
    # LocalCluster of ``workers`` workers, or the existing cluster at ``scheduler_address``
    backend: Literal["dask", "processes"] = "processes"
    scheduler_address: str | None = None


@dataclass
class RunCounts:
    """What a run counted: per input file (the parse stage's keys) and overall."""

    files: list[dict[str, Any]]
    events: int = 0  # parsed lines (with a template)
    events_without_session: int = 0  # key / file rule: named no session; window-seconds: had no timestamp
    sessions: int = 0
    flagged: int = 0
    new_template_events: dict[str, int] = field(default_factory=dict)  # new template text -> events
    top_sessions: list[tuple[float, str, list[str]]] = field(default_factory=list)  # (score, id, top templates)

    def total(self, key: str) -> int:
        return sum(int(entry[key]) for entry in self.files)


class _Codes:
    """Template codes of a run: a known template by its text, a new one by its cluster in ``NewTemplates``."""

    def __init__(self, new: NewTemplates) -> None:
        self.new = new
        self.index: dict[tuple[str, Any], int] = {}
        self.events = np.zeros(0, dtype=np.int64)  # (codes,) events per code

    def of_chunk(self, result: ChunkEvents) -> np.ndarray:
        """(events,) global codes of a chunk's events (new messages mined here, in input order)."""
        local = [self.index.setdefault(("text", text), len(self.index)) for text in result.texts]
        unknown = [self.index.setdefault(("new", self.new.add(key)), len(self.index)) for key in result.unknown_keys]
        table = np.array(local + unknown, dtype=np.int64)
        position = np.where(result.codes >= 0, result.codes, len(local) - result.codes - 1)
        codes = table[position] if len(table) else np.zeros(0, dtype=np.int64)
        counts = np.bincount(codes, minlength=len(self.index))
        self.events = np.concatenate([self.events, np.zeros(len(counts) - len(self.events), np.int64)]) + counts
        return codes

    def texts(self) -> tuple[list[str], np.ndarray, set[int]]:
        """Final text per code, the canonical code per code (first code with the same text) and the new codes."""
        final = self.new.texts()
        texts = [value if kind == "text" else final[value] for kind, value in self.index]
        first: dict[str, int] = {}
        canonical = np.array([first.setdefault(text, code) for code, text in enumerate(texts)], dtype=np.int64)
        new = {code for code, (kind, _) in enumerate(self.index) if kind == "new"}
        return texts, canonical, new


class _Collector:
    """Phase 1, in the client, chunk by chunk in input order: line numbers, per-file checks, codes, the spill."""

    def __init__(self, detector: LoadedDetector, files: list[InputFile], spill: EventSpill) -> None:
        self.detector, self.files, self.spill = detector, files, spill
        self.rule = detector.rule
        self.codes = _Codes(NewTemplates(detector.known))
        self.counts = RunCounts([{"file": file.name, "lines": 0, **dict.fromkeys(STATUSES, 0)} for file in files])
        self.record_keys: list[str] = []  # key rule: the keys of the last record read (its continuation events')
        self.first_bad: list[int | None] = [None] * len(files)
        self.checked = 0
        self.file_keys = [self._file_key(file.name) for file in files]

    def _file_key(self, name: str) -> str | None:
        """The file rule's session key of an input (its name, or ``key_regex``'s group in it; None: no key)."""
        if self.rule.rule != "file" or not self.rule.key_regex:
            return name
        found = re.search(self.rule.key_regex, name)
        return found.group(1) if found else None

    def check_files(self, before: int) -> None:
        """The parse stage's per-file checks on every file before index ``before`` (complete by now)."""
        context = self.detector.context
        where = f"system {context.system} (the log format of dataset {context.dataset})"
        while self.checked < before:
            file = self.files[self.checked]
            check_file_counts(Path(file.name) if file.path is None else file.path, self.counts.files[self.checked],
                              self.first_bad[self.checked], context.max_unmatched_share, where,
                              skip_empty=context.empty_files == "skip" and len(self.files) > 1)  # fmt: skip
            self.checked += 1
        if self.checked == len(self.files) and self.counts.total("lines") == 0:
            raise DataError(f"every one of the {len(self.files)} input files is empty ({self.files[0].name}, ...)")

    def take(self, result: ChunkEvents) -> None:
        self.check_files(before=result.file_index)
        entry = self.counts.files[result.file_index]
        continued = entry[STATUS_PARSED] > 0  # the file had a record before this chunk
        result = result.settled(continued, self.record_keys if continued else [])
        if result.record_keys is not None:
            self.record_keys = result.record_keys
        first_line = add_file_counts(self.counts.files, self.first_bad, result)
        codes = self.codes.of_chunk(result)
        base = self.counts.events
        self.counts.events += len(codes)
        lines = first_line + result.offsets  # (events,) line numbers in the file
        self._spill(result, codes, lines, base)

    def _spill(self, result: ChunkEvents, codes: np.ndarray, lines: np.ndarray, base: int) -> None:
        """Rows of the spill for the session rule (module docstring of ``spill``)."""
        count = len(codes)
        if self.rule.rule == "key":
            rows, keys = result.key_events, result.keys
            self.counts.events_without_session += count - len(np.unique(rows))
            routing = keys
        elif self.rule.rule == "window":
            rows = np.arange(count)
            keys = result.groups if result.groups is not None else [""] * count
            routing = [f"{result.file_index}\x00{key}" for key in keys] if self.spill.partitions > 1 else keys
        else:
            key = self.file_keys[result.file_index]
            if key is None:
                self.counts.events_without_session += count
                return
            rows, keys, routing = np.arange(count), [key] * count, [key] * count
        if len(rows) == 0:
            return
        table = pa.table({
            "position": pa.array(base + rows, pa.int64()), "key": pa.array(keys, pa.string()),
            "file_index": pa.array(np.full(len(rows), result.file_index, dtype=np.int16)),
            "line_number": pa.array(lines[rows], pa.int64()), "timestamp": pa.array(result.timestamps[rows]),
            "code": pa.array(codes[rows].astype(np.int32)),
        })  # fmt: skip
        self.spill.add(table, routing)


# ----------------------------------------------------------------------------- sessions, scores, output

OUTPUT_SCHEMA = pa.schema([
    ("session_id", pa.string()),
    ("score", pa.float64()),
    ("flagged", pa.bool_()),  # score >= the detector's threshold; null when it has no label-free cut
    ("events", pa.int64()),  # parsed lines of the session (the first max_len count in the score)
    ("new_templates", pa.int64()),  # distinct templates not in the detector's template table
    ("top_templates", pa.list_(pa.string())),  # those that weighed most in the score, most first
    ("first_file", pa.string()),
    ("first_line", pa.int64()),
])  # fmt: skip


class _Output:
    """The output file, written batch by batch to a temporary path (renamed into place by the caller)."""

    def __init__(self, path: Path, output_format: str, metadata: dict[str, Any]) -> None:
        schema = OUTPUT_SCHEMA.with_metadata({key: json.dumps(value) for key, value in metadata.items()})
        self.csv = output_format == "csv"
        if self.csv:
            self._writer: Any = pa_csv.CSVWriter(
                str(path),
                pa.schema([(f.name, pa.string() if f.name == "top_templates" else f.type) for f in OUTPUT_SCHEMA]),
            )
        else:
            self._writer = pq.ParquetWriter(str(path), schema)

    def write(self, table: pa.Table) -> None:
        if self.csv:  # a list has no CSV form: JSON text, e.g. ["a <*>", "b"]
            texts = pa.array([json.dumps(value) for value in table.column("top_templates").to_pylist()], pa.string())
            table = table.set_column(table.schema.get_field_index("top_templates"), "top_templates", texts)
        self._writer.write_table(table)

    def close(self) -> None:
        self._writer.close()


class _Scoring:
    """Phase 2: each partition's sessions scored in batches and written out; what the summary needs is kept."""

    def __init__(self, detector: LoadedDetector, collector: _Collector, output: _Output, top: int) -> None:
        self.detector, self.output, self.counts, self.files = detector, output, collector.counts, collector.files
        self.texts, self.canonical, new_codes = collector.codes.texts()
        detector.scorer.prepare(self.texts)
        self.counts.new_template_events = {self.texts[code]: int(collector.codes.events[code]) for code in new_codes}
        self.top = top

    def partition(self, table: pa.Table, multiple_files: bool) -> None:
        rule = self.detector.rule
        if rule.rule == "window":
            where = f"dataset {self.detector.context.dataset}: session"
            sessions = windowed_sessions(table, rule, multiple_files, where)
            self.counts.events_without_session += sessions.lines_without_timestamp
        else:
            sessions = keyed_sessions(table)
        codes = self.canonical[table.column("code").to_numpy()]  # (rows,) canonical template codes
        for start in range(0, len(sessions.ids), SCORE_SESSIONS):
            self._batch(table, sessions, codes, start, min(start + SCORE_SESSIONS, len(sessions.ids)))

    def _batch(self, table: pa.Table, sessions: PartitionSessions, codes: np.ndarray, start: int, stop: int) -> None:
        offsets = sessions.offsets[start : stop + 1]
        members = sessions.positions[offsets[0] : offsets[-1]]  # (events of these sessions,) rows of the table
        batch = SessionBatch(sessions.ids[start:stop], codes[members], offsets - offsets[0])
        scored = self.detector.scorer.score(batch)
        first = members[batch.offsets[:-1]]  # (sessions,) row of each session's first event
        files, lines = table.column("file_index").to_numpy()[first], table.column("line_number").to_numpy()[first]
        self._write(batch, scored, files, lines)

    def _write(self, batch: SessionBatch, scored: BatchScores, files: np.ndarray, lines: np.ndarray) -> None:
        threshold = self.detector.threshold.value
        flagged = None if threshold is None else scored.scores >= threshold
        self.output.write(pa.table({
            "session_id": batch.ids, "score": scored.scores,
            "flagged": pa.nulls(batch.size, pa.bool_()) if flagged is None else flagged,
            "events": batch.lengths.astype(np.int64), "new_templates": scored.new_templates,
            "top_templates": pa.array(scored.top_templates, pa.list_(pa.string())),
            "first_file": [self.files[int(index)].name for index in files], "first_line": lines.astype(np.int64),
        }, schema=OUTPUT_SCHEMA.remove_metadata()))  # fmt: skip
        self.counts.sessions += batch.size
        self.counts.flagged += 0 if flagged is None else int(flagged.sum())
        for score, session, top in zip(scored.scores.tolist(), batch.ids, scored.top_templates, strict=True):
            item = (score, session, top)
            if len(self.counts.top_sessions) < SUMMARY_ROWS:
                heapq.heappush(self.counts.top_sessions, item)
            elif score > self.counts.top_sessions[0][0]:
                heapq.heapreplace(self.counts.top_sessions, item)


# ----------------------------------------------------------------------------- the run


@dataclass
class DetectResult:
    """What a run did: its counts, the output, the detector, time and memory."""

    counts: RunCounts
    output: Path
    detector: dict[str, Any]
    seconds: float
    peak_rss_mib: float


def partition_count(files: list[InputFile], partition_bytes: int) -> int:
    """Partitions of the spill: the input's size over ``partition_bytes`` (at least 1); standard input, of unknown
    size, gets 16 (its sessions are then written in partition order, not first-seen order)."""
    sizes = [file.size_estimate() for file in files]
    if any(size is None for size in sizes):
        return 16
    return max(1, math.ceil(sum(sizes) / partition_bytes))  # type: ignore[arg-type]


def _parsed_chunks(detector: LoadedDetector, files: list[InputFile], options: DetectOptions) -> Iterator[ChunkEvents]:
    """Every chunk's events, in input order, parsed here or on ``options.workers`` processes."""
    context = detector.context
    system = SystemConfig(context.dataset, context.log_format, context.timestamp, context.regex, context.drain)
    layout = line_layout(system, None, context.multiline)  # detect reads no labels
    keying = SessionKeying.of(detector.rule)
    config = ParallelConfig(
        backend=options.backend, workers=options.workers, scheduler_address=options.scheduler_address
    )
    with open_pool(config, "--scheduler" if options.scheduler_address else "--workers") as pool:
        shared = pool.share(Pickled.of(detector.known) if pool.workers > 1 else detector.known)
        items = ((chunk, layout, shared, keying) for chunk in chunks(files, options.chunk_bytes))
        yield from map_ordered(pool, detect_chunk_task, items, CHUNKS_AHEAD_PER_WORKER * pool.workers)


def _progress(files: list[InputFile], enabled: bool | None) -> tqdm:
    sizes = [file.size_estimate() for file in files]
    total = None if any(size is None for size in sizes) else sum(sizes)  # type: ignore[arg-type]
    return tqdm(total=total, desc="detect", unit="B", unit_scale=True, leave=False, mininterval=1.0,
                disable=False if enabled else None if enabled is None else True, file=sys.stderr)  # fmt: skip


def _peak_rss_mib() -> float:
    """This process's peak resident memory (and its finished children's), MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def run_detect(detector: LoadedDetector, inputs: list[str], output: Path, options: DetectOptions) -> DetectResult:
    """Apply ``detector`` to ``inputs`` (files, folders or ``-``), writing one row per session to ``output``."""
    if options.output_format not in OUTPUT_FORMATS:
        raise DataError(f"{output}: unknown output format {options.output_format!r} (parquet or csv)")
    started = time.perf_counter()
    files = input_files(inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".zerolog-detect-", dir=output.parent))
    try:
        spill = EventSpill(scratch, partition_count(files, options.partition_bytes))
        collector = _Collector(detector, files, spill)
        with contextlib.closing(_progress(files, options.progress)) as bar:
            for result in _parsed_chunks(detector, files, options):
                collector.take(result)
                bar.update(result.raw_bytes)
            collector.check_files(before=len(files))
        spill.close()
        multiple_files = sum(entry[STATUS_PARSED] > 0 for entry in collector.counts.files) > 1
        metadata = {"detector": describe(detector), "inputs": [file.name for file in files]}
        with atomic_path(output) as temporary:
            writer = _Output(temporary, options.output_format, metadata)
            scoring = _Scoring(detector, collector, writer, options.top_templates)
            for table in spill.read():
                scoring.partition(table, multiple_files)
            writer.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return DetectResult(collector.counts, output, describe(detector), time.perf_counter() - started, _peak_rss_mib())


# ----------------------------------------------------------------------------- summary


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _detector_lines(detector: dict[str, Any]) -> list[str]:
    threshold = detector["threshold"]
    pi_hat = detector["pi_hat"]
    cut = "none: no session is flagged" if threshold is None else f"score >= {threshold:.6g}"
    share = "" if pi_hat is None else f"; flags {pi_hat:.1%} of the sessions it was fit on"
    return [
        f"detector   {detector['method']} ({detector['kind']}) for system {detector['system']}: {detector['source']}",
        f"threshold  {cut} ({detector['threshold_rule']}{share})",
    ]


def _session_lines(counts: RunCounts, top: int) -> list[str]:
    lines = [f"sessions   {counts.sessions:,}: {counts.flagged:,} flagged ({_share(counts.flagged, counts.sessions)})"]
    new = sorted(counts.new_template_events.items(), key=lambda item: (-item[1], item[0]))
    listed = ", ".join(f"{text[:60]!r} ({events:,} events)" for text, events in new[:top])
    lines.append(f"new        {len(new):,} template(s) no known template covers" + (f": {listed}" if listed else ""))
    if counts.top_sessions:
        lines.append("highest    score       session: templates that weigh most")
        for score, session, templates in sorted(counts.top_sessions, reverse=True):
            lines.append(f"           {score:<11.5g} {session[:50]}: {'; '.join(text[:40] for text in templates)}")
    return lines


def summary_text(result: DetectResult) -> str:
    """The one-screen summary of a run (printed by the command)."""
    counts = result.counts
    lines_read = counts.total("lines")
    names = [entry["file"] for entry in counts.files]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    rate = lines_read / result.seconds if result.seconds > 0 else float("nan")
    text = [
        f"zerolog detect: {shown}",
        *_detector_lines(result.detector),
        f"lines      {lines_read:,}: {counts.total(STATUS_PARSED):,} parsed, {counts.total(STATUS_UNMATCHED):,} "
        f"match no log format, {counts.total(STATUS_NON_UTF8):,} not UTF-8, {counts.total(STATUS_CONTINUATION):,} "
        f"continue a multi-line record, {sum(entry['lines'] == 0 for entry in counts.files):,} empty files skipped; "
        f"{counts.events_without_session:,} "
        "parsed lines in no session",
        *_session_lines(counts, SUMMARY_ROWS),
        f"output     {result.output} ({counts.sessions:,} rows); {result.seconds:.1f} s, {_number(rate)} lines/s, "
        f"peak RSS {result.peak_rss_mib:,.0f} MiB",
    ]
    return "\n".join(text)
