"""The one JSON reader (zerolog.io.read_json): every bad input file is a one-line DataError naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerolog.errors import DataError
from zerolog.io import read_json, write_json


def test_a_written_file_reads_back(tmp_path: Path) -> None:
    write_json(tmp_path / "value.json", {"b": [1, 2], "a": None})
    assert read_json(tmp_path / "value.json") == {"a": None, "b": [1, 2]}


def test_invalid_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n"a": }\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.json: line 2: invalid JSON"):
        read_json(path)


def test_text_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(DataError, match=r"binary\.json: not UTF-8 text"):
        read_json(path)


def test_a_missing_file_says_what_writes_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.json: file not found \(run the select stage\)"):
        read_json(tmp_path / "absent.json", "run the select stage")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "absent.json")
