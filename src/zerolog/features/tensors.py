"""Stage tensors: one system's sessions as padded template-index sequences, labels, splits and count vectors.

Output ``paths.tensors/<system>/`` (docs/architecture.md), plain ``.npy`` files readable lazily with
``numpy.load(..., mmap_mode="r")``:

- ``index.npy`` (sessions, max_len) int32: row of ``vectors.npy`` per event; 0 is padding.
- ``lengths.npy`` (sessions,) int32: true length after truncation, >= 1.
- ``labels.npy`` (sessions,) int8: 1 anomalous, 0 normal, -1 unlabeled.
- ``split.npy`` (sessions,) int8: 0 train, 1 val, 2 test.
- ``vectors.npy`` (templates + 1, dim) float32: this system's template vectors, row 0 all zeros (padding).
- ``counts.npy`` (sessions, templates + 1) float32: event counts of the (truncated) sequence; column 0 stays 0.
- ``level_counts.npy`` (sessions, levels) int32: how many of the session's lines have each level of
  ``meta.json["level_names"]`` (sorted), over the WHOLE session, not the truncated one: the ``level_rule`` baseline
  reads a session's lines as a practitioner's grep would. (sessions, 0) and ``level_names: []`` where the sessions
  carry no levels (the dataset's log format has no ``<Level>`` field, or it is pre-parsed without one).
- ``meta.json``, ``session_ids.json``.

Truncation keeps the FIRST ``tensors.max_len`` events of a longer session, as MetaLog cuts its sequences at a fixed
length from the start (docs/method.md, "Data and sessions"). Why the head: a session's beginning is always there
(sessions cut at a data boundary lose their end, not their start), and it keeps the sequence aligned with
``start_time``. The cost: an anomaly whose only sign comes after event max_len is invisible, so truncated sessions
are counted and reported. ``counts.npy`` counts the same truncated events, so every method (sequence model or count
baseline) sees the same input.

The per-system vocabulary is this system's distinct templates in sorted order; row ``i`` of ``vectors.npy`` is the
semantic vector (stage embed) of template ``meta.json["templates_list"][i - 1]``. Because the vectors live in one
semantic space for all systems, a model trained on one system's rows reads another system's rows unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset

from zerolog.artifacts import LEVEL_COUNTS_FILE, PADDING, SPLIT_CODES, UNLABELED, ArtifactPaths, SystemTensors
from zerolog.config import Params, TensorsConfig
from zerolog.errors import DataError
from zerolog.features.embed import read_template_vectors
from zerolog.io import write_json
from zerolog.runner import Outputs

# ----------------------------------------------------------------------------- building


#: Sessions read from sessions.parquet at a time: bounds the template texts materialised at once.
READ_SESSIONS = 65_536
#: Cells of ``counts.npy`` built at a time (sessions per block = this // (templates + 1)).
COUNT_CELLS = 1 << 22


@dataclass(frozen=True)
class _Sessions:
    """The columns of a sessions.parquet that the tensors need, checked, with the templates as integer codes.

    Why codes: the template column of a full-size dataset is millions of strings; streamed batch by batch, each
    event becomes a code into ``templates`` (first-seen order), and only the first ``max_len`` events of each
    session are kept.
    """

    session_ids: list[str]
    templates: list[str]  # distinct template texts, first-seen order
    codes: np.ndarray  # (kept events,) int32 into ``templates``: the first max_len events of each session
    full_lengths: np.ndarray  # (sessions,) int64 events per session before truncation
    labels: np.ndarray  # (sessions,) int8, -1 unlabeled
    split: np.ndarray  # (sessions,) int8 codes
    label_rule: str | None


def _read_templates(
    path: Path, reader: pq.ParquetFile, max_len: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]:
    """Stream the ``templates`` column: ``(templates, codes, full_lengths, null_lists, null_events)``.

    ``codes`` (kept events,) int32 holds the first ``max_len`` events of each session; ``null_lists`` (sessions,)
    bool marks null lists; ``null_events`` counts null templates inside the lists.
    """
    vocabulary: dict[str, int] = {}
    code_chunks: list[np.ndarray] = []
    length_chunks: list[np.ndarray] = []
    null_chunks: list[np.ndarray] = []
    null_events = 0
    try:
        for batch in reader.iter_batches(batch_size=READ_SESSIONS, columns=["templates"], use_threads=False):
            lists = batch.column("templates")
            null_chunks.append(lists.is_null().to_numpy(zero_copy_only=False))
            lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            length_chunks.append(lengths)  # (batch sessions,)
            encoded = lists.flatten()  # (batch events,) dictionary<string>, null lists contribute nothing
            null_events += encoded.null_count
            if not pa.types.is_dictionary(encoded.type):
                encoded = pc.dictionary_encode(encoded)
            local = np.fromiter(
                (vocabulary.setdefault(text, len(vocabulary)) for text in encoded.dictionary.to_pylist()),
                dtype=np.int32,
            )  # (distinct in batch,) batch dictionary -> global code
            indices = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # (batch sessions,)
            positions = np.arange(len(indices), dtype=np.int64) - np.repeat(starts, lengths)  # (batch events,)
            kept = indices[positions < max_len]
            code_chunks.append(local[kept] if len(local) else np.zeros(len(kept), dtype=np.int32))
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None
    codes = np.concatenate(code_chunks) if code_chunks else np.zeros(0, dtype=np.int32)
    return list(vocabulary), codes, np.concatenate(length_chunks), np.concatenate(null_chunks), null_events


def _read_sessions(path: Path, max_len: int) -> _Sessions:
    """Read and check ``sessions.parquet``: required columns, no null ids/templates, no empty session, known splits.

    The small columns are read whole; ``templates`` is streamed (``_read_templates``).
    """
    if not path.is_file():
        raise DataError(f"{path}: sessions not found (run the sessionize stage first)")
    try:
        # The template texts are read as dictionary indices (never one string per event); pre_buffer=False:
        # with it, Arrow reads ahead and holds several row groups at once.
        leaves = [column.path for column in pq.ParquetFile(path).schema if column.path.startswith("templates.")]
        reader = pq.ParquetFile(path, pre_buffer=False, read_dictionary=leaves[:1])
        for column in ("session_id", "templates", "label", "split"):
            if column not in reader.schema_arrow.names:
                raise DataError(f"{path}: missing column {column!r}")
        if reader.metadata.num_rows == 0:
            raise DataError(f"{path}: no sessions")
        label_rule = (reader.schema_arrow.metadata or {}).get(b"label_rule")
        table = reader.read(columns=["session_id", "label", "split"], use_threads=False)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None

    session_ids = table.column("session_id").to_pylist()
    if None in session_ids:
        raise DataError(f"{path}: column 'session_id': null at row {session_ids.index(None)}")
    if len(set(session_ids)) != len(session_ids):
        raise DataError(f"{path}: column 'session_id' has duplicate values")

    templates, codes, full_lengths, null_lists, null_events = _read_templates(path, reader, max_len)
    if null_lists.any():
        row = int(null_lists.argmax())
        raise DataError(f"{path}: column 'templates': null list in session {session_ids[row]!r}")
    if full_lengths.min() == 0:
        raise DataError(
            f"{path}: column 'templates': session {session_ids[int(full_lengths.argmin())]!r} has no events"
        )
    if null_events:
        raise DataError(f"{path}: column 'templates': {null_events} events have a null template")

    label_column = table.column("label").to_pandas()  # nullable Int8 -> float with NaN or Int8
    labels = np.full(len(session_ids), UNLABELED, dtype=np.int8)
    known = label_column.notna().to_numpy()
    values = label_column[known].astype("int64").to_numpy()
    if len(values) and not np.isin(values, (0, 1)).all():
        bad = values[~np.isin(values, (0, 1))][0]
        raise DataError(f"{path}: column 'label': value {bad} is not 0, 1 or null")
    labels[known] = values

    split_names = table.column("split").to_pylist()
    unknown = sorted({name for name in split_names if name not in SPLIT_CODES}, key=str)
    if unknown:
        raise DataError(f"{path}: column 'split': unknown value {unknown[0]!r} (expected train, val or test)")
    split = np.array([SPLIT_CODES[name] for name in split_names], dtype=np.int8)
    return _Sessions(
        session_ids, templates, codes, full_lengths, labels, split, label_rule.decode() if label_rule else None
    )


def _read_level_counts(path: Path, session_count: int) -> tuple[list[str], np.ndarray]:
    """``(level_names, level_counts)`` from the ``levels`` column: names sorted, counts (sessions, levels) int32.

    No ``levels`` column (a sessions file from before the column existed) or only null lists: ``([], (sessions, 0))``.
    Streamed like the templates: each batch's levels become codes into a first-seen vocabulary (never one string per
    event), counted per session with one bincount.
    """
    vocabulary: dict[str, int] = {}
    blocks: list[np.ndarray] = []  # per batch: (batch sessions, levels known so far) int32
    try:
        reader = pq.ParquetFile(path, pre_buffer=False)
        if "levels" not in reader.schema_arrow.names or pa.types.is_null(reader.schema_arrow.field("levels").type):
            return [], np.zeros((session_count, 0), dtype=np.int32)
        if not pa.types.is_list(reader.schema_arrow.field("levels").type):
            raise DataError(f"{path}: column 'levels' is {reader.schema_arrow.field('levels').type}, expected a list")
        for batch in reader.iter_batches(batch_size=READ_SESSIONS, columns=["levels"], use_threads=False):
            lists = batch.column("levels")
            lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)
            rows = np.repeat(np.arange(len(lengths)), lengths)  # (batch events,) session row within the batch
            encoded = pc.dictionary_encode(lists.flatten())  # (batch events,) null lists contribute nothing
            local = np.fromiter(
                (vocabulary.setdefault(text, len(vocabulary)) for text in encoded.dictionary.to_pylist()),
                dtype=np.int64,
            )  # (distinct in batch,) batch dictionary -> global code
            valid = pc.is_valid(encoded.indices).to_numpy(zero_copy_only=False)  # (batch events,)
            codes = local[pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)[valid]] if len(local) else []
            width = len(vocabulary)
            cells = rows[valid] * width + np.asarray(codes, dtype=np.int64)
            blocks.append(
                np.bincount(cells, minlength=len(lengths) * width).reshape(len(lengths), width).astype(np.int32)
            )
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"{path}: unreadable parquet: {error}") from None
    names = sorted(vocabulary)
    counts = np.zeros((session_count, len(names)), dtype=np.int32)  # (sessions, levels)
    column_of_code = [names.index(name) for name in vocabulary]  # first-seen code -> sorted column
    start = 0
    for block in blocks:
        counts[start : start + len(block), column_of_code[: block.shape[1]]] = block
        start += len(block)
    return names, counts


def _write_npy_rows(path: Path, dtype: type, shape: tuple[int, int], blocks) -> None:
    """Write a C-order ``.npy`` of ``shape`` from consecutive row blocks (each (rows, shape[1])), never the whole
    array in memory; the file equals ``numpy.save`` of the assembled array."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    written = 0
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for block in blocks:
            handle.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
            written += len(block)
    if written != shape[0]:
        raise DataError(f"{path}: wrote {written} rows, expected {shape[0]}")


