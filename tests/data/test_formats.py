"""The formats users bring, each added by params alone (a ``datasets`` entry) and run through download -> parse ->
sessionize, on small REAL excerpts:

- raw logs with one session per file (or per folder), labels keyed by file or folder name: real DevStack nova lines
  (data/bundled/OpenStack/devstack) written one instance per file; the per-file layout is built here, every line and
  label is real;
- the anomaly-detection-log-datasets layout (``<name>_train``, ``_test_normal``, ``_test_abnormal`` +
  ``<System>_templates.csv``): verbatim lines of that collection (tests/fixtures/ait_openstack, see its README);
- the DeepLog id files, JSON-lines sessions and the events CSV: the first lines of the bundled files;
- the labeled DevStack dataset itself (``openstack_devstack``): its own log format, no timestamps, levels.

Bad input is a one-line DataError naming the file and the line or key, and leaves no output behind.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import call_stage

from zerolog.config import Params
from zerolog.config_loader import parse_params, read_yaml
from zerolog.data.sessionize import read_sessions
from zerolog.errors import DataError

REPOSITORY = Path(__file__).resolve().parents[2]
BUNDLED = REPOSITORY / "data" / "bundled"
DEVSTACK = BUNDLED / "OpenStack" / "devstack"
SEQUENCES = Path(__file__).resolve().parents[1] / "fixtures" / "ait_openstack"
OUTPUTS = (
    "raw",
    "parsed",
    "sessions",
    "features",
    "tensors",
    "models",
    "scores",
    "metrics",
    "plots",
    "reports",
    "archives",
)
DEVSTACK_FORMAT = "(?=[A-Z]+ )<Level> <Component> <Content>"
INSTANCE = re.compile(r"\[instance: ([0-9a-f-]{36})\]")


def params_with(tmp_path: Path, bundled: Path, name: str, dataset_yaml: str) -> Params:
    """The project's params with one more dataset, given as the YAML a user would add under ``datasets:``."""
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    for key in OUTPUTS:
        raw["paths"][key] = str(tmp_path / "out" / key)
    raw["paths"]["checksums"] = str(tmp_path / "out" / "checksums.json")
    raw["paths"]["bundled"] = str(bundled)
    raw["datasets"][name] = read_yaml(dataset_yaml)
    return parse_params(raw, "params.yaml")


def run_data_stages(params: Params, name: str) -> tuple[pd.DataFrame, dict, dict]:
    """download -> parse -> sessionize; the sessions table and the parse and sessionize metrics."""
    for stage in ("download", "parse", "sessionize"):
        call_stage(stage, params, name)
    table, _ = read_sessions(Path(params.paths.sessions) / name / "sessions.parquet")
    metrics = Path(params.paths.reports) / "data"
    return (
        table,
        json.loads((metrics / "parse" / f"{name}.json").read_text()),
        json.loads((metrics / "sessionize" / f"{name}.json").read_text()),
    )


def outputs_of(params: Params, name: str) -> list[Path]:
    return [Path(getattr(params.paths, stage)) / name for stage in ("raw", "parsed", "sessions")] + [
        Path(params.paths.reports) / "data" / stage / f"{name}.json" for stage in ("parse", "sessionize")
    ]


def devstack_labels() -> dict[str, str]:
    """instance uuid -> ``Anomaly`` / ``normal``, as instance_labels.csv gives them (keys ``instance: <uuid>``)."""
    with open(DEVSTACK / "instance_labels.csv", encoding="utf-8", newline="") as handle:
        return {row["BlockId"].removeprefix("instance: "): row["Label"] for row in csv.DictReader(handle)}


def devstack_instance_lines(count_per_label: int) -> dict[str, list[bytes]]:
    """The real lines of the first ``count_per_label`` normal and anomalous instances of the DevStack log."""
    labels = devstack_labels()
    lines: dict[str, list[bytes]] = defaultdict(list)
    with gzip.open(DEVSTACK / "openstack-nova-sample.log.gz", "rb") as handle:
        for raw in handle:
            found = INSTANCE.search(raw.decode("utf-8"))
            if found:
                lines[found.group(1)].append(raw)
    chosen = {}
    for label in ("normal", "Anomaly"):
        instances = [uuid for uuid in lines if labels.get(uuid) == label][:count_per_label]
        chosen.update({uuid: lines[uuid] for uuid in instances})
    return chosen


