"""Loading params.yaml into the typed sections of zerolog.config: its YAML read as DVC reads it, types checked and
unknown keys refused by pydantic, then the checks across sections that types alone cannot express.

Every error is one line that names the file and the key (``params.yaml: train.epochs: must be at least 1, got 0``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from zerolog.config import PARAMS_FILE, DatasetConfig, ParallelConfig, Params, TimestampConfig
from zerolog.data import DATASET_FILES, LOWER_CASE_FIELDS, RESERVED_LINE_COLUMNS, log_format_fields
from zerolog.errors import ConfigError
from zerolog.methods import MethodKind, method_spec

__all__ = ["load_params", "parse_params", "read_yaml"]

# Strict JSON validation: params.yaml holds JSON's kinds of value, and strict mode refuses what the YAML did not say
# (a bool or "20" where an integer belongs), where Python-mode strictness would also refuse a mapping for a section.
_PARAMS = TypeAdapter(Params)

#: Our wording of pydantic's type errors (JSON's words: "a valid array", "an object").
_EXPECTED = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "dict_type": "expected a mapping",
    "dataclass_type": "expected a mapping",
}


def _message(error: ErrorDetails, raw: Any) -> str:
    """One line naming the key of a pydantic error: its location followed into ``raw``, skipping the steps that are no
    key there (a union's member names: ``str``, ``list[str]``), except a missing key at the end."""
    if error["type"] == "value_error":  # a section's own check: its message names its key
        return str(error.get("ctx", {}).get("error", error["msg"]))
    where, node, loc = "", raw, error["loc"]
    for index, step in enumerate(loc):
        found = isinstance(node, dict) and step in node or isinstance(node, list) and isinstance(step, int)
        if found or (index == len(loc) - 1 and error["type"] == "missing"):
            where += f"[{step}]" if isinstance(step, int) else f".{step}" if where else str(step)
            node = node[step] if found else None
    where, kind, value = where or "top level", error["type"], error["input"]
    if kind == "field_check":  # a field's own check (zerolog.config._checked)
        return f"{where}: {error['msg']}, got {error.get('ctx', {}).get('value')}"
    if kind == "missing":
        return f"{where}: missing key"
    if kind == "unexpected_keyword_argument":
        return f"{where}: unknown key"
    if kind == "literal_error":
        return f"{where}: {value!r} is not one of {error.get('ctx', {}).get('expected')}"
    return f"{where}: {_EXPECTED.get(kind, error['msg'])}, got {value!r}"


def _check_values(value: Any, where: str) -> None:
    """Refuse what YAML reads but JSON cannot hold (a date, a key that is no string), and strings that DVC's lock
    file cannot keep: it writes long values folded at a space, and a fold inside a run of spaces drops one of them,
    so ``dvc status`` would call the stage modified forever (measured with dvc 3)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where or 'top level'}: key {key!r} is not a string")
            _check_values(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_values(item, f"{where}[{index}]")
    elif isinstance(value, str) and "  " in value:
        column = value.index("  ") + 1
        hint = (
            " write one space: in a log format a space matches any run of whitespace"
            if where.endswith("log_format")
            else " write one, or a regex such as ' {2}'"
        )
        raise ConfigError(
            f"{where}: two consecutive spaces at character {column} do not survive DVC's lock file;{hint}"
        )
    elif value is not None and not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: expected a string, number, true or false, list or mapping, got {value!r}")


def _check_regex(pattern: str, where: str, groups: int | None = None) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"{where}: invalid regex {pattern!r} ({error})") from None
    if groups is not None and compiled.groups != groups:
        raise ConfigError(f"{where}: must have exactly {groups} group(s), has {compiled.groups}")


def _check_line_layout(log_format: str, timestamp: TimestampConfig, where_format: str, where_timestamp: str) -> None:
    """A log format (and the timestamp fields it must hold) that stage parse can compile."""
    fields = log_format_fields(log_format)
    if "Content" not in fields:
        raise ConfigError(f"{where_format}: has no <Content> field")
    for field_name in fields:
        if not field_name.isidentifier() or fields.count(field_name) > 1:
            raise ConfigError(f"{where_format}: field <{field_name}> must be a unique identifier")
        if field_name not in LOWER_CASE_FIELDS and field_name in RESERVED_LINE_COLUMNS:
            raise ConfigError(f"{where_format}: field <{field_name}> would overwrite the column {field_name!r}")
    _check_regex(re.sub(r"<[^<>]+>", "(.*?)", log_format), where_format)
    for field_name in timestamp.fields:
        if field_name not in fields or field_name == "Content":
            raise ConfigError(f"{where_timestamp}.fields: {field_name!r} is not a header field of the log format")


def _check_dataset_layout(params: Params, name: str, dataset: DatasetConfig) -> list[str]:
    """Check a dataset's own log format / timestamp (raw only); return the fields of the format it is parsed with."""
    where = f"datasets.{name}"
    if dataset.kind != "raw":
        for key in ("log_format", "timestamp"):
            if getattr(dataset, key) is not None:
                raise ConfigError(f"{where}.{key}: only for kind raw (kind {dataset.kind} is not parsed from lines)")
    system = params.dataset_system(name)
    if dataset.log_format is not None or dataset.timestamp is not None:
        format_owner = where if dataset.log_format is not None else f"systems.{dataset.system}"
        time_owner = where if dataset.timestamp is not None else f"systems.{dataset.system}"
        _check_line_layout(system.log_format, system.timestamp, f"{format_owner}.log_format", f"{time_owner}.timestamp")
    return log_format_fields(system.log_format)


def _check_session_and_label(name: str, dataset: DatasetConfig, fields: list[str]) -> None:
    """Cross-key checks of a dataset's session and label rules against its kind, files and log format."""
    where = f"datasets.{name}"
    session, label = dataset.session, dataset.label
    logs = dataset.files.get("logs")
    if session is not None and session.rule in ("key", "file") and session.key_regex:
        _check_regex(session.key_regex, f"{where}.session.key_regex", groups=1)
    if session is not None and session.rule == "file" and dataset.kind != "raw":
        raise ConfigError(f"{where}.session.rule: file needs kind raw (one session per log file)")
    if (
        session is not None
        and session.group_by is not None
        and (dataset.kind != "raw" or session.group_by not in [*fields, *LOWER_CASE_FIELDS.values()])
    ):
        raise ConfigError(f"{where}.session.group_by: {session.group_by!r} is not a header field of the log format")
    if label is None:
        return
    if label.rule in ("key_file", "key_list"):
        if session is None or session.rule not in ("key", "file"):
            raise ConfigError(f"{where}.label.rule: {label.rule} needs session rule key or file")
        if "labels" not in dataset.files:
            raise ConfigError(f"{where}.files.labels: missing key (required for label rule {label.rule})")
    if label.rule == "source_file" and (dataset.kind != "raw" or not isinstance(logs, list) or len(logs) < 2):
        raise ConfigError(f"{where}.label.rule: source_file needs kind raw with at least two log files")
    if label.rule == "line_field":
        if label.field is None or label.normal_value is None:
            raise ConfigError(f"{where}.label: field and normal_value are required for rule line_field")
        if dataset.kind == "raw" and (label.field not in fields or label.field == "Content"):
            raise ConfigError(f"{where}.label.field: {label.field!r} is not a header field of the log format")


def _check_systems_and_datasets(params: Params) -> None:
    """Cross-key checks of systems.* and datasets.* (stages parse and sessionize)."""
    for name, system in params.systems.items():
        where = f"systems.{name}"
        _check_line_layout(system.log_format, system.timestamp, f"{where}.log_format", f"{where}.timestamp")
        for index, pattern in enumerate(system.regex):
            _check_regex(pattern, f"{where}.regex[{index}]")
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        alternatives = DATASET_FILES[dataset.kind]
        if not any(all(key in dataset.files for key in keys) for keys in alternatives):
            expected = " or ".join(", ".join(keys) for keys in alternatives)
            raise ConfigError(f"{where}.files: kind {dataset.kind} needs {expected}")
        logs = dataset.files.get("logs")
        if dataset.kind == "raw" and (not isinstance(logs, list) or not logs):
            raise ConfigError(f"{where}.files.logs: expected a non-empty list of log files")
        if dataset.kind == "sessions" and dataset.label is not None:
            raise ConfigError(f"{where}.label: not allowed for kind sessions (the sessions carry their labels)")
        if dataset.kind == "sessions" and dataset.session is not None and dataset.session.rule != "key":
            # the sessions come made; a key rule only groups the system's raw lines in zerolog detect
            raise ConfigError(f"{where}.session.rule: kind sessions takes rule key only (raw lines in zerolog detect)")
        fields = _check_dataset_layout(params, name, dataset)
        _check_session_and_label(name, dataset, fields)


def _check_parallel(config: ParallelConfig, where: str) -> None:
    if config.scheduler_address is not None and config.backend != "dask":
        raise ConfigError(f"{where}.scheduler_address: needs backend dask (backend is {config.backend})")


def _check(params: Params) -> None:
    """Cross-key checks that types alone cannot express."""
    fractions = params.sessionize.split
    total = fractions.train + fractions.val + fractions.test
    if abs(total - 1.0) > 1e-6 or min(fractions.train, fractions.val, fractions.test) < 0:
        raise ConfigError(f"sessionize.split: train + val + test must be non-negative and sum to 1, got {total}")
    for name, system_config in params.systems.items():
        if system_config.dataset not in params.datasets:
            raise ConfigError(f"systems.{name}.dataset: unknown dataset {system_config.dataset!r}")
    for name, dataset in params.datasets.items():
        where = f"datasets.{name}"
        if dataset.system not in params.systems:
            raise ConfigError(f"{where}.system: unknown system {dataset.system!r}")
        if dataset.kind in ("raw", "events"):
            if dataset.session is None:
                raise ConfigError(f"{where}.session: missing key (required for kind {dataset.kind})")
            if dataset.label is None and dataset.kind == "events":
                raise ConfigError(f"{where}.label: missing key (required for kind events)")
        if dataset.session is not None:
            rule = dataset.session
            if rule.rule == "key" and not rule.key_regex:
                raise ConfigError(f"{where}.session.key_regex: missing key (required for rule key)")
            if rule.rule == "window" and (not rule.size or not rule.step or rule.size <= 0 or rule.step <= 0):
                raise ConfigError(f"{where}.session: size and step must be positive integers for rule window")
    _check_systems_and_datasets(params)
    for name, pair in params.pairs.items():
        for system in [*pair.sources, pair.target]:
            if system not in params.systems:
                raise ConfigError(f"pairs.{name}: unknown system {system!r}")
        if not pair.sources or pair.target in pair.sources:
            raise ConfigError(f"pairs.{name}: sources must be non-empty and must not include the target")
    _check_protocols(params)
    for index, system in enumerate(params.diagnose.systems):
        if system not in params.systems:
            raise ConfigError(f"diagnose.systems[{index}]: unknown system {system!r}")
    for index, member in enumerate(params.selection.members):
        if member not in params.evaluate.baselines or method_spec(member).kind is not MethodKind.TARGET_ONLY:
            raise ConfigError(
                f"selection.members[{index}]: {member!r} is not a target-only detector of evaluate.baselines"
            )
    for name in params.parse.ground_truth:
        if name not in params.datasets or params.datasets[name].kind != "raw":
            raise ConfigError(f"parse.ground_truth.{name}: not a raw dataset of datasets")
    _check_parallel(params.parse.parallel, "parse.parallel")
    _check_parallel(params.sessionize.parallel, "sessionize.parallel")


def _check_protocols(params: Params) -> None:
    """``realistic`` is always measured (the headline the report and the gate read); ``paper`` pairs exist."""
    if len(set(params.protocols)) != len(params.protocols):
        raise ConfigError(f"protocols: name each protocol once, got {params.protocols}")
    if "realistic" not in params.protocols:
        raise ConfigError(f"protocols: must include realistic (the headline protocol), got {params.protocols}")
    for index, pair in enumerate(params.paper.pairs):
        if pair not in params.pairs:
            raise ConfigError(f"paper.pairs[{index}]: unknown pair {pair!r} (not in pairs)")


def parse_params(raw: Any, source_file: str = str(PARAMS_FILE)) -> Params:
    """Validate an already-loaded params mapping; errors are prefixed with ``source_file``."""
    try:
        _check_values(raw, "")
        if isinstance(raw, dict) and "source_file" in raw:  # a field of Params, not a key of the file
            raise ConfigError("source_file: unknown key")
        try:
            params = _PARAMS.validate_json(json.dumps(raw), strict=True)
        except ValidationError as error:  # an unknown key first (a renamed key is also missing), else the deepest
            first = min(error.errors(), key=lambda d: (d["type"] != "unexpected_keyword_argument", -len(d["loc"])))
            raise ConfigError(_message(first, raw)) from None
        _check(params)
    except ConfigError as error:
        raise ConfigError(f"{source_file}: {error}") from None
    return dataclasses.replace(params, source_file=source_file)


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Load and validate params.yaml."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    return parse_params(read_yaml(path.read_text(encoding="utf-8"), str(path)), str(path))


def read_yaml(text: str, where: str = "params.yaml") -> Any:
    """Parse YAML the way DVC does (ruamel.yaml, YAML 1.2), into plain dicts and lists.

    Why not PyYAML: ``dvc exp run -S key=value`` rewrites params.yaml with ruamel.yaml, which may drop quotes that
    only a YAML 1.1 parser needs (a regex like ``blk_-?\\d+`` in a flow list comes back unquoted and PyYAML refuses
    it). Reading with the same parser family as the writer keeps ``dvc exp run -S`` working.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{where}:{line} invalid YAML: {getattr(error, 'problem', None) or error}") from None
