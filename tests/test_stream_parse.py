"""Tests of the streaming parse (src/zerolog/data/stream_parse.py, matcher.py) against the in-memory Drain parse.

The claim under test: same input, same Drain settings -> the same lines.parquet and templates.parquet as
parse.py's logparser3 run, line for line, whatever the chunk size, sample size or number of worker processes,
in memory that does not grow with the file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from logparser.Drain import LogParser
from raw_fixtures import build_raw_folder, project_params, write_raw_logs

from zerolog.data.matcher import DrainMiner
from zerolog.data.parse import grouping_accuracy, parse_dataset, parser_arguments
from zerolog.data.stream_parse import (
    line_layout,
    new_miner,
    parse_chunk,
    read_chunks,
    resolve_chunk,
    stream_parse_dataset,
)
from zerolog.errors import DataError

REPOSITORY = Path(__file__).resolve().parents[1]
BUNDLED = REPOSITORY / "data" / "bundled"
TRUTH = {
    "hdfs_logs": "HDFS/HDFS_2k.log_structured.csv",
    "bgl_logs": "BGL/BGL_2k.log_structured.csv",
    "openstack_2k": "OpenStack/OpenStack_2k.log_structured.csv",
}


def streaming_params(tmp_path: Path, chunk_lines: int, sample_lines: int, workers: int, row_group_lines: int = 100):
    params = project_params(tmp_path)
    streaming = dataclasses.replace(
        params.parse.streaming,
        enabled=True,
        chunk_lines=chunk_lines,
        sample_lines=sample_lines,
        workers=workers,
        row_group_lines=row_group_lines,
    )
    return dataclasses.replace(params, parse=dataclasses.replace(params.parse, streaming=streaming))


def read_output(params, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = Path(params.paths.parsed) / name
    metrics = json.loads((Path(params.paths.metrics) / "parse" / f"{name}.json").read_text())
    return pd.read_parquet(folder / "lines.parquet"), pd.read_parquet(folder / "templates.parquet"), metrics


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory):
    """parse.py's output for each bundled raw sample (computed once per module)."""
    results = {}
    for name in (*TRUTH, "openstack_instances"):
        params = project_params(tmp_path_factory.mktemp(f"memory-{name}"))
        build_raw_folder(params, name)
        parse_dataset(params, name)
        results[name] = (params, *read_output(params, name))
    return results


# ----------------------------------------------------------------------------- matcher


def logparser3_templates(contents: list[str], arguments: dict, masking: list[str], folder: Path) -> list[str]:
    """Each message's template from logparser3's own Drain ``parse`` loop (its input DataFrame given directly)."""
    frame = pd.DataFrame({"LineId": range(1, len(contents) + 1), "Content": contents})
    parser = LogParser(log_format="<Content>", indir=str(folder), outdir=str(folder), rex=masking,
                       keep_para=False, **arguments)
    parser.load_data = lambda: setattr(parser, "df_log", frame.copy())
    parser.outputResult = lambda clusters: setattr(parser, "clusters", clusters)
    with contextlib.redirect_stdout(io.StringIO()):
        parser.parse("lines")
    templates = [""] * len(contents)
    for cluster in parser.clusters:
        for line_id in cluster.logIDL:
            templates[line_id - 1] = " ".join(cluster.logTemplate)
    return templates