# ----------------------------------------------------------------------------- one session per file / folder


def test_one_session_per_file_with_labels_keyed_by_file_name(tmp_path):
    instances = devstack_instance_lines(3)
    labels = devstack_labels()
    runs = tmp_path / "bundle" / "Nova" / "runs"
    runs.mkdir(parents=True)
    for uuid, lines in instances.items():
        (runs / f"{uuid}.log").write_bytes(b"".join(lines))
    rows = [f"{uuid}.log,{labels[uuid]}" for uuid in instances] + ["not-in-the-log.log,Anomaly"]
    (tmp_path / "bundle" / "Nova" / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "nova_runs",
        f"""
        kind: raw
        system: openstack
        files: {{logs: [Nova/runs/], labels: Nova/labels.csv}}
        log_format: '{DEVSTACK_FORMAT}'
        timestamp: {{fields: [], format: ''}}
        session: {{rule: file}}
        label: {{rule: key_file}}
        split: {{method: random}}
    """,
    )
    table, _, metrics = run_data_stages(params, "nova_runs")

    manifest = json.loads((Path(params.paths.raw) / "nova_runs" / "manifest.json").read_text())
    assert manifest["files"]["logs"] == sorted(f"{uuid}.log" for uuid in instances)  # expanded, sorted
    assert table["session_id"].tolist() == manifest["files"]["logs"]  # one session per file, in file order
    expected = {f"{uuid}.log": int(labels[uuid] == "Anomaly") for uuid in instances}
    assert dict(zip(table["session_id"], table["label"].astype(int), strict=True)) == expected
    assert (metrics["sessions"], metrics["anomalous"]) == (6, 3)
    assert metrics["label_file_keys_without_session"] == 1 and metrics["files_without_key"] == 0
    lengths = {f"{uuid}.log": len(lines) for uuid, lines in instances.items()}
    assert dict(zip(table["session_id"], table["templates"].map(len), strict=True)) == lengths
    assert table["start_time"].isna().all()  # this log carries no time
    assert all(
        len(levels) == len(templates) for levels, templates in zip(table["levels"], table["templates"], strict=True)
    )


def test_one_session_per_folder_with_labels_keyed_by_folder_name(tmp_path):
    instances = devstack_instance_lines(2)
    labels = devstack_labels()
    runs = tmp_path / "bundle" / "Nova" / "runs"
    for uuid, lines in instances.items():  # each instance's lines in two files of its own folder
        (runs / uuid).mkdir(parents=True)
        half = len(lines) // 2
        (runs / uuid / "compute-1.log").write_bytes(b"".join(lines[:half]))
        (runs / uuid / "compute-2.log").write_bytes(b"".join(lines[half:]))
    (tmp_path / "bundle" / "Nova" / "runs.csv").write_text(
        "run,label\n" + "".join(f"{uuid},{labels[uuid]}\n" for uuid in instances)
    )
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "nova_folders",
        f"""
        kind: raw
        system: openstack
        files: {{logs: ['Nova/runs/*/*.log'], labels: Nova/runs.csv}}
        log_format: '{DEVSTACK_FORMAT}'
        timestamp: {{fields: [], format: ''}}
        session: {{rule: file, key_regex: '^([^/]+)/'}}
        label: {{rule: key_file}}
        split: {{method: random}}
    """,
    )
    table, _, metrics = run_data_stages(params, "nova_folders")
    assert sorted(table["session_id"]) == sorted(instances)
    assert metrics["log_files"] == 8 and metrics["anomalous"] == 2
    for uuid, lines in instances.items():  # the folder's files in name order, each in line order: the whole log
        templates = table.set_index("session_id").loc[uuid, "templates"]
        assert len(templates) == len(lines)


