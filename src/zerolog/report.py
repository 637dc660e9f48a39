"""Stage report: ``reports/results.md`` and ``reports/f1_heatmap.png`` from every pair's ``metrics/<pair>.json``.

The report says what each number was measured on (dataset, label rule, test size, anomalies), under which threshold
rule, with its bootstrap interval; it marks the supervised oracle as an upper bound, lists not-evaluable and skipped
pairs with their reasons, and sets the published figures beside ours under the paper's protocol (stage paper,
``metrics/paper/<pair>.json``, its best-epoch figure marked ORACLE) and under the realistic one, with what differs.

``python -m zerolog.report`` rewrites the results block of README.md (between ``<!-- results:start -->`` and
``<!-- results:end -->``) and, when ``protocols`` lists ``paper``, the paper-protocol block (between
``<!-- paper-protocol:start -->`` and ``<!-- paper-protocol:end -->``) from the current metrics; it is not a DVC
stage output (README is committed by hand).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zerolog.artifacts import ArtifactPaths, Status
from zerolog.config import DetectConfig, EvaluateConfig, MlflowConfig, PairConfig, PaperConfig, Params
from zerolog.config_loader import load_params
from zerolog.detection.registry import register_recommended
from zerolog.errors import DataError, ZerologError
from zerolog.io import read_json, write_text
from zerolog.methods import MethodKind, method_spec
from zerolog.plots import plot_heatmap
from zerolog.runner import Outputs

RESULTS_FILE = "results.md"
HEATMAP_FILE = "f1_heatmap.png"
README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
README_PAPER_START = "<!-- paper-protocol:start -->"
README_PAPER_END = "<!-- paper-protocol:end -->"


@dataclass(frozen=True)
class ReportSettings:
    """Stage report's settings: the pairs, ``evaluate.*`` (methods, rules), the paper protocol's section when
    ``protocols`` lists it; for the registry: where runs go, ``detect.*`` and ``parse.chunk_bytes`` (the README
    refresh, ``python -m zerolog.report``, needs none of these three)."""

    pairs: dict[str, PairConfig]
    evaluate: EvaluateConfig
    paper: PaperConfig | None = None  # the paper protocol's section when ``protocols`` lists it, else None
    tracking: MlflowConfig | None = None
    detect: DetectConfig | None = None
    chunk_bytes: int = 0


def report_section(params: Params, _: str) -> ReportSettings:
    paper = params.paper if "paper" in params.protocols else None  # the paper protocol's section, when measured
    return ReportSettings(params.pairs, params.evaluate, paper, params.mlflow, params.detect, params.parse.chunk_bytes)


# Published figures (the papers' own tables, docs/method.md). ZeroLog gives only its abstract's headline; FreeLog gives
# per-pair PRECISION (%) only (wizwand summary of arXiv 2507.19806), no recall or F1.
PUBLISHED_ZEROLOG = "F1 > 0.80 on every pair, with zero target labels (abstract; no per-pair figures published)"
PUBLISHED_FREELOG_PRECISION = {"hdfs-bgl": 81.12, "bgl-hdfs": 79.34, "openstack-bgl": 73.59, "openstack-hdfs": 71.34}
PUBLISHED_NOTE = (
    "The published figures were measured on the full HDFS_v1, BGL and OpenStack datasets with the papers' own "
    "sessions, splits and label conventions; ours are measured on the bundled subsets named in each row "
    "(data/bundled/README.md), so they are not the same experiment and the comparison is only indicative."
)


# ----------------------------------------------------------------------------- reading


def _read_checked(path: Path, stage: str, pair: str, keys: tuple[str, ...]) -> Any:
    """A pair's JSON file written by ``stage``; DataError naming a missing file or a missing key."""
    result = read_json(path, f"run the {stage} stage for pair {pair}")
    missing = [key for key in keys if key not in result]
    if missing:
        raise DataError(f"{path}: missing key {missing[0]!r}")
    return result


def read_pair_metrics(settings: ReportSettings, paths: ArtifactPaths) -> dict[str, dict[str, Any]]:
    """``reports/evaluate/<pair>.json`` of every pair in params, in params order; DataError naming a missing file."""
    return {pair: _read_checked(paths.evaluation_details(pair), "evaluate", pair, ("status", "methods"))
            for pair in settings.pairs}  # fmt: skip


