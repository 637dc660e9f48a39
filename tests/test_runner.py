"""The one runner (zerolog.runner): declared outputs written atomically by name, exactly those, and one record."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from zerolog import runner
from zerolog.io import flatten
from zerolog.runner import OutputError, Outputs


@dataclass(frozen=True)
class _Section:
    value: int


@dataclass
class _Result:
    value: int
    names: tuple[str, ...] = ("table", "report")
    fail: bool = False

    def metrics(self) -> Mapping[str, Any]:
        return {"value": self.value, "nested": {"twice": 2 * self.value}, "name": "text"}

    def write(self, outputs: Outputs) -> None:
        for name in self.names:
            target = outputs[name]
            if name == "report":
                target.write_text(json.dumps(self.metrics()), encoding="utf-8")
            else:
                (target / "part.txt").write_text(str(self.value), encoding="utf-8")
        if self.fail:
            raise RuntimeError("disk full")


def _run(tmp_path: Path, result: _Result) -> _Result:
    outputs = {"table": tmp_path / "table", "report": tmp_path / "reports" / "report.json"}
    loaded: list[int] = []
    invocation = runner.Run(
        "demo", "item", _Section(3), None, lambda section, paths: loaded.append(section.value) or section.value,
        lambda section, inputs: result, outputs,
    )  # fmt: skip
    returned = runner.run(invocation)
    assert loaded == [3]
    return returned


def test_the_runner_writes_every_declared_output_under_its_name(tmp_path: Path) -> None:
    result = _run(tmp_path, _Result(5))
    assert (tmp_path / "table" / "part.txt").read_text(encoding="utf-8") == "5"
    assert json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))["value"] == 5
    assert result.value == 5
    assert sorted(path.name for path in tmp_path.iterdir()) == ["reports", "table"]  # no temporary left behind


def test_an_undeclared_output_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="'extra', which it does not declare"):
        _run(tmp_path, _Result(1, names=("table", "report", "extra")))
    assert not (tmp_path / "table").exists()  # nothing committed


def test_a_declared_output_left_unwritten_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="did not write its declared output"):
        _run(tmp_path, _Result(1, names=("table",)))


def test_a_failure_leaves_the_previous_outputs_as_they_were(tmp_path: Path) -> None:
    _run(tmp_path, _Result(1))
    with pytest.raises(RuntimeError, match="disk full"):
        _run(tmp_path, _Result(2, fail=True))
    assert (tmp_path / "table" / "part.txt").read_text(encoding="utf-8") == "1"
    assert json.loads((tmp_path / "reports" / "report.json").read_text(encoding="utf-8"))["value"] == 1


def test_flatten_gives_every_leaf_a_dotted_key() -> None:
    assert flatten({"a": 1, "b": {"c": 2.5, "d": [1, 2]}, "f": None}) == {"a": 1, "b.c": 2.5, "b.d": [1, 2], "f": None}


def test_is_folder_reads_the_suffix() -> None:
    assert runner.is_folder(Path("tensors/hdfs")) and not runner.is_folder(Path("reports/data/x.json"))
