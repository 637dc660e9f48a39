"""Tests of stage tensors: shapes, padding, truncation, labels, splits, count vectors, errors and lazy loading."""

from __future__ import annotations

import json
from pathlib import Path

import conftest
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import call_stage
from torch.utils.data import DataLoader

from zerolog.artifacts import load_tensors
from zerolog.config import ConfigError
from zerolog.errors import DataError
from zerolog.features.embed import write_template_vectors
from zerolog.features.tensors import SessionDataset

REPOSITORY = Path(__file__).resolve().parents[2]
SYSTEM = "hdfs"
MAX_LEN = 4
DIM = 3

# (session id, events, label, split): one session longer than MAX_LEN, one exactly MAX_LEN, unlabeled ones.
SESSIONS = [
    ("blk_1", ["A <*>", "B", "A <*>"], 0, "train"),
    ("blk_2", ["C", "B", "A <*>", "B", "C", "C"], 1, "train"),  # 6 events: truncated to the first 4
    ("blk_3", ["B"], None, "val"),
    ("blk_4", ["C", "C", "C", "C"], 1, "test"),
    ("blk_5", ["A <*>", "C"], None, "test"),
]
STORED_VECTORS = {  # the vectors file may hold templates of other systems too ("Z other system")
    "A <*>": [1.0, 0.0, 0.0],
    "B": [0.0, 1.0, 0.0],
    "C": [0.0, 0.0, 1.0],
    "Z other system": [0.6, 0.8, 0.0],
}


def make_params(tmp_path: Path, max_len: int = MAX_LEN):
    return conftest.make_params(tmp_path, {"tensors.max_len": max_len})


def write_sessions(params, sessions=SESSIONS, label_rule: str = "key_file", levels: list | None = None) -> Path:
    frame = pd.DataFrame(
        {
            "session_id": [session[0] for session in sessions],
            "templates": [session[1] for session in sessions],
            "label": pd.array([session[2] for session in sessions], dtype="Int8"),
            "start_time": [float(number) for number in range(len(sessions))],
            "split": [session[3] for session in sessions],
            "file_index": np.zeros(len(sessions), dtype=np.int16),
        }
    )
    if levels is not None:  # the sessionize stage's column: one level per event, null lists where none
        frame["levels"] = levels
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"label_rule": label_rule.encode()})
    path = Path(params.paths.sessions) / params.systems[SYSTEM].dataset / "sessions.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_vectors(params, vectors: dict[str, list[float]] = STORED_VECTORS) -> Path:
    path = Path(params.paths.features) / "template_vectors.parquet"
    write_template_vectors(
        path,
        list(vectors),
        np.array(list(vectors.values()), dtype=np.float32),
        {"method": "test", "model": "test", "dim": str(DIM)},
    )
    return path


@pytest.fixture()
def built(tmp_path: Path):
    params = make_params(tmp_path)
    write_sessions(params)
    write_vectors(params)
    call_stage("tensors", params, SYSTEM)
    return params, Path(params.paths.tensors) / SYSTEM


def test_shapes_padding_and_truncation(built) -> None:
    params, directory = built
    index = np.load(directory / "index.npy")
    lengths = np.load(directory / "lengths.npy")
    vectors = np.load(directory / "vectors.npy")
    meta = json.loads((directory / "meta.json").read_text())
    vocabulary = meta["templates_list"]
    assert vocabulary == ["A <*>", "B", "C"]  # only this system's templates, sorted
    assert index.shape == (5, MAX_LEN) and index.dtype == np.int32
    assert lengths.tolist() == [3, 4, 1, 4, 2] and lengths.dtype == np.int32
    assert vectors.shape == (4, DIM) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors[0], 0.0)  # row 0: padding
    for row, (_, events, _, _) in enumerate(SESSIONS):
        kept = events[:MAX_LEN]  # the FIRST max_len events
        assert [vocabulary[i - 1] for i in index[row, : len(kept)]] == kept
        assert (index[row, len(kept) :] == 0).all()
        for position, template in enumerate(kept):
            np.testing.assert_array_equal(vectors[index[row, position]], STORED_VECTORS[template])
    assert meta["truncated"] == 1 and meta["max_len"] == MAX_LEN and meta["longest_session"] == 6
    assert meta["label_rule"] == "key_file" and meta["dataset"] == params.systems[SYSTEM].dataset
    assert json.loads((directory / "session_ids.json").read_text()) == [session[0] for session in SESSIONS]


def test_labels_splits_counts_and_metrics(built) -> None:
    params, directory = built
    assert np.load(directory / "labels.npy").tolist() == [0, 1, -1, 1, -1]
    assert np.load(directory / "labels.npy").dtype == np.int8
    assert np.load(directory / "split.npy").tolist() == [0, 0, 1, 2, 2]
    counts = np.load(directory / "counts.npy")
    assert counts.shape == (5, 4) and counts.dtype == np.float32
    np.testing.assert_array_equal(counts[:, 0], 0.0)
    np.testing.assert_array_equal(counts.sum(axis=1), np.load(directory / "lengths.npy"))
    assert counts[1].tolist() == [0, 1, 2, 1]  # C B A B of the truncated blk_2: A once, B twice, C once
    metrics = json.loads((Path(params.paths.reports) / "data" / "tensors" / f"{SYSTEM}.json").read_text())
    assert metrics["sessions"] == 5 and metrics["truncated"] == 1
    assert metrics["templates"] == 3 and metrics["dim"] == DIM and metrics["missing_vectors"] == 0
    assert metrics["splits"]["train"] == {"sessions": 2, "anomalies": 1, "normal": 1, "unlabeled": 0}
    assert metrics["splits"]["val"] == {"sessions": 1, "anomalies": 0, "normal": 0, "unlabeled": 1}
    assert metrics["splits"]["test"] == {"sessions": 2, "anomalies": 1, "normal": 0, "unlabeled": 1}