@pytest.mark.parametrize(
    ("system", "log_file", "repeat"),
    [("hdfs", "HDFS/HDFS_2k.log", 3), ("bgl", "BGL/BGL_2k.log", 1), ("openstack", "OpenStack/OpenStack_2k.log", 1)],
)
def test_miner_gives_logparser3_drain_templates_line_for_line(tmp_path, system, log_file, repeat):
    """DrainMiner fed message by message ends with the template logparser3's Drain gives every line.

    HDFS is repeated three times: its ``BLOCK* ask <*> to delete <*> ...`` lines make a new (duplicate) cluster
    each time, the case the representative shortcut must get right.
    """
    params = project_params(tmp_path)
    settings = params.systems[system]
    layout = line_layout(system, settings, None, "test")
    contents = []
    for chunk in read_chunks([BUNDLED / log_file] * repeat, 10**6):
        result = parse_chunk(chunk, layout, new_miner(system, settings))
        contents += [text for text in result.table.column("content").to_pylist() if text and text.strip()]
    arguments = parser_arguments("Drain", settings.parser_settings["Drain"], "test")
    expected = logparser3_templates(contents, arguments, settings.regex, tmp_path)

    miner = DrainMiner(arguments, settings.regex)
    clusters = [miner.assign(miner.mask(content)) for content in contents]
    assert [miner.template(cluster) for cluster in clusters] == expected
    if system == "hdfs":
        assert len(miner.clusters) > len(set(miner.templates())), "expected shadowed duplicate clusters"


def test_matching_copy_answers_like_the_live_miner(tmp_path):
    """A copy's (cluster, leaf, leaf version) answer equals the live miner's, and a copy refuses to change."""
    params = project_params(tmp_path)
    settings = params.systems["bgl"]
    miner = new_miner("bgl", settings)
    layout = line_layout("bgl", settings, None, "test")
    (chunk,) = read_chunks([BUNDLED / "BGL/BGL_2k.log"], 10**6)
    result = parse_chunk(chunk, layout, miner)
    for key in result.keys[:1200]:
        miner.assign(key)
    copy = pickle.loads(miner.matching_copy())
    answers = [copy.match(key.split()) for key in result.keys]
    assert answers == [miner.match(key.split()) for key in result.keys]
    assert sum(answer[0] >= 0 for answer in answers) > 100  # most keys are placed by the copy
    with pytest.raises(RuntimeError, match="matching copy"):
        copy.add(result.keys[-1].split())


# ----------------------------------------------------------------------------- equal to the in-memory parse