def test_an_empty_session_per_file_folder_is_a_one_line_error_and_writes_nothing(tmp_path):
    (tmp_path / "bundle" / "Nova" / "runs").mkdir(parents=True)
    (tmp_path / "bundle" / "Nova" / "labels.csv").write_text("file,label\na.log,normal\n")
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "nova_runs",
        """
        kind: raw
        system: openstack
        files: {logs: [Nova/runs], labels: Nova/labels.csv}
        session: {rule: file}
        label: {rule: key_file}
        split: {method: random}
    """,
    )
    with pytest.raises(DataError) as error:
        call_stage("download", params, "nova_runs")
    message = str(error.value)
    assert "\n" not in message and "Nova/runs: no log file in this folder" in message
    assert "datasets.nova_runs.files.logs[0]" in message
    assert not any(path.exists() for path in outputs_of(params, "nova_runs"))


# ----------------------------------------------------------------------------- the DevStack dataset


@pytest.fixture(scope="module")
def devstack_excerpt(tmp_path_factory):
    """The first 3,000 lines of the DevStack log and its whole label file, as a bundle of their own."""
    bundle = tmp_path_factory.mktemp("devstack") / "bundle"
    (bundle / "OpenStack" / "devstack").mkdir(parents=True)
    with gzip.open(DEVSTACK / "openstack-nova-sample.log.gz", "rb") as handle:
        head = b"".join(handle.readlines()[:3000])
    (bundle / "OpenStack" / "devstack" / "nova.log").write_bytes(head)
    shutil.copyfile(DEVSTACK / "instance_labels.csv", bundle / "OpenStack" / "devstack" / "instance_labels.csv")
    return bundle, head.decode("utf-8").splitlines()


def devstack_dataset_yaml(key_regex: str = r"\[(instance: [0-9a-f-]{36})\]") -> str:
    return f"""
        kind: raw
        system: openstack
        files: {{logs: [OpenStack/devstack/nova.log], labels: OpenStack/devstack/instance_labels.csv}}
        log_format: '{DEVSTACK_FORMAT}'
        timestamp: {{fields: [], format: ''}}
        session: {{rule: key, key_regex: '{key_regex}'}}
        label: {{rule: key_file}}
        split: {{method: random}}
    """


def test_devstack_excerpt_sessions_labels_levels_and_counted_lines(tmp_path, devstack_excerpt):
    bundle, lines = devstack_excerpt
    params = params_with(tmp_path, bundle, "devstack_head", devstack_dataset_yaml())
    table, parse_metrics, metrics = run_data_stages(params, "devstack_head")
    labels = devstack_labels()
    instances = {INSTANCE.search(line).group(1) for line in lines if INSTANCE.search(line)}
    assert set(table["session_id"]) == {f"instance: {uuid}" for uuid in instances}
    expected = {f"instance: {uuid}": int(labels[uuid] == "Anomaly") for uuid in instances}
    assert dict(zip(table["session_id"], table["label"].astype(int), strict=True)) == expected
    # Every line is counted: parsed or not, with an instance or without (service lines, tracebacks).
    assert parse_metrics["lines"] == 3000 == parse_metrics["parsed"] + parse_metrics["unmatched"]
    assert metrics["lines_not_parsed"] == parse_metrics["unmatched"]
    without_instance = sum(1 for line in lines if re.match(r"\s*[A-Z]+ ", line) and not INSTANCE.search(line))
    assert metrics["lines_without_key"] == without_instance
    levels = {level for session in table["levels"] for level in session}
    assert levels <= {"INFO", "WARNING", "ERROR"} and metrics["level_field"] is True
    first = table.iloc[0]
    first_lines = [line for line in lines if f"instance: {first['session_id'][10:]}" in line]
    assert list(first["levels"]) == [line.split()[0] for line in first_lines]


