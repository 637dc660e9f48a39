"""Tests of stage sessionize (src/zerolog/data/sessionize.py) on slices of the bundled real data and tiny logs."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import call_stage
from raw_fixtures import (
    BUNDLED,
    REPOSITORY,
    build_raw_folder,
    import_bench,
    project_params,
    write_deeplog_raw,
    write_raw_logs,
)

from zerolog.config import LabelRule, MultilineRule, ParallelConfig, SessionRule, SplitFractions, SplitRule
from zerolog.data.sessionize import (
    UNKNOWN_LABEL,
    Sessions,
    any_anomalous,
    assign_splits,
    read_sessions,
    split_sizes,
    subsample_anomalies,
)
from zerolog.errors import DataError

HDFS_LINES = (BUNDLED / "HDFS" / "HDFS_2k.log").read_bytes().splitlines(keepends=True)
BGL_LINES = (BUNDLED / "BGL" / "BGL_2k.log").read_bytes().splitlines(keepends=True)


@pytest.fixture
def params(tmp_path):
    return project_params(tmp_path)


def with_dataset(params, name: str, **changes):
    """Params with ``datasets.<name>`` changed (e.g. another session or label rule)."""
    dataset = dataclasses.replace(params.datasets[name], **changes)
    return dataclasses.replace(params, datasets={**params.datasets, name: dataset})


def run(params, name: str) -> tuple[pd.DataFrame, dict, dict]:
    call_stage("parse", params, name)
    result = call_stage("sessionize", params, name)
    table, metadata = read_sessions(Path(params.paths.sessions) / name / "sessions.parquet")
    metrics = json.loads((Path(params.paths.reports) / "data" / "sessionize" / f"{name}.json").read_text())
    assert result.metrics() == metrics and len(result.table) == len(table)  # the report is the result's metrics
    return table, metadata, metrics


def hdfs_line(block_ids: list[str], message: str = "Receiving block {} src: /10.0.0.1:5 dest: /10.0.0.2:5") -> bytes:
    return (
        f"081109 2036{len(block_ids):02d} 1 INFO dfs.DataNode$DataXceiver: {message.format(' '.join(block_ids))}\n"
    ).encode()


# ----------------------------------------------------------------------------- key rule and its label rules


def test_hdfs_blocks_with_key_file_labels(params):
    """HDFS_2k: 2,200 blocks, 69 anomalous by HDFS_v1's block labels (data/bundled/README.md)."""
    build_raw_folder(params, "hdfs_logs")
    table, metadata, metrics = run(params, "hdfs_logs")
    labels = pd.read_csv(BUNDLED / "HDFS" / "HDFS_2k_block_labels.csv")
    assert table["session_id"].tolist() == labels["BlockId"].tolist()  # first-seen order
    assert table["label"].tolist() == (labels["Label"] == "Anomaly").astype(int).tolist()
    assert (metrics["sessions"], metrics["anomalous"], metrics["unlabeled"]) == (2200, 69, 0)
    assert metadata["label_rule"] == metrics["label_rule"] == "key_file"
    first = table.iloc[0]
    assert first["templates"].tolist() == ["PacketResponder <*> for block <*> terminating"]
    assert first["start_time"] == pytest.approx(1226262975.0)


def test_a_line_naming_several_keys_joins_each_session_and_keyless_lines_are_counted(params):
    lines = [
        hdfs_line(["blk_1"]),
        hdfs_line(["blk_2", "blk_1"], "Deleting block {} file /x"),
        hdfs_line(["blk_3"]),
        b"081109 203700 1 INFO dfs.FSNamesystem: a line that names no block\n",
        hdfs_line(["blk_2"]),
    ]
    labels = b"BlockId,Label\nblk_1,Normal\nblk_2,Anomaly\n"
    write_raw_logs(params, "hdfs_logs", {"tiny.log": b"".join(lines)}, {"labels": labels})
    table, _, metrics = run(params, "hdfs_logs")
    assert table["session_id"].tolist() == ["blk_1", "blk_2", "blk_3"]
    lengths = dict(zip(table["session_id"], table["templates"].map(len), strict=True))
    assert lengths == {"blk_1": 2, "blk_2": 2, "blk_3": 1}
    assert table["templates"][0][1] == table["templates"][1][0]  # the shared line is in both
    assert metrics["lines_without_key"] == 1 and metrics["lines_with_several_keys"] == 1
    # blk_3 is not in the label file: null label, counted, never guessed.
    assert table["label"].tolist()[:2] == [0, 1] and pd.isna(table["label"][2])
    assert metrics["unlabeled"] == 1 and metrics["keys_missing_from_label_file"] == 1
    assert metrics["anomalous_share"] == pytest.approx(0.5)


