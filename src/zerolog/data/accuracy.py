"""Grouping accuracy of the parse stage's output against loghub's hand-made templates (``make parse-accuracy``).

    python -m zerolog.data.accuracy

For every dataset in ``parse.ground_truth`` it reads ``paths.parsed/<name>/lines.parquet`` (the parse stage's
output in this workspace) and the loghub ``*_structured.csv`` under ``paths.bundled``, and prints the grouping
accuracy (GA; Zhu et al., ICSE-SEIP 2019: a line is correct when the set of lines sharing its event id equals the
set sharing its true event id). Lines must correspond one to one (same line numbers): the bundled 2k samples with
``data.source: bundled``; the line numbers and messages are checked. tests/data/test_parse.py holds the same check
as a lower bound.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from zerolog.artifacts import ArtifactPaths
from zerolog.config import Params
from zerolog.config_loader import load_params
from zerolog.data.parse import grouping_accuracy
from zerolog.errors import DataError, ZerologError


def parse_accuracy(params: Params) -> dict[str, float]:
    """GA per dataset of ``parse.ground_truth``; DataError naming the file when an input is missing or misaligned."""
    results = {}
    for name, truth in params.parse.ground_truth.items():
        lines_path = ArtifactPaths(params.paths).parsed_lines(name)
        truth_path = Path(params.paths.bundled) / truth
        for path in (lines_path, truth_path):  # lines.parquet is a folder of parts
            if not path.exists():
                raise DataError(f"{path}: file not found (parse.ground_truth.{name}; run `dvc repro parse@{name}`)")
        lines = pd.read_parquet(lines_path, columns=["line_number", "content", "event_id"])
        expected = pd.read_csv(truth_path, usecols=["LineId", "Content", "EventId"])
        same = lines["line_number"].tolist() == expected["LineId"].tolist()
        if not same or lines["content"].tolist() != expected["Content"].tolist():
            raise DataError(
                f"{lines_path}: its {len(lines)} lines are not the {len(expected)} lines of {truth_path} "
                "(grouping accuracy needs the bundled sample, data.source: bundled)"
            )
        results[name] = grouping_accuracy(lines["event_id"].fillna("<unparsed>"), expected["EventId"])
    return results


def main() -> None:
    try:
        params = load_params()
        results = parse_accuracy(params)
    except ZerologError as error:
        sys.exit(f"error: {error}")
    print("grouping accuracy against loghub's templates (Drain):")
    for name, accuracy in results.items():
        print(f"  {name:<16} {accuracy:.4f}")


if __name__ == "__main__":
    main()
