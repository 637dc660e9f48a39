"""Events on disk, partitioned by session, then sessions one partition at a time: bounded memory, exact sessions.

Why: a session (a block, an instance, a window of a node) can take lines from anywhere in the input, so it is
complete only when the input ends. Holding every event until then grows with the input. Instead each event is
appended, chunk by chunk, to one of ``partitions`` Arrow IPC files chosen by a hash of what decides its session
(the key rule's key, the window rule's file and group, the file rule's file key), so every session lies whole in one
partition. When the input has ended, each partition is read alone, grouped into sessions by the sessionize stage's
own rules and functions, scored and written out. Memory: one chunk while reading, one partition while scoring.

Within a partition, rows keep input order, so sessions come in first-seen order and their events in line order, as
the sessionize stage builds them; with one partition (inputs up to ``detect.partition_bytes``) the output order is
the sessionize stage's order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zerolog.config import SessionRule
from zerolog.data.sessionize import UNKNOWN_LABEL, Events, flat_groups, window_sessions

SPILL_SCHEMA = pa.schema([
    ("position", pa.int64()),  # the event's index in the whole input (line order)
    ("key", pa.string()),  # key / file rule: the session key; window rule: the group value ("" without group_by)
    ("file_index", pa.int16()),
    ("line_number", pa.int64()),
    ("timestamp", pa.float64()),
    ("code", pa.int32()),  # template code (zerolog.detection.detect: known text or new template)
])  # fmt: skip


def partition_of(keys: list[str], partitions: int) -> np.ndarray:
    """(rows,) partition of each routing key: CRC-32 of its UTF-8 bytes modulo ``partitions`` (stable across runs
    and processes, unlike Python's salted ``hash``)."""
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    distinct = pc.dictionary_encode(pa.array(keys, type=pa.string()))
    per_key = np.fromiter((zlib.crc32(text.encode("utf-8")) % partitions for text in distinct.dictionary.to_pylist()),
                          dtype=np.int64)  # fmt: skip
    return per_key[distinct.indices.to_numpy(zero_copy_only=False)]


class EventSpill:
    """``partitions`` Arrow IPC stream files under ``folder``; rows appended per chunk, read back per partition."""

    def __init__(self, folder: Path, partitions: int) -> None:
        self.folder, self.partitions = folder, partitions
        self._writers: list[pa.ipc.RecordBatchStreamWriter | None] = [None] * partitions
        self.rows = np.zeros(partitions, dtype=np.int64)

    def _path(self, partition: int) -> Path:
        return self.folder / f"partition-{partition:05d}.arrow"

    def add(self, table: pa.Table, routing: list[str]) -> None:
        """Append ``table`` (``SPILL_SCHEMA``) row by row to the partition of each row's routing key."""
        target = partition_of(routing, self.partitions)  # (rows,)
        for partition in np.unique(target).tolist():
            part = table.filter(pa.array(target == partition)) if self.partitions > 1 else table
            writer = self._writers[partition]
            if writer is None:
                writer = self._writers[partition] = pa.ipc.new_stream(str(self._path(partition)), SPILL_SCHEMA)
            writer.write_table(part)
            self.rows[partition] += part.num_rows

    def close(self) -> None:
        for writer in self._writers:
            if writer is not None:
                writer.close()
        self._writers = [None] * self.partitions

    def read(self) -> Iterator[pa.Table]:
        """Each non-empty partition's rows, in partition order (the writers must be closed)."""
        for partition in range(self.partitions):
            if self.rows[partition]:
                with pa.memory_map(str(self._path(partition))) as source:
                    yield pa.ipc.open_stream(source).read_all()
                self._path(partition).unlink()


@dataclass
class PartitionSessions:
    """The sessions of one partition: session ``i`` is rows ``positions[offsets[i]:offsets[i + 1]]`` of its table."""

    ids: list[str]
    positions: np.ndarray  # (members,) int64 rows of the partition table
    offsets: np.ndarray  # (sessions + 1,) int64
    lines_without_timestamp: int = 0


def keyed_sessions(table: pa.Table) -> PartitionSessions:
    """Key and file rules: one session per distinct key, in first-seen order, events in line order."""
    encoded = pc.dictionary_encode(table.column("key")).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    first, positions, offsets = flat_groups(codes)
    names = encoded.dictionary.to_pylist()
    return PartitionSessions([names[code] for code in codes[first].tolist()], positions, offsets)


def windowed_sessions(table: pa.Table, rule: SessionRule, multiple_files: bool, where: str) -> PartitionSessions:
    """Window rule: the sessionize stage's ``window_sessions`` on the partition's events (each window group lies
    whole in one partition)."""
    encoded = pc.dictionary_encode(table.column("key")).combine_chunks()
    column = lambda name: table.column(name).to_numpy()  # noqa: E731
    events = Events(
        file_index=column("file_index").astype(np.int16), line_number=column("line_number").astype(np.int64),
        timestamp=column("timestamp").astype(np.float64),
        labels=np.full(table.num_rows, UNKNOWN_LABEL, dtype=np.int8), template_codes=column("code"), templates=[],
        group_codes=encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        groups=encoded.dictionary.to_pylist(),
    )  # fmt: skip
    sessions = window_sessions(events, rule, multiple_files, where)
    return PartitionSessions(sessions.ids, sessions.positions, sessions.offsets,
                             int(sessions.counts.get("lines_without_timestamp", 0)))  # fmt: skip


__all__ = ["SPILL_SCHEMA", "EventSpill", "PartitionSessions", "keyed_sessions", "partition_of", "windowed_sessions"]
