"""Stage report: ``reports/results.md`` and ``reports/f1_heatmap.png`` from every pair's ``metrics/<pair>.json``.

The report says what each number was measured on (dataset, label rule, test size, anomalies), under which threshold
rule, with its bootstrap interval; it marks the supervised oracle as an upper bound, lists not-evaluable and skipped
pairs with their reasons, and sets the published figures beside ours with a plain note on what differs.

``python -m zerolog.report`` rewrites the results block of README.md (between ``<!-- results:start -->`` and
``<!-- results:end -->``) from the current metrics; it is not a DVC stage output (README is committed by hand).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zerolog.artifacts import ArtifactPaths, method_spec
from zerolog.config import DetectConfig, EvaluateConfig, MlflowConfig, PairConfig, load_params
from zerolog.detection.registry import register_recommended
from zerolog.errors import DataError, ZerologError
from zerolog.io import read_json, write_text
from zerolog.plots import plot_heatmap

RESULTS_FILE = "results.md"
HEATMAP_FILE = "f1_heatmap.png"
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
DETAILS = "evaluate"  # reports/evaluate/<pair>.json, written by the evaluate stage


@dataclass(frozen=True)
class ReportSettings:
    """What the report reads from params: the pairs, the evaluate section (methods, rules) and where files live."""

    pairs: dict[str, PairConfig]
    evaluate: EvaluateConfig
    paths: ArtifactPaths

# Published figures (/work/shared/paper/method.md §7). ZeroLog gives only its abstract's headline; FreeLog gives
# per-pair PRECISION (%) only (wizwand summary of arXiv 2507.19806), no recall or F1.
PUBLISHED_ZEROLOG = "F1 > 0.80 on every pair, with zero target labels (abstract; no per-pair figures published)"
PUBLISHED_FREELOG_PRECISION = {"hdfs-bgl": 81.12, "bgl-hdfs": 79.34, "openstack-bgl": 73.59, "openstack-hdfs": 71.34}
PUBLISHED_NOTE = (
    "The published figures were measured on the full HDFS_v1, BGL and OpenStack datasets with the papers' own "
    "sessions, splits and label conventions; ours are measured on the bundled subsets named in each row "
    "(data/bundled/README.md), so they are not the same experiment and the comparison is only indicative."
)


# ----------------------------------------------------------------------------- reading


def read_pair_metrics(settings: ReportSettings) -> dict[str, dict[str, Any]]:
    """``reports/evaluate/<pair>.json`` of every pair in params, in params order; DataError naming a missing file."""
    results = {}
    for pair in settings.pairs:
        path = settings.paths.report(DETAILS) / f"{pair}.json"
        if not path.is_file():
            raise DataError(f"{path}: file not found (run the evaluate stage for pair {pair})")
        try:
            results[pair] = read_json(path)
        except ValueError as error:
            raise DataError(str(error)) from None
        for key in ("status", "methods"):
            if key not in results[pair]:
                raise DataError(f"{path}: missing key {key!r}")
    return results


def method_label(method: str) -> str:
    return f"{method} (ORACLE)" if method_spec(method).oracle else method


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(values: Any) -> str:
    if not values:
        return "–"
    return f"[{values[0]:.3f}, {values[1]:.3f}]"


def _data_cell(result: dict[str, Any]) -> str:
    test = result.get("test") or {}
    ratio = test.get("ratio")
    share = "" if ratio is None else f" ({100 * ratio:.1f}%)"
    return f"{result.get('dataset', '?')}: {test.get('size', 0)} test, {test.get('anomalies', 0)} anomalous{share}"


def _f1_cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    if entry.get("status") != "evaluated":
        return "n/a"
    if entry.get("f1") is None:
        return "n/a"
    return f"{entry['f1']:.3f} {_interval(entry.get('f1_ci'))}"


def f1_matrix(results: dict[str, dict[str, Any]], methods: list[str]) -> np.ndarray:
    """(pairs, methods) headline F1; NaN where a pair or method was not evaluated."""
    matrix = np.full((len(results), len(methods)), np.nan)
    for row, result in enumerate(results.values()):
        if result.get("status") != "evaluated":
            continue
        for column, method in enumerate(methods):
            value = (result["methods"].get(method) or {}).get("f1")
            if value is not None:
                matrix[row, column] = value
    return matrix


# ----------------------------------------------------------------------------- markdown


def summary_table(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> str:
    """Pairs x methods headline F1 with its bootstrap interval, and the data each pair was measured on."""
    methods = settings.evaluate.methods
    header = ["pair", "status", "measured on", *[method_label(method) for method in methods]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair, result in results.items():
        if result["status"] != "evaluated":
            cells = ["–"] * len(methods)
        else:
            cells = [_f1_cell(result["methods"].get(method)) for method in methods]
        status = result["status"].replace("_", " ")
        lines.append(f"| {pair} | {status} | {_data_cell(result)} | " + " | ".join(cells) + " |")
    rules = {method: settings.evaluate.primary_threshold_rule_by_method.get(method, settings.evaluate.primary_threshold_rule)
             for method in methods}
    rule_text = ", ".join(f"{method}: `{rule}`" for method, rule in rules.items())
    confidence = int(round(100 * settings.evaluate.bootstrap.confidence))
    lines.append("")
    lines.append(
        f"F1 of the anomaly class on the target's test split with its {confidence}% bootstrap interval "
        f"({settings.evaluate.bootstrap.samples} resamples). Threshold rule per method: {rule_text}. "
        "`supervised_target` is the ORACLE: trained on the target's own labels, an upper bound, not a zero-label "
        "result. n/a: the method or rule could not run (reason in the details below)."
    )
    return "\n".join(lines)


def _pair_details(settings: ReportSettings, pair: str, result: dict[str, Any]) -> list[str]:
    lines = [f"### {pair}", ""]
    sources = ", ".join(result.get("sources_used", result.get("sources", []))) or "none usable"
    skipped = result.get("sources_skipped") or {}
    if skipped:
        sources += " (not used: " + "; ".join(f"{name}: {why}" for name, why in skipped.items()) + ")"
    lines.append(
        f"Sources: {sources or 'none'}; target: {result.get('target')}; measured on {_data_cell(result)}; "
        f"label rule: `{result.get('label_rule')}`."
    )
    lines.append("")
    if result["status"] != "evaluated":
        lines += [f"**{result['status'].replace('_', ' ')}**: {result.get('reason')}", ""]
        return lines
    lines += [
        "| method | rule | precision | recall | F1 | F1 interval | PR-AUC | ROC-AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in settings.evaluate.methods:
        entry = result["methods"].get(method)
        if entry is None:
            continue
        if entry.get("status") != "evaluated":
            lines.append(f"| {method_label(method)} | – | n/a | n/a | n/a | – | – | – |")
            continue
        lines.append(
            f"| {method_label(method)} | `{entry['threshold_rule']}` | {_number(entry.get('precision'))} | "
            f"{_number(entry.get('recall'))} | {_number(entry.get('f1'))} | {_interval(entry.get('f1_ci'))} | "
            f"{_number(entry.get('pr_auc'))} | {_number(entry.get('roc_auc'))} |"
        )
    rules = list(dict.fromkeys(rule for entry in result["methods"].values() for rule in entry.get("rules", {})))
    if rules:
        lines += ["", "F1 under every threshold rule (the threshold in parentheses):", ""]
        lines.append("| method | " + " | ".join(f"`{rule}`" for rule in rules) + " |")
        lines.append("|---|" + "---|" * len(rules))
        for method in settings.evaluate.methods:
            entry = result["methods"].get(method)
            if not entry or entry.get("status") != "evaluated":
                continue
            cells = []
            for rule in rules:
                values = entry["rules"].get(rule)
                if not values:
                    cells.append("–")
                elif values.get("status") != "evaluated":
                    cells.append("n/a")
                else:
                    cells.append(f"{values['f1']:.3f} ({values['threshold']:.3g})")
            lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    problems = [
        (method, entry.get("reason"))
        for method, entry in result["methods"].items()
        if entry.get("status") != "evaluated" or entry.get("reason")
    ]
    problems += [
        (f"{method} / {rule}", values.get("reason"))
        for method, entry in result["methods"].items()
        for rule, values in entry.get("rules", {}).items()
        if values.get("status") == "not_applicable" and not (rule == "target_val" and not method_spec(method).oracle)
    ]
    if problems:
        lines += ["", "Not available / not applicable:"]
        lines += [f"- {name}: {reason}" for name, reason in problems]
    lines.append("")
    return lines


def published_section(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["## Published figures beside ours", ""]
    lines.append(f"- ZeroLog: {PUBLISHED_ZEROLOG}.")
    lines.append("- FreeLog: per-pair precision only (recall and F1 not published).")
    lines.append("")
    lines.append("| pair | FreeLog precision (published) | our zerolog precision | our zerolog F1 | measured on |")
    lines.append("|---|---|---|---|---|")
    for pair, published in PUBLISHED_FREELOG_PRECISION.items():
        result = results.get(pair)
        if result is None:
            lines.append(f"| {pair} | {published:.2f}% | not in settings.pairs | – | – |")
            continue
        entry = result["methods"].get("zerolog") or {}
        if result["status"] != "evaluated" or entry.get("status") != "evaluated":
            ours = result["status"].replace("_", " ") if result["status"] != "evaluated" else "n/a"
            lines.append(f"| {pair} | {published:.2f}% | {ours} | {ours} | {_data_cell(result)} |")
            continue
        precision = entry.get("precision")
        ours_precision = "–" if precision is None else f"{100 * precision:.2f}%"
        lines.append(
            f"| {pair} | {published:.2f}% | {ours_precision} | {_f1_cell(entry)} | {_data_cell(result)} |"
        )
    lines += ["", PUBLISHED_NOTE, ""]
    return lines


def results_markdown(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> str:
    """The whole of reports/results.md."""
    lines = ["# Results", ""]
    lines.append(
        "Zero-label cross-system log anomaly detection: every method trained on the labeled source system(s) and "
        "the unlabeled target, evaluated once on the target's test labels. Generated by `dvc repro report` from "
        "`reports/evaluate/<pair>.json`; do not edit by hand."
    )
    lines += ["", "## F1 per pair and method", "", summary_table(settings, results), ""]
    lines += ["![F1 heatmap](f1_heatmap.png)", ""]
    not_evaluated = [(pair, result) for pair, result in results.items() if result["status"] != "evaluated"]
    if not_evaluated:
        lines += ["## Pairs not evaluated", ""]
        for pair, result in not_evaluated:
            lines.append(f"- **{pair}** ({result['status'].replace('_', ' ')}): {result.get('reason')}")
        lines.append("")
    lines += published_section(settings, results)
    lines += ["## Details per pair", ""]
    for pair, result in results.items():
        lines += _pair_details(settings, pair, result)
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- heatmap


def write_heatmap(path: Path, results: dict[str, dict[str, Any]], methods: list[str]) -> None:
    """F1 over pairs (rows) x methods (columns); grey 'n/a' where not evaluated."""
    row_labels = [
        pair if result.get("status") == "evaluated" else f"{pair} ({result.get('status', '?').replace('_', ' ')})"
        for pair, result in results.items()
    ]
    plot_heatmap(path, f1_matrix(results, methods), row_labels, [method_label(method) for method in methods],
                 "F1 on the target test split", "F1 (headline threshold rule)")  # fmt: skip


# ----------------------------------------------------------------------------- stage and README


def build_report(pairs: dict[str, PairConfig], evaluate: EvaluateConfig, tracking: MlflowConfig,
                 paths: ArtifactPaths, detect: DetectConfig, chunk_bytes: int) -> None:  # fmt: skip
    """Stage report: write ``reports/results.md`` and ``reports/f1_heatmap.png``; log both to an MLflow run; register
    each target's recommended detector in the MLflow Model Registry (zerolog.detection.registry)."""
    from zerolog.tracking import Tracker, flatten_params

    settings = ReportSettings(pairs, evaluate, paths)
    results = read_pair_metrics(settings)
    markdown_path, heatmap_path = paths.report(RESULTS_FILE), paths.report(HEATMAP_FILE)
    write_heatmap(heatmap_path, results, evaluate.methods)
    write_text(markdown_path, results_markdown(settings, results))
    tracker = Tracker(tracking)
    logged = flatten_params({"pairs": pairs, "evaluate": evaluate})
    with tracker.run("report", {"stage": "report", "pairs": ",".join(pairs)}, logged) as run_id:
        tracker.log_metrics(run_id, _report_metrics(settings, results))
        tracker.log_artifacts(run_id, [markdown_path, heatmap_path], "report")
    register_recommended(list(dict.fromkeys(pair.target for pair in pairs.values())), tracking, paths, detect, chunk_bytes)