def _split_summary(labels: np.ndarray, split: np.ndarray) -> dict[str, dict[str, int]]:
    """Per split: sessions, anomalies, normal, unlabeled."""
    summary = {}
    for name, code in SPLIT_CODES.items():
        chosen = labels[split == code]
        summary[name] = {
            "sessions": int(len(chosen)),
            "anomalies": int((chosen == 1).sum()),
            "normal": int((chosen == 0).sum()),
            "unlabeled": int((chosen == UNLABELED).sum()),
        }
    return summary


@dataclass(frozen=True)
class _Vocabulary:
    """A system's templates in sorted order (index 0 is padding, template i has index i + 1) and their vectors."""

    templates: list[str]  # (templates,) sorted
    vectors: np.ndarray  # (templates + 1, dim) float32, row 0 zeros
    row_of_code: np.ndarray  # (templates,) int32: first-seen code of _Sessions -> row of vectors
    method: str | None
    model: str | None


def _vocabulary(sessions: _Sessions, vectors_path: Path, sessions_path: Path) -> _Vocabulary:
    """The per-system vocabulary and its rows of the shared template vectors; a template without a vector is a
    DataError naming it (rerun the embed stage)."""
    stored = read_template_vectors(vectors_path)
    first_seen = pa.array(sessions.templates, type=pa.string())
    sorted_order = pc.sort_indices(first_seen).to_numpy(zero_copy_only=False)  # (templates,) first-seen code
    vocabulary = first_seen.take(pa.array(sorted_order))
    stored_rows = pc.index_in(vocabulary, value_set=pa.array(stored.templates, type=pa.string()))
    if stored_rows.null_count:
        missing = [
            text for text, row in zip(vocabulary.to_pylist(), stored_rows.to_pylist(), strict=True) if row is None
        ]
        raise DataError(
            f"{vectors_path}: no vector for template {missing[0]!r} of {sessions_path}"
            f" ({len(missing)} templates missing; rerun the embed stage)"
        )
    count = len(vocabulary)
    vectors = np.zeros((count + 1, stored.dim), dtype=np.float32)  # (templates + 1, dim), row 0 padding
    vectors[1:] = stored.vectors[stored_rows.to_numpy(zero_copy_only=False).astype(np.int64)]
    row_of_code = np.empty(count, dtype=np.int32)
    row_of_code[sorted_order] = np.arange(1, count + 1, dtype=np.int32)
    return _Vocabulary(vocabulary.to_pylist(), vectors, row_of_code, stored.metadata.get("method"),
                       stored.metadata.get("model"))  # fmt: skip


