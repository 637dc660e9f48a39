"""CI quality gate: headline F1 and ROC-AUC per pair and method against a committed baseline.

    python -m zerolog.evaluation.gate check  [--profile quick|full] [--metrics DIR] [--keep]
    python -m zerolog.evaluation.gate update [--profile quick|full] [--metrics DIR] [--keep]

``check`` fails (exit 1), naming the pair, the method and the drop, when a guarded number falls more than its
tolerance below its baseline, when a pair of the baseline has no metrics file, or when a method it guards is no
longer measured. It passes on equal or better numbers. ``update`` rewrites the baseline deliberately (commit it
with a message saying why). Exit 2: a usage or input error (a missing baseline, an unreadable file).

What is guarded (``method_guards``): per pair and method the headline F1 (``evaluate.primary_threshold_rule``) and
the ROC-AUC (ranking, so a method whose threshold does not transfer is still guarded). A deterministic method is
guarded on its value with ``gate.tolerance``. A stochastic one (a trained model) is a draw per seed, and one draw is
never guarded: the same code on another CPU moved a ROC-AUC by 0.17; its mean over at least ``gate.min_seeds``
seeds is, with the tolerance widened to ``gate.seed_sd_multiplier`` standard deviations of the difference of two
such means. A number within its tolerance of 0 cannot fail and is listed as not gated, with the reason.

Profiles
- ``full``: the metrics of the default pipeline in the workspace (``paths.metrics``, after ``dvc repro``), against
  ``gate.baseline``.
- any profile in ``gate.profiles`` (``quick``): a YAML file with its own ``baseline`` and a list of ``overrides`` in
  ``dvc exp run -S`` form (``train.epochs=2``). The gate copies the project (git's tracked and unignored files) into a
  scratch folder, applies the overrides to the copy's params.yaml, runs ``dvc repro`` there, and compares the copy's
  metrics. The workspace, its params, metrics and MLflow store are never touched; the copy shares the workspace's
  DVC cache, so stages whose inputs are unchanged are restored from DVC's run cache instead of rerun.
  ``--metrics DIR`` skips the run and compares metrics already in DIR.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zerolog.artifacts import Status
from zerolog.config import ConfigError, GateConfig, Params
from zerolog.config_loader import load_params, parse_params, read_yaml
from zerolog.errors import DataError, ZerologError
from zerolog.io import read_json, write_json, write_text
from zerolog.methods import METHODS

FULL_PROFILE = "full"
# Never copied into the scratch project when git cannot list the files (a folder that is not a git checkout).
_NOT_COPIED = {".git", ".venv", "__pycache__", ".pytest_cache", "mlruns", "mlartifacts", "mlflow.db"}


class GateError(ZerologError):
    """The gate cannot run: a missing baseline or profile, an override naming an unknown key, a failed pipeline."""


@dataclass(frozen=True)
class Profile:
    """A gate profile: where its baseline lives and which params it overrides (none for ``full``)."""

    name: str
    baseline: Path
    overrides: list[str] = field(default_factory=list)
    source: Path | None = None  # the profile's YAML file


@dataclass(frozen=True)
class Comparison:
    """The gate's verdict: failures (each naming pair, method and drop) and informational notes."""

    failures: list[str]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


# ----------------------------------------------------------------------------- profiles and overrides


def load_profile(params: Params, name: str) -> Profile:
    """The named profile: ``full`` from ``gate.baseline``; others from their YAML file in ``gate.profiles``."""
    if name == FULL_PROFILE:
        return Profile(FULL_PROFILE, Path(params.gate.baseline))
    if name not in params.gate.profiles:
        known = ", ".join([FULL_PROFILE, *params.gate.profiles])
        raise GateError(f"{params.source_file}: gate.profiles: unknown profile {name!r} (known: {known})")
    path = Path(params.gate.profiles[name])
    if not path.is_file():
        raise GateError(f"{path}: profile file not found (gate.profiles.{name})")
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"), str(path))
    except ConfigError as error:
        raise GateError(str(error)) from None
    if not isinstance(raw, dict) or set(raw) - {"baseline", "overrides"} or "baseline" not in raw:
        raise GateError(f"{path}: expected a mapping with keys baseline and overrides")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(item, str) and "=" in item for item in overrides):
        raise GateError(f"{path}: overrides: expected a list of 'dotted.key=value' strings")
    return Profile(name, Path(str(raw["baseline"])), list(overrides), path)