def test_level_counts_cover_the_whole_session_with_sorted_level_names(tmp_path: Path) -> None:
    params = make_params(tmp_path)
    levels = [
        ["INFO", "ERROR", "INFO"],
        ["INFO", "INFO", "INFO", "INFO", "WARNING", "ERROR"],  # blk_2: past max_len = 4, still counted
        ["INFO"],
        ["FATAL", "INFO", None, "INFO"],  # a line without a level counts nowhere
        ["INFO", "INFO"],
    ]
    write_sessions(params, levels=levels)
    write_vectors(params)
    call_stage("tensors", params, SYSTEM)
    directory = Path(params.paths.tensors) / SYSTEM
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["level_names"] == ["ERROR", "FATAL", "INFO", "WARNING"]
    counts = np.load(directory / "level_counts.npy")
    assert counts.dtype == np.int32
    assert counts.tolist() == [[1, 0, 2, 0], [1, 0, 4, 1], [0, 0, 1, 0], [0, 1, 2, 0], [0, 0, 2, 0]]


@pytest.mark.parametrize("levels", [None, [None] * 5], ids=["no-column", "null-lists"])
def test_sessions_without_levels_give_no_level_columns(tmp_path: Path, levels) -> None:
    params = make_params(tmp_path)
    write_sessions(params, levels=levels)
    write_vectors(params)
    call_stage("tensors", params, SYSTEM)
    directory = Path(params.paths.tensors) / SYSTEM
    assert json.loads((directory / "meta.json").read_text())["level_names"] == []
    assert np.load(directory / "level_counts.npy").shape == (5, 0)


@pytest.mark.parametrize(("max_len", "truncated"), [(1, 4), (3, 2), (6, 0), (10, 0)])
def test_truncation_count_follows_max_len(tmp_path: Path, max_len: int, truncated: int) -> None:
    params = make_params(tmp_path, max_len=max_len)
    write_sessions(params)
    write_vectors(params)
    call_stage("tensors", params, SYSTEM)
    tensors = load_tensors(Path(params.paths.tensors) / SYSTEM)
    assert tensors.meta["truncated"] == truncated
    assert tensors.max_len == max_len
    assert tensors.lengths.tolist() == [min(len(session[1]), max_len) for session in SESSIONS]


def test_missing_template_names_template_and_file(tmp_path: Path) -> None:
    params = make_params(tmp_path)
    write_sessions(params)
    vectors_path = write_vectors(params, {key: value for key, value in STORED_VECTORS.items() if key != "B"})
    with pytest.raises(DataError) as caught:
        call_stage("tensors", params, SYSTEM)
    message = str(caught.value)
    assert "'B'" in message and str(vectors_path) in message and "\n" not in message
    assert not (Path(params.paths.tensors) / SYSTEM).exists()  # no partial output


@pytest.mark.parametrize(
    ("sessions", "expected"),
    [
        ([("s1", ["A <*>"], 0, "holdout")], "column 'split': unknown value 'holdout'"),
        ([("s1", [], 0, "train")], "session 's1' has no events"),
        ([("s1", ["A <*>"], 0, "train"), ("s1", ["B"], 0, "test")], "'session_id' has duplicate values"),
    ],
)
def test_bad_sessions_are_data_errors(tmp_path: Path, sessions, expected: str) -> None:
    params = make_params(tmp_path)
    path = write_sessions(params, sessions)
    write_vectors(params)
    with pytest.raises(DataError, match=expected) as caught:
        call_stage("tensors", params, SYSTEM)
    assert str(path) in str(caught.value)


def test_failed_rebuild_keeps_previous_output(built) -> None:
    params, directory = built
    before = np.load(directory / "index.npy")
    write_vectors(params, {"A <*>": [1.0, 0.0, 0.0]})
    with pytest.raises(DataError):
        call_stage("tensors", params, SYSTEM)
    np.testing.assert_array_equal(np.load(directory / "index.npy"), before)


def test_unknown_system_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="system 'nosuch' is not in params"):
        call_stage("tensors", make_params(tmp_path), "nosuch")


def test_lazy_loading_and_dataset(built) -> None:
    _, directory = built
    tensors = load_tensors(directory)
    assert isinstance(tensors.index, np.memmap) and isinstance(tensors.counts, np.memmap)
    assert (tensors.sessions, tensors.max_len, tensors.dim) == (5, MAX_LEN, DIM)
    assert tensors.rows("test").tolist() == [3, 4]
    assert tensors.session_ids()[3] == "blk_4"

    dataset = SessionDataset(tensors, tensors.rows("train"))
    index, length, label = dataset[1]
    assert index.shape == (MAX_LEN,) and index.dtype == torch.int64
    assert (int(length), int(label)) == (4, 1)
    batch_index, batch_lengths, batch_labels = next(iter(DataLoader(SessionDataset(tensors, range(5)), batch_size=5)))
    assert batch_index.shape == (5, MAX_LEN)
    assert batch_lengths.tolist() == [3, 4, 1, 4, 2] and batch_labels.tolist() == [0, 1, -1, 1, -1]
    embedded = torch.from_numpy(np.array(tensors.vectors))[batch_index]  # (batch, max_len, dim)
    assert embedded.shape == (5, MAX_LEN, DIM)
    assert torch.all(embedded[2, 1:] == 0)  # padding rows are zero vectors


def test_load_tensors_reports_missing_files(built) -> None:
    _, directory = built
    (directory / "counts.npy").unlink()
    with pytest.raises(DataError, match="missing counts.npy"):
        load_tensors(directory)