@dataclass(frozen=True)
class _Sequences:
    """Every session's first ``max_len`` events as rows of vectors.npy, flattened: session i is
    ``event_ids[offsets[i]:offsets[i + 1]]``."""

    event_ids: np.ndarray  # (kept events,) int32
    lengths: np.ndarray  # (sessions,) int32, after truncation
    offsets: np.ndarray  # (sessions + 1,) int64
    max_len: int
    templates: int

    @property
    def sessions(self) -> int:
        return len(self.lengths)

    def index_blocks(self, rows: int) -> Iterator[np.ndarray]:
        """(rows, max_len) int32 blocks of index.npy: each session's event ids, then padding."""
        for start in range(0, self.sessions, rows):
            stop = min(start + rows, self.sessions)
            block_lengths = self.lengths[start:stop].astype(np.int64)
            block = np.full((stop - start, self.max_len), PADDING, dtype=np.int32)
            session_rows = np.repeat(np.arange(stop - start), block_lengths)
            starts = self.offsets[start:stop] - self.offsets[start]
            positions = np.arange(block_lengths.sum()) - np.repeat(starts, block_lengths)
            block[session_rows, positions] = self.event_ids[self.offsets[start] : self.offsets[stop]]
            yield block

    def count_blocks(self, rows: int) -> Iterator[np.ndarray]:
        """(rows, templates + 1) float32 blocks of counts.npy: event counts of the truncated sequences."""
        width = self.templates + 1
        for start in range(0, self.sessions, rows):
            stop = min(start + rows, self.sessions)
            session_rows = np.repeat(np.arange(stop - start), self.lengths[start:stop].astype(np.int64))
            cells = session_rows * width + self.event_ids[self.offsets[start] : self.offsets[stop]]
            yield np.bincount(cells, minlength=(stop - start) * width).reshape(stop - start, width).astype(np.float32)


