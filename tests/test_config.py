"""Tests of the params loader's errors (src/zerolog/config.py): each names the file and the key, in one line."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path

import pytest

from zerolog.config import ConfigError, Params
from zerolog.config_loader import load_params, parse_params, read_yaml

PARAMS_FILE = Path(__file__).resolve().parents[1] / "params.yaml"
RAW = read_yaml(PARAMS_FILE.read_text(encoding="utf-8"))


def changed(path: str, value: object) -> dict:
    """A copy of params.yaml's mapping with the key at dotted ``path`` set to ``value`` (``DELETE`` removes it)."""
    raw = copy.deepcopy(RAW)
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


def assert_one_line_error(path: str, value, message: str) -> None:
    """params.yaml with ``path`` set to ``value`` is refused in one line that names the file and holds ``message``."""
    with pytest.raises(ConfigError) as caught:
        parse_params(changed(path, value), "params.yaml")
    text = str(caught.value)
    assert text.startswith("params.yaml: ") and message in text and "\n" not in text


DELETE = object()


def test_the_project_params_load():
    params = load_params(PARAMS_FILE)
    assert isinstance(params, Params)
    assert params.datasets["hdfs_logs"].session.key_regex == r"(blk_-?\d+)"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # unknown keys, at several depths
        ("sesion", 1, "sesion: unknown key"),
        ("parse.parsr", "Drain", "parse.parsr: unknown key"),
        ("source_file", "x.yaml", "source_file: unknown key"),  # a field of Params set by the loader, not a key
        ("datasets.hdfs_logs.sesion", {"rule": "key"}, "datasets.hdfs_logs.sesion: unknown key"),
        ("datasets.bgl_logs.label.normal", "-", "datasets.bgl_logs.label.normal: unknown key"),
        ("systems.hdfs.timestamp.zone", "UTC", "systems.hdfs.timestamp.zone: unknown key"),
        # missing keys
        ("parse.chunk_bytes", DELETE, "parse.chunk_bytes: missing key"),
        ("systems.bgl.drain", DELETE, "systems.bgl.drain: missing key"),
        ("systems.bgl.log_format", DELETE, "systems.bgl.log_format: missing key"),
        ("datasets.hdfs_logs.kind", DELETE, "datasets.hdfs_logs.kind: missing key"),
        ("sessionize.split.val", DELETE, "sessionize.split.val: missing key"),
        # wrong types
        ("parse.max_unmatched_share", "lots", "parse.max_unmatched_share: expected a number, got 'lots'"),
        ("parse.sample_lines", 1.5, "parse.sample_lines: expected an integer, got 1.5"),
        ("systems.hdfs.drain.depth", 4.5, "systems.hdfs.drain.depth: expected an integer, got 4.5"),
        ("seed", True, "seed: expected an integer, got True"),
        ("systems.hdfs.regex", "blk_", "systems.hdfs.regex: expected a list, got 'blk_'"),
        ("datasets.bgl_logs.session.size", "20", "datasets.bgl_logs.session.size"),
        ("datasets.hdfs_logs.files", ["HDFS_2k.log"], "datasets.hdfs_logs.files: expected a mapping"),
        ("datasets.hdfs_logs.files.logs", [5], "datasets.hdfs_logs.files.logs[0]: expected a string, got 5"),
        ("train.optimizer.betas", [0.9, "x"], "train.optimizer.betas[1]: expected a number, got 'x'"),
        ("train.mixed_precision", 1, "train.mixed_precision: expected true or false, got 1"),
        # what YAML reads but params cannot hold (an unquoted date, a key that is no string)
        ("seed", datetime.date(2026, 1, 1), "seed: expected a string, number, true or false, list or mapping"),
        ("data.archives", {1: None}, "data.archives: key 1 is not a string"),
        # bad literals
        ("parse.parallel.backend", "ray", "parse.parallel.backend: 'ray' is not one of 'dask' or 'processes'"),
        ("datasets.hdfs_logs.kind", "logs", "datasets.hdfs_logs.kind: 'logs' is not one of"),
        ("datasets.hdfs_logs.label.rule", "guess", "datasets.hdfs_logs.label.rule: 'guess' is not one of"),
        ("datasets.hdfs_logs.split.method", "shuffle", "datasets.hdfs_logs.split.method: 'shuffle' is not one of"),
        ("datasets.bgl_logs.session.unit", "minutes", "datasets.bgl_logs.session.unit: 'minutes' is not one of"),
    ],
)
def test_key_errors_name_the_file_and_key(path, value, message):
    assert_one_line_error(path, value, message)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("sessionize.split.train", 0.7, "sessionize.split: train + val + test must be non-negative and sum to 1"),
        ("parse.max_unmatched_share", 1.5, "parse.max_unmatched_share: must lie in [0, 1]"),
        ("systems.hdfs.dataset", "nonesuch", "systems.hdfs.dataset: unknown dataset 'nonesuch'"),
        ("datasets.bgl_logs.system", "vax", "datasets.bgl_logs.system: unknown system 'vax'"),
        ("systems.hdfs.log_format", "<Date> <Time> <Level>", "systems.hdfs.log_format: has no <Content> field"),
        (
            "systems.hdfs.log_format",
            "<Date> <Date> <Content>",
            "systems.hdfs.log_format: field <Date> must be a unique",
        ),
        ("systems.hdfs.log_format", "<Date> ( <Content>", "systems.hdfs.log_format: invalid regex"),
        ("systems.hdfs.timestamp.fields", ["Day"], "systems.hdfs.timestamp.fields: 'Day' is not a header field"),
        ("systems.bgl.regex", ["core\\.\\d+", "(unclosed"], "systems.bgl.regex[1]: invalid regex"),
        (
            "systems.hdfs.log_format",
            "<Date> <status> <Content>",
            "systems.hdfs.log_format: field <status> would overwrite",
        ),
        ("systems.hdfs.drain.depth", 2, "systems.hdfs.drain.depth: must be at least 3"),
        ("systems.bgl.drain.similarity_threshold", 0, "systems.bgl.drain.similarity_threshold: must lie in (0, 1]"),
        ("systems.bgl.drain.max_children", 0, "systems.bgl.drain.max_children: must be at least 1"),
        ("parse.chunk_bytes", 0, "parse.chunk_bytes: must be at least 1, got 0"),
        ("parse.sample_lines", -1, "parse.sample_lines: must be 0 or more, got -1"),
        ("parse.parallel.workers", -1, "parse.parallel.workers: must be 0 or more, got -1"),
        (
            "parse.parallel",
            {"backend": "processes", "workers": 2, "scheduler_address": "tcp://scheduler:8786"},
            "parse.parallel.scheduler_address: needs backend dask",
        ),
        ("datasets.hdfs_logs.files", {"labels": "x.csv"}, "datasets.hdfs_logs.files: kind raw needs logs"),
        ("datasets.hdfs_logs.files.logs", [], "datasets.hdfs_logs.files.logs: expected a non-empty list"),
        (
            "datasets.bgl_100k.files",
            {"events": "e.csv"},
            "datasets.bgl_100k.files: kind events needs events, templates",
        ),
        ("datasets.hdfs_deeplog.files", {"normal": "n"}, "kind sessions needs normal, abnormal, templates or sessions"),
        ("datasets.hdfs_logs.session", DELETE, "datasets.hdfs_logs.session: missing key (required for kind raw)"),
        ("datasets.bgl_100k.label", DELETE, "datasets.bgl_100k.label: missing key (required for kind events)"),
        (
            "datasets.hdfs_deeplog.label",
            {"rule": "source_file"},
            "datasets.hdfs_deeplog.label: not allowed for kind sessions",
        ),
        (
            "datasets.hdfs_logs.session.key_regex",
            "blk_-?\\d+",
            "datasets.hdfs_logs.session.key_regex: must have exactly 1 group",
        ),
        ("datasets.hdfs_logs.session.key_regex", "(blk_", "datasets.hdfs_logs.session.key_regex: invalid regex"),
        ("datasets.hdfs_logs.session", {"rule": "key"}, "datasets.hdfs_logs.session.key_regex: missing key"),
        (
            "datasets.bgl_logs.session",
            {"rule": "window", "size": 0, "step": 1},
            "datasets.bgl_logs.session: size and step",
        ),
        (
            "datasets.bgl_logs.session.group_by",
            "Rack",
            "datasets.bgl_logs.session.group_by: 'Rack' is not a header field",
        ),
        (
            "datasets.bgl_logs.label",
            {"rule": "line_field", "field": "Tag", "normal_value": "-"},
            "datasets.bgl_logs.label.field: 'Tag'",
        ),
        (
            "datasets.bgl_logs.label",
            {"rule": "line_field"},
            "datasets.bgl_logs.label: field and normal_value are required",
        ),
        (
            "datasets.bgl_logs.label",
            {"rule": "key_file"},
            "datasets.bgl_logs.label.rule: key_file needs session rule key",
        ),
        (
            "datasets.openstack_2k.label",
            {"rule": "source_file"},
            "datasets.openstack_2k.label.rule: source_file needs kind raw with at least two",
        ),
        (
            "datasets.hdfs_logs.files.labels",
            DELETE,
            "datasets.hdfs_logs.files.labels: missing key (required for label rule key_file)",
        ),
        ("datasets.hdfs_deeplog.anomaly_share", 1.5, "datasets.hdfs_deeplog.anomaly_share: must lie in (0, 1)"),
        # a dataset's own line layout, and the session-per-file rule
        (
            "datasets.openstack_devstack.log_format",
            "<Level> <Component>",
            "datasets.openstack_devstack.log_format: has no <Content>",
        ),
        (
            "datasets.openstack_devstack.log_format",
            "<Level> ( <Content>",
            "datasets.openstack_devstack.log_format: invalid regex",
        ),
        (
            "datasets.openstack_devstack.timestamp",
            {"fields": ["Date"], "format": "%Y"},
            "datasets.openstack_devstack.timestamp.fields: 'Date' is not a header field",
        ),
        (
            "datasets.openstack_devstack.timestamp",
            DELETE,
            "systems.openstack.timestamp.fields: 'Date' is not a header field",
        ),  # its own format, the system's timestamp
        ("datasets.hdfs_deeplog.log_format", "<Content>", "datasets.hdfs_deeplog.log_format: only for kind raw"),
        ("datasets.bgl_100k.session", {"rule": "file"}, "datasets.bgl_100k.session.rule: file needs kind raw"),
        (
            "datasets.hdfs_logs.session",
            {"rule": "file", "key_regex": "[^/]+"},
            "session.key_regex: must have exactly 1 group",
        ),
        ("datasets.hdfs_logs.session.rule", "files", "datasets.hdfs_logs.session.rule: 'files' is not one of"),
        ("evaluate.level_rule.levels", [], "evaluate.level_rule.levels: name at least one non-empty level"),
        ("evaluate.level_rule", DELETE, "evaluate.level_rule: missing key"),
        ("evaluate.recommended", "magic", "evaluate.recommended: unknown method 'magic'"),
        ("evaluate.recommended", "supervised_target", "evaluate.recommended: supervised_target reads target labels"),
        (
            "evaluate.baselines",
            ["pca_mixture", "level_rule", "supervised_target"],
            "evaluate.methods[3]: isolation_forest is not run by the baselines stage (add it to evaluate.baselines)",
        ),
        ("evaluate.baselines", ["zerolog"], "evaluate.baselines[0]: zerolog is a transfer method"),
        ("evaluate.detectors.pca.weighting", "idf", "evaluate.detectors.pca.weighting: 'idf' is not one of"),
        ("evaluate.detectors.deeplog.epochs", 0, "evaluate.detectors.deeplog.epochs: must be at least 1"),
        ("evaluate.primary_threshold_rule", "pi-hat", "evaluate.primary_threshold_rule: 'pi-hat' is not one of"),
    ],
)
def test_cross_key_checks_name_the_key(path, value, message):
    assert_one_line_error(path, value, message)


