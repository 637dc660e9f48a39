"""Tests of stage parse (src/zerolog/data/parse.py) on slices of the bundled real logs and tiny generated files."""

from __future__ import annotations

import calendar
import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import call_stage, make_params
from raw_fixtures import (
    BUNDLED,
    build_raw_folder,
    project_params,
    write_deeplog_raw,
    write_manifest,
    write_raw_logs,
)

from zerolog.config import ConfigError, Params
from zerolog.data.datasets import template_event_id
from zerolog.data.parse import grouping_accuracy, parse_timestamps
from zerolog.data.stream_parse import header_regex, line_layout, new_miner, parse_chunk, plan_chunks
from zerolog.errors import DataError

HDFS_LINES = (BUNDLED / "HDFS" / "HDFS_2k.log").read_bytes().splitlines(keepends=True)


@pytest.fixture
def params(tmp_path):
    return project_params(tmp_path)


def outputs_absent(params, name: str) -> bool:
    """True when stage parse left nothing behind for ``name`` (no folder, no temporary sibling, no metrics)."""
    parsed = Path(params.paths.parsed)
    leftovers = list(parsed.glob(f".{name}.*")) if parsed.exists() else []
    metrics = Path(params.paths.reports) / "data" / "parse" / f"{name}.json"
    return not (parsed / name).exists() and not leftovers and not metrics.exists()


def read_parsed(params, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = Path(params.paths.parsed) / name
    metrics = json.loads((Path(params.paths.reports) / "data" / "parse" / f"{name}.json").read_text())
    return pd.read_parquet(folder / "lines.parquet"), pd.read_parquet(folder / "templates.parquet"), metrics


# ----------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    ("system", "log_file"),
    [("hdfs", "HDFS/HDFS_2k.log"), ("bgl", "BGL/BGL_2k.log"), ("openstack", "OpenStack/OpenStack_2k.log")],
)
def test_header_fields_are_logparser3s(params, system, log_file):
    """Our header regex is logparser3's, and every line of the real 2k samples gets the fields logparser3's gives."""
    from logparser.Drain import LogParser

    settings = params.systems[system]
    regex, fields = header_regex(settings.log_format)
    reference_fields, reference_regex = LogParser(settings.log_format).generate_logformat_regex(settings.log_format)
    assert fields == reference_fields
    (chunk,) = plan_chunks([BUNDLED / log_file], 10**8)
    table, _ = parse_chunk(chunk, line_layout(settings, None), new_miner(settings))
    texts = (BUNDLED / log_file).read_text(encoding="utf-8").split("\n")[: table.num_rows]
    columns = {
        field: table.column(
            {"Level": "level", "Component": "component", "Content": "content"}.get(field, field)
        ).to_pylist()
        for field in fields
    }
    for offset, text in enumerate(texts):
        reference = reference_regex.search(text.strip())
        assert [columns[field][offset] for field in fields] == [reference.group(field) for field in fields]


def test_lines_are_split_on_newlines_and_numbered_as_the_file(params):
    """Lines split on \\n only (a \\r is stripped with the other whitespace), numbered from 1; a bad byte costs its
    line only; an empty line and a line of another format under a record continue it (multiline.start: header), with
    their stripped text as content; a last line without newline is kept."""
    last = b"081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 done  "
    content = (
        b"081109 203615 148 INFO dfs.X: first\r\n"
        + b"second \xff\xfe bad\n"
        + b"\n"
        + b"no header here\n"
        + b"".join(HDFS_LINES[:16])
        + last
    )
    write_raw_logs(params, "hdfs_logs", {"HDFS_odd.log": content})
    params = dataclasses.replace(params, parse=dataclasses.replace(params.parse, max_unmatched_share=0.2))
    result = call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_parsed(params, "hdfs_logs")
    assert result.metrics() == metrics  # the report is the result's metrics, timings left out
    assert "seconds" not in metrics and metrics["lines"] == 21
    assert lines["line_number"].tolist() == list(range(1, 22))
    assert lines["status"].tolist() == ["parsed", "non_utf8", "continuation", "continuation"] + ["parsed"] * 17
    assert lines["content"].iloc[0] == "first" and lines["content"].iloc[20] == "PacketResponder 1 done"
    assert lines["content"].iloc[2:4].tolist() == ["", "no header here"] and lines["template"].iloc[2:4].isna().all()
    assert lines["component"].iloc[20] == "dfs.DataNode$PacketResponder"
    assert (metrics["parsed"], metrics["unmatched"], metrics["non_utf8"], metrics["continuation"]) == (18, 0, 1, 2)


