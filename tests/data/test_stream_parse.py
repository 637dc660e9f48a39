"""Tests of the parse engine for raw logs (src/zerolog/data/stream_parse.py, matcher.py) against logparser3.

The claim under test: the parse stage gives, line for line, what logparser3's own Drain run over the whole input
gives (the reference below: logparser3's header regex, its ``LogParser.parse`` loop over the messages, pandas'
``to_datetime``), whatever the chunk size, the sample size or the pool, in memory that does not grow with the
file. logparser3 stays a dependency for this reason and because ``DrainMiner`` drives its Drain steps.
Dask (a LocalCluster, a killed worker): tests/data/test_dask_parse.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import io
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import call_stage
from logparser.Drain import LogParser
from raw_fixtures import BUNDLED, REPOSITORY, build_raw_folder, import_bench, project_params, write_raw_logs

from zerolog.artifacts import ArtifactPaths
from zerolog.config import MultilineRule, ParallelConfig
from zerolog.config_loader import load_params
from zerolog.data.datasets import open_binary, template_event_id
from zerolog.data.matcher import DrainMiner
from zerolog.data.parse import grouping_accuracy, log_file_paths, read_manifest
from zerolog.data.stream_parse import (
    LineChunk,
    StreamSummary,
    TemplateDictionary,
    clusters_path,
    header_regex,
    line_layout,
    new_miner,
    parse_chunk,
    parse_chunk_task,
    part_path,
    plan_chunks,
    resolve_chunk,
    template_growth,
    write_part_task,
)
from zerolog.errors import DataError

TRUTH = {
    "hdfs_logs": "HDFS/HDFS_2k.log_structured.csv",
    "bgl_logs": "BGL/BGL_2k.log_structured.csv",
    "openstack_2k": "OpenStack/OpenStack_2k.log_structured.csv",
}
RAW_DATASETS = (*TRUTH, "openstack_instances")


def engine_params(tmp_path: Path, chunk_bytes: int, sample_lines: int, backend: str = "processes", workers: int = 1):
    params = project_params(tmp_path)
    parse = dataclasses.replace(
        params.parse,
        chunk_bytes=chunk_bytes,
        sample_lines=sample_lines,
        parallel=ParallelConfig(backend=backend, workers=workers, scheduler_address=None),
    )
    return dataclasses.replace(params, parse=parse)


def with_multiline(params, name: str, start: str = "header", events: str = "first_line"):
    """``params`` with dataset ``name``'s multi-line record rule set."""
    dataset = dataclasses.replace(params.datasets[name], multiline=MultilineRule(start=start, events=events))
    return dataclasses.replace(params, datasets={**params.datasets, name: dataset})