@pytest.mark.parametrize(
    ("name", "chunk_lines", "sample_lines", "workers"),
    [
        ("hdfs_logs", 97, 300, 1),
        ("bgl_logs", 250, 0, 1),
        ("openstack_2k", 128, 500, 1),
        ("hdfs_logs", 2000, 2000, 1),  # one chunk: all mined in the main process
        ("openstack_instances", 1500, 1500, 2),  # two worker processes, two log files (one gzip each)
    ],
)
def test_streaming_parse_equals_the_in_memory_drain_parse(tmp_path, in_memory, name, chunk_lines, sample_lines, workers):
    """Same lines.parquet (values, dtypes, schema with its pandas metadata) and templates.parquet as parse.py."""
    memory_params, expected_lines, expected_templates, expected_metrics = in_memory[name]
    params = streaming_params(tmp_path, chunk_lines, sample_lines, workers, row_group_lines=3 * chunk_lines)
    build_raw_folder(params, name)
    stream_parse_dataset(params, name)
    lines, templates, metrics = read_output(params, name)

    pd.testing.assert_frame_equal(lines, expected_lines)
    pd.testing.assert_frame_equal(templates, expected_templates)
    ours = pq.read_schema(Path(params.paths.parsed) / name / "lines.parquet")
    theirs = pq.read_schema(Path(memory_params.paths.parsed) / name / "lines.parquet")
    assert ours.equals(theirs, check_metadata=True)
    for key, value in expected_metrics.items():
        if key not in ("seconds", "lines_per_second"):
            assert metrics[key] == value, key
    streaming = metrics["streaming"]
    assert streaming["chunks"] == sum(-(-count["lines"] // chunk_lines) for count in metrics["files"])
    assert streaming["workers"] == workers
    if name == "hdfs_logs" and chunk_lines == 97:
        # a template gained a <*> after some of its lines were written: the rewrite pass ran
        assert streaming["rewritten"] and streaming["miner_changes_after_sample"] > 0


@pytest.mark.parametrize("name", list(TRUTH))
def test_grouping_accuracy_equals_drain_and_ground_truth(tmp_path, in_memory, name):
    """Grouping accuracy of streaming vs in-memory Drain is 1 (identical grouping), and both score the same
    against loghub's hand-made ground truth (*_structured.csv)."""
    _, expected_lines, _, _ = in_memory[name]
    params = streaming_params(tmp_path, chunk_lines=61, sample_lines=200, workers=1)
    build_raw_folder(params, name)
    stream_parse_dataset(params, name)
    lines, _, _ = read_output(params, name)
    truth = pd.read_csv(BUNDLED / TRUTH[name])["EventId"]
    assert grouping_accuracy(lines["event_id"], expected_lines["event_id"]) == 1.0
    ours, drain = grouping_accuracy(lines["event_id"], truth), grouping_accuracy(expected_lines["event_id"], truth)
    assert abs(ours - drain) <= 0.005
    assert ours > 0.7


# ----------------------------------------------------------------------------- chunks and sessions


@pytest.mark.parametrize(("name", "crossing"), [("openstack_2k", 20), ("hdfs_logs", 3)])
def test_chunk_boundary_inside_a_session_keeps_the_session_whole(tmp_path, name, crossing):
    """Sessions (OpenStack instances, HDFS blocks) cut by 7-line chunks keep every line, in order, with the
    one-chunk parse's templates."""
    outputs = {}
    for chunk_lines in (7, 10**6):
        params = streaming_params(tmp_path / str(chunk_lines), chunk_lines, sample_lines=0, workers=1, row_group_lines=7)
        build_raw_folder(params, name)
        stream_parse_dataset(params, name)
        lines, _, _ = read_output(params, name)
        key_regex = params.datasets[name].session.key_regex
        lines["session"] = lines["content"].str.extract(key_regex, expand=False)
        outputs[chunk_lines] = lines
    small, whole = outputs[7], outputs[10**6]
    pd.testing.assert_frame_equal(small, whole)

    def sessions(lines):
        return {key: list(zip(group["line_number"], group["template"])) for key, group in lines.groupby("session")}

    assert sessions(small) == sessions(whole)
    assert sum(len(rows) for rows in sessions(small).values()) == small["session"].notna().sum()
    chunk_of_line = (small["line_number"] - 1) // 7
    spans = chunk_of_line.groupby(small["session"]).nunique()
    assert (spans > 1).sum() >= crossing, "the test needs sessions that cross chunk boundaries"


def test_resolve_chunk_ignores_stale_copy_answers(tmp_path):
    """A chunk matched against an old copy gets, after the live miner has moved on, the live miner's clusters."""
    params = project_params(tmp_path)
    settings = params.systems["hdfs"]
    layout = line_layout("hdfs", settings, None, "test")
    chunks = list(read_chunks([BUNDLED / "HDFS/HDFS_2k.log"], 400))
    miner = new_miner("hdfs", settings)
    stale_copy = pickle.loads(miner.matching_copy())  # empty: knows no template
    sequential = new_miner("hdfs", settings)
    for chunk in chunks:
        late = parse_chunk(chunk, layout, stale_copy)
        fresh = parse_chunk(chunk, layout, sequential)
        assert resolve_chunk(late, miner).tolist() == resolve_chunk(fresh, sequential).tolist()
    assert miner.templates() == sequential.templates()


# ----------------------------------------------------------------------------- bad input


def test_unmatched_and_non_utf8_lines_are_kept_like_parse_py(tmp_path):
    """A line of another format and a line with a bad byte keep their rows, numbers and statuses, as in parse.py."""
    good = (BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)[:400]
    content = b"".join(good[:150]) + b"not an HDFS line\n" + b"".join(good[150:300]) + b"\xff\xfe bad\n" + b"".join(good[300:])
    results = []
    for streaming in (False, True):
        params = streaming_params(tmp_path / str(streaming), chunk_lines=50, sample_lines=0, workers=1)
        write_raw_logs(params, "hdfs_logs", {"HDFS_mixed.log": content},
                       {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()})
        (stream_parse_dataset if streaming else parse_dataset)(params, "hdfs_logs")
        results.append(read_output(params, "hdfs_logs"))
    (memory_lines, memory_templates, memory_metrics), (lines, templates, metrics) = results
    pd.testing.assert_frame_equal(lines, memory_lines)
    pd.testing.assert_frame_equal(templates, memory_templates)
    assert lines.loc[lines["status"] != "parsed", ["line_number", "status"]].values.tolist() == [
        [151, "unmatched"],
        [302, "non_utf8"],
    ]
    assert metrics["unmatched"] == metrics["non_utf8"] == 1 == memory_metrics["unmatched"]


def test_too_many_bad_lines_is_a_one_line_error_and_writes_nothing(tmp_path):
    params = streaming_params(tmp_path, chunk_lines=10, sample_lines=0, workers=1)
    good = (BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)[:40]
    write_raw_logs(params, "hdfs_logs", {"HDFS_bad.log": b"".join(good) + b"garbage\n" * 10},
                   {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()})
    with pytest.raises(DataError) as error:
        stream_parse_dataset(params, "hdfs_logs")
    message = str(error.value)
    assert "\n" not in message and "HDFS_bad.log" in message and "first at line 41" in message
    parsed = Path(params.paths.parsed)
    assert not parsed.exists() or not any(parsed.iterdir())
    assert not (Path(params.paths.metrics) / "parse" / "hdfs_logs.json").exists()


# ----------------------------------------------------------------------------- bounded memory


PEAK_RSS_SCRIPT = """
import dataclasses, sys, tempfile
from pathlib import Path
from zerolog.config import load_params
from zerolog.data.stream_parse import line_layout, new_miner, stream_parse_files
params = load_params(sys.argv[1])
streaming = dataclasses.replace(params.parse.streaming, chunk_lines=10_000, sample_lines=10_000, workers=1,
                                row_group_lines=20_000)
parse = dataclasses.replace(params.parse, streaming=streaming)
system = params.systems["hdfs"]
output = Path(tempfile.mkdtemp(dir=sys.argv[3]))
summary = stream_parse_files([Path(sys.argv[2])], line_layout("hdfs", system, None, "bench"), new_miner("hdfs", system),
                             parse, output, "memory test", "systems.hdfs.log_format")
# VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) RSS over exec into ru_maxrss.
high_water = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(summary.lines, high_water)
"""


def peak_rss_kib(log_file: Path, scratch: Path) -> tuple[int, int]:
    """(lines parsed, peak RSS in KiB) of a streaming parse run in a fresh subprocess."""
    completed = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(REPOSITORY / "params.yaml"), str(log_file), str(scratch)],
        capture_output=True, text=True, check=True, cwd=REPOSITORY,
    )
    lines, peak = completed.stdout.split()
    return int(lines), int(peak)