def test_key_list_labels_listed_keys_and_skips_prose_lines(params):
    source = (BUNDLED / "OpenStack" / "OpenStack_2k.log").read_bytes()
    write_raw_logs(params, "openstack_2k", {"OpenStack_2k.log": source}, {"labels": b""})
    instances = pd.Series(source.decode().splitlines()).str.extract(r"\[instance: ([0-9a-f-]{36})\]")[0].dropna()
    listed = instances.unique()[:2]
    label_text = "The following VM instances have injected anomalies.\n\n" + "\n".join(listed) + "\nnot-present-id\n"
    (Path(params.paths.raw) / "openstack_2k" / "labels").write_text(label_text)
    table, metadata, metrics = run(params, "openstack_2k")
    assert metrics["sessions"] == 22 == instances.nunique()
    assert set(table.loc[table["label"] == 1, "session_id"]) == set(listed)
    assert (metrics["anomalous"], metrics["unlabeled"], metrics["label_file_lines_skipped"]) == (2, 0, 1)
    assert (metrics["listed_keys"], metrics["listed_keys_found"]) == (3, 2)
    assert metadata["label_rule"] == "key_list"


def test_source_file_labels_sessions_of_the_first_file(params):
    """MetaLog's convention: every session cut from the first (abnormal) log file counts as anomalous."""
    build_raw_folder(params, "openstack_instances")
    params = with_dataset(params, "openstack_instances", label=LabelRule(rule="source_file"))
    table, metadata, metrics = run(params, "openstack_instances")
    assert (table["label"] == (table["file_index"] == 0).astype(int)).all()
    assert metrics["anomalous"] == 197 and metrics["sessions"] == 754  # 197 + 557 instances (README)
    assert metadata["label_rule"] == "source_file"


def test_openstack_instances_split_within_each_file(params):
    build_raw_folder(params, "openstack_instances")
    table, _, metrics = run(params, "openstack_instances")
    assert metrics["anomalous"] == 4 and metrics["label_rule"] == "key_list"
    for file_index, group in table.groupby("file_index"):
        counts = group["split"].value_counts()
        assert counts["train"] == pytest.approx(0.6 * len(group), abs=2), file_index
        assert counts["test"] == pytest.approx(0.3 * len(group), abs=2), file_index


# ----------------------------------------------------------------------------- window rule


def test_bgl_line_windows_take_any_anomalous_line(params):
    build_raw_folder(params, "bgl_logs")
    table, metadata, metrics = run(params, "bgl_logs")
    alert = np.array([not line.startswith(b"- ") for line in BGL_LINES])
    assert table["session_id"].tolist() == [f"0:{start}" for start in range(1, 2000, 20)]
    assert table["label"].tolist() == alert.reshape(100, 20).any(axis=1).astype(int).tolist()
    assert set(table["templates"].map(len)) == {20}
    assert metrics["mean_length"] == 20 and metadata["label_rule"] == "line_field"
    # chronological split: every train session starts no later than any val session, val no later than test.
    start = table.groupby("split")["start_time"].agg(["min", "max"])
    assert start.loc["train", "max"] <= start.loc["val", "min"] and start.loc["val", "max"] <= start.loc["test", "min"]


@pytest.mark.parametrize(
    ("size", "step", "expected_starts"),
    [
        (20, 10, list(range(1, 182, 10))),  # sliding: the last window ends at line 200
        (30, 30, list(range(1, 200, 30))),  # fixed: the last window is shorter (lines 181-200)
        (200, 50, [1]),
    ],
)
def test_line_windows_size_and_step(params, size, step, expected_starts):
    write_raw_logs(params, "bgl_logs", {"BGL_slice.log": b"".join(BGL_LINES[:200])})
    params = with_dataset(params, "bgl_logs", session=SessionRule(rule="window", size=size, step=step))
    table, _, _ = run(params, "bgl_logs")
    assert table["session_id"].tolist() == [f"0:{start}" for start in expected_starts]
    assert table["templates"].map(len).tolist() == [min(size, 201 - start) for start in expected_starts]