def test_a_group_by_on_a_lower_cased_field_is_accepted():
    raw = changed("datasets.bgl_logs.session.group_by", "Node")
    assert parse_params(raw).datasets["bgl_logs"].session.group_by == "Node"
    raw = changed("datasets.bgl_logs.session.group_by", "component")
    assert parse_params(raw).datasets["bgl_logs"].session.group_by == "component"


def test_missing_and_malformed_params_files(tmp_path):
    with pytest.raises(ConfigError, match="nothing.yaml: params file not found"):
        load_params(tmp_path / "nothing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("seed: 1\nparse: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_params(broken)


@pytest.mark.parametrize("override", [("evaluate", "contamination_prior", 0.1), ("train", "epochs", 2)])
def test_params_survive_dvc_exp_run_set_param(tmp_path, override):
    """`dvc exp run -S` rewrites params.yaml with ruamel.yaml (quotes dropped, flow lists restyled); what it writes
    must load into the same params, the override aside. PyYAML refuses that output (an unquoted regex in a flow
    list)."""
    from dvc.utils.serialize import modify_yaml

    section, key, value = override
    copy = tmp_path / "params.yaml"
    copy.write_text(PARAMS_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    with modify_yaml(copy) as data:
        data[section][key] = value
    rewritten = load_params(copy)
    expected = changed(f"{section}.{key}", value)
    assert rewritten == parse_params(expected, str(copy))


@pytest.mark.parametrize(
    "key",
    [
        "torch_threads",
        "method_workers",
        "batch_size",
        "score_batch_size",
        "epochs",
        "max_steps_per_epoch",
        "checkpoint_every_epochs",
        "min_source_anomalies",
    ],
)
def test_train_counts_must_be_positive(key):
    with pytest.raises(ConfigError, match=rf"params.yaml: train\.{key}: must be at least 1, got 0"):
        parse_params(changed(f"train.{key}", 0))


def test_a_dataset_layout_replaces_its_systems_and_a_file_rule_needs_no_regex():
    params = parse_params(changed("datasets.hdfs_logs.session", {"rule": "file"}), "params.yaml")
    devstack = params.dataset_system("openstack_devstack")
    assert devstack.log_format == params.datasets["openstack_devstack"].log_format
    assert devstack.timestamp.fields == [] and devstack.regex == params.systems["openstack"].regex
    instances, openstack = params.dataset_system("openstack_instances"), params.systems["openstack"]
    for key in ("log_format", "timestamp", "regex", "drain"):  # what parsing reads: the system's own
        assert getattr(instances, key) == getattr(openstack, key)
    assert (
        params.datasets["hdfs_logs"].session.rule == "file" and params.datasets["hdfs_logs"].session.key_regex is None
    )


def test_a_value_dvc_cannot_round_trip_is_refused_in_one_line() -> None:
    """DVC folds long params values in dvc.lock at a space; two spaces in a row lose one, so the stage would stay
    modified for good (zookeeper's official log format has two)."""
    raw = read_yaml(PARAMS_FILE.read_text(encoding="utf-8"))
    raw["systems"]["hdfs"]["log_format"] = "<Date> <Time> - <Level>  \\[<Node>\\] - <Content>"
    with pytest.raises(
        ConfigError,
        match=r"systems\.hdfs\.log_format: two consecutive spaces at character 24 .*"
        r"a space matches any run of whitespace",
    ):
        parse_params(raw)