def test_parse_timestamps_reads_utc_seconds_and_nulls_bad_values():
    seconds = parse_timestamps(pd.Series(["081109 203615", "081109 20361x", None]), "%y%m%d %H%M%S")
    assert seconds.iloc[0] == calendar.timegm((2008, 11, 9, 20, 36, 15))
    assert seconds.iloc[1:].isna().all()


@pytest.mark.parametrize(
    ("predicted", "true", "expected"),
    [
        (["a", "a", "b"], ["x", "x", "y"], 1.0),  # renamed ids, same grouping
        (["a", "a", "a"], ["x", "x", "y"], 0.0),  # one predicted group merges two true ones
        (["a", "b", "c", "c"], ["x", "x", "y", "y"], 0.5),  # a true group split: its lines are wrong
        ([1, 2, 2, 3], [7, 8, 8, 8], 0.25),
    ],
)
def test_grouping_accuracy(predicted, true, expected):
    assert grouping_accuracy(predicted, true) == pytest.approx(expected)


def test_grouping_accuracy_needs_equal_lengths():
    with pytest.raises(ValueError, match="2 predictions for 3 lines"):
        grouping_accuracy(["a", "b"], ["x", "y", "z"])


# ----------------------------------------------------------------------------- stage on real data


@pytest.mark.parametrize(
    ("name", "truth", "minimum"),
    [
        ("hdfs_logs", "HDFS/HDFS_2k.log_structured.csv", 0.978),
        ("bgl_logs", "BGL/BGL_2k.log_structured.csv", 0.943),
        ("openstack_2k", "OpenStack/OpenStack_2k.log_structured.csv", 0.713),
    ],
)
def test_grouping_accuracy_against_loghub_ground_truth(params, name, truth, minimum):
    """Drain with params' settings groups the 2k samples at least as well as required (loghub's hand labels)."""
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    lines, templates, metrics = read_parsed(params, name)
    expected = pd.read_csv(BUNDLED / truth)
    assert len(lines) == len(expected) == metrics["lines"] == metrics["parsed"] == 2000
    assert lines["line_number"].tolist() == expected["LineId"].tolist()
    assert lines["content"].tolist() == expected["Content"].tolist()
    accuracy = grouping_accuracy(lines["event_id"], expected["EventId"])
    assert accuracy >= minimum, f"{name}: grouping accuracy {accuracy:.4f} < {minimum}"
    assert metrics["templates"] == len(templates) == lines["event_id"].nunique()
    assert templates["count"].sum() == 2000
    assert metrics["parser"] == "Drain" and "lines_per_second" not in metrics  # timings are printed, not committed


def test_parse_accuracy_command_reports_each_ground_truth(params):
    """`make parse-accuracy` (zerolog.data.accuracy) gives the same GA as computing it by hand, per dataset."""
    from zerolog.data.accuracy import parse_accuracy

    for name in params.parse.ground_truth:
        build_raw_folder(params, name)
        call_stage("parse", params, name)
    results = parse_accuracy(params)
    assert set(results) == {"hdfs_logs", "bgl_logs", "openstack_2k"}
    lines, _, _ = read_parsed(params, "bgl_logs")
    expected = pd.read_csv(BUNDLED / params.parse.ground_truth["bgl_logs"])
    assert results["bgl_logs"] == grouping_accuracy(lines["event_id"], expected["EventId"])
    assert all(0.7 < accuracy <= 1.0 for accuracy in results.values())


def test_parse_accuracy_rejects_lines_that_are_not_the_sample(params):
    from zerolog.data.accuracy import parse_accuracy

    build_raw_folder(params, "hdfs_logs")
    call_stage("parse", params, "hdfs_logs")
    wrong = dataclasses.replace(params.parse, ground_truth={"hdfs_logs": params.parse.ground_truth["bgl_logs"]})
    with pytest.raises(DataError, match="lines are not the 2000 lines of"):
        parse_accuracy(dataclasses.replace(params, parse=wrong))


def test_bgl_line_labels_and_timestamps_come_from_the_header(params):
    build_raw_folder(params, "bgl_logs")
    call_stage("parse", params, "bgl_logs")
    lines, _, metrics = read_parsed(params, "bgl_logs")
    expected = pd.read_csv(BUNDLED / "BGL" / "BGL_2k.log_structured.csv", keep_default_na=False)
    assert lines["label"].tolist() == (expected["Label"] != "-").astype(int).tolist()
    assert metrics["anomalous_lines"] == int((expected["Label"] != "-").sum()) == 143
    assert lines["Node"].tolist() == expected["Node"].tolist()
    assert lines["level"].tolist() == expected["Level"].tolist()
    # The Time field is the machine's local time read as UTC; BGL's own epoch column (Timestamp) is true UTC, so
    # the two differ by the US Pacific offset (7 h in summer, 8 h in winter) up to the truncated fraction.
    offset_hours = (expected["Timestamp"].to_numpy() - np.floor(lines["timestamp"].to_numpy())) / 3600
    assert set(np.round(offset_hours, 6)) == {7.0, 8.0}
    assert metrics["timestamps_unparseable"] == 0