def _status(result: dict[str, Any]) -> str:
    """A pair's status as words (``not evaluable``)."""
    return str(result.get("status", "?")).replace("_", " ")


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
    """Headline F1, ``± sd`` over the model seeds where the method ran under more than one, and the first seed's
    bootstrap interval."""
    if not entry:
        return "–"
    if entry.get("status") != Status.EVALUATED or entry.get("f1") is None:
        return "n/a"
    spread = ""
    if len(entry.get("seeds") or {}) > 1 and entry.get("f1_sd") is not None:
        spread = f" ± {entry['f1_sd']:.3f}"
    return f"{entry['f1']:.3f}{spread} {_interval(entry.get('f1_ci'))}"


def f1_matrix(results: dict[str, dict[str, Any]], methods: list[str]) -> np.ndarray:
    """(pairs, methods) headline F1; NaN where a pair or method was not evaluated."""
    matrix = np.full((len(results), len(methods)), np.nan)
    for row, result in enumerate(results.values()):
        if result.get("status") != Status.EVALUATED:
            continue
        for column, method in enumerate(methods):
            value = (result["methods"].get(method) or {}).get("f1")
            if value is not None:
                matrix[row, column] = value
    return matrix


# ----------------------------------------------------------------------------- markdown


def _best_of_kind(result: dict[str, Any], methods: list[str], kind: MethodKind, excluded: str | None) -> str:
    """``method: F1`` of the method of ``kind`` with the highest test F1 (a comparison chosen on test labels: it
    names the bar a zero-label method must pass, it is no method a user could pick beforehand)."""
    entries = {method: result["methods"].get(method) for method in methods
               if method_spec(method).kind is kind and method != excluded}  # fmt: skip
    scored = {method: entry for method, entry in entries.items()
              if entry and entry.get("status") == Status.EVALUATED and entry.get("f1") is not None}  # fmt: skip
    if not scored:
        return "n/a" if entries else "–"
    best = max(scored, key=lambda method: scored[method]["f1"])
    return f"{best}: {_f1_cell(scored[best])}"


