"""Compare DVC experiments on the headline numbers, in a table that fits a terminal (``make compare``).

    python -m zerolog.compare [--metric f1] [--methods pca_mixture,zerolog] [--all] [--from-json FILE]

``dvc exp show`` prints every number of every metrics file: thousands of columns. This reads the same data
(``dvc exp show --json``) and prints one line per pair and method and one column per experiment (the workspace,
the baseline commit and each experiment of it): the headline ``--metric`` (mean over seeds for a trained method);
then the params each experiment changed against its baseline. Methods default to the recommended detector
(``evaluate.recommended``) and the paper's method, ``zerolog``. Nothing is computed here: the numbers are the
evaluate stage's, as DVC recorded them for each experiment.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from zerolog.errors import ZerologError
from zerolog.io import flatten, read_json

PAIR_METRICS = "metrics/{pair}.json"
DEFAULT_PAPER_METHOD = "zerolog"


class CompareError(ZerologError):
    """``dvc exp show`` failed or gave data this table cannot read."""


def experiment_rows(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten ``dvc exp show --json``: the workspace, each baseline commit, then its experiments, in DVC's order.
    Each row: ``name``, ``params`` (params.yaml as a nested mapping) and ``metrics`` (path -> data)."""
    rows: list[dict[str, Any]] = []
    for commit in shown:
        revision = commit.get("rev", "")
        rows.append(_row(commit, commit.get("name") or (revision if revision == "workspace" else revision[:7])))
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs") or []:
                rows.append(_row(revision, experiment.get("name") or revision.get("name") or revision["rev"][:7]))
    return rows


def _row(entry: dict[str, Any], name: str) -> dict[str, Any]:
    data = entry.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {path: (value or {}).get("data") or {} for path, value in (data.get("metrics") or {}).items()}
    return {"name": name, "params": params, "metrics": metrics}


def changed_params(params: dict[str, Any], baseline: dict[str, Any]) -> str:
    """``key=value`` for every params key whose value differs from the baseline's (``-S`` form)."""
    now, before = flatten(params), flatten(baseline)
    return " ".join(f"{key}={json.dumps(now.get(key))}" for key in sorted(set(now) | set(before))
                    if now.get(key) != before.get(key))  # fmt: skip


def cell(metrics: dict[str, Any], pair: str, method: str, metric: str) -> str:
    """``0.690`` (one run or a deterministic method), ``0.612±0.031`` (mean ± sd over seeds), ``-`` (not measured)."""
    entry = ((metrics.get(PAIR_METRICS.format(pair=pair)) or {}).get("methods") or {}).get(method) or {}
    value, spread = entry.get(metric), entry.get(f"{metric}_sd")
    if value is None:
        return "-"
    return f"{value:.3f}" if spread is None else f"{value:.3f}±{spread:.3f}"


def table(rows: list[dict[str, Any]], pairs: list[str], methods: list[str], metric: str) -> str:
    """Fixed-width text: one line per pair and method, one column per experiment; then each experiment's changed
    params (against the baseline commit, the second row of ``dvc exp show``)."""
    baseline = rows[1]["params"] if len(rows) > 1 else rows[0]["params"]
    header = ["pair", "method", *[row["name"] for row in rows]]
    body = [[pair, method, *[cell(row["metrics"], pair, method, metric) for row in rows]]
            for pair in pairs for method in methods]  # fmt: skip
    widths = [max(len(line[column]) for line in [header, *body]) for column in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
             for line in [header, *body]]  # fmt: skip
    changes = [f"  {row['name']}: {changed_params(row['params'], baseline) or '(as the baseline)'}" for row in rows]
    title = f"{metric} under the headline rule (mean±sd over seeds for trained methods)"
    return "\n".join([title, *lines, "params changed against the baseline commit:", *changes])


def dvc_experiments(all_commits: bool) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise CompareError(f"dvc exp show failed: {completed.stderr.strip().splitlines()[-1:]}")
    return json.loads(completed.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zerolog.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--metric", default="f1", choices=["f1", "pr_auc", "roc_auc", "precision", "recall"])
    parser.add_argument("--methods", default=None, help="comma-separated; default: evaluate.recommended,zerolog")
    parser.add_argument("--all", action="store_true", help="every commit's experiments (dvc exp show --all-commits)")
    parser.add_argument("--from-json", type=Path, default=None, help="read a saved `dvc exp show --json` instead")
    arguments = parser.parse_args(argv)
    try:
        shown = read_json(arguments.from_json) if arguments.from_json else dvc_experiments(arguments.all)
        rows = experiment_rows(shown)
        if not rows:
            raise CompareError("dvc exp show listed no experiment")
        params = rows[0]["params"]
        pairs = list(params.get("pairs") or {})
        recommended = (params.get("evaluate") or {}).get("recommended")
        methods = arguments.methods.split(",") if arguments.methods else [
            method for method in (recommended, DEFAULT_PAPER_METHOD) if method]  # fmt: skip
    except (ZerologError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(rows, pairs, methods, arguments.metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