def test_windows_per_group_by_node(params):
    """MetaLog windows BGL per node: each node's lines are cut separately."""
    write_raw_logs(params, "bgl_logs", {"BGL_slice.log": b"".join(BGL_LINES[:300])})
    params = with_dataset(params, "bgl_logs", session=SessionRule(rule="window", size=5, step=5, group_by="Node"))
    table, _, _ = run(params, "bgl_logs")
    nodes = pd.Series([line.split()[3].decode() for line in BGL_LINES[:300]])
    expected = sum(-(-count // 5) for count in nodes.value_counts())
    assert len(table) == expected
    first_node = nodes[0]
    first_lines = [index + 1 for index in nodes.index[nodes == first_node][:5]]
    assert table["session_id"][0] == f"{first_node}:{first_lines[0]}"
    assert table["templates"].map(len).sum() == 300


def test_windows_in_seconds(params):
    """Windows over time: lines at 0, 10, 20, ... 90 s; 30 s windows every 30 s hold 3, 3, 3 and 1 lines."""
    lines = [
        f"081109 2036{second:02d} 1 INFO dfs.DataNode: event number {second}\n".encode() for second in range(0, 60, 10)
    ] + [
        f"081109 2037{second:02d} 1 INFO dfs.DataNode: event number {second}\n".encode() for second in range(0, 40, 10)
    ]
    write_raw_logs(params, "hdfs_logs", {"timed.log": b"".join(lines)})
    params = with_dataset(
        params, "hdfs_logs", session=SessionRule(rule="window", size=30, step=30, unit="seconds"), label=None
    )
    table, metadata, metrics = run(params, "hdfs_logs")
    assert table["templates"].map(len).tolist() == [3, 3, 3, 1]
    assert table["session_id"].tolist() == ["0:1", "0:4", "0:7", "0:10"]
    assert table["label"].isna().all() and metrics["unlabeled"] == 4 and metadata["label_rule"] == "none"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [([0, 0, 0], 0.0), ([0, 1, 0], 1.0), ([0, np.nan, 0], np.nan), ([np.nan, 1], 1.0)],
)
def test_any_anomalous(labels, expected):
    line_labels = np.array([UNKNOWN_LABEL if np.isnan(label) else label for label in labels], dtype=np.int8)
    sessions = Sessions(["s"], np.arange(len(labels), dtype=np.int64), np.array([0, len(labels)], dtype=np.int64))
    [result] = any_anomalous(line_labels, sessions)
    assert (np.isnan(result) and np.isnan(expected)) or result == expected


# ----------------------------------------------------------------------------- pre-parsed sessions


def make_deeplog_raw(params, normal: int, abnormal: int) -> None:
    """A raw hdfs_deeplog folder with the first sessions of the real DeepLog files."""
    contents = {}
    for key, count in (("normal", normal), ("abnormal", abnormal)):
        source = BUNDLED / "HDFS" / "sessions" / ("hdfs_train_normal" if key == "normal" else "hdfs_abnormal")
        contents[key] = b"".join(source.read_bytes().splitlines(keepends=True)[:count])
    write_deeplog_raw(params, **contents)


def test_deeplog_anomalies_are_subsampled_to_the_stated_share(params):
    make_deeplog_raw(params, normal=400, abnormal=300)
    params = with_dataset(params, "hdfs_deeplog", anomaly_share=0.1)
    table, metadata, metrics = run(params, "hdfs_deeplog")
    wanted = round(400 * 0.1 / 0.9)  # 44
    assert (table["label"] == 0).sum() == 400 and (table["label"] == 1).sum() == wanted
    assert metrics["subsampling"] == {
        "anomaly_share_target": 0.1, "anomalous_available": 300, "anomalous_kept": wanted, "normal": 400,
    }  # fmt: skip
    assert metrics["anomalous_share"] == pytest.approx(wanted / (400 + wanted))
    assert metadata["label_rule"] == "preparsed"
    kept = table.loc[table["label"] == 1, "session_id"]
    assert kept.str.startswith("abnormal:").all()
    # the kept anomalous sessions keep their own events: compare one with its line in the source file
    line_number = int(kept.iloc[0].split(":")[1])
    source = (BUNDLED / "HDFS" / "sessions" / "hdfs_abnormal").read_text().splitlines()[line_number - 1]
    templates = pd.read_csv(BUNDLED / "HDFS" / "HDFS_templates.csv").set_index("EventId")["EventTemplate"]
    assert table.loc[kept.index[0], "templates"].tolist() == [templates[f"E{n}"] for n in source.split()]
    # stratified random split: anomalies land in every split in proportion
    per_split = metrics["splits"]
    assert [per_split[split]["anomalous"] for split in ("train", "val", "test")] == [26, 4, 14]


def test_subsampling_and_splits_are_deterministic_under_the_seed(params, tmp_path):
    make_deeplog_raw(params, normal=300, abnormal=200)
    params = with_dataset(params, "hdfs_deeplog", anomaly_share=0.2)
    first, _, _ = run(params, "hdfs_deeplog")
    second, _, _ = run(params, "hdfs_deeplog")
    pd.testing.assert_frame_equal(first, second)
    reseeded, _, _ = run(dataclasses.replace(params, seed=params.seed + 1), "hdfs_deeplog")
    assert set(reseeded["session_id"]) != set(first["session_id"])  # another subsample
    assert (reseeded["label"] == 1).sum() == (first["label"] == 1).sum()


def test_subsample_anomalies_keeps_everything_when_anomalies_are_already_rare():
    labels = np.array([0.0] * 98 + [1.0] * 2 + [np.nan])
    keep, info = subsample_anomalies(labels, 0.1, np.random.default_rng(0))
    assert keep.all() and info["anomalous_kept"] == 2


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize(
    ("count", "expected"), [(1000, (600, 100, 300)), (7, (4, 1, 2)), (1, (1, 0, 0)), (0, (0, 0, 0))]
)
def test_split_sizes(count, expected):
    assert split_sizes(count, SplitFractions(train=0.6, val=0.1, test=0.3)) == expected


def test_random_split_is_stratified_by_label_and_by_file():
    rng = np.random.default_rng(7)
    labels = np.array([1.0] * 50 + [0.0] * 950 + [np.nan] * 100)
    files = np.array([0, 1] * 550, dtype=np.int16)
    fractions = SplitFractions(train=0.6, val=0.1, test=0.3)
    rule = SplitRule(method="random", stratify_by="file")
    split = assign_splits(labels, np.full(1100, np.nan), files, rule, fractions, rng)
    for file_index in (0, 1):
        for label_mask in (labels == 1, labels == 0, np.isnan(labels)):
            chosen = split[(files == file_index) & label_mask]
            train, val, test = split_sizes(len(chosen), fractions)
            assert [(chosen == name).sum() for name in ("train", "val", "test")] == [train, val, test]
    again = assign_splits(labels, np.full(1100, np.nan), files, rule, fractions, np.random.default_rng(7))
    assert (split == again).all()


def test_chronological_split_sorts_by_start_time_and_falls_back_to_line_order():
    fractions = SplitFractions(train=0.6, val=0.1, test=0.3)
    times = np.array([50.0, 10.0, 40.0, 20.0, 30.0, 0.0, 60.0, 70.0, 80.0, 90.0])
    rule = SplitRule(method="chronological")
    split = assign_splits(np.zeros(10), times, np.zeros(10, dtype=np.int16), rule, fractions, None)
    assert split[np.argsort(times)].tolist() == ["train"] * 6 + ["val"] + ["test"] * 3
    no_time = assign_splits(np.zeros(10), np.full(10, np.nan), np.zeros(10, dtype=np.int16), rule, fractions, None)
    assert no_time.tolist() == ["train"] * 6 + ["val"] + ["test"] * 3


def test_bgl_100k_windows_and_split_metrics(params):
    """The real pre-parsed BGL lines: 20-line windows, 10.4% anomalous (README); split counts add up."""
    build_raw_folder(params, "bgl_100k")
    table, _, metrics = run(params, "bgl_100k")
    assert metrics["sessions"] == 5000 and metrics["anomalous_share"] == pytest.approx(0.1036, abs=0.0005)
    assert sum(part["sessions"] for part in metrics["splits"].values()) == 5000
    assert sum(part["anomalous"] for part in metrics["splits"].values()) == metrics["anomalous"]
    assert (metrics["splits"]["train"]["sessions"], metrics["splits"]["val"]["sessions"]) == (3000, 500)


# ----------------------------------------------------------------------------- errors


def test_missing_parsed_lines_is_a_data_error_and_writes_nothing(params):
    with pytest.raises(DataError, match="hdfs_logs/lines.parquet: parsed lines not found"):
        call_stage("sessionize", params, "hdfs_logs")
    assert not (Path(params.paths.sessions) / "hdfs_logs").exists()
    assert not (Path(params.paths.reports) / "data" / "sessionize" / "hdfs_logs.json").exists()


def test_bad_label_file_names_file_and_line_and_writes_nothing(params):
    labels = b"BlockId,Label\nblk_1,Normal\nblk_2,Broken\n"
    write_raw_logs(params, "hdfs_logs", {"tiny.log": hdfs_line(["blk_1"]) + hdfs_line(["blk_2"])}, {"labels": labels})
    call_stage("parse", params, "hdfs_logs")
    with pytest.raises(DataError, match=r"labels: line 3: label must be Anomaly or Normal, got 'Broken'"):
        call_stage("sessionize", params, "hdfs_logs")
    assert not (Path(params.paths.sessions) / "hdfs_logs").exists()
    assert not (Path(params.paths.reports) / "data" / "sessionize" / "hdfs_logs.json").exists()


def test_missing_label_file_in_manifest_is_a_data_error(params):
    write_raw_logs(params, "hdfs_logs", {"tiny.log": hdfs_line(["blk_1"])})
    call_stage("parse", params, "hdfs_logs")
    with pytest.raises(DataError, match="manifest.json: files.labels: missing key"):
        call_stage("sessionize", params, "hdfs_logs")


# ----------------------------------------------------------------------------- memory

PEAK_RSS_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from raw_fixtures import project_params
import zerolog.data.sessionize as sessionize
from zerolog.stages import stage_named
sessionize.BATCH_LINES = 10_000  # small batches and row groups, so that neither input fits in one
sessionize.WRITE_SESSIONS = 1_000
stage_named("sessionize").call(project_params(Path(sys.argv[1])), "hdfs_logs")
# VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) RSS over exec into ru_maxrss.
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_input(tmp_path):
    """Peak RSS sessionizing 200k generated HDFS lines (key rule, key_file labels, blocks of about 20 lines) stays
    within 25 MiB of 50k: lines are streamed in batches and kept as compact integer arrays, never one Python string
    per line (the former pandas load grew by about 100 MiB here)."""
    generate = import_bench("generate")
    peaks = {}
    for lines in (50_000, 200_000):
        root = tmp_path / str(lines)
        params = project_params(root)
        parallel = dataclasses.replace(params.parse.parallel, workers=1)  # in-process: no cluster to start
        params = dataclasses.replace(params, parse=dataclasses.replace(params.parse, parallel=parallel))
        generated = root / "generated.log"
        labels = root / "labels.csv"
        generate.generate(generated, lines, labels, block_reuse=20)
        write_raw_logs(params, "hdfs_logs", {"HDFS.log": generated.read_bytes()}, {"labels": labels.read_bytes()})
        call_stage("parse", params, "hdfs_logs")
        completed = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_SCRIPT, str(root), str(Path(__file__).resolve().parents[1])],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPOSITORY,
        )
        peaks[lines] = int(completed.stdout.split()[-1])
        metrics = json.loads((Path(params.paths.reports) / "data" / "sessionize" / "hdfs_logs.json").read_text())
        assert metrics["lines"] == lines and metrics["sessions"] > lines // 40
    growth_mib = (peaks[200_000] - peaks[50_000]) / 1024
    assert growth_mib < 25, f"peak RSS grew by {growth_mib:.1f} MiB from 50k to 200k lines"