def apply_overrides(raw: dict[str, Any], overrides: list[str], where: str) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values parsed as YAML, as ``dvc exp run -S`` does) to a params mapping.

    Only existing keys may be overridden: a typo must fail, not add a key that nothing reads.
    """
    import copy

    result = copy.deepcopy(raw)
    for override in overrides:
        key, _, text = override.partition("=")
        parts = key.strip().split(".")
        node: Any = result
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{where}: override {override!r}: unknown key {'.'.join(parts[: depth + 1])}")
            if depth == len(parts) - 1:
                node[part] = read_yaml(text, f"{where}: override {override!r}")
            else:
                node = node[part]
    return result


# ----------------------------------------------------------------------------- reading metrics and baselines


#: The gated numbers of a method: metric name in messages -> key in ``metrics/<pair>.json``.
GATED_METRICS = {"F1": "f1", "ROC-AUC": "roc_auc"}


def _method_numbers(entry: dict[str, Any]) -> dict[str, Any]:
    """One method's entry of ``metrics/<pair>.json`` as the gate reads it: each gated metric's value (the mean over
    seeds for a stochastic method), its sd across seeds, and how many seeds the mean holds (1 for one run)."""
    evaluated = entry.get("status") == Status.EVALUATED
    numbers: dict[str, Any] = {"seeds": len(entry.get("seeds") or {}) or 1}
    for metric, key in GATED_METRICS.items():
        value = entry.get(key) if evaluated else None
        numbers[metric] = None if value is None else float(value)
        sd = entry.get(f"{key}_sd") if evaluated else None
        numbers[f"{metric} sd"] = None if sd is None else float(sd)
    return numbers


def collect_f1(params: Params, metrics_directory: Path) -> dict[str, dict[str, Any]]:
    """Per pair of params: status, reason and, per method, the gated metrics from ``<metrics_directory>/<pair>.json``.

    A pair without a metrics file is recorded with status ``missing``.
    """
    pairs: dict[str, dict[str, Any]] = {}
    for pair in params.pairs:
        path = metrics_directory / f"{pair}.json"
        if not path.is_file():
            pairs[pair] = {"status": "missing", "reason": f"{path}: file not found", "methods": {}}
            continue
        metrics = read_json(path)
        methods = {method: _method_numbers(entry) for method, entry in (metrics.get("methods") or {}).items()}
        pairs[pair] = {"status": metrics.get("status"), "reason": metrics.get("reason"), "methods": methods}
    return pairs


def method_guards(method: str, numbers: dict[str, Any], settings: GateConfig) -> tuple[dict[str, Any], str | None]:
    """The gated numbers of one method, each ``{"value", "tolerance"}``, and why the rest are not gated.

    A deterministic method is gated on its value with ``gate.tolerance``. A stochastic one (a trained model: a draw
    per seed) only on its mean over at least ``gate.min_seeds`` seeds, with the tolerance widened to 3 standard
    deviations of the difference of two such means. A number that lies within its tolerance of 0 cannot fail and is
    not gated (issue 11: 7 of 12 gated F1s were 0.0 and could never fail).
    """
    spec = METHODS.get(method)
    stochastic = spec is None or spec.stochastic
    seeds = numbers["seeds"]
    if stochastic and seeds < settings.min_seeds:
        return {}, f"stochastic, {seeds} seed(s) < gate.min_seeds = {settings.min_seeds}: one draw is not gated"
    guards: dict[str, Any] = {}
    skipped: list[str] = []
    for metric in GATED_METRICS:
        value = numbers.get(metric)
        if value is None or math.isnan(value):
            skipped.append(f"{metric} not measured")
            continue
        tolerance = settings.tolerance
        if stochastic:
            spread = settings.seed_sd_multiplier * (numbers.get(f"{metric} sd") or 0.0) * math.sqrt(2 / seeds)
            tolerance = max(tolerance, spread)
        if value - tolerance <= 0:
            skipped.append(f"{metric} {value:.4f} lies within its tolerance {tolerance:.4f} of 0 and cannot fail")
            continue
        guards[metric] = {"value": value, "tolerance": round(tolerance, 6)}
    return guards, "; ".join(skipped) or None


def read_baseline(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise GateError(f"{path}: baseline not found; record one with `python -m zerolog.evaluation.gate update`")
    try:
        baseline = read_json(path)
    except DataError as error:
        raise GateError(str(error)) from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("pairs"), dict):
        raise GateError(f"{path}: expected a JSON object with key 'pairs'")
    return baseline


def _compare_pair(pair: str, expected: dict[str, Any], now: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Failures and notes of one evaluated pair: every guard of the baseline against the current number."""
    failures: list[str] = []
    notes: list[str] = []
    for method, guards in expected.get("guards", {}).items():
        numbers = now["methods"].get(method)
        for metric, guard in guards.items():
            value, tolerance = (None if numbers is None else numbers.get(metric)), guard["tolerance"]
            if numbers is None:
                failures.append(f"{pair} / {method}: missing method (baseline {metric} {guard['value']:.4f})")
            elif value is None or math.isnan(value):
                failures.append(f"{pair} / {method}: no {metric} now (baseline {metric} {guard['value']:.4f})")
            elif guard["value"] - value > tolerance + 1e-12:
                failures.append(
                    f"{pair} / {method}: {metric} {value:.4f} < baseline {guard['value']:.4f} by "
                    f"{guard['value'] - value:.4f} (tolerance {tolerance:.4f})"
                )
            elif value - guard["value"] > tolerance:
                notes.append(f"{pair} / {method}: {metric} {value:.4f} improved on baseline {guard['value']:.4f}")
    return failures, notes


