"""stage selection: one system's detector recipe, chosen leave-one-system-out (zerolog.evaluation.selection).

Reads the baselines stage's score files of every system and the labels of the OTHER systems only (the system's own
labels are never opened here: ``tests/evaluation/test_selection.py`` poisons them and gets the same recipe). Writes
``scores/select-<system>/``:

- ``loso/seed-<seed>.parquet``: the recipe's combined scores of every session of the system, one file per model
  seed (a recipe of deterministic members writes the same scores for each), with its cut (``decision_threshold``)
  and the train share it flags (``pi_hat``) in the metadata: the evaluate stage's method ``loso``;
- ``recipe.json``: the choice, the reference systems (and those skipped, with the reason), the criterion's value and
  the best candidates; ``candidates.parquet``: every candidate's validation F1 on every reference;

``metrics/selection/<system>.json`` (the recipe and its validation F1 per reference), and the chosen recipe in
persisted form, ``models/target-<system>/detector/`` (zerolog.detection.bundle: what ``zerolog detect``, the registry
and serving read). The bundle is the stage's own result, nothing scored twice: the members' train scores are the
baselines stage's (the ones the recipe was chosen and cut on), the cut and pi-hat the stage's; what the score files
cannot hold is fit once here, on the system's train rows: the PCA state (``train_pca``, the pca member's settings)
and the rarity tables (zerolog.detection.recipe). Its system params are the dataset's own layout
(``Params.dataset_system``), session rule, ``parse.max_unmatched_share`` and the tensors' ``max_len``; its known
templates the parse stage's Drain tree and exceptions or, for a pre-parsed dataset, its template texts
(``KnownTemplates.of_table``).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from zerolog.artifacts import (
    DECISION_RULE,
    DECISION_THRESHOLD,
    PI_HAT,
    RECIPE_FILE,
    SCORE_SCALE,
    ArtifactPaths,
    SystemTensors,
    read_scores,
    score_file_name,
    score_frame,
    write_scores,
)
from zerolog.artifacts import load_tensors as _load_tensors
from zerolog.config import (
    DatasetConfig,
    LogLeadConfig,
    MlflowConfig,
    Params,
    PcaConfig,
    SelectionConfig,
    SystemConfig,
)
from zerolog.data.datasets import iterate_text_lines
from zerolog.data.known_templates import DRAIN_STATE_FILE, KnownTemplates, known_templates_of_dataset
from zerolog.data.parse import log_file_paths
from zerolog.detection.bundle import SystemContext, Threshold, write_bundle, write_not_persisted
from zerolog.detection.recipe import RecipeState
from zerolog.errors import DataError
from zerolog.evaluation.selection import (
    Applied,
    Choice,
    CombinedScores,
    Recipe,
    SystemScores,
    apply_recipe,
    candidate_recipes,
    choose_recipe,
)
from zerolog.features.target_detector import train_pca
from zerolog.io import read_json, write_json, write_parquet
from zerolog.methods import method_spec
from zerolog.runner import Outputs

METHOD = "loso"
CANDIDATES_FILE = "candidates.parquet"
SHOWN_CANDIDATES = 10  # recipe.json lists this many best candidates beside the choice
EXAMPLE_LINES = 20  # raw lines kept in the bundle as the registered model's input example


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


def reference_scores(paths: ArtifactPaths, system: str, config: SelectionConfig, seeds: list[int]) -> SystemScores:
    """A reference system for the selection, with its labels (never the system whose recipe is chosen)."""
    tensors = _load_tensors(paths.tensors(system))
    labels = None if tensors.labels is None else np.asarray(tensors.labels)
    return SystemScores(system, np.asarray(tensors.split), member_scores(paths, system, config.members, seeds), labels)


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
        candidate = reference_scores(paths, other, config, seeds)
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


@dataclass(frozen=True)
class SelectionSection:
    """Stage selection's settings: ``selection.*``, the seeds, the systems (every other one may be a reference), and
    what the bundle holds: the system's params as its dataset reads them, its members' settings."""

    system: str
    config: SelectionConfig
    seed: int
    seeds: list[int]
    systems: list[str]
    dataset: str
    layout: SystemConfig  # the system's log format, timestamp, masks and Drain as the dataset reads them
    dataset_config: DatasetConfig
    max_unmatched_share: float  # parse.max_unmatched_share
    pca: PcaConfig  # the bundle's PCA state (the pca member's settings)
    loglead: LogLeadConfig  # the loglead_rarity member's settings
    tracking: MlflowConfig


def selection_section(params: Params, system: str) -> SelectionSection:
    dataset = params.systems[system].dataset
    return SelectionSection(system, params.selection, params.seed, params.seeds, list(params.systems), dataset,
                            Params.dataset_system(params, dataset), params.datasets[dataset],
                            params.parse.max_unmatched_share, params.evaluate.detectors.pca,
                            params.evaluate.detectors.loglead, params.mlflow)  # fmt: skip


@dataclass(frozen=True)
class SelectionInputs:
    target: SystemScores  # the system, without its labels
    references: list[SystemScores]
    skipped: dict[str, str]  # the other systems that cannot judge a recipe, and why
    tensors: SystemTensors  # the system's counts (the bundle's members are fit on its train rows) and template table
    known: KnownTemplates | None  # a raw dataset's final Drain tree and exceptions (None: pre-parsed)
    example: list[str]  # a raw dataset's first lines, the registered model's input example


def load_selection_inputs(section: SelectionSection, paths: ArtifactPaths) -> SelectionInputs:
    tensors = _load_tensors(paths.tensors(section.system))  # its labels are never read
    members = member_scores(paths, section.system, section.config.members, section.seeds)
    target = SystemScores(section.system, np.asarray(tensors.split), members)
    references, skipped = references_of(paths, section.system, section.systems, section.config, section.seeds)
    parsed = paths.parsed(section.dataset)
    if not (parsed / DRAIN_STATE_FILE).is_file():  # a pre-parsed dataset: no Drain tree, no raw lines
        return SelectionInputs(target, references, skipped, tensors, None, [])
    logs = log_file_paths(paths.raw(section.dataset), read_json(paths.manifest(section.dataset)))
    example = [text for _, text in itertools.islice(iterate_text_lines(logs[0]), EXAMPLE_LINES)]
    return SelectionInputs(target, references, skipped, tensors, known_templates_of_dataset(parsed), example)


def _bundle(section: SelectionSection, inputs: SelectionInputs, recipe: Recipe, run: Applied) -> dict[str, Any]:
    """What ``write_bundle`` persists of the chosen recipe: the members fit on the system's train rows, their train
    scores (the baselines stage's, which the selection read: nothing is scored again), the cut the stage found."""
    tensors, layout, dataset = inputs.tensors, section.layout, section.dataset_config
    counts, train_rows = np.asarray(tensors.counts, dtype=np.float64), tensors.rows("train")  # (sessions, V + 1)
    loglead = (section.loglead.rarity_threshold, section.loglead.rarity_common_threshold)
    state = RecipeState.fit(recipe, run.threshold, counts, train_rows, loglead)
    train_scores = np.vstack([inputs.target.members[member][0][train_rows] for member in recipe.members])
    context = SystemContext(system=section.system, dataset=section.dataset, log_format=layout.log_format,
                            timestamp=layout.timestamp, regex=list(layout.regex), drain=layout.drain,
                            session=dataset.session, max_unmatched_share=section.max_unmatched_share,
                            max_len=int(tensors.meta["max_len"]), multiline=dataset.multiline,
                            empty_files=dataset.empty_files)  # fmt: skip
    templates = list(tensors.meta["templates_list"])
    pre_parsed = inputs.known is None  # its template texts, matched on raw messages; other lines are new
    known = KnownTemplates.of_table(templates, layout.drain, layout.regex) if pre_parsed else inputs.known
    threshold = Threshold(run.threshold, f"{recipe.key}: combined score >= its {recipe.cut} cut on the train scores",
                          run.flagged_train_share)  # fmt: skip
    return {"method": METHOD, "context": context, "templates": templates, "known": known, "threshold": threshold,
            "subspace": train_pca(counts, train_rows, section.pca.variance, section.pca.weighting),
            "train_sessions_holding": state.holding, "example": inputs.example,
            "recipe": dataclasses.replace(state, train_scores=train_scores)}  # fmt: skip


@dataclass(frozen=True)
class SelectionResult:
    """``scores/select-<system>/`` (the module docstring), ``metrics/selection/<system>.json`` and the bundle
    ``models/target-<system>/detector/`` (zerolog.detection.bundle; a record of why, when nothing was chosen)."""

    section: SelectionSection
    choice: Choice
    summary: dict[str, Any]  # recipe.json
    runs: list[Applied]  # the recipe on the system, per model seed of its members ([] without a recipe)
    split: np.ndarray  # (sessions,) the system's split codes
    bundle: dict[str, Any] | None  # write_bundle's arguments; None: nothing chosen

    def metrics(self) -> dict[str, Any]:
        return {key: self.summary[key] for key in ("system", "recipe", "reason", "references", "criterion",
                                                    "validation_f1")}  # fmt: skip

    def write(self, outputs: Outputs) -> None:
        folder, recipe = outputs["scores"], self.choice.recipe
        for index, model_seed in enumerate(self.section.seeds):
            if recipe is None:
                break
            run = self.runs[index % len(self.runs)]
            frame = score_frame(self.section.system, self.split, np.arange(self.split.size), run.scores, "target")
            write_scores(folder / score_file_name(METHOD, model_seed), frame, {
                "method": METHOD, "detector": recipe.key, "seed": model_seed, "threshold_source_val": None,
                DECISION_THRESHOLD: run.threshold, DECISION_RULE: f"{recipe.cut} cut on the combined train scores",
                PI_HAT: run.flagged_train_share, SCORE_SCALE: "unbounded", "mlflow_run_id": None})  # fmt: skip
        rows = [(key, reference, value) for key, values in self.choice.table.items()
                for reference, value in values.items()]  # fmt: skip
        write_parquet(folder / CANDIDATES_FILE, pd.DataFrame(rows, columns=["recipe", "reference", "validation_f1"]))
        write_json(folder / RECIPE_FILE, self.summary)
        write_json(outputs["metrics"], self.metrics())
        if self.bundle is None:
            write_not_persisted(outputs["detector"], METHOD, str(self.choice.reason))
        else:
            write_bundle(outputs["detector"], **self.bundle)


def compute_selection(section: SelectionSection, inputs: SelectionInputs) -> SelectionResult:
    """Stage selection: the system's recipe chosen on the other labeled systems, applied to its own sessions (per
    model seed), and its persisted form."""
    config, target, seed = section.config, inputs.target, section.seed
    combined = CombinedScores()  # the target's combined scores, shared by the eligibility check and the score files
    runnable = [recipe for recipe in candidate_recipes(config) if applies(recipe, target, seed, combined)]
    choice = choose_recipe(runnable, inputs.references, seed)
    fallback = Recipe.from_key(config.fallback)
    if choice.recipe is None and not inputs.references:  # nothing labeled to judge on: the declared fallback, said so
        usable = applies(fallback, target, seed, combined)
        reason = f"{choice.reason}; selection.fallback {'used' if usable else 'cannot cut this system'}"
        choice = Choice(fallback if usable else None, choice.references, choice.table, reason)
    summary = {"system": section.system, "criterion_rule": config.criterion, **_recipe_summary(choice, inputs.skipped)}
    runs = [] if choice.recipe is None else apply_recipe(choice.recipe, target, seed, combined)
    if choice.recipe is not None:
        summary["decisions"] = {str(model_seed): {"threshold": runs[index % len(runs)].threshold,
                                                  "pi_hat": runs[index % len(runs)].flagged_train_share}
                                for index, model_seed in enumerate(section.seeds)}  # fmt: skip
    bundle = None if choice.recipe is None else _bundle(section, inputs, choice.recipe, runs[0])
    print(f"selection {section.system}: {choice.recipe.key if choice.recipe else choice.reason} "
          f"(worst-case validation F1 {summary['criterion']} on {', '.join(choice.references) or 'no reference'})",
          flush=True)  # fmt: skip
    return SelectionResult(section, choice, summary, runs, target.split, bundle)
