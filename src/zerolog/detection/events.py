"""One chunk of new log lines to events: the parse engine's header split and masking, matched on KNOWN templates.

``detect_chunk_task`` runs where the chunk is (the client or a worker process): ``parse_chunk`` (the parse stage's
own function) splits headers, masks each message and matches every distinct masked message against the known tree
without changing it; ``KnownTemplates.resolve`` gives each its known template or marks it unknown; the session rule's
keys are read from the messages. What comes back is small: per event its line offset, template code and time, the
distinct texts and unknown messages, and the session keys. The client numbers new templates in input order
(``NewTemplates``), so the result does not depend on which process parsed which chunk.

An event is a line that matched the log format (status ``parsed``), or a continuation line Drain saw
(``multiline.events: each_line``), as in the sessionize stage: other lines are counted, never sessions' events. A
continuation event takes its record's session keys; the lines before a chunk's first header are settled by the
client, which knows whether the file had a record before the chunk (``ChunkEvents.settled``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zerolog.config import SessionRule
from zerolog.data.known_templates import KnownTemplates
from zerolog.data.sessionize import group_by_column, keys_in
from zerolog.data.stream_parse import (
    EMPTY_MESSAGE,
    EMPTY_TEMPLATE,
    STATUS_PARSED,
    LineChunk,
    LineLayout,
    continued_counts,
    parse_chunk,
)
from zerolog.parallel import Pickled

#: ``ChunkEvents.codes`` value base of an unknown message: code -(1 + i) is ``unknown_keys[i]``.
UNKNOWN = -1
#: A window rule's group value for a line whose group_by field is empty (as the sessionize stage reads it).
NO_GROUP = "<none>"


@dataclass(frozen=True)
class SessionKeying:
    """What a chunk task extracts for the session rule: the key regex (rule key) or the group_by column (window)."""

    rule: str  # key | window | file
    key_regex: str | None
    group_column: str | None  # lines.parquet column of the window rule's group_by (None: one group per file)

    @classmethod
    def of(cls, session: SessionRule) -> SessionKeying:
        return cls(session.rule, session.key_regex if session.rule == "key" else None, group_by_column(session))


@dataclass
class ChunkEvents:
    """The events of one chunk (see module docstring); arrays are per event unless said otherwise."""

    index: int
    file_index: int
    lines: int
    raw_bytes: int
    status_counts: dict[str, int]
    first_bad_offset: int | None
    offsets: np.ndarray  # (events,) int64 line offset in the chunk
    codes: np.ndarray  # (events,) int32: >= 0 index into texts, < 0 unknown message -(1 + index into unknown_keys)
    texts: list[str]  # known template texts used in the chunk
    unknown_keys: list[str]  # masked messages no known template covers
    timestamps: np.ndarray  # (events,) float64, NaN unknown
    groups: list[str] | None  # window rule with group_by: each event's group value
    key_events: np.ndarray  # (pairs,) int64 event index of each session key (key rule: a line may name several)
    keys: list[str]  # (pairs,) the session keys
    leading_end: int = 0  # lines before the chunk's first header (stream_parse.ChunkSummary)
    leading_unmatched: int = 0
    first_bad_if_continued: int | None = None
    leading_events: int = 0  # events among those lines (multiline.events each_line): the first leading_events
    record_keys: list[str] | None = None  # key rule: the keys of the chunk's last record (None: no record in it)

    def settled(self, continued: bool, previous_keys: list[str]) -> ChunkEvents:
        """This chunk with the lines before its first header settled: continuation lines of the record before the
        chunk when ``continued`` (its events take ``previous_keys``), else lines of no record (no events)."""
        if not self.leading_end:
            return self
        if continued:
            counts = continued_counts(self.status_counts, self.leading_unmatched)
            waiting = np.repeat(np.arange(self.leading_events, dtype=np.int64), len(previous_keys))
            keys = previous_keys * self.leading_events
            return replace(
                self,
                status_counts=counts,
                first_bad_offset=self.first_bad_if_continued,
                leading_end=0,
                key_events=np.concatenate([waiting, self.key_events]),
                keys=[*keys, *self.keys],
            )
        dropped = self.leading_events
        if not dropped:
            return replace(self, leading_end=0)
        codes = self.codes[dropped:]
        used = sorted({-1 - int(code) for code in codes[codes < 0]})  # unknown messages still used
        remap = np.full(len(self.unknown_keys), 0, dtype=np.int32)
        remap[used] = -1 - np.arange(len(used), dtype=np.int32)
        codes = np.where(codes < 0, remap[np.maximum(-1 - codes, 0)], codes).astype(np.int32)
        kept = self.key_events >= dropped
        return replace(
            self,
            leading_end=0,
            leading_events=0,
            offsets=self.offsets[dropped:],
            codes=codes,
            unknown_keys=[self.unknown_keys[index] for index in used],
            timestamps=self.timestamps[dropped:],
            groups=None if self.groups is None else self.groups[dropped:],
            key_events=self.key_events[kept] - dropped,
            keys=[key for key, keep in zip(self.keys, kept.tolist(), strict=True) if keep],
        )


def _template_codes(known: KnownTemplates, keys: list[str],
                    clusters: np.ndarray) -> tuple[np.ndarray, list[str], list[str]]:  # fmt: skip
    """Per distinct masked message: its code (known text index, or unknown), the texts and the unknown messages."""
    text_index: dict[str, int] = {}
    unknown: list[str] = []
    codes = np.empty(len(keys), dtype=np.int32)
    for position, (key, cluster) in enumerate(zip(keys, clusters.tolist(), strict=True)):
        answer = known.resolve(key, int(cluster))
        if answer is None:
            codes[position] = UNKNOWN - len(unknown)
            unknown.append(key)
        else:
            codes[position] = text_index.setdefault(answer, len(text_index))
    return codes, list(text_index), unknown


def _table_codes(known: KnownTemplates, contents: list[str | None],
                 keys: list[str]) -> tuple[np.ndarray, list[str], list[str]]:  # fmt: skip
    """Per event of a pre-parsed dataset's detector: its code (the template of ``known.table`` its raw message fits,
    the empty template for a blank one, or its masked message ``keys[event]`` as unknown), the texts, the unknowns."""
    assert known.table is not None
    found: dict[str, str | None] = {}
    text_index: dict[str, int] = {}
    unknown_index: dict[str, int] = {}
    codes = np.empty(len(contents), dtype=np.int32)
    for event, (content, key) in enumerate(zip(contents, keys, strict=True)):
        message = (content or "").strip()
        if message and message not in found:
            found[message] = known.table.match(message)
        text = found[message] if message else EMPTY_TEMPLATE
        if text is None:
            codes[event] = UNKNOWN - unknown_index.setdefault(key, len(unknown_index))
        else:
            codes[event] = text_index.setdefault(text, len(text_index))
    return codes, list(text_index), list(unknown_index)


def _session_keys(contents: list[str | None], continuation: list[bool], key_regex: str,
                  leading_events: int) -> tuple[np.ndarray, list[str], list[str] | None]:  # fmt: skip
    """(event index, key) of every key ``key_regex``'s group finds in each event's message, as the sessionize stage's
    KeyCollector reads them (a key found twice in one line counts once; a continuation event takes its record's
    keys; the first ``leading_events`` continue a record before the chunk: the client gives them its keys), and the
    keys of the chunk's last record."""
    find_all = re.compile(key_regex).findall
    events: list[int] = []
    keys: list[str] = []
    record_keys: list[str] | None = None
    for event, (content, continued) in enumerate(zip(contents, continuation, strict=True)):
        if event < leading_events:
            continue
        if not continued:
            record_keys = keys_in(content, find_all)
        for key in record_keys or []:
            events.append(event)
            keys.append(key)
    return np.array(events, dtype=np.int64), keys, record_keys