def test_a_label_file_that_names_no_session_is_a_one_line_error_and_writes_nothing(tmp_path, devstack_excerpt):
    bundle, _ = devstack_excerpt
    # Sessions keyed by the bare uuid, while the label file's keys read `instance: <uuid>`.
    params = params_with(tmp_path, bundle, "devstack_bare", devstack_dataset_yaml(r"\[instance: ([0-9a-f-]{36})\]"))
    call_stage("download", params, "devstack_bare")
    call_stage("parse", params, "devstack_bare")
    with pytest.raises(DataError) as error:
        call_stage("sessionize", params, "devstack_bare")
    message = str(error.value)
    assert "\n" not in message and "instance_labels.csv: none of its 1313 keys names a session" in message
    assert "'instance: afcf8235-2a42-4a95-8f6c-ee9c70d41f09'" in message  # the file's first key
    assert not (Path(params.paths.sessions) / "devstack_bare").exists()
    assert not (Path(params.paths.reports) / "data" / "sessionize" / "devstack_bare.json").exists()


def test_bundled_devstack_dataset_counts_match_its_authors(tmp_path):
    """The whole bundled log: 1,162 instances, 180 anomalous (data/bundled/README.md, measured by the authors)."""
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    for key in OUTPUTS:
        raw["paths"][key] = str(tmp_path / key)
    params = parse_params(raw, "params.yaml")
    assert params.systems["openstack"].dataset == "openstack_devstack"
    table, parse_metrics, metrics = run_data_stages(params, "openstack_devstack")
    assert (metrics["sessions"], metrics["anomalous"], metrics["unlabeled"]) == (1162, 180, 0)
    assert parse_metrics["lines"] == 25659
    flagged = table["levels"].map(lambda levels: bool({"WARNING", "ERROR"} & set(levels)))
    labels = table["label"].astype(int)
    assert (flagged & (labels == 0)).sum() == 0  # no normal instance has a WARNING or ERROR line
    assert (flagged & (labels == 1)).sum() == 171  # measured here; the data's README says 160 (ERROR lines only)
    assert (table["levels"].map(lambda levels: "ERROR" in set(levels)) & (labels == 1)).sum() == 160


# ----------------------------------------------------------------------------- anomaly-detection-log-datasets layout


SEQUENCE_YAML = """
    kind: sessions
    system: openstack
    files:
      train: ait/openstack_train
      test_normal: ait/openstack_test_normal
      test_abnormal: ait/openstack_test_abnormal
      templates: ait/OpenStack_templates.csv
    split: {method: random}
"""


def sequence_bundle(tmp_path: Path, abnormal_extra: str = "") -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(SEQUENCES, bundle / "ait")
    if abnormal_extra:
        with open(bundle / "ait" / "openstack_test_abnormal", "a", encoding="utf-8") as handle:
            handle.write(abnormal_extra)
    return bundle


def test_sequence_files_labels_come_from_file_origin_and_id_k_is_template_line_k(tmp_path):
    params = params_with(tmp_path, sequence_bundle(tmp_path), "devstack_sequences", SEQUENCE_YAML)
    table, parse_metrics, metrics = run_data_stages(params, "devstack_sequences")
    origin = {}
    for file_name, label in (("openstack_train", 0), ("openstack_test_normal", 0), ("openstack_test_abnormal", 1)):
        for line in (SEQUENCES / file_name).read_text().splitlines():
            origin[line.split(",")[0]] = (label, line.split(",")[1].split())
    assert set(table["session_id"]) == set(origin)
    assert (metrics["sessions"], metrics["anomalous"]) == (15, 5) and metrics["label_rule"] == "preparsed"
    templates = (SEQUENCES / "OpenStack_templates.csv").read_text().splitlines()
    for _, session in table.iterrows():
        label, ids = origin[session["session_id"]]
        assert session["label"] == label
        assert list(session["templates"]) == [templates[int(event_id) - 1] for event_id in ids]
    first = table.set_index("session_id").loc["afcf8235-2a42-4a95-8f6c-ee9c70d41f09", "templates"]
    assert first[0] == "Claim successful on node <*>"  # id 59 = line 59
    assert first[2].startswith("Instance failed to spawn: nova.exception.FlavorDiskSmallerThanImage")  # id 79
    assert [entry["sessions"] for entry in parse_metrics["files"]] == [4, 6, 5]
    assert table["levels"].isna().all() and metrics["level_field"] is False  # pre-parsed ids carry no level