@pytest.mark.parametrize("workers", [1, 2])
def test_continuation_events_join_their_records_key_sessions(params, workers):
    """multiline.events each_line: a traceback line under a record is an event of the record's sessions, also when
    the record and the line fall in different parts of lines.parquet (read on two workers)."""
    traceback = b"Traceback (most recent call last)\n    raise Timeout\nnova.exception.Timeout - no reply\n"
    records = [line + (traceback if position % 5 == 2 else b"") for position, line in enumerate(HDFS_LINES[:200])]
    parallel = ParallelConfig(backend="processes", workers=workers, scheduler_address=None)
    params = dataclasses.replace(
        with_dataset(params, "hdfs_logs", multiline=MultilineRule(start="header", events="each_line")),
        parse=dataclasses.replace(params.parse, chunk_bytes=2_000, sample_lines=0),
        sessionize=dataclasses.replace(params.sessionize, parallel=parallel),
    )
    write_raw_logs(
        params,
        "hdfs_logs",
        {"HDFS_tracebacks.log": b"".join(records)},
        {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()},
    )
    table, _, _ = run(params, "hdfs_logs")
    lines = pd.read_parquet(Path(params.paths.parsed) / "hdfs_logs" / "lines.parquet")
    assert lines["status"].eq("continuation").sum() == 40 * 3 and lines["template"].notna().all()
    expected: dict[str, list[str]] = {}
    record_keys: list[str] = []
    for status, content, template in lines[["status", "content", "template"]].itertuples(index=False):
        if status == "parsed":
            record_keys = list(dict.fromkeys(re.findall(r"(blk_-?\d+)", content)))
        for key in record_keys:
            expected.setdefault(key, []).append(template)
    assert dict(zip(table["session_id"], table["templates"].map(list), strict=True)) == expected
    assert any("Traceback" in template for templates in expected.values() for template in templates)