def detect_chunk_task(chunk: LineChunk, layout: LineLayout, shared: Pickled | KnownTemplates,
                      keying: SessionKeying) -> ChunkEvents:  # fmt: skip
    """Parse one chunk against the known templates (changing nothing) into its events."""
    known = shared if isinstance(shared, KnownTemplates) else shared.value()
    table, summary = parse_chunk(chunk, layout, known.miner)
    key_of_line = summary.key_of_line
    offsets = np.flatnonzero((key_of_line >= 0) | (key_of_line == EMPTY_MESSAGE)).astype(np.int64)  # (events,)
    line_keys = key_of_line[offsets]
    taken = pa.array(offsets)
    if known.table is not None:  # a pre-parsed dataset's template table, on the raw messages
        event_keys = [summary.keys[key] if key >= 0 else "" for key in line_keys.tolist()]
        codes, texts, unknown = _table_codes(known, table.column("content").take(taken).to_pylist(), event_keys)
    else:
        key_codes, texts, unknown = _template_codes(known, summary.keys, summary.key_cluster)
        empty_code = len(texts)
        texts.append(EMPTY_TEMPLATE)
        codes = np.where(line_keys >= 0, key_codes[np.maximum(line_keys, 0)] if len(key_codes) else 0, empty_code)
    groups = None
    if keying.rule == "window" and keying.group_column is not None:
        values = pc.cast(table.column(keying.group_column).take(taken), pa.string())
        groups = pc.fill_null(values, NO_GROUP).to_pylist()
    leading_events = int(np.searchsorted(offsets, summary.leading_end))  # events before the first header
    key_events, keys, record_keys = np.zeros(0, dtype=np.int64), list[str](), None
    if keying.rule == "key":
        continuation = pc.not_equal(table.column("status").take(taken), STATUS_PARSED).to_pylist()
        key_events, keys, record_keys = _session_keys(
            table.column("content").take(taken).to_pylist(), continuation, str(keying.key_regex), leading_events
        )
    timestamps = pc.fill_null(table.column("timestamp").take(taken), np.nan).to_numpy(zero_copy_only=False)
    return ChunkEvents(
        index=chunk.index, file_index=chunk.file_index, lines=summary.lines, raw_bytes=summary.raw_bytes,
        status_counts=summary.status_counts, first_bad_offset=summary.first_bad_offset, offsets=offsets,
        codes=codes.astype(np.int32), texts=texts, unknown_keys=unknown, timestamps=timestamps.astype(np.float64),
        groups=groups, key_events=key_events, keys=keys, leading_end=summary.leading_end,
        leading_unmatched=summary.leading_unmatched, first_bad_if_continued=summary.first_bad_if_continued,
        leading_events=leading_events, record_keys=record_keys,
    )  # fmt: skip


__all__ = ["NO_GROUP", "UNKNOWN", "ChunkEvents", "SessionKeying", "detect_chunk_task"]