def test_sequence_anomalies_are_subsampled_to_the_stated_share(tmp_path):
    params = params_with(
        tmp_path, sequence_bundle(tmp_path), "devstack_sequences", SEQUENCE_YAML + "    anomaly_share: 0.25\n"
    )
    table, _, metrics = run_data_stages(params, "devstack_sequences")
    assert metrics["subsampling"]["anomalous_available"] == 5 and metrics["subsampling"]["normal"] == 10
    assert metrics["anomalous"] == 3 == int(table["label"].sum())  # round(10 * 0.25 / 0.75)


def test_sequence_line_without_a_key_is_keyed_by_its_file_and_line(tmp_path):
    params = params_with(
        tmp_path, sequence_bundle(tmp_path, "59 78 83 85 84 13 52\n"), "devstack_sequences", SEQUENCE_YAML
    )
    table, _, _ = run_data_stages(params, "devstack_sequences")
    assert "test_abnormal:6" in set(table["session_id"])


@pytest.mark.parametrize(
    "extra,message",
    [
        (
            "0fd3c5a4-cc70-4bd7-a8e3-3a4e2a8d18a2,59 3 None 13 52\n",
            r"openstack_test_abnormal: line 6: event id 'None' is not in the template table .*OpenStack_templates\.csv",
        ),
        (
            "0fd3c5a4-cc70-4bd7-a8e3-3a4e2a8d18a2,59 3 93 13 52\n",
            r"openstack_test_abnormal: line 6: event id '93' is not in the template table",
        ),
        (
            "11760334-ac63-4cc8-9086-578422af8c99,59 3 13 52\n",
            r"openstack_test_abnormal: line 6: sequence key '11760334-ac63-4cc8-9086-578422af8c99' already at "
            r"openstack_test_normal: line 1",
        ),
    ],
    ids=["unmatched-line-id", "id-past-the-table", "duplicate-key"],
)
def test_bad_sequence_is_a_one_line_error_and_writes_nothing(tmp_path, extra, message):
    params = params_with(tmp_path, sequence_bundle(tmp_path, extra), "devstack_sequences", SEQUENCE_YAML)
    call_stage("download", params, "devstack_sequences")
    with pytest.raises(DataError, match=message) as error:
        call_stage("parse", params, "devstack_sequences")
    assert "\n" not in str(error.value)
    assert not (Path(params.paths.parsed) / "devstack_sequences").exists()
    assert not (Path(params.paths.reports) / "data" / "parse" / "devstack_sequences.json").exists()


# ----------------------------------------------------------------------------- the formats that were there before


def test_deeplog_id_files_by_params_alone(tmp_path):
    bundle = tmp_path / "bundle" / "HDFS"
    bundle.mkdir(parents=True)
    normal = (BUNDLED / "HDFS" / "sessions" / "hdfs_train_normal").read_text().splitlines()[:8]
    abnormal = (BUNDLED / "HDFS" / "sessions" / "hdfs_abnormal").read_text().splitlines()[:4]
    (bundle / "normal").write_text("\n".join(normal) + "\n")
    (bundle / "abnormal").write_text("\n".join(abnormal) + "\n")
    shutil.copyfile(BUNDLED / "HDFS" / "HDFS_templates.csv", bundle / "templates.csv")
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "blocks",
        """
        kind: sessions
        system: hdfs
        files: {normal: HDFS/normal, abnormal: HDFS/abnormal, templates: HDFS/templates.csv}
        split: {method: random}
    """,
    )
    table, _, metrics = run_data_stages(params, "blocks")
    assert (metrics["sessions"], metrics["anomalous"]) == (12, 4)
    templates = pd.read_csv(BUNDLED / "HDFS" / "HDFS_templates.csv").set_index("EventId")["EventTemplate"]
    session = table.set_index("session_id").loc["abnormal:1", "templates"]
    assert list(session) == [templates[f"E{token}"] for token in abnormal[0].split()]