def test_skipped_lines_keep_their_numbers_and_status(params):
    """A line without header and a non-UTF-8 line inside a slice of HDFS_2k keep their rows; nothing is renumbered
    (the first continues the record before it: multiline.start header)."""
    original = HDFS_LINES[:100]
    garbage, non_utf8 = b"this line has no HDFS header\n", b"081109 203615 148 INFO dfs.X: caf\xe9 \xff\n"
    content = b"".join(original[:40] + [garbage] + original[40:70] + [non_utf8] + original[70:])
    write_raw_logs(params, "hdfs_logs", {"HDFS_slice.log": content})
    call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_parsed(params, "hdfs_logs")

    assert lines["line_number"].tolist() == list(range(1, 103))
    status = dict(zip(lines["line_number"], lines["status"], strict=True))
    assert status[41] == "continuation" and status[72] == "non_utf8"
    assert sum(value == "parsed" for value in status.values()) == 100
    bad = lines[lines["line_number"].isin([41, 72])]
    assert bad["event_id"].isna().all() and bad["template"].isna().all()
    assert bad["content"].tolist()[0] == "this line has no HDFS header" and bad["content"].isna().tolist()[1]
    parsed = lines[lines["status"] == "parsed"]
    expected_content = [line.decode().strip().split(": ", 1)[1] for line in original]
    assert parsed["content"].tolist() == expected_content
    assert parsed["event_id"].notna().all()
    assert (metrics["lines"], metrics["parsed"], metrics["unmatched"], metrics["non_utf8"]) == (102, 100, 0, 1)
    assert metrics["continuation"] == 1


def test_unparseable_timestamps_are_null_and_counted(params):
    content = b"".join(HDFS_LINES[:20]).replace(b"081109 203615", b"08x109 203615", 1)
    write_raw_logs(params, "hdfs_logs", {"HDFS_slice.log": content})
    call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_parsed(params, "hdfs_logs")
    assert metrics["timestamps_unparseable"] == 1
    assert np.isnan(lines["timestamp"].iloc[0]) and lines["timestamp"].iloc[1:].notna().all()


def test_multi_file_dataset_shares_one_template_set(params):
    """openstack_instances: both files are parsed together; the same message gets the same event in each."""
    logs = {}
    for source in params.datasets["openstack_instances"].files["logs"]:
        with gzip.open(Path(params.paths.bundled) / source, "rb") as handle:
            logs[Path(source).stem] = b"".join(handle.readlines()[:150])
    write_raw_logs(params, "openstack_instances", logs)
    call_stage("parse", params, "openstack_instances")
    lines, templates, metrics = read_parsed(params, "openstack_instances")
    assert lines.groupby("file_index")["line_number"].apply(list).tolist() == [list(range(1, 151))] * 2
    assert [entry["lines"] for entry in metrics["files"]] == [150, 150]
    by_file = lines.groupby("file_index")["template"].apply(set)
    assert by_file[0] & by_file[1], "the two runs log the same lifecycle events"
    assert templates["template"].is_unique and templates["event_id"].is_unique
    creating = lines[lines["content"].str.endswith("] Creating image")]
    assert creating["file_index"].nunique() == 2 and creating["event_id"].nunique() == 1


def test_masking_regexes_reach_drain(params):
    """The system's masking regexes are applied before Drain: block ids do not split a template."""
    contents = b"".join(b"081109 2036%02d 1 INFO dfs.X: open file blk_%d now\n" % (i, i * 7) for i in range(20))
    write_raw_logs(params, "hdfs_logs", {"HDFS_masked.log": contents})
    call_stage("parse", params, "hdfs_logs")
    lines, templates, _ = read_parsed(params, "hdfs_logs")
    assert lines["template"].unique().tolist() == ["open file <*> now"] and templates["count"].tolist() == [20]