def _sequences(sessions: _Sessions, vocabulary: _Vocabulary, max_len: int) -> _Sequences:
    lengths = np.minimum(sessions.full_lengths, max_len).astype(np.int32)  # (sessions,)
    offsets = np.concatenate(([0], np.cumsum(lengths, dtype=np.int64)))  # (sessions + 1,) into event_ids
    event_ids = vocabulary.row_of_code[sessions.codes]  # (kept events,) the first max_len events of each session
    return _Sequences(event_ids, lengths, offsets, max_len, len(vocabulary.templates))


def _meta(system: str, dataset: str, sessions: _Sessions, vocabulary: _Vocabulary, max_len: int,
          level_names: list[str]) -> dict[str, Any]:  # fmt: skip
    return {
        "format_version": 1, "system": system, "dataset": dataset, "sessions": len(sessions.session_ids),
        "max_len": max_len, "truncation": "first max_len events kept",
        "truncated": int((sessions.full_lengths > max_len).sum()),
        "longest_session": int(sessions.full_lengths.max()), "label_rule": sessions.label_rule,
        "splits": _split_summary(sessions.labels, sessions.split), "split_codes": SPLIT_CODES,
        "templates": len(vocabulary.templates), "templates_list": vocabulary.templates,
        "dim": int(vocabulary.vectors.shape[1]), "vectors_method": vocabulary.method,
        "vectors_model": vocabulary.model,
        "level_names": level_names,  # columns of level_counts.npy; [] where the data has no level field
    }  # fmt: skip


@dataclass(frozen=True)
class TensorsSection:
    """Stage tensors' settings: the system, the dataset whose sessions it reads, ``tensors.*``."""

    system: str
    dataset: str
    config: TensorsConfig