def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Peak RSS parsing 200k generated lines stays within 40 MiB of parsing 50k (the same chunk and row-group
    sizes): memory is bounded by chunks, not by the file. Measured here: about +5 MiB for 4x the lines (the
    in-memory parse grows by hundreds of MiB)."""
    sys.path.insert(0, str(REPOSITORY / "bench"))
    try:
        import generate
    finally:
        sys.path.remove(str(REPOSITORY / "bench"))
    peaks = {}
    for lines in (50_000, 200_000):
        log_file = tmp_path / f"HDFS_{lines}.log"
        generate.generate(log_file, lines)
        parsed, peaks[lines] = peak_rss_kib(log_file, tmp_path)
        assert parsed == lines
    growth_mib = (peaks[200_000] - peaks[50_000]) / 1024
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB from 50k to 200k lines"
    assert peaks[200_000] / 1024 < 600, f"peak RSS {peaks[200_000] / 1024:.0f} MiB"


# ----------------------------------------------------------------------------- vectorised building blocks


@pytest.mark.parametrize(
    ("pattern", "equivalent"),
    [
        (r"blk_-?\d+", True),
        (r"(\d+\.){3}\d+(:\d+)?", True),
        (r"/.+?\s", True),
        (r"\d*", False),  # matches the empty string: the engines step past empty matches differently
        (r"(?<=a)b", False),  # look-behind: not RE2
        (r"[[:digit:]]+", False),  # a POSIX class in RE2, a character set in Python
        (r"x{,2}", False),  # {0,2} in Python, literal in RE2
        (r"(a)\1", False),  # back-reference: not RE2
    ],
)
def test_re2_equivalent_accepts_only_patterns_both_engines_read_alike(pattern, equivalent):
    from zerolog.data.matcher import re2_equivalent

    assert re2_equivalent(pattern) is equivalent


@pytest.mark.parametrize("system", ["hdfs", "bgl", "openstack"])
def test_vectorised_masking_equals_python_masking(tmp_path, system):
    """RE2 masking of safe text (and Python masking of the rest) equals logparser3's regex.sub, message by message,
    on the real samples plus messages with non-ASCII text, a vertical tab and a file separator."""
    params = project_params(tmp_path)
    settings = params.systems[system]
    miner = new_miner(system, settings)
    assert miner.vector_masking
    log_file = {"hdfs": "HDFS/HDFS_2k.log", "bgl": "BGL/BGL_2k.log", "openstack": "OpenStack/OpenStack_2k.log"}[system]
    (chunk,) = read_chunks([BUNDLED / log_file], 10**6)
    contents = [text for text in parse_chunk(chunk, line_layout(system, settings, None, "t"), miner).table.column(
        "content").to_pylist() if text and text.strip()]
    contents += [f"{contents[0]} caf\u00e9 \u0663\u0664 10.1.2.3", f"{contents[1]}\x0b 42 ", f"\x1c{contents[2]}\x1f 7"]
    assert miner.mask_array(contents).to_pylist() == [miner.mask(content) for content in contents]


def test_fast_timestamps_equal_pandas_on_valid_and_odd_values():
    """timestamp_seconds gives parse.py's parse_timestamps values exactly: valid fixed-width values (fast path),
    and odd ones (short fields, second 60, Feb 29 of a non-leap year, month 13, spaces) through pandas."""
    import random

    import numpy as np

    from zerolog.data.parse import parse_timestamps
    from zerolog.data.stream_parse import timestamp_seconds

    generator = random.Random(7)
    for timestamp_format in ("%y%m%d %H%M%S", "%Y-%m-%d-%H.%M.%S.%f", "%Y-%m-%d %H:%M:%S.%f"):
        values = []
        for _ in range(3000):
            year, month, day = generator.randint(1960, 2070), generator.randint(0, 13), generator.randint(0, 32)
            hour, minute, second = generator.randint(0, 24), generator.randint(0, 60), generator.randint(0, 61)
            text = (timestamp_format.replace("%Y", f"{year:04d}").replace("%y", f"{year % 100:02d}")
                    .replace("%m", f"{month:02d}").replace("%d", f"{day:02d}").replace("%H", f"{hour:02d}")
                    .replace("%M", f"{minute:02d}").replace("%S", f"{second:02d}")
                    .replace("%f", str(generator.randint(0, 999_999)).zfill(6)[: generator.choice([6, 6, 3, 1])]))
            if generator.random() < 0.05:
                text = text[:-1]
            if generator.random() < 0.05:
                text = " " + text
            values.append(text)
        values += ["081109 235960", "090229 000000", "080229 000000", "690101 000000", "681231 235959"]
        expected = parse_timestamps(pd.Series(values, dtype="object"), timestamp_format).to_numpy()
        ours = timestamp_seconds(values, timestamp_format)
        same = (np.isnan(expected) & np.isnan(ours)) | (expected == ours)
        assert same.all(), [(values[index], expected[index], ours[index]) for index in np.flatnonzero(~same)[:3]]
        assert np.isfinite(ours).sum() > 1000