def _report_metrics(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Headline F1 per pair and method as MLflow metrics ``f1/<pair>/<method>`` of the report run."""
    metrics = {}
    matrix = f1_matrix(results, settings.evaluate.methods)
    for row, pair in enumerate(results):
        for column, method in enumerate(settings.evaluate.methods):
            if not np.isnan(matrix[row, column]):
                metrics[f"f1/{pair}/{method}"] = float(matrix[row, column])
    return metrics


def readme_block(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> str:
    """The README results block: the summary table and a pointer to the full report."""
    return (
        summary_table(settings, results)
        + f"\n\nFull report with precision, recall, PR-AUC, ROC-AUC, every threshold rule and the published figures: "
        f"[`{settings.paths.report(RESULTS_FILE)}`]({settings.paths.report(RESULTS_FILE)})."
    )


def replace_between_markers(text: str, block: str, where: str) -> str:
    """Replace what lies between README_START and README_END; DataError when the markers are missing or out of order."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < 0:
        missing = README_START if start < 0 else README_END
        raise DataError(f"{where}: marker {missing} not found; add both {README_START} and {README_END}")
    if text.count(README_START) != 1 or text.count(README_END) != 1 or end < start:
        raise DataError(f"{where}: expected exactly one {README_START} followed by one {README_END}")
    return text[: start + len(README_START)] + "\n" + block.strip() + "\n" + text[end:]


def update_readme_results(settings: ReportSettings, readme: Path = Path("README.md")) -> None:
    """Rewrite README's results block from the current metrics; README is untouched on any error."""
    if not readme.is_file():
        raise DataError(f"{readme}: file not found")
    text = readme.read_text(encoding="utf-8")
    updated = replace_between_markers(text, readme_block(settings, read_pair_metrics(settings)), str(readme))
    if updated != text:
        write_text(readme, updated)


def main(argv: list[str] | None = None) -> None:
    """``python -m zerolog.report [README]``: refresh README's results block from metrics/<pair>.json."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) > 1 or (arguments and arguments[0] in ("-h", "--help")):
        sys.exit("usage: python -m zerolog.report [README.md]")
    try:
        params = load_params()
        settings = ReportSettings(params.pairs, params.evaluate, ArtifactPaths(params.paths))
        update_readme_results(settings, Path(arguments[0]) if arguments else Path("README.md"))
    except ZerologError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