def compare(baseline: dict[str, Any], current: dict[str, dict[str, Any]]) -> Comparison:
    """Every guarded number of the baseline against the current one: a drop of more than its tolerance fails."""
    failures: list[str] = []
    notes: list[str] = []
    for pair, expected in baseline["pairs"].items():
        now = current.get(pair)
        if now is None or now["status"] == "missing":
            failures.append(f"{pair}: missing pair ({now['reason'] if now else 'not in params.pairs'})")
        elif expected.get("status") != Status.EVALUATED:
            if now["status"] == Status.EVALUATED:
                notes.append(f"{pair}: now evaluated (baseline: {expected.get('status')}); run `update` to gate it")
        elif now["status"] != Status.EVALUATED:
            failures.append(f"{pair}: status {now['status']} ({now['reason']}), the baseline was evaluated")
        else:
            pair_failures, pair_notes = _compare_pair(pair, expected, now)
            failures += pair_failures
            notes += pair_notes
    for pair, now in current.items():
        if pair not in baseline["pairs"] and now["status"] != "missing":
            notes.append(f"{pair}: not in the baseline ({now['status']}); run `update` to gate it")
    return Comparison(failures, notes)


def baseline_document(profile: Profile, current: dict[str, dict[str, Any]], settings: GateConfig) -> dict[str, Any]:
    """The baseline file: per pair its status and, per method, the guarded numbers or why a method is not gated."""
    pairs: dict[str, Any] = {}
    for pair, entry in current.items():
        record: dict[str, Any] = {"status": entry["status"], "reason": entry["reason"], "guards": {}, "not_gated": {}}
        for method, numbers in entry["methods"].items():
            guards, reason = method_guards(method, numbers, settings)
            if guards:
                record["guards"][method] = guards
            if reason:
                record["not_gated"][method] = reason
        pairs[pair] = record
    return {
        "profile": profile.name,
        "overrides": profile.overrides,
        "metric": "per pair: 'guards' method -> metric -> {value, tolerance} (headline F1 under "
        "evaluate.primary_threshold_rule, ROC-AUC; the mean over seeds for a stochastic method), and 'not_gated' "
        "method -> why (src/zerolog/evaluation/gate.py: method_guards)",
        "tolerance": settings.tolerance,
        "min_seeds": settings.min_seeds,
        "seed_sd_multiplier": settings.seed_sd_multiplier,
        "pairs": pairs,
    }


# ----------------------------------------------------------------------------- running a profile