def test_events_dataset_maps_event_ids_to_templates(params):
    folder = build_raw_folder(params, "bgl_100k")
    lines_path = folder / "BGL_100k_events.csv.gz"
    with gzip.open(lines_path, "rt", encoding="utf-8") as handle:
        head = [next(handle) for _ in range(501)]  # header + 500 lines
    with gzip.open(lines_path, "wt", encoding="utf-8") as handle:
        handle.writelines(head)
    call_stage("parse", params, "bgl_100k")
    lines, templates, metrics = read_parsed(params, "bgl_100k")
    table = pd.read_csv(BUNDLED / "BGL" / "BGL_100k_templates.csv").set_index("EventId")["EventTemplate"]
    rows = pd.read_csv(lines_path, dtype=str, keep_default_na=False)
    assert lines["line_number"].tolist() == list(range(1, 501))
    assert lines["event_id"].tolist() == rows["event_id"].tolist()
    assert lines["template"].tolist() == rows["event_id"].map(table).tolist()
    assert lines["label"].tolist() == (rows["label"] != "-").astype(int).tolist()
    assert lines["content"].isna().all() and (lines["status"] == "parsed").all()
    assert lines["timestamp"].iloc[0] == pytest.approx(calendar.timegm((2005, 6, 3, 15, 42, 50)) + 0.363779)
    assert metrics["parser"] == "preparsed" and metrics["templates"] == len(templates) == rows["event_id"].nunique()


def test_deeplog_sessions_become_one_row_per_event(params):
    write_deeplog_raw(params, normal=b"5 5 22 11 9 \n5 22 \n", abnormal=b"5 22 7 \n")
    call_stage("parse", params, "hdfs_deeplog")
    lines, _, _ = read_parsed(params, "hdfs_deeplog")
    assert lines["session_key"].tolist() == ["normal:1"] * 5 + ["normal:2"] * 2 + ["abnormal:1"] * 3
    assert lines["line_number"].tolist() == [1] * 5 + [2] * 2 + [1] * 3
    assert lines["file_index"].tolist() == [0] * 7 + [1] * 3
    assert lines["label"].tolist() == [0] * 7 + [1] * 3
    assert lines["event_id"].tolist()[:3] == ["E5", "E5", "E22"]
    assert lines["template"].iloc[0] == "<*>Receiving block<*>src:<*>dest:<*>"


def test_jsonl_sessions_keep_block_ids_and_labels(params):
    folder = Path(params.paths.raw) / "hdfs_100k"
    folder.mkdir(parents=True)
    records = [
        {"block_id": "blk_1", "label": 0, "templates": ["a <*>", "b"]},
        {"block_id": "blk_-2", "label": 1, "templates": ["b"]},
    ]
    with gzip.open(folder / "sessions.jsonl.gz", "wt") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)
    write_manifest(folder, "hdfs_100k", "sessions", {"sessions": "sessions.jsonl.gz"})
    call_stage("parse", params, "hdfs_100k")
    lines, templates, _ = read_parsed(params, "hdfs_100k")
    assert lines["session_key"].tolist() == ["blk_1", "blk_1", "blk_-2"]
    assert lines["label"].tolist() == [0, 0, 1] and lines["line_number"].tolist() == [1, 1, 2]
    assert lines["event_id"].tolist() == [template_event_id(t) for t in ["a <*>", "b", "b"]]
    assert dict(zip(templates["template"], templates["count"], strict=True)) == {"b": 2, "a <*>": 1}


# ----------------------------------------------------------------------------- errors


def _missing_log(params):
    folder = write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(HDFS_LINES[:10])})
    (folder / "HDFS_2k.log").unlink()
    return "HDFS_2k.log: log file not found"


def _empty_log(params):
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b""})
    return "HDFS_2k.log: empty log file"


def _format_matches_nothing(params):
    # HDFS's format is lenient (any 5 tokens, then ": "), so use lines with no colon at all.
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(b"free text line %d\n" % i for i in range(30))})
    return "HDFS_2k.log: log format of systems.hdfs.log_format matches none of 30 lines"


def _too_many_unmatched(params):
    lines = list(HDFS_LINES[:100])
    for position in range(6):  # before the file's first record: 6% > parse.max_unmatched_share 5%
        lines[position] = b"no header here\n"
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(lines)})
    return "HDFS_2k.log: 6 of 100 lines (6.0%) do not match systems.hdfs.log_format"


def _unknown_event_id(params):
    folder = build_raw_folder(params, "bgl_100k")
    (folder / "BGL_100k_events.csv.gz").write_bytes(
        gzip.compress(b"label,time,event_id\n-,2005-06-03-15.42.50.363779,E189\n-,2005-06-03-15.42.50.527847,E9999\n")
    )
    return "BGL_100k_events.csv.gz: line 3: unknown event id 'E9999'"


def _unknown_deeplog_id(params):
    write_deeplog_raw(params, normal=b"5 22 \n5 99 \n", abnormal=b"5 \n")
    return "normal: line 2: unknown event id '99'"