def test_jsonl_sessions_by_params_alone(tmp_path):
    bundle = tmp_path / "bundle" / "HDFS"
    bundle.mkdir(parents=True)
    with gzip.open(BUNDLED / "HDFS" / "sessions" / "hdfs_100k_sessions.jsonl.gz", "rt") as handle:
        records = [next(handle) for _ in range(30)]
    (bundle / "blocks.jsonl").write_text("".join(records))
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "blocks",
        """
        kind: sessions
        system: hdfs
        files: {sessions: HDFS/blocks.jsonl}
        split: {method: random}
    """,
    )
    table, _, metrics = run_data_stages(params, "blocks")
    expected = {json.loads(line)["block_id"]: json.loads(line)["label"] for line in records}
    assert dict(zip(table["session_id"], table["label"].astype(int), strict=True)) == expected
    assert metrics["sessions"] == 30


def test_events_csv_by_params_alone(tmp_path):
    bundle = tmp_path / "bundle" / "BGL"
    bundle.mkdir(parents=True)
    with gzip.open(BUNDLED / "BGL" / "BGL_100k_events.csv.gz", "rt") as handle:
        rows = [next(handle) for _ in range(201)]  # header + 200 real lines
    (bundle / "events.csv").write_text("".join(rows))
    shutil.copyfile(BUNDLED / "BGL" / "BGL_100k_templates.csv", bundle / "templates.csv")
    params = params_with(
        tmp_path,
        tmp_path / "bundle",
        "bgl_head",
        """
        kind: events
        system: bgl
        files: {events: BGL/events.csv, templates: BGL/templates.csv}
        session: {rule: window, size: 20, step: 20, unit: lines}
        label: {rule: line_field, field: label, normal_value: '-'}
        split: {method: chronological}
    """,
    )
    table, _, metrics = run_data_stages(params, "bgl_head")
    assert metrics["sessions"] == 10 and table["templates"].map(len).tolist() == [20] * 10
    frame = pd.read_csv(bundle / "events.csv", dtype=str, keep_default_na=False)
    anomalous_windows = (frame["label"] != "-").to_numpy().reshape(10, 20).any(axis=1)
    assert table["label"].astype(int).tolist() == anomalous_windows.astype(int).tolist()
    assert np.all(table["levels"].isna())


# ----------------------------------------------------------------------------- a folder of runs, multi-line records

NOVA_RUNS = Path(__file__).resolve().parents[1] / "fixtures" / "nova_runs"


def readme_dataset(name: str) -> str:
    """The YAML of ``datasets.<name>`` as README.md shows it (the block under the ``  <name>:`` line)."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    block = readme.split(f"\n  {name}:", 1)[1].split("```", 1)[0]
    return "\n".join(line.split(" #", 1)[0].rstrip() for line in block.splitlines())


def test_a_folder_of_runs_with_multiline_records_and_empty_files_goes_through(tmp_path):
    """The README's worked example: a glob over run folders, empty service logs skipped and counted, the wrapped
    warning's lines read as its continuation (not bad lines) under the default guard, one session per run."""
    params = params_with(tmp_path, NOVA_RUNS.parent, "nova_runs", readme_dataset("nova_runs"))
    table, parse_metrics, session_metrics = run_data_stages(params, "nova_runs")
    runs = sorted(path.name for path in (NOVA_RUNS / "runs").iterdir())
    empty = sorted(path for path in NOVA_RUNS.rglob("*.log") if path.stat().st_size == 0)
    assert parse_metrics["empty_files_skipped"] == len(empty) > 0
    assert parse_metrics["unmatched"] == 0 and parse_metrics["continuation"] == 4 * len(runs)
    assert sorted(table["session_id"]) == runs
    with open(NOVA_RUNS / "run_labels.csv", encoding="utf-8", newline="") as handle:
        labels = {row["run"]: int(row["label"] == "Anomaly") for row in csv.DictReader(handle)}
    assert dict(zip(table["session_id"], table["label"].astype(int), strict=True)) == labels
    lines = pd.read_parquet(Path(params.paths.parsed) / "nova_runs" / "lines.parquet")
    wrapped = lines[lines["status"] == "continuation"]
    assert wrapped["content"].iloc[:4].tolist()[0].startswith("live_migration_uri is deprecated")
    assert wrapped["template"].isna().all()  # multiline.events first_line: Drain sees the record's first line