def headline_table(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> str:
    """Per pair: the recommended detector (``evaluate.recommended``), the paper's method (zerolog), the best other
    target-only detector and the best rule, the oracle, and pi-hat beside the true share."""
    methods, recommended = settings.evaluate.methods, settings.evaluate.recommended
    oracles = [method for method in methods if method_spec(method).oracle]
    header = ["pair", "measured on", f"recommended: {recommended} (recipe chosen on the other systems)",
              f"{FORMER} (chosen with target labels)", "zerolog (the paper's method)",
              "best other target-only (by test F1)", "best rule (by test F1)",
              *[method_label(method) for method in oracles], "pi-hat", "true share (test)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    recipes: dict[str, str] = {}
    for pair, result in results.items():
        if result["status"] != Status.EVALUATED:
            cells = [_status(result)] + ["–"] * (len(header) - 3)
        else:
            chosen = result["methods"].get(recommended) or {}
            recipes[result.get("target", pair)] = str(chosen.get("detector") or chosen.get("reason") or "n/a")
            pi_hat = result.get("pi_hat") or {}  # label-free: the recommended detector's flagged share of train
            estimate = "n/a" if pi_hat.get("estimate") is None else f"{pi_hat['estimate']:.3f}"
            cells = [_f1_cell(chosen), _f1_cell(result["methods"].get(FORMER)),
                     _f1_cell(result["methods"].get("zerolog")),
                     _best_of_kind(result, methods, MethodKind.TARGET_ONLY, recommended),
                     _best_of_kind(result, methods, MethodKind.RULE, None),
                     *[_f1_cell(result["methods"].get(method)) for method in oracles],
                     estimate, _number(pi_hat.get("true_share_test"))]  # fmt: skip
        lines.append(f"| {pair} | {_data_cell(result)} | " + " | ".join(cells) + " |")
    chosen_line = "; ".join(f"{target}: `{recipe}`" for target, recipe in recipes.items())
    lines += [
        "",
        f"Recipe of each target (members|standing|combination|cut; metrics/selection): {chosen_line}.",
        "",
        _headline_note(settings),
    ]
    return "\n".join(lines)


#: The recommended detector of earlier releases: shown beside the recipe, marked as chosen with target labels.
FORMER = "pca_mixture"


def _headline_note(settings: ReportSettings) -> str:
    rules, recommended = settings.evaluate.primary_threshold_rule_by_method, settings.evaluate.recommended
    return (
        f"F1 on the target's test split (mean ± sd over the model seeds `seeds` where a method depends on them; "
        f"the first seed's bootstrap interval). `{recommended}` (`evaluate.recommended`) is the recipe the stage "
        "selection chose for the target on the OTHER labeled systems' validation splits alone (leave-one-system-out), "
        f"with rule `{rules.get(recommended, settings.evaluate.primary_threshold_rule)}`; `{FORMER}`, the "
        "recommendation of earlier releases, was chosen on the targets' own validation splits; zerolog's rule is "
        f"`{rules.get('zerolog', settings.evaluate.primary_threshold_rule)}`. The best other target-only detector "
        "and the best rule are picked by test F1: the bar a zero-label method must pass, not a choice a user could "
        "make. pi-hat: the share of the target's unlabeled train sessions the recommended detector flags (label-free); "
        "true share: of the labeled test sessions (read for this report only)."
    )


def _kinds_line(methods: list[str]) -> str:
    """Which method is of which kind (methods.METHODS)."""
    by_kind: dict[str, list[str]] = {}
    for method in methods:
        by_kind.setdefault(str(method_spec(method).kind), []).append(method)
    return "Kinds: " + "; ".join(f"{kind}: {', '.join(names)}" for kind, names in by_kind.items()) + "."


def summary_table(settings: ReportSettings, results: dict[str, dict[str, Any]]) -> str:
    """Pairs x methods headline F1 with its bootstrap interval, and the data each pair was measured on."""
    methods = settings.evaluate.methods
    header = ["pair", "status", "measured on", *[method_label(method) for method in methods]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for pair, result in results.items():
        if result["status"] != Status.EVALUATED:
            cells = ["–"] * len(methods)
        else:
            cells = [_f1_cell(result["methods"].get(method)) for method in methods]
        lines.append(f"| {pair} | {_status(result)} | {_data_cell(result)} | " + " | ".join(cells) + " |")
    rules = {
        method: settings.evaluate.primary_threshold_rule_by_method.get(method, settings.evaluate.primary_threshold_rule)
        for method in methods
    }
    rule_text = ", ".join(f"{method}: `{rule}`" for method, rule in rules.items())
    confidence = int(round(100 * settings.evaluate.bootstrap.confidence))
    lines.append("")
    lines.append(
        f"F1 of the anomaly class on the target's test split with its {confidence}% bootstrap interval "
        f"({settings.evaluate.bootstrap.samples} resamples). Threshold rule per method: {rule_text}. "
        "`supervised_target` is the ORACLE: trained on the target's own labels, an upper bound, not a zero-label "
        "result. n/a: the method or rule could not run (reason in the details below)."
    )
    lines += ["", _kinds_line(methods)]
    return "\n".join(lines)


def _pair_details(settings: ReportSettings, pair: str, result: dict[str, Any]) -> list[str]:
    """One pair's section of results.md: its data, then (when evaluated) the method table, the F1 under every
    threshold rule and what was not available."""
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
    if result["status"] != Status.EVALUATED:
        lines += [f"**{_status(result)}**: {result.get('reason')}", ""]
        return lines
    lines += _method_table(settings, result)
    lines += _rule_table(settings, result)
    lines += _problems(result)
    lines.append("")
    return lines


def _method_table(settings: ReportSettings, result: dict[str, Any]) -> list[str]:
    """Each method under its headline rule: precision, recall, F1 with its bootstrap interval, PR-AUC, ROC-AUC."""
    lines = [
        "| method | rule | precision | recall | F1 | F1 interval | PR-AUC | ROC-AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in settings.evaluate.methods:
        entry = result["methods"].get(method)
        if entry is None:
            continue
        if entry.get("status") != Status.EVALUATED:
            lines.append(f"| {method_label(method)} | – | n/a | n/a | n/a | – | – | – |")
            continue
        lines.append(
            f"| {method_label(method)} | `{entry['threshold_rule']}` | {_number(entry.get('precision'))} | "
            f"{_number(entry.get('recall'))} | {_number(entry.get('f1'))} | {_interval(entry.get('f1_ci'))} | "
            f"{_number(entry.get('pr_auc'))} | {_number(entry.get('roc_auc'))} |"
        )
    return lines


def _rule_table(settings: ReportSettings, result: dict[str, Any]) -> list[str]:
    """F1 (threshold) of each evaluated method under every threshold rule any method reports."""
    rules = list(dict.fromkeys(rule for entry in result["methods"].values() for rule in entry.get("rules", {})))
    if not rules:
        return []
    lines = ["", "F1 under every threshold rule (the threshold in parentheses):", ""]
    lines.append("| method | " + " | ".join(f"`{rule}`" for rule in rules) + " |")
    lines.append("|---|" + "---|" * len(rules))
    for method in settings.evaluate.methods:
        entry = result["methods"].get(method)
        if not entry or entry.get("status") != Status.EVALUATED:
            continue
        cells = []
        for rule in rules:
            values = entry["rules"].get(rule)
            if not values:
                cells.append("–")
            elif values.get("status") != Status.EVALUATED:
                cells.append("n/a")
            else:
                cells.append(f"{values['f1']:.3f} ({values['threshold']:.3g})")
        lines.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return lines


def _problems(result: dict[str, Any]) -> list[str]:
    """The methods, and method / rule pairs, that were not available or not applicable, with the reason."""
    problems = [
        (method, entry.get("reason"))
        for method, entry in result["methods"].items()
        if entry.get("status") != Status.EVALUATED or entry.get("reason")
    ]
    problems += [
        (f"{method} / {rule}", values.get("reason"))
        for method, entry in result["methods"].items()
        for rule, values in entry.get("rules", {}).items()
        if values.get("status") == "not_applicable" and not (rule == "target_val" and not method_spec(method).oracle)
    ]
    if not problems:
        return []
    return ["", "Not available / not applicable:", *[f"- {name}: {reason}" for name, reason in problems]]


# What differs between the paper's measurement (docs/method.md: our reading of the ZeroLog code) and stage paper's.
PAPER_DIFFERENCES = (
    "Template vectors: all-MiniLM-L6-v2 sentence embeddings (384-d, `embed.model`) instead of frozen 300-d GloVe "
    "(6B) TF-IDF-weighted word sums.",
    "Sessions: BGL in 20-line chronological windows over the first 100k lines of BGL.log (`bgl_100k`), not 120-line "
    "windows per node over the full log; HDFS as whole blocks of the bundled DeepLog sample, already at HDFS_v1's "
    "2.9% anomalies (147 anomalous blocks), not ~17k anomalous + ~17k normal blocks of the full HDFS_v1; OpenStack as "
    "one session per instance of the labeled DevStack nova logs (Kalaki et al.), not 20-line chunks of loghub's "
    "normal/abnormal files labeled by file of origin. Sequences are cut at `tensors.max_len` events, not 500.",
    "Data sizes: hundreds of sessions per domain after the 1:1 subsampling (table above), not tens of thousands.",
    "Training: one configuration for every pair (`train.*`: 2 x 100 BiGRU, Adam 2e-3, batch 100), `paper.epochs` "
    "epochs; the public code trains 100 epochs with per-pair hidden sizes (apparently tuned on target F1).",
    "Meta-learning: our meta step splits each source batch into meta-train and meta-test halves, both with the "
    "domain loss against the unlabeled target train batch; the public code meta-trains on source train + target "
    "train and meta-tests on source dev + target dev. The target's dev sessions take no part in our training "
    "(they are in its test set, as in the paper).",
    "Parser: logparser3 Drain on raw logs; the bundled HDFS and BGL sets come pre-parsed (loghub event ids), while "
    "the public code runs drain3 on the full logs.",
)


def read_paper_metrics(settings: ReportSettings, paths: ArtifactPaths) -> dict[str, dict[str, Any]]:
    """``metrics/paper/<pair>.json`` of every pair of ``paper.pairs``; empty when the paper protocol is not measured;
    DataError naming a missing or malformed file."""
    pairs = settings.paper.pairs if settings.paper is not None else []
    return {pair: _read_checked(paths.paper_metrics(pair), "paper", pair, ("protocol", "pair", "status", "methods"))
            for pair in pairs}  # fmt: skip


def _paper_cells(result: dict[str, Any] | None, method: str) -> list[str]:
    """Last epoch F1 (P / R) and best epoch F1 (ORACLE) of ``method`` under the paper protocol."""
    if result is None:
        return ["not measured"] * 2
    entry = result["methods"].get(method)
    if result["status"] != Status.EVALUATED or not entry:
        return [_status(result)] * 2
    best = entry["best_epoch_oracle"]
    epochs = best.get("epochs", [best.get("epoch")])  # one best epoch per model seed
    return [f"{_mean_sd(entry, 'f1')} ({_number(entry['precision'], 2)} / {_number(entry['recall'], 2)})",
            f"{_mean_sd(best, 'f1')} (epochs {', '.join(map(str, epochs))})"]  # fmt: skip


def _mean_sd(entry: dict[str, Any], key: str) -> str:
    """``0.612 ± 0.031`` (mean ± sd over model seeds) or ``0.612`` (one run)."""
    spread = entry.get(f"{key}_sd")
    return _number(entry.get(key)) if spread is None else f"{_number(entry.get(key))} ± {spread:.3f}"


def _realistic_cells(result: dict[str, Any] | None) -> list[str]:
    """The realistic protocol's recommended detector (when evaluate declares one) and zerolog, headline F1."""
    if result is None:
        return ["not in `pairs`"] * 2
    if result["status"] != Status.EVALUATED:
        return [_status(result)] * 2
    recommended = result.get("recommended")
    recommended_cell = "– (none declared)"
    if recommended:
        recommended_cell = f"{recommended}: {_f1_precision_cell(result['methods'].get(recommended))}"
    return [recommended_cell, _f1_precision_cell(result["methods"].get("zerolog"))]


def _f1_precision_cell(entry: dict[str, Any] | None) -> str:
    """Headline F1 with its interval, and the precision (the one figure FreeLog publishes)."""
    if not entry or entry.get("status") != Status.EVALUATED or entry.get("precision") is None:
        return _f1_cell(entry)
    return f"{_f1_cell(entry)}, P {entry['precision']:.2f}"


def paper_protocol_table(settings: ReportSettings, results: dict[str, dict[str, Any]],
                         paper_results: dict[str, dict[str, Any]]) -> str:  # fmt: skip
    """Per pair: the published figures, ours under the paper protocol (last epoch; best epoch ORACLE; flag_all) and
    ours under the realistic protocol (metrics/<pair>.json)."""
    methods = list(settings.paper.methods) if settings.paper is not None else ["zerolog"]
    header = ["pair", "published: ZeroLog F1", "published: FreeLog precision"]
    for method in methods:
        header += [
            f"paper protocol: {method}, last epoch F1 (P / R)",
            f"paper protocol: {method}, best epoch F1 (ORACLE)",
        ]
    header += [
        "paper protocol: flag_all F1",
        "realistic: recommended detector F1 [95% CI], precision",
        "realistic: zerolog F1 [95% CI], precision",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    measured = list(settings.paper.pairs) if settings.paper is not None else []
    for pair in dict.fromkeys([*PUBLISHED_FREELOG_PRECISION, *measured]):  # the pairs with published figures first
        published = PUBLISHED_FREELOG_PRECISION.get(pair)
        cells = ["> 0.80 (abstract; pairs not named)", "–" if published is None else f"{published:.2f}%"]
        paper = paper_results.get(pair)
        for method in methods:
            cells += _paper_cells(paper, method)
        flag_all = (paper or {}).get("methods", {}).get("flag_all")
        cells.append(_number(flag_all["f1"]) if flag_all else "–")
        cells += _realistic_cells(results.get(pair))
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paper_data_line(pair: str, result: dict[str, Any]) -> str:
    """Where a pair's paper-protocol numbers come from: per system the kept sessions and the subsampled class."""
    parts = []
    for system, data in result.get("data", {}).items():
        kept, available = data["kept"], data["available"]
        subsampled = data["subsampled_class"]
        source = available["normal"] if subsampled == "normal" else available["anomalous"]
        text = (f"{system} ({data['role']}, {data['dataset']}): {kept['sessions']} kept, {kept['anomalous']} "
                f"anomalous; {subsampled} class subsampled from {source}; train {data['train']['sessions']}, "
                f"dev {data['dev']['sessions']}")  # fmt: skip
        if "test" in data:
            text += f"; test = all {data['test']['sessions']} kept sessions (adapted on)"
        parts.append(text)
    reason = "" if result["status"] == Status.EVALUATED else f" ({_status(result)}: {result.get('reason')})"
    return f"- **{pair}**{reason}: " + "; ".join(parts) + "."


def published_section(settings: ReportSettings, results: dict[str, dict[str, Any]],
                      paper_results: dict[str, dict[str, Any]]) -> list[str]:  # fmt: skip
    """The published figures beside ours under the paper's protocol and under the realistic one, with what differs."""
    lines = ["## Published figures beside ours: the paper's protocol and the realistic one", ""]
    lines.append(f"- ZeroLog: {PUBLISHED_ZEROLOG}. FreeLog (same group): per-pair precision only.")
    lines.append(
        "- **Paper protocol** (stage `paper`, `metrics/paper/<pair>.json`; how the public ZeroLog code measured its "
        "figures): each domain's majority class subsampled to 1:1, the target's test set = every kept target "
        "session (the sessions it adapted on), P(anomalous) >= 0.5, the last epoch; and the best epoch by target "
        "F1, which reads target labels: **ORACLE**, as the public code does. `flag_all` flags every session: what "
        "a 50/50 share alone yields."
    )
    lines.append(
        "- **Realistic protocol** (stages train, baselines, evaluate; the product's headline): the target's natural "
        "anomaly share, a held-out test split, label-free thresholds, the last epoch; table above."
    )
    lines += ["", paper_protocol_table(settings, results, paper_results), ""]
    if settings.paper is None:
        lines += ["The paper protocol is not measured in this run (`protocols` does not list `paper`).", ""]
    else:
        lines += [
            f"Paper protocol data ({settings.paper.epochs} epochs; data draw seed {settings.paper.seed}; "
            f"F1 as mean ± sd over the model seeds `seeds`):",
            "",
        ]
        lines += [_paper_data_line(pair, result) for pair, result in paper_results.items()]
        lines.append("")
    lines += ["What differs from the paper's measurement:", ""]
    lines += [f"- {difference}" for difference in PAPER_DIFFERENCES]
    lines += ["", PUBLISHED_NOTE, ""]
    return lines


def results_markdown(settings: ReportSettings, results: dict[str, dict[str, Any]],
                     paper_results: dict[str, dict[str, Any]]) -> str:  # fmt: skip
    """The whole of reports/results.md."""
    lines = ["# Results", ""]
    lines.append(
        "Zero-label cross-system log anomaly detection: every method trained on the labeled source system(s) and "
        "the unlabeled target, evaluated once on the target's test labels. Generated by `dvc repro report` from "
        "`reports/evaluate/<pair>.json`; do not edit by hand."
    )
    lines += ["", "## Headline: the recommended detector, the paper's method, the best baselines, the oracle", ""]
    lines += [headline_table(settings, results), ""]
    lines += ["## F1 per pair and method", "", summary_table(settings, results), ""]
    lines += ["![F1 heatmap](f1_heatmap.png)", ""]
    not_evaluated = [(pair, result) for pair, result in results.items() if result["status"] != Status.EVALUATED]
    if not_evaluated:
        lines += ["## Pairs not evaluated", ""]
        for pair, result in not_evaluated:
            lines.append(f"- **{pair}** ({_status(result)}): {result.get('reason')}")
        lines.append("")
    lines += published_section(settings, results, paper_results)
    lines += ["## Details per pair", ""]
    for pair, result in results.items():
        lines += _pair_details(settings, pair, result)
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- heatmap


def write_heatmap(path: Path, results: dict[str, dict[str, Any]], methods: list[str]) -> None:
    """F1 over pairs (rows) x methods (columns); grey 'n/a' where not evaluated."""
    row_labels = [
        pair if result.get("status") == Status.EVALUATED else f"{pair} ({_status(result)})"
        for pair, result in results.items()
    ]
    plot_heatmap(path, f1_matrix(results, methods), row_labels, [method_label(method) for method in methods],
                 "F1 on the target test split", "F1 (headline threshold rule)")  # fmt: skip


# ----------------------------------------------------------------------------- stage and README


@dataclass(frozen=True)
class ReportInputs:
    results: dict[str, dict[str, Any]]  # reports/evaluate/<pair>.json by pair
    paper_results: dict[str, dict[str, Any]]  # metrics/paper/<pair>.json by pair (none when not measured)
    bundles: ArtifactPaths  # where each target's detector bundle lies: registered in track (zerolog.detection.registry)


def load_report_inputs(settings: ReportSettings, paths: ArtifactPaths) -> ReportInputs:
    return ReportInputs(read_pair_metrics(settings, paths), read_paper_metrics(settings, paths), paths)


@dataclass(frozen=True)
class ReportResult:
    """``reports/results.md`` and ``reports/f1_heatmap.png``, both logged to the stage's MLflow run; each target's
    recommended detector registered in the MLflow Model Registry."""

    settings: ReportSettings
    inputs: ReportInputs
    markdown: str

    def metrics(self) -> dict[str, float]:
        """Headline F1 per pair and method as MLflow metrics ``f1/<pair>/<method>``."""
        methods, results = self.settings.evaluate.methods, self.inputs.results
        matrix = f1_matrix(results, methods)
        return {f"f1/{pair}/{method}": float(matrix[row, column]) for row, pair in enumerate(results)
                for column, method in enumerate(methods) if not np.isnan(matrix[row, column])}  # fmt: skip

    def _write_files(self, markdown: Path, heatmap: Path) -> None:
        write_heatmap(heatmap, self.inputs.results, self.settings.evaluate.methods)
        markdown.write_text(self.markdown, encoding="utf-8")

    def write(self, outputs: Outputs) -> None:
        self._write_files(outputs["results"], outputs["heatmap"])

    def track(self, tracker: Any, run_id: str) -> None:
        settings = self.settings
        with tempfile.TemporaryDirectory() as scratch:  # the runner records before the result writes its outputs
            files = [Path(scratch) / RESULTS_FILE, Path(scratch) / HEATMAP_FILE]
            self._write_files(*files)
            tracker.log_artifacts(run_id, files, "report")
        tracker.set_tags(run_id, {"pairs": ",".join(settings.pairs)})
        assert settings.tracking is not None and settings.detect is not None
        targets = list(dict.fromkeys(pair.target for pair in settings.pairs.values()))
        register_recommended(targets, settings.tracking, self.inputs.bundles, settings.detect, settings.chunk_bytes)


def compute_report(settings: ReportSettings, inputs: ReportInputs) -> ReportResult:
    """Stage report: the results table (``paper``: the paper protocol's metrics beside the published figures)."""
    return ReportResult(settings, inputs, results_markdown(settings, inputs.results, inputs.paper_results))


def replace_between_markers(text: str, block: str, where: str, first: str = README_START,
                            last: str = README_END) -> str:  # fmt: skip
    """Replace what lies between ``first`` and ``last`` (the results markers by default); DataError when the markers
    are missing or out of order."""
    start, end = text.find(first), text.find(last)
    if start < 0 or end < 0:
        missing = first if start < 0 else last
        raise DataError(f"{where}: marker {missing} not found; add both {first} and {last}")
    if text.count(first) != 1 or text.count(last) != 1 or end < start:
        raise DataError(f"{where}: expected exactly one {first} followed by one {last}")
    return text[: start + len(first)] + "\n" + block.strip() + "\n" + text[end:]


def update_readme_results(settings: ReportSettings, paths: ArtifactPaths, readme: Path = Path("README.md")) -> None:
    """Rewrite README's results block (the headline table, the table of every method, a pointer to the full report)
    and, when the paper protocol is measured, its paper-protocol block from the current metrics; README is untouched
    on any error."""
    if not readme.is_file():
        raise DataError(f"{readme}: file not found")
    text = readme.read_text(encoding="utf-8")
    results, report = read_pair_metrics(settings, paths), paths.report(RESULTS_FILE)
    link = f"[`{report}`]({report})"
    tables = f"{headline_table(settings, results)}\n\n{summary_table(settings, results)}"
    full = "Full report with precision, recall, PR-AUC, ROC-AUC, every threshold rule and the published figures"
    updated = replace_between_markers(text, f"{tables}\n\n{full}: {link}.", str(readme))
    if settings.paper is not None:
        table = paper_protocol_table(settings, results, read_paper_metrics(settings, paths))
        sources = "Data sizes per pair, what differs from the paper and the published figures' sources"
        block = f"{table}\n\n{sources}: {link}."
        updated = replace_between_markers(updated, block, str(readme), README_PAPER_START, README_PAPER_END)
    if updated != text:
        write_text(readme, updated)


def main(argv: list[str] | None = None) -> None:
    """``python -m zerolog.report [README]``: refresh README's results block from metrics/<pair>.json."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) > 1 or (arguments and arguments[0] in ("-h", "--help")):
        sys.exit("usage: python -m zerolog.report [README.md]")
    try:
        params = load_params()
        readme = Path(arguments[0]) if arguments else Path("README.md")
        update_readme_results(report_section(params, ""), ArtifactPaths(params.paths), readme)
    except ZerologError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