def _missing_manifest(params):
    return "hdfs_logs/manifest.json: manifest not found"


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (_missing_log, "hdfs_logs"),
        (_empty_log, "hdfs_logs"),
        (_format_matches_nothing, "hdfs_logs"),
        (_too_many_unmatched, "hdfs_logs"),
        (_unknown_event_id, "bgl_100k"),
        (_unknown_deeplog_id, "hdfs_deeplog"),
        (_missing_manifest, "hdfs_logs"),
    ],
)
def test_bad_input_is_a_one_line_data_error_and_writes_nothing(params, make, name):
    message = make(params)
    with pytest.raises(DataError) as caught:
        call_stage("parse", params, name)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert outputs_absent(params, name)


def test_unmatched_share_error_names_the_first_bad_line(params):
    _too_many_unmatched(params)
    with pytest.raises(DataError, match=r"first at line 1$"):
        call_stage("parse", params, "hdfs_logs")


def test_unmatched_lines_below_the_limit_are_kept(params):
    lines = list(HDFS_LINES[:100])
    lines[0] = b"no header here\n"  # before the first record: belongs to none
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(lines)})
    call_stage("parse", params, "hdfs_logs")
    assert read_parsed(params, "hdfs_logs")[2]["unmatched"] == 1


def test_an_unknown_dataset_is_a_config_error_and_writes_nothing(params):
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(HDFS_LINES[:10])})
    with pytest.raises(ConfigError, match="dataset 'nonesuch' is not in params"):
        call_stage("parse", params, "nonesuch")
    assert outputs_absent(params, "nonesuch")


def _epoch_log(tmp_path: Path, stamps: list[str]) -> Params:
    """A raw dataset `epoch_logs` of system hdfs whose lines start with epoch seconds: '<Time> <Level> <Content>'."""
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / "epoch.log").write_text("".join(f"{stamp} INFO block blk_{index} served\n"
                                               for index, stamp in enumerate(stamps)))  # fmt: skip
    params = make_params(tmp_path, {
        "paths.bundled": str(bundled),
        "systems.hdfs.log_format": "<Time> <Level> <Content>",
        "systems.hdfs.timestamp": {"fields": ["Time"], "format": "%s"},
        "datasets.hdfs_logs.files": {"logs": ["epoch.log"]},
        "datasets.hdfs_logs.label": None,
    })  # fmt: skip
    call_stage("download", params, "hdfs_logs")
    return params


def test_epoch_seconds_timestamps_are_read_with_percent_s(tmp_path: Path) -> None:
    params = _epoch_log(tmp_path, ["1117838570", "1117838571.25", "1117838575"])
    call_stage("parse", params, "hdfs_logs")
    lines = pd.read_parquet(Path(params.paths.parsed) / "hdfs_logs" / "lines.parquet")
    assert lines["timestamp"].tolist() == [1117838570.0, 1117838571.25, 1117838575.0]


def test_a_timestamp_format_that_reads_nothing_fails_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    params = _epoch_log(tmp_path, ["1117838570", "1117838571", "1117838575"])
    params = dataclasses.replace(
        params,
        systems={
            **params.systems,
            "hdfs": dataclasses.replace(
                params.systems["hdfs"], timestamp=dataclasses.replace(params.systems["hdfs"].timestamp, format="%y%m%d")
            ),
        },
    )
    with pytest.raises(
        DataError,
        match=r"^systems\.hdfs\.timestamp\.format: '%y%m%d' reads no time from 3 of 3 "
        r"parsed lines of hdfs_logs \(100\.0% > parse\.max_unreadable_time_share",
    ):
        call_stage("parse", params, "hdfs_logs")
    assert not (Path(params.paths.parsed) / "hdfs_logs").exists()


def test_many_continuation_lines_warn_that_the_format_may_be_too_strict(params, capsys):
    """Records the format does not fit are read as continuation lines: above parse.max_unmatched_share of the lines
    the stage says so (and still writes its output: long tracebacks are legitimate)."""
    lines = list(HDFS_LINES[:50]) + [b"081109 203615 148 INFO no colon after the component here\n"] * 10
    write_raw_logs(params, "hdfs_logs", {"HDFS_2k.log": b"".join(lines)})
    call_stage("parse", params, "hdfs_logs")
    message = capsys.readouterr().err
    assert "warning: hdfs_logs: 10 of 60 lines (16.7%) continue a multi-line record" in message
    assert "systems.hdfs.log_format is too strict" in message
    assert read_parsed(params, "hdfs_logs")[2]["continuation"] == 10
