"""stage selection: one system's detector recipe, chosen leave-one-system-out (zerolog.evaluation.selection).

Reads the baselines stage's score files of every system and the labels of the OTHER systems only (the system's own
labels are never opened here: ``tests/evaluation/test_selection.py`` poisons them and gets the same recipe). Writes
``scores/select-<system>/`` atomically:

- ``loso/seed-<seed>.parquet``: the recipe's combined scores of every session of the system, one file per model
  seed (a recipe of deterministic members writes the same scores for each), with its cut (``decision_threshold``)
  and the train share it flags (``pi_hat``) in the metadata: the evaluate stage's method ``loso``;
- ``recipe.json``: the choice, the reference systems (and those skipped, with the reason), the criterion's value and
  the best candidates; ``candidates.parquet``: every candidate's validation F1 on every reference;

and ``metrics/selection/<system>.json`` (the recipe and its validation F1 per reference), with one MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zerolog.artifacts import (
    DECISION_RULE,
    DECISION_THRESHOLD,
    PI_HAT,
    SCORE_SCALE,
    ArtifactPaths,
    read_scores,
    score_file_name,
    score_frame,
    write_scores,
)
from zerolog.artifacts import load_tensors as _load_tensors
from zerolog.config import MlflowConfig, SelectionConfig
from zerolog.errors import DataError
from zerolog.evaluation.selection import (
    Choice,
    CombinedScores,
    Recipe,
    SystemScores,
    apply_recipe,
    candidate_recipes,
    choose_recipe,
)
from zerolog.io import atomic_directory, write_json, write_parquet
from zerolog.methods import method_spec
from zerolog.tracking import Tracker, flatten_params

METHOD = "loso"
RECIPE_FILE = "recipe.json"
CANDIDATES_FILE = "candidates.parquet"
SHOWN_CANDIDATES = 10  # recipe.json lists this many best candidates beside the choice


def member_scores(paths: ArtifactPaths, system: str, members: list[str], seeds: list[int]) -> dict[str, list[Any]]:
    """Each member detector's scores on every session of the system (row order), one array per model seed for a
    stochastic detector; a detector without score files there (not available on that system) is left out."""
    found: dict[str, list[Any]] = {}
    for member in members:
        files = [paths.score_file(member, "", system, seed) for seed in
                 (seeds if method_spec(member).stochastic else seeds[:1])]  # fmt: skip
        if all(path.is_file() for path in files):
            found[member] = [read_scores(path)[0].sort_values("row")["score"].to_numpy(np.float64) for path in files]
    return found


def system_scores(paths: ArtifactPaths, system: str, config: SelectionConfig, seeds: list[int],
                  with_labels: bool) -> SystemScores:  # fmt: skip
    """One system for the selection; its labels only when ``with_labels`` (a reference, never the chosen-for)."""
    tensors = _load_tensors(paths.tensors(system))
    labels = np.asarray(tensors.labels) if with_labels and tensors.labels is not None else None
    split = np.asarray(tensors.split)
    return SystemScores(system, split, member_scores(paths, system, config.members, seeds), labels)


def references_of(paths: ArtifactPaths, system: str, systems: list[str], config: SelectionConfig,
                  seeds: list[int]) -> tuple[list[SystemScores], dict[str, str]]:  # fmt: skip
    """The other systems that can judge a recipe (enough labeled validation anomalies), and why the rest cannot."""
    references, skipped = [], {}
    for other in systems:
        if other == system:
            continue
        if not paths.target_scores(other).is_dir() or not paths.tensors(other).is_dir():
            skipped[other] = "no tensors or baselines scores (its stages have not run)"
            continue
        candidate = system_scores(paths, other, config, seeds, with_labels=True)
        labels = candidate.labels
        anomalies = 0 if labels is None else int((labels[candidate.rows(1)] == 1).sum())
        if anomalies < config.min_val_anomalies:
            skipped[other] = (f"{anomalies} labeled anomalies in its validation split "
                              f"(< selection.min_val_anomalies = {config.min_val_anomalies})")  # fmt: skip
            continue
        references.append(candidate)
    return references, skipped


def applies(recipe: Recipe, target: SystemScores, seed: int, combined: CombinedScores) -> bool:
    """Whether the recipe runs on the system's own unlabeled train sessions (its members exist there and its cut
    finds a split): label-free, so the selection may ask it of the system it chooses for."""
    if any(member not in target.members for member in recipe.members):
        return False
    try:
        apply_recipe(recipe, target, seed, combined)
    except DataError:
        return False
    return True


def _recipe_summary(choice: Choice, skipped: dict[str, str]) -> dict[str, Any]:
    ranked = sorted((key for key in choice.table if choice.criterion(key) is not None),
                    key=lambda key: -float(choice.criterion(key) or 0.0))[:SHOWN_CANDIDATES]  # fmt: skip
    recipe = choice.recipe
    return {
        "recipe": None if recipe is None else {"key": recipe.key, "members": list(recipe.members),
                                               "standing": recipe.standing, "combination": recipe.combination,
                                               "cut": recipe.cut},
        "reason": choice.reason, "references": choice.references, "references_skipped": skipped,
        "criterion": None if recipe is None else choice.criterion(recipe.key),
        "validation_f1": None if recipe is None else choice.table[recipe.key],
        "candidates": len(choice.table), "best_candidates": {key: choice.table[key] for key in ranked},
    }  # fmt: skip


def _write_scores(folder: Any, recipe: Recipe, target: SystemScores, seed: int, seeds: list[int],
                  combined: CombinedScores) -> dict[str, Any]:  # fmt: skip
    """The recipe's score file per model seed; returns the cut and pi-hat per seed."""
    runs = apply_recipe(recipe, target, seed, combined)
    decisions = {}
    for index, model_seed in enumerate(seeds):
        run = runs[index % len(runs)]
        frame = score_frame(target.system, target.split, np.arange(target.split.size), run.scores, domain="target")
        write_scores(folder / score_file_name(METHOD, model_seed), frame, {
            "method": METHOD, "detector": recipe.key, "seed": model_seed, "threshold_source_val": None,
            DECISION_THRESHOLD: run.threshold, DECISION_RULE: f"{recipe.cut} cut on the combined train scores",
            PI_HAT: run.flagged_train_share, SCORE_SCALE: "unbounded", "mlflow_run_id": None})  # fmt: skip
        decisions[str(model_seed)] = {"threshold": run.threshold, "pi_hat": run.flagged_train_share}
    return decisions