def tensors_section(params: Params, system: str) -> TensorsSection:
    return TensorsSection(system, params.systems[system].dataset, params.tensors)


@dataclass(frozen=True)
class TensorsInputs:
    sessions: _Sessions
    vocabulary: _Vocabulary
    level_names: list[str]
    level_counts: np.ndarray  # (sessions, levels) int32


def load_tensors_inputs(section: TensorsSection, paths: ArtifactPaths) -> TensorsInputs:
    """The dataset's sessions (the first max_len events of each), this system's vocabulary and its level counts."""
    sessions_path = paths.sessions_file(section.dataset)
    sessions = _read_sessions(sessions_path, section.config.max_len)
    vocabulary = _vocabulary(sessions, paths.template_vectors(), sessions_path)
    level_names, level_counts = _read_level_counts(sessions_path, len(sessions.session_ids))
    return TensorsInputs(sessions, vocabulary, level_names, level_counts)


@dataclass(frozen=True)
class TensorsResult:
    """``tensors/<system>/`` (the module docstring's files) and its counts (``reports/data/tensors/<system>.json``)."""

    sequences: _Sequences
    inputs: TensorsInputs
    meta: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        summary = {key: self.meta[key] for key in ("sessions", "splits", "truncated", "max_len", "longest_session",
                                                   "templates", "dim", "level_names")}  # fmt: skip
        return {**summary, "missing_vectors": 0}  # a missing vector stops the stage in load

    def write(self, outputs: Outputs) -> None:
        directory, sequences, max_len = outputs["tensors"], self.sequences, self.meta["max_len"]
        width = sequences.templates + 1
        _write_npy_rows(directory / "index.npy", np.int32, (sequences.sessions, max_len),
                        sequences.index_blocks(READ_SESSIONS))  # fmt: skip
        _write_npy_rows(directory / "counts.npy", np.float32, (sequences.sessions, width),
                        sequences.count_blocks(max(1, COUNT_CELLS // width)))  # fmt: skip
        np.save(directory / "lengths.npy", sequences.lengths)
        np.save(directory / "labels.npy", self.inputs.sessions.labels)
        np.save(directory / "split.npy", self.inputs.sessions.split)
        np.save(directory / "vectors.npy", self.inputs.vocabulary.vectors)
        np.save(directory / LEVEL_COUNTS_FILE, self.inputs.level_counts)
        (directory / "session_ids.json").write_text(json.dumps(self.inputs.sessions.session_ids), encoding="utf-8")
        (directory / "meta.json").write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        write_json(outputs["report"], self.metrics())


def compute_tensors(section: TensorsSection, inputs: TensorsInputs) -> TensorsResult:
    """Stage tensors: the sessions as padded index sequences over this system's vocabulary, with counts."""
    sequences = _sequences(inputs.sessions, inputs.vocabulary, section.config.max_len)
    meta = _meta(section.system, section.dataset, inputs.sessions, inputs.vocabulary, section.config.max_len,
                 inputs.level_names)  # fmt: skip
    return TensorsResult(sequences, inputs, meta)


# ----------------------------------------------------------------------------- torch view


class SessionDataset(Dataset):
    """Torch dataset over chosen rows of a system's tensors.

    Item ``i`` is ``(index, length, label)`` for session ``rows[i]``:
    ``index`` (max_len,) int64 rows of ``tensors.vectors`` (0 padding), ``length`` () int64, ``label`` () int64
    (1 / 0 / -1 unlabeled). The default collate gives (batch, max_len), (batch,), (batch,). The model looks up
    ``vectors[index]`` itself -> (batch, max_len, dim), so the vectors table stays one shared tensor.
    """

    def __init__(self, tensors: SystemTensors, rows: np.ndarray | list[int]) -> None:
        self.tensors = tensors
        self.rows = np.asarray(rows, dtype=np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= tensors.sessions):
            raise IndexError(f"rows out of range 0..{tensors.sessions - 1} for {tensors.directory}")

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        row = self.rows[item]
        index = torch.from_numpy(np.array(self.tensors.index[row], dtype=np.int64))  # (max_len,)
        length = torch.tensor(int(self.tensors.lengths[row]), dtype=torch.int64)  # ()
        labels = self.tensors.labels
        label = torch.tensor(-1 if labels is None else int(labels[row]), dtype=torch.int64)  # (); -1: unlabeled
        return index, length, label