def project_files(root: Path) -> list[Path]:
    """Files of the project as git sees them (tracked + untracked, not ignored); a plain walk outside git."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            check=True,
            capture_output=True,
        ).stdout
        return [Path(name) for name in listing.decode("utf-8").split("\0") if name and (root / name).is_file()]
    except (subprocess.CalledProcessError, FileNotFoundError):
        files = []
        for directory, subdirectories, names in os.walk(root):
            subdirectories[:] = [name for name in subdirectories if name not in _NOT_COPIED]
            relative = Path(directory).relative_to(root)
            if relative.parts[:2] in ((".dvc", "cache"), (".dvc", "tmp")):
                continue
            files += [relative / name for name in names if name not in _NOT_COPIED]
        return files


def prepare_scratch(root: Path, scratch: Path, profile: Profile, params: Params) -> Params:
    """Copy the project into ``scratch``, apply the profile's overrides to its params.yaml, make it a DVC repo.

    Returns the scratch copy's validated params. The pair metrics the gate reads are removed from the copy, so a
    stage that does not run cannot leave a stale file behind.
    """
    for relative in project_files(root):
        destination = scratch / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, destination)
    params_path = scratch / Path(params.source_file).name
    raw = read_yaml((root / Path(params.source_file).name).read_text(encoding="utf-8"), params.source_file)
    where = str(profile.source or profile.name)
    overridden_raw = apply_overrides(raw, profile.overrides, where)
    overridden = parse_params(overridden_raw, f"{where} applied to params.yaml")
    write_text(params_path, yaml.safe_dump(overridden_raw, sort_keys=False))
    for pair in overridden.pairs:
        (scratch / overridden.paths.metrics / f"{pair}.json").unlink(missing_ok=True)
    dvc_directory = scratch / ".dvc"
    dvc_directory.mkdir(exist_ok=True)
    if not (dvc_directory / "config").is_file():
        (dvc_directory / "config").write_text("", encoding="utf-8")
    local = ["[core]", "    no_scm = true"]
    cache = root / ".dvc" / "cache"
    if cache.is_dir():
        local += ["[cache]", f"    dir = {cache.resolve()}"]
    (dvc_directory / "config.local").write_text("\n".join(local) + "\n", encoding="utf-8")
    return overridden


def run_pipeline(scratch: Path) -> None:
    """``dvc repro`` in the scratch copy with this interpreter's environment; its output goes to the console."""
    environment = dict(os.environ)
    environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch / "src"), environment.get("PYTHONPATH")]))
    environment["MLFLOW_TRACKING_URI"] = f"sqlite:///{(scratch / 'mlflow.db').resolve()}"
    completed = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=scratch, env=environment)
    if completed.returncode != 0:
        raise GateError(f"dvc repro failed in the scratch copy {scratch} (exit {completed.returncode})")


def current_metrics(params: Params, profile: Profile, metrics: Path | None, keep: bool) -> dict[str, dict[str, Any]]:
    """The F1s to gate: from ``metrics`` when given, the workspace for ``full``, else a scratch run of the profile."""
    if metrics is not None:
        return collect_f1(params, metrics)
    if profile.name == FULL_PROFILE:
        return collect_f1(params, Path(params.paths.metrics))
    scratch = Path(tempfile.mkdtemp(prefix=f"zerolog-gate-{profile.name}-"))
    try:
        overridden = prepare_scratch(Path.cwd(), scratch, profile, params)
        print(f"gate: profile {profile.name}: dvc repro in {scratch} with {' '.join(profile.overrides)}", flush=True)
        run_pipeline(scratch)
        return collect_f1(overridden, scratch / overridden.paths.metrics)
    finally:
        if keep:
            print(f"gate: scratch copy kept at {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


# ----------------------------------------------------------------------------- commands


def check(params: Params, profile: Profile, metrics: Path | None = None, keep: bool = False) -> Comparison:
    baseline = read_baseline(profile.baseline)
    return compare(baseline, current_metrics(params, profile, metrics, keep))


def update(params: Params, profile: Profile, metrics: Path | None = None, keep: bool = False) -> Path:
    current = current_metrics(params, profile, metrics, keep)
    missing = [pair for pair, entry in current.items() if entry["status"] == "missing"]
    if missing:
        raise GateError(f"cannot record a baseline: no metrics for pair(s) {', '.join(missing)}")
    write_json(profile.baseline, baseline_document(profile, current, params.gate))
    return profile.baseline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zerolog.evaluation.gate", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["check", "update"])
    parser.add_argument("--profile", default=FULL_PROFILE, help="full (workspace metrics) or a gate.profiles name")
    parser.add_argument("--metrics", type=Path, default=None, help="compare the metrics in this folder, run nothing")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy of a profile run")
    arguments = parser.parse_args(argv)
    try:
        params = load_params(arguments.params)
        profile = load_profile(params, arguments.profile)
        if arguments.command == "update":
            path = update(params, profile, arguments.metrics, arguments.keep)
            print(f"gate: baseline of profile {profile.name} written to {path}; commit it, saying why")
            return 0
        comparison = check(params, profile, arguments.metrics, arguments.keep)
    except ZerologError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in comparison.notes:
        print(f"note: {note}")
    for failure in comparison.failures:
        print(f"FAIL: {failure}")
    verdict = "passed" if comparison.passed else f"FAILED ({len(comparison.failures)} regression(s))"
    print(f"gate: profile {profile.name}, tolerance {params.gate.tolerance}: {verdict}")
    return 0 if comparison.passed else 1


if __name__ == "__main__":
    sys.exit(main())