@dataclass(frozen=True)
class Selected:
    """What the stage chose for the system: the recipe (None, with the reason, when nothing could be chosen) and
    its cut and pi-hat on the system's train sessions (first model seed)."""

    recipe: Recipe | None
    decision: dict[str, Any] | None
    reason: str | None


def select_recipe(system: str, config: SelectionConfig, seed: int, seeds: list[int], tracking: MlflowConfig,
                  paths: ArtifactPaths, systems: list[str]) -> Selected:  # fmt: skip
    """stage selection: choose the system's recipe on the other labeled systems, apply it to the system's sessions."""
    target = system_scores(paths, system, config, seeds, with_labels=False)
    references, skipped = references_of(paths, system, systems, config, seeds)
    combined = CombinedScores()  # the target's combined scores, shared by the eligibility check and the score files
    runnable = [recipe for recipe in candidate_recipes(config) if applies(recipe, target, seed, combined)]
    choice = choose_recipe(runnable, references, seed)
    fallback = Recipe.from_key(config.fallback)
    if choice.recipe is None and not references:  # nothing labeled to judge on: the declared fallback, said so
        usable = applies(fallback, target, seed, combined)
        choice = Choice(
            fallback if usable else None,
            choice.references,
            choice.table,
            f"{choice.reason}; selection.fallback {'used' if usable else 'cannot cut this system'}",
        )
    summary = {"system": system, "criterion_rule": config.criterion, **_recipe_summary(choice, skipped)}
    with atomic_directory(paths.selected_scores(system)) as folder:
        if choice.recipe is not None:
            summary["decisions"] = _write_scores(folder, choice.recipe, target, seed, seeds, combined)
        rows = [(key, reference, value) for key, values in choice.table.items() for reference, value in values.items()]
        write_parquet(folder / CANDIDATES_FILE, pd.DataFrame(rows, columns=["recipe", "reference", "validation_f1"]))
        write_json(folder / RECIPE_FILE, summary)
    metrics = {key: summary[key] for key in ("system", "recipe", "reason", "references", "criterion", "validation_f1")}
    tracker = Tracker(tracking)
    tags = {"target": system, "method": METHOD, "kind": str(method_spec(METHOD).kind), "stage": "selection",
            "recipe": "" if choice.recipe is None else choice.recipe.key}  # fmt: skip
    logged = flatten_params({"selection": config, "seed": seed})
    with tracker.run(f"selection-{system}/{METHOD}", tags, logged) as run_id:  # its id stays out of the outputs
        tracker.log_metrics(run_id, {f"val/{reference}/f1": value
                                     for reference, value in (summary["validation_f1"] or {}).items()})  # fmt: skip
    write_json(paths.stage_metrics("selection", system), metrics)
    print(f"selection {system}: {summary['recipe']['key'] if choice.recipe else choice.reason} "
          f"(worst-case validation F1 {summary['criterion']} on {', '.join(choice.references) or 'no reference'})",
          flush=True)  # fmt: skip
    decisions = summary.get("decisions") or {}
    return Selected(choice.recipe, decisions.get(str(seeds[0])), choice.reason)