def read_output(params, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = Path(params.paths.parsed) / name
    metrics = json.loads((Path(params.paths.reports) / "data" / "parse" / f"{name}.json").read_text())
    return pd.read_parquet(folder / "lines.parquet"), pd.read_parquet(folder / "templates.parquet"), metrics


# ----------------------------------------------------------------------------- the reference: logparser3


def logparser3_templates(contents: list[str], system, folder: Path) -> list[str]:
    """Each message's template from logparser3's own Drain ``parse`` loop (its input DataFrame given directly)."""
    frame = pd.DataFrame({"LineId": range(1, len(contents) + 1), "Content": contents})
    drain = system.drain
    parser = LogParser(
        log_format="<Content>",
        indir=str(folder),
        outdir=str(folder),
        rex=system.regex,
        keep_para=False,
        depth=drain.depth,
        st=drain.similarity_threshold,
        maxChild=drain.max_children,
    )
    parser.load_data = lambda: setattr(parser, "df_log", frame.copy())
    parser.outputResult = lambda clusters: setattr(parser, "clusters", clusters)
    with contextlib.redirect_stdout(io.StringIO()):
        parser.parse("lines")
    templates = [""] * len(contents)
    for cluster in parser.clusters:
        for line_id in cluster.logIDL:
            templates[line_id - 1] = " ".join(cluster.logTemplate)
    return templates


def reference_lines(params, name: str, scratch: Path) -> pd.DataFrame:
    """``lines`` as logparser3 gives them: its header regex on each stripped line (split on ``\\n``, UTF-8 per
    line), its Drain over the non-blank messages of all files in order, pandas for the timestamps. Multi-line
    records (``multiline.start: header``): a UTF-8 line that does not match, after a file's first matched line, is a
    continuation line with its stripped text as content (and, ``events: each_line``, a Drain message when not
    blank)."""
    dataset = params.datasets[name]
    system = params.systems[dataset.system]
    multiline = dataset.multiline
    folder, manifest = read_manifest(ArtifactPaths(params.paths), name, "raw", ["logs"])
    fields, regex = LogParser(system.log_format).generate_logformat_regex(system.log_format)
    rows = []
    for file_index, path in enumerate(log_file_paths(folder, manifest)):
        with open_binary(path) as handle:
            raw_lines = handle.read().split(b"\n")
        if raw_lines[-1] == b"":
            raw_lines.pop()
        in_record = False
        for line_number, raw in enumerate(raw_lines, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                rows.append((file_index, line_number, None, "non_utf8"))
                continue
            found = regex.search(text.strip())
            in_record = in_record or found is not None
            if found is None and in_record and multiline.start == "header":
                rows.append((file_index, line_number, {"Content": text.strip()}, "continuation"))
                continue
            values = {field: found.group(field) for field in fields} if found else None
            rows.append((file_index, line_number, values, "parsed" if found else "unmatched"))
    each_line = multiline.events == "each_line"
    messages = [
        values["Content"]
        for _, _, values, status in rows
        if values and values["Content"].strip() and (status == "parsed" or each_line)
    ]
    templates = iter(logparser3_templates(messages, system, scratch))
    columns: dict[str, list] = {"file_index": [], "line_number": [], "stamp": [], "template": [], "status": []}
    for field in fields:
        columns[field] = []
    for file_index, line_number, values, status in rows:
        columns["file_index"].append(file_index)
        columns["line_number"].append(line_number)
        columns["status"].append(status)
        parsed = status == "parsed"
        for field in fields:
            columns[field].append(values.get(field) if values else None)
        stamp = " ".join(values[field] for field in system.timestamp.fields) if parsed else None
        columns["stamp"].append(stamp)
        message = values is not None and bool(values["Content"].strip()) and (parsed or each_line)
        template = next(templates) if message else "" if parsed else None
        columns["template"].append(template)
    return _reference_frame(columns, fields, system, dataset)


def _reference_frame(columns: dict, fields: list[str], system, dataset) -> pd.DataFrame:
    parsed = pd.to_datetime(
        pd.Series(columns["stamp"], dtype="object"), format=system.timestamp.format, errors="coerce", utc=True
    )
    frame = pd.DataFrame(
        {
            "file_index": pd.Series(columns["file_index"], dtype="int16"),
            "line_number": pd.Series(columns["line_number"], dtype="int64"),
            "timestamp": ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).astype("float64"),
            "level": pd.Series(columns.get("Level", [None] * len(columns["status"])), dtype="string"),
            "component": pd.Series(columns.get("Component", [None] * len(columns["status"])), dtype="string"),
        }
    )
    for field in fields:
        if field not in ("Content", "Level", "Component"):
            frame[field] = pd.Series(columns[field], dtype="string")
    frame["content"] = pd.Series(columns["Content"], dtype="string")
    template = pd.Series(columns["template"], dtype="string")
    frame["event_id"] = template.map(template_event_id, na_action="ignore").astype("string")
    frame["template"] = template
    label = dataset.label
    if label is not None and label.rule == "line_field":
        values = pd.Series(columns[label.field], dtype="object")
        frame["label"] = pd.Series([pd.NA if v is None else int(v != label.normal_value) for v in values], dtype="Int8")
    else:
        frame["label"] = pd.Series(pd.NA, index=frame.index, dtype="Int8")
    frame["status"] = pd.Series(columns["status"], dtype="string")
    return frame


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """logparser3's lines for each bundled raw dataset (computed once per module)."""
    results = {}
    for name in RAW_DATASETS:
        params = project_params(tmp_path_factory.mktemp(f"reference-{name}"))
        build_raw_folder(params, name)
        results[name] = reference_lines(params, name, tmp_path_factory.mktemp(f"logparser3-{name}"))
    return results


# ----------------------------------------------------------------------------- the stage equals logparser3


@pytest.mark.parametrize(
    ("name", "chunk_bytes", "sample_lines", "workers"),
    [
        ("hdfs_logs", 10**8, 10**6, 1),  # one chunk, all mined in the main process: the pipeline's default here
        ("bgl_logs", 10**8, 10**6, 1),
        ("openstack_2k", 10**8, 10**6, 1),
        ("openstack_instances", 10**8, 10**6, 1),  # two gzip files, one template set
        ("hdfs_logs", 9_000, 300, 1),  # many chunks, in-process, templates found after the sample
        ("bgl_logs", 25_000, 0, 1),
        pytest.param("openstack_2k", 16_000, 500, 2, marks=pytest.mark.slow),  # two worker processes (as below)
        ("openstack_instances", 150_000, 1_500, 2),
    ],
)
def test_parse_equals_logparser3_line_for_line(tmp_path, reference, name, chunk_bytes, sample_lines, workers):
    """Same lines (values, dtypes) as logparser3's Drain over the whole input, and templates.parquet counts them."""
    params = engine_params(tmp_path, chunk_bytes, sample_lines, workers=workers)
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    lines, templates, metrics = read_output(params, name)
    pd.testing.assert_frame_equal(lines, reference[name])
    counts = lines.loc[lines["event_id"].notna()].groupby(["event_id", "template"]).size()
    assert (
        dict(zip(zip(templates["event_id"], templates["template"], strict=True), templates["count"], strict=True))
        == counts.to_dict()
    )
    assert templates["count"].is_monotonic_decreasing
    assert metrics["lines"] == len(lines) == sum(entry["lines"] for entry in metrics["files"])
    assert metrics["templates"] == len(templates)
    parts = sorted((Path(params.paths.parsed) / name / "lines.parquet").iterdir())
    assert metrics["parallel"]["chunks"] == len(parts) and parts[0].name == "part-000000.parquet"
    assert metrics["parallel"]["pool"] == ("process pool (2 processes)" if workers == 2 else "in-process")
    schemas = {pq.read_schema(part).to_string(show_schema_metadata=True) for part in parts}
    assert len(schemas) == 1  # every part has the one schema, pandas metadata included


@pytest.mark.parametrize("name", list(TRUTH))
def test_grouping_accuracy_against_loghub_ground_truth(tmp_path, reference, name):
    """Small chunks group exactly as logparser3 (accuracy 1 between them) and score as it does against loghub's
    hand-made templates (*_structured.csv)."""
    params = engine_params(tmp_path, chunk_bytes=7_000, sample_lines=200)
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    lines, _, _ = read_output(params, name)
    truth = pd.read_csv(BUNDLED / TRUTH[name])["EventId"]
    assert grouping_accuracy(lines["event_id"], reference[name]["event_id"]) == 1.0
    assert grouping_accuracy(lines["event_id"], truth) == grouping_accuracy(reference[name]["event_id"], truth) > 0.7


# ----------------------------------------------------------------------------- matcher


@pytest.mark.parametrize(
    ("system", "log_file", "repeat"),
    [("hdfs", "HDFS/HDFS_2k.log", 3), ("bgl", "BGL/BGL_2k.log", 1), ("openstack", "OpenStack/OpenStack_2k.log", 1)],
)
def test_miner_gives_logparser3_drain_templates_line_for_line(tmp_path, system, log_file, repeat):
    """DrainMiner fed message by message ends with the template logparser3's Drain gives every line.

    HDFS is repeated three times: its ``BLOCK* ask <*> to delete <*> ...`` lines make a new (duplicate) cluster
    each time, the case the representative shortcut must get right.
    """
    settings = project_params(tmp_path).systems[system]
    layout = line_layout(settings, None)
    contents = []
    for chunk in plan_chunks([BUNDLED / log_file] * repeat, 10**8):
        table, _ = parse_chunk(chunk, layout, new_miner(settings))
        contents += [text for text in table.column("content").to_pylist() if text and text.strip()]
    expected = logparser3_templates(contents, settings, tmp_path)
    miner = DrainMiner(settings.drain, settings.regex)
    clusters = [miner.assign(miner.mask(content)) for content in contents]
    assert [miner.template(cluster) for cluster in clusters] == expected
    if system == "hdfs":
        assert len(miner.clusters) > len(set(miner.templates())), "expected shadowed duplicate clusters"


def test_matching_copy_answers_like_the_live_miner(tmp_path):
    """A copy's (cluster, leaf, leaf version) answer equals the live miner's, and a copy refuses to change."""
    settings = project_params(tmp_path).systems["bgl"]
    miner = new_miner(settings)
    (chunk,) = plan_chunks([BUNDLED / "BGL/BGL_2k.log"], 10**8)
    _, result = parse_chunk(chunk, line_layout(settings, None), miner)
    for key in result.keys[:1200]:
        miner.assign(key)
    copy = pickle.loads(miner.matching_copy())
    answers = [copy.match(key.split()) for key in result.keys]
    assert answers == [miner.match(key.split()) for key in result.keys]
    assert sum(answer[0] >= 0 for answer in answers) > 100  # most keys are placed by the copy
    with pytest.raises(RuntimeError, match="matching copy"):
        copy.add(result.keys[-1].split())


def test_resolve_chunk_ignores_stale_copy_answers(tmp_path):
    """A chunk matched against an old copy gets, after the live miner has moved on, the live miner's clusters."""
    settings = project_params(tmp_path).systems["hdfs"]
    layout = line_layout(settings, None)
    chunks = list(plan_chunks([BUNDLED / "HDFS/HDFS_2k.log"], 50_000))
    assert len(chunks) > 4
    miner = new_miner(settings)
    stale_copy = pickle.loads(miner.matching_copy())  # empty: knows no template
    sequential = new_miner(settings)
    for chunk in chunks:
        _, late = parse_chunk(chunk, layout, stale_copy)
        _, fresh = parse_chunk(chunk, layout, sequential)
        assert resolve_chunk(late, miner).tolist() == resolve_chunk(fresh, sequential).tolist()
    assert miner.templates() == sequential.templates()


# ----------------------------------------------------------------------------- chunks


@pytest.mark.parametrize("chunk_bytes", [1, 100, 4_096, 10**8])
def test_chunks_cover_every_line_once_and_end_at_line_ends(tmp_path, chunk_bytes):
    """Chunks of a plain and a gzip file: consecutive, whole lines (a line longer than a chunk stays whole), the
    file's bytes exactly once; an empty file has none; a last line without a newline is kept."""
    content = b"short\n" + b"x" * 5_000 + b"\nthird line\r\n\n" + b"last without newline"
    plain, packed, empty = tmp_path / "a.log", tmp_path / "b.log.gz", tmp_path / "c.log"
    plain.write_bytes(content)
    packed.write_bytes(gzip.compress(content))
    empty.write_bytes(b"")
    chunks = list(plan_chunks([plain, empty, packed], chunk_bytes))
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for file_index in (0, 2):
        mine = [chunk for chunk in chunks if chunk.file_index == file_index]
        data = [chunk.read() for chunk in mine]
        assert b"".join(data) == content
        assert all(piece.endswith(b"\n") for piece in data[:-1])
        assert len(mine) <= content.count(b"\n") + 1 and (chunk_bytes != 10**8 or len(mine) == 1)
    assert not [chunk for chunk in chunks if chunk.file_index == 1]
    if chunk_bytes == 1:
        assert len([chunk for chunk in chunks if chunk.file_index == 0]) == content.count(b"\n") + 1  # a line each


def test_a_file_that_shrinks_after_planning_is_a_data_error(tmp_path):
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\n")
    chunk = LineChunk(index=0, file_index=0, path=str(path), start=0, end=8)
    path.write_bytes(b"one\n")
    with pytest.raises(DataError, match="a.log: shorter than when the parse began"):
        chunk.read()


@pytest.mark.parametrize(
    ("name", "chunk_bytes", "crossing"),
    [("openstack_2k", 3_000, 20), pytest.param("hdfs_logs", 700, 3, marks=pytest.mark.slow)],
)  # 7 s: 300 chunks
def test_chunk_boundary_inside_a_session_keeps_the_session_whole(tmp_path, name, chunk_bytes, crossing):
    """Sessions (OpenStack instances, HDFS blocks) cut by 5 to 10-line chunks keep every line, in order, with the
    one-chunk parse's templates."""
    outputs = {}
    for size in (chunk_bytes, 10**8):
        params = engine_params(tmp_path / str(size), size, sample_lines=0)
        build_raw_folder(params, name)
        call_stage("parse", params, name)
        lines, _, metrics = read_output(params, name)
        key_regex = params.datasets[name].session.key_regex
        lines["session"] = lines["content"].str.extract(key_regex, expand=False)
        outputs[size] = (lines, metrics["parallel"]["chunks"])
    (small, chunks), (whole, _) = outputs[chunk_bytes], outputs[10**8]
    pd.testing.assert_frame_equal(small, whole)
    chunk_of_line = np.repeat(
        np.arange(chunks),
        [
            len(pd.read_parquet(path))
            for path in sorted((tmp_path / str(chunk_bytes) / "parsed" / name / "lines.parquet").iterdir())
        ],
    )
    spans = pd.Series(chunk_of_line).groupby(small["session"]).nunique()
    assert (spans > 1).sum() >= crossing, "the test needs sessions that cross chunk boundaries"


def test_writing_a_part_twice_gives_the_same_part(tmp_path):
    """write_part_task is idempotent: a second run (a task rerun after its worker died) keeps the part and its
    count, even once the draft and cluster files are gone; parse_chunk_task rewrites the same draft."""
    settings = project_params(tmp_path).systems["hdfs"]
    layout, miner = line_layout(settings, None), new_miner(settings)
    (chunk,) = plan_chunks([BUNDLED / "HDFS/HDFS_2k.log"], 10**8)
    scratch, parts = tmp_path / "scratch", tmp_path / "parts"
    scratch.mkdir()
    parts.mkdir()
    first = parse_chunk_task(chunk, layout, miner, str(scratch))
    draft = (scratch / "draft-000000.arrow").read_bytes()
    second = parse_chunk_task(chunk, layout, miner, str(scratch))
    assert (scratch / "draft-000000.arrow").read_bytes() == draft and first.keys == second.keys
    np.save(clusters_path(scratch, 0), resolve_chunk(first, miner))
    dictionary = TemplateDictionary.of(miner)
    assert write_part_task(0, [1], str(scratch), str(parts), layout, dictionary) == 2000
    written = part_path(parts, 0).read_bytes()
    assert not list(scratch.iterdir())
    assert write_part_task(0, [1], str(scratch), str(parts), layout, dictionary) == 2000
    assert part_path(parts, 0).read_bytes() == written and [path.name for path in parts.iterdir()] == [
        "part-000000.parquet"
    ]


def test_manifest_globs_expand_to_sorted_files(tmp_path):
    """A glob in files.logs stands for its files in sorted order (file_index follows); no match, a missing file
    and a file listed twice are one-line errors naming the manifest."""
    params = engine_params(tmp_path, 10**8, 10**6)
    lines = (BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)
    folder = write_raw_logs(
        params,
        "hdfs_logs",
        {"b-2.log": b"".join(lines[:30]), "a-1.log": b"".join(lines[30:50]), "c.txt": b"".join(lines[50:60])},
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["logs"] = ["*-?.log", "c.txt"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert [path.name for path in log_file_paths(folder, manifest)] == ["a-1.log", "b-2.log", "c.txt"]
    call_stage("parse", params, "hdfs_logs")
    parsed, _, metrics = read_output(params, "hdfs_logs")
    assert [entry["file"] for entry in metrics["files"]] == ["a-1.log", "b-2.log", "c.txt"]
    assert parsed.groupby("file_index").size().tolist() == [20, 30, 10]
    for logs, message in (
        (["*.csv"], "'*.csv' matches no file"),
        (["*.log", "a-1.log"], "a-1.log is listed twice"),
        (["none.log"], "none.log: log file not found"),
    ):
        manifest["files"]["logs"] = logs
        with pytest.raises(DataError, match=message) as caught:
            log_file_paths(folder, manifest)
        assert "\n" not in str(caught.value)


# ----------------------------------------------------------------------------- bad input


def test_unmatched_and_non_utf8_lines_keep_their_rows(tmp_path):
    """A line of another format and a line with a bad byte keep their rows, numbers and statuses across chunks."""
    good = (BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)[:400]
    content = (
        b"".join(good[:150])
        + b"not an HDFS line\n"
        + b"".join(good[150:300])
        + b"\xff\xfe bad\n"
        + b"".join(good[300:])
    )
    params = engine_params(tmp_path, chunk_bytes=5_000, sample_lines=0)
    write_raw_logs(
        params,
        "hdfs_logs",
        {"HDFS_mixed.log": content},
        {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()},
    )
    call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_output(params, "hdfs_logs")
    pd.testing.assert_frame_equal(lines, reference_lines(params, "hdfs_logs", tmp_path))
    assert lines.loc[lines["status"] != "parsed", ["line_number", "status", "content"]].values.tolist() == [
        [151, "continuation", "not an HDFS line"],  # a line under a record continues it (multiline.start: header)
        [302, "non_utf8", pd.NA],
    ]
    assert metrics["continuation"] == metrics["non_utf8"] == 1 and metrics["unmatched"] == 0
    assert metrics["parallel"]["chunks"] > 5


@pytest.mark.parametrize(
    ("start", "garbage_first", "first_bad"), [("header", True, 1), ("every_line", True, 1), ("every_line", False, 41)]
)
def test_too_many_bad_lines_is_a_one_line_error_and_writes_nothing(tmp_path, start, garbage_first, first_bad):
    """Lines that belong to no record (before a file's first header; any line that does not match under
    ``multiline.start: every_line``) count against parse.max_unmatched_share."""
    params = with_multiline(engine_params(tmp_path, chunk_bytes=1_000, sample_lines=0), "hdfs_logs", start)
    good = b"".join((BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)[:40])
    content = b"garbage\n" * 10 + good if garbage_first else good + b"garbage\n" * 10
    write_raw_logs(
        params,
        "hdfs_logs",
        {"HDFS_bad.log": content},
        {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()},
    )
    with pytest.raises(DataError) as error:
        call_stage("parse", params, "hdfs_logs")
    message = str(error.value)
    assert "\n" not in message and "HDFS_bad.log" in message and f"first at line {first_bad}" in message
    parsed = Path(params.paths.parsed)
    assert not parsed.exists() or not any(parsed.iterdir())
    assert not (Path(params.paths.reports) / "data" / "parse" / "hdfs_logs.json").exists()


# ----------------------------------------------------------------------------- bounded memory


PEAK_RSS_SCRIPT = """
import dataclasses, sys, tempfile
from pathlib import Path
from zerolog.config import MultilineRule, ParallelConfig
from zerolog.config_loader import load_params
from zerolog.data.stream_parse import line_layout, new_miner, stream_parse_files
params = load_params(sys.argv[1])
parse = dataclasses.replace(params.parse, chunk_bytes=1_400_000, sample_lines=10_000,
                            parallel=ParallelConfig(backend="processes", workers=1, scheduler_address=None))
system = params.systems["hdfs"]
output = Path(tempfile.mkdtemp(dir=sys.argv[3]))
summary = stream_parse_files([Path(sys.argv[2])], line_layout(system, None), new_miner(system), parse, output,
                             "systems.hdfs.log_format")
# VmHWM, not ru_maxrss: Linux carries the forking parent's (pytest's) RSS over exec into ru_maxrss.
high_water = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(summary.lines, high_water)
"""


def peak_rss_kib(log_file: Path, scratch: Path) -> tuple[int, int]:
    """(lines parsed, peak RSS in KiB) of a parse run in a fresh subprocess."""
    completed = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(REPOSITORY / "params.yaml"), str(log_file), str(scratch)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPOSITORY,
    )
    lines, peak = completed.stdout.split()
    return int(lines), int(peak)


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_file(tmp_path):
    """Peak RSS parsing 200k generated lines stays within 40 MiB of parsing 50k (the same chunk size, about 10k
    lines): memory is bounded by chunks, not by the file (logparser3's whole-file parse grows by hundreds of MiB)."""
    generate = import_bench("generate")
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
    settings = project_params(tmp_path).systems[system]
    miner = new_miner(settings)
    assert miner.vector_masking
    log_file = {"hdfs": "HDFS/HDFS_2k.log", "bgl": "BGL/BGL_2k.log", "openstack": "OpenStack/OpenStack_2k.log"}[system]
    (chunk,) = plan_chunks([BUNDLED / log_file], 10**8)
    table, _ = parse_chunk(chunk, line_layout(settings, None), miner)
    contents = [text for text in table.column("content").to_pylist() if text and text.strip()]
    contents += [f"{contents[0]} caf\u00e9 \u0663\u0664 10.1.2.3", f"{contents[1]}\x0b 42 ", f"\x1c{contents[2]}\x1f 7"]
    assert miner.mask_array(contents).to_pylist() == [miner.mask(content) for content in contents]


def test_timestamps_equal_pandas_on_valid_and_odd_values():
    """parse_timestamps (fast fixed-width path, pandas for the rest) gives pandas' to_datetime values exactly:
    valid fixed-width values, and odd ones (short fields, second 60, Feb 29 of a non-leap year, month 13, spaces,
    missing values)."""
    import random

    from zerolog.data.timestamps import parse_timestamps

    generator = random.Random(7)
    for timestamp_format in ("%y%m%d %H%M%S", "%Y-%m-%d-%H.%M.%S.%f", "%Y-%m-%d %H:%M:%S.%f"):
        values: list[str | None] = []
        for _ in range(3000):
            year, month, day = generator.randint(1960, 2070), generator.randint(0, 13), generator.randint(0, 32)
            hour, minute, second = generator.randint(0, 24), generator.randint(0, 60), generator.randint(0, 61)
            text = (
                timestamp_format.replace("%Y", f"{year:04d}")
                .replace("%y", f"{year % 100:02d}")
                .replace("%m", f"{month:02d}")
                .replace("%d", f"{day:02d}")
                .replace("%H", f"{hour:02d}")
                .replace("%M", f"{minute:02d}")
                .replace("%S", f"{second:02d}")
                .replace("%f", str(generator.randint(0, 999_999)).zfill(6)[: generator.choice([6, 6, 3, 1])])
            )
            if generator.random() < 0.05:
                text = text[:-1]
            if generator.random() < 0.05:
                text = " " + text
            values.append(text)
        values += ["081109 235960", "090229 000000", "080229 000000", "690101 000000", "681231 235959", None]
        series = pd.Series(values, dtype="object")
        parsed = pd.to_datetime(series, format=timestamp_format, errors="coerce", utc=True)
        expected = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64)
        ours = parse_timestamps(series, timestamp_format).to_numpy()
        same = (np.isnan(expected) & np.isnan(ours)) | (expected == ours)
        assert same.all(), [(values[index], expected[index], ours[index]) for index in np.flatnonzero(~same)[:3]]
        assert np.isfinite(ours).sum() > 1000


# ----------------------------------------------------------------------------- header regex: linear time


def test_header_regex_gives_logparser3_fields_on_every_bundled_raw_log():
    """The atomic-group header regex finds, on every line of every bundled raw log, what logparser3's lazy regex
    finds (the same lines matched, the same value in every field)."""
    params = load_params(REPOSITORY / "params.yaml")
    raw = [name for name, dataset in params.datasets.items() if dataset.kind == "raw"]
    assert {"hdfs_logs", "bgl_logs", "openstack_2k", "openstack_devstack", "openstack_instances"} <= set(raw)
    for name in raw:
        log_format = params.dataset_system(name).log_format
        fields, lazy = LogParser(log_format).generate_logformat_regex(log_format)
        linear, linear_fields = header_regex(log_format)
        assert linear_fields == fields
        logs = params.datasets[name].files["logs"]
        for path in logs if isinstance(logs, list) else [logs]:
            with open_binary(BUNDLED / path) as handle:
                texts = [line.strip() for line in handle.read().decode("utf-8", "replace").split("\n")]
            for text in texts:
                expected, found = lazy.search(text), linear.match(text)
                assert (found is None) == (expected is None), (name, text)
                if found is not None:
                    assert found.group(*fields) == expected.group(*fields), (name, text)


def _match_seconds(pattern, text: str, repeats: int = 3) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        pattern.match(text.strip())
    return (time.perf_counter() - started) / repeats


@pytest.mark.parametrize("spaces", [10_000, 100_000])
def test_header_regex_costs_a_plain_lines_time_on_a_line_of_many_spaces(spaces):
    """A line of many spaces, with or without a header-like prefix and with no ``[`` for the bracket field, costs
    what a plain line of the same length costs (logparser3's lazy regex: 80 spaces took 1.6 s)."""
    pattern, _ = header_regex("<Logrecord> <Date> <Time> <Pid> <Level> <Component> \\[<ADDR>\\] <Content>")
    prefix = "nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server "
    hostile = {
        "spaces": "a" + " " * spaces + "b",
        "words": "a " * (spaces // 2),
        "prefix, spaces": prefix + " " * spaces + "b",
        "prefix, words": prefix + "w " * (spaces // 2),
    }
    for name, text in hostile.items():
        plain = "x" * len(text.strip())
        # interleaved, the least of 7 each: a loaded machine (parallel tests) slows single runs, not all of them
        timings = [(_match_seconds(pattern, plain), _match_seconds(pattern, text)) for _ in range(7)]
        baseline, cost = min(plain_time for plain_time, _ in timings), min(text_time for _, text_time in timings)
        assert cost < 20 * baseline + 0.002, (name, cost, baseline)


# ----------------------------------------------------------------------------- multi-line records


TRACEBACK = (
    b"Traceback (most recent call last):\n"
    b'  File "/usr/lib/python3/dist-packages/nova/compute/manager.py", line 2078, in _build_and_run\n'
    b"    yield resources\n"
    b"\n"
    b"nova.exception.RescheduledException - Build of instance 42 was re-scheduled, timed out\n"
)


def multiline_logs() -> dict[str, bytes]:
    """Two HDFS files with tracebacks under some records (one per 7 lines, so chunk cuts fall inside them), and
    lines before the first record of the second file (they belong to no record)."""
    lines = (BUNDLED / "HDFS/HDFS_2k.log").read_bytes().splitlines(keepends=True)[:300]
    records = [line + (TRACEBACK if position % 7 == 3 else b"") for position, line in enumerate(lines)]
    return {"a.log": b"".join(records[:150]), "b.log": b"orphan line\n" + TRACEBACK + b"".join(records[150:])}


@pytest.mark.parametrize(
    ("events", "chunk_bytes", "sample_lines", "workers"),
    [
        ("first_line", 10**8, 10**6, 1),
        ("first_line", 2_000, 0, 1),
        ("first_line", 3_000, 200, 2),
        ("each_line", 10**8, 10**6, 1),
        ("each_line", 2_000, 0, 1),
        ("each_line", 3_000, 200, 2),
    ],
)
def test_multiline_records_equal_one_pass_over_the_files(tmp_path, events, chunk_bytes, sample_lines, workers):
    """Continuation lines (tracebacks under a record) get status continuation wherever the chunks are cut, lines
    before a file's first record stay unmatched, and Drain sees a record's first line (first_line) or every
    non-blank line (each_line): line for line the reference's one pass over the files."""
    params = with_multiline(
        engine_params(tmp_path, chunk_bytes, sample_lines, workers=workers), "hdfs_logs", events=events
    )
    params = dataclasses.replace(params, parse=dataclasses.replace(params.parse, max_unmatched_share=0.05))
    logs = multiline_logs()
    write_raw_logs(params, "hdfs_logs", logs, {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()})
    call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_output(params, "hdfs_logs")
    pd.testing.assert_frame_equal(lines, reference_lines(params, "hdfs_logs", tmp_path))
    orphans = 1 + TRACEBACK.count(b"\n")
    assert metrics["unmatched"] == orphans and metrics["parsed"] == 300
    assert metrics["continuation"] == sum(content.count(b"\n") for content in logs.values()) - 300 - orphans
    assert (metrics["parallel"]["chunks"] > 4) == (chunk_bytes < 10**8)
    traceback_templates = lines.loc[lines["status"] == "continuation", "template"]
    assert traceback_templates.notna().any() == (events == "each_line")


@pytest.mark.parametrize(
    ("chunk_bytes", "sample_lines", "workers"), [(10**8, 10**6, 1), (8_000, 0, 1), (8_000, 200, 2)]
)
def test_many_small_files_packed_into_chunks_equal_one_pass_over_the_files(
    tmp_path, chunk_bytes, sample_lines, workers
):
    """A folder of many small files (some opening with lines before their first record) is packed several files to
    a chunk (PackedChunk): line numbers, file indices, statuses and templates are the one pass's, and the parts are
    fewer than the files."""
    params = with_multiline(engine_params(tmp_path, chunk_bytes, sample_lines, workers=workers), "hdfs_logs")
    params = dataclasses.replace(params, parse=dataclasses.replace(params.parse, max_unmatched_share=0.5))
    whole = b"".join(multiline_logs().values()).splitlines(keepends=True)
    logs = {f"run-{index:02d}.log": b"".join(whole[index * 20 : (index + 1) * 20]) for index in range(len(whole) // 20)}
    write_raw_logs(params, "hdfs_logs", logs, {"labels": (BUNDLED / "HDFS/HDFS_2k_block_labels.csv").read_bytes()})
    call_stage("parse", params, "hdfs_logs")
    lines, _, metrics = read_output(params, "hdfs_logs")
    pd.testing.assert_frame_equal(lines, reference_lines(params, "hdfs_logs", tmp_path))
    assert lines["file_index"].nunique() == len(logs) > 20
    assert metrics["parallel"]["chunks"] < len(logs) / 2
    assert metrics["unmatched"] > 0 and metrics["continuation"] > 0


# ----------------------------------------------------------------------------- templates that explode


def _growth_summary(first_lines: list[int], lines: int, templates: list[str]) -> StreamSummary:
    summary = StreamSummary(lines=lines, template_first_lines=first_lines)
    summary.templates = pd.DataFrame({"template": templates})
    return summary


def test_templates_that_grow_with_the_input_are_flagged_with_the_unmasked_shapes():
    """An unmasked id (a new template every ten lines, steadily) is flagged and its shape named; a parser that
    saturates (few templates first seen late) is not."""
    exploding = [f"GET /v2/{index:032x}/servers status 200" for index in range(40)]
    growth = template_growth(_growth_summary(list(range(0, 400, 10)), 400, exploding), warning=0.5)
    assert growth["grows_with_input"] is True and growth["new_templates_by_half"] == {"first": 20, "second": 20}
    assert growth["variable_token_shapes"][0] == {
        "shape": "/v0/<hex>/servers",
        "templates": 40,
        "example": f"/v2/{0:032x}/servers",
    }
    assert growth["templates_per_1000_lines"] == 100.0
    saturating = template_growth(_growth_summary([0, 3, 9, 40, 150, 390], 400, ["a <*>"] * 6), warning=0.5)
    assert saturating["grows_with_input"] is False and saturating["variable_token_shapes"] == []


def test_template_first_lines_do_not_depend_on_the_chunks(tmp_path):
    """The growth report counts each final template at its first line over all files, whatever the chunking
    (HDFS_2k: 12 templates first seen in the first 1,000 lines, 4 after)."""
    reports = []
    for chunk_bytes in (10**8, 20_000):
        params = engine_params(tmp_path / str(chunk_bytes), chunk_bytes=chunk_bytes, sample_lines=0)
        build_raw_folder(params, "hdfs_logs")
        call_stage("parse", params, "hdfs_logs")
        reports.append(read_output(params, "hdfs_logs")[2]["template_growth"])
    assert reports[0] == reports[1] and reports[0]["new_templates_by_half"] == {"first": 12, "second": 4}
