"""Leave-one-system-out (LOSO) selection: the detector recipe of a system, chosen from the OTHER systems' labels.

A team with a new system has no labels of it. What it has: the labels of other systems and the new system's unlabeled
sessions. So the product's detector for a system T is a *recipe* (which target-only detectors, how their scores are
combined, which label-free cut) chosen on the validation splits of the other labeled systems, then fit and cut on T's
own unlabeled train sessions. T's labels are never read here: a reference system is every other system whose
validation split holds at least ``selection.min_val_anomalies`` labeled anomalies; T is never one of its own references
(unsupervised model selection by meta-evaluation on other data sets: MetaOD, Zhao et al., NeurIPS 2021; Ma et al.,
"The need for unsupervised outlier model selection", 2023).

A recipe, applied to one system (every step reads that system's unlabeled TRAIN scores only):
1. each member's scores (the baselines stage's score files; one per model seed for a stochastic detector) become
   their standing among the train scores: ``rank`` = the mid-rank empirical CDF of the train scores (in [0, 1]),
   ``robust_z`` = (score - train median) / (1.4826 x train MAD) (PyOD's combination practice: standardise, then
   combine);
2. the members' standings are combined: ``mean`` or ``max`` (Aggarwal and Sathe, "Theoretical foundations and
   algorithms for outlier ensembles", 2015: averaging and maximisation); one member: its standing itself;
3. the cut is a label-free rule on the combined train scores: the 2-component mixture and Otsu of
   ``zerolog.evaluation.thresholds``, or a PyThresh thresholder (the PyThresh library: outlier thresholds set from
   the score distribution alone, ``pythresh.thresholds``), whose cut is mapped back from its min-max normalised scale.

Criterion, declared before any test number (``selection.criterion``): ``worst_case`` = the highest lowest validation F1
over the reference systems (mean over model seeds where a member is stochastic); ties go to the higher mean over the
references, then to the earlier recipe in the declared order. A recipe that cannot run on a reference (a member not
available there, a cut that finds no split) is not eligible for that target.
"""

from __future__ import annotations

import importlib
import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zerolog.config import SelectionConfig
from zerolog.errors import DataError
from zerolog.evaluation.thresholds import otsu_threshold
from zerolog.features.target_detector import mixture_threshold
from zerolog.metrics import precision_recall_f1

#: Cuts of this module; any other name in ``selection.cuts`` is a PyThresh thresholder (``pythresh.thresholds.<name>``).
OWN_CUTS = ("mixture", "otsu")
VALIDATION = 1  # split code of the reference sessions a recipe is judged on
TIE_TOLERANCE = 1e-9
MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True)
class Recipe:
    """Which detectors, how their scores are combined, which label-free cut."""

    members: tuple[str, ...]
    standing: str  # rank | robust_z
    combination: str  # mean | max (one member: its standing)
    cut: str

    @property
    def key(self) -> str:
        return f"{'+'.join(self.members)}|{self.standing}|{self.combination}|{self.cut}"

    @classmethod
    def from_key(cls, key: str) -> Recipe:
        members, standing, combination, cut = key.split("|")
        return cls(tuple(members.split("+")), standing, combination, cut)


@dataclass(frozen=True)
class SystemScores:
    """One system as the selection sees it: its split codes, its member detectors' scores, and its labels only when
    it serves as a reference (never for the system whose recipe is chosen)."""

    system: str
    split: np.ndarray  # (sessions,) int8: 0 train, 1 val, 2 test
    members: Mapping[str, Sequence[np.ndarray]]  # detector -> one (sessions,) float64 array per model seed
    labels: np.ndarray | None = None  # (sessions,) int8 1/0/-1

    def rows(self, code: int) -> np.ndarray:
        return np.flatnonzero(self.split == code)

    def seeds(self, recipe: Recipe) -> int:
        """Model seeds a recipe runs for on this system: the most seeds among its members (a deterministic member
        has one score array, reused for every seed)."""
        return max(len(self.members[member]) for member in recipe.members)


@dataclass(frozen=True)
class Applied:
    """A recipe on one system for one model seed: combined scores of every session and the cut from the train ones."""

    scores: np.ndarray  # (sessions,) float64
    threshold: float
    flagged_train_share: float


def candidate_recipes(config: SelectionConfig) -> list[Recipe]:
    """Every recipe of ``select``, simplest first: every group of ``sizes`` members (1: each alone) under each
    standing and combination, each with every cut."""
    groups: list[tuple[tuple[str, ...], str, str]] = []
    for size in config.sizes:
        for members in itertools.combinations(config.members, size):
            for standing in config.standings:
                for combination in ["mean"] if size == 1 else config.combinations:
                    groups.append((members, standing, combination))
    return [Recipe(members, standing, combination, cut) for members, standing, combination in groups
            for cut in config.cuts]  # fmt: skip


def standing(kind: str, train: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(sessions,) a member's scores as their standing among its train scores (module docstring, step 1)."""
    if kind == "rank":
        # scores within TIE_TOLERANCE (relative) of a train score tie with it: the same session scored by another
        # summation order (zerolog detect's batches) must get the same rank (PCA SPE: 1.8e-12 apart measured)
        ordered = np.sort(train)
        margin = TIE_TOLERANCE * np.maximum(1.0, np.abs(scores))
        low = np.searchsorted(ordered, scores - margin, "left")
        high = np.searchsorted(ordered, scores + margin, "right")
        return (low + high) / (2.0 * ordered.size)
    if kind == "robust_z":
        median = float(np.median(train))
        spread = MAD_TO_SD * float(np.median(np.abs(train - median)))
        if spread == 0.0:  # more than half the train scores tie: the mean absolute deviation instead
            spread = float(np.mean(np.abs(train - median))) or 1.0
        return (scores - median) / spread
    raise DataError(f"selection.standings: unknown standing {kind!r} (rank, robust_z)")


def combined_scores(recipe: Recipe, system: SystemScores, seed_index: int) -> np.ndarray:
    """(sessions,) the recipe's combined score of every session for one model seed (steps 1 and 2)."""
    train = system.rows(0)
    columns = []
    for member in recipe.members:
        per_seed = system.members[member]
        scores = np.asarray(per_seed[seed_index % len(per_seed)], dtype=np.float64)
        columns.append(standing(recipe.standing, scores[train], scores))
    stacked = np.vstack(columns)  # (members, sessions)
    return stacked.max(axis=0) if recipe.combination == "max" else stacked.mean(axis=0)


def _pythresh_cut(name: str, train: np.ndarray, seed: int) -> float:
    try:
        module = importlib.import_module(f"pythresh.thresholds.{name}")
    except ImportError as error:
        raise DataError(f"selection.cuts: {name!r} is neither {' nor '.join(OWN_CUTS)} nor a PyThresh thresholder "
                        f"({error})") from error  # fmt: skip
    thresholder = getattr(module, name.upper())()
    if "random_state" in thresholder.get_params():
        thresholder.set_params(random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyThresh warns where it falls back; the fallback is checked below
        thresholder.fit(train)
    low, high = float(train.min()), float(train.max())
    normalised = thresholder.thresh_
    if normalised is None or not np.isfinite(normalised) or not 0.0 < float(normalised) <= 1.0:
        raise DataError(f"PyThresh {name}: no cut inside the train scores ({normalised})")
    return low + float(normalised) * (high - low)


def cut_threshold(cut: str, train: np.ndarray, seed: int) -> float:
    """The cut of a label-free rule on the combined train scores (step 3); DataError when it finds none."""
    if train.size < 2 or float(np.ptp(train)) == 0.0:
        raise DataError("the combined train scores are constant: nothing to cut")
    if cut == "mixture":
        return mixture_threshold(train, False, seed)[0]
    if cut == "otsu":
        return otsu_threshold(train, False)
    return _pythresh_cut(cut, train, seed)


class CombinedScores:
    """``combined_scores`` remembered per (members, standing, combination, system, seed): the recipes that differ
    only in their cut share one combination (the selection tries every cut on each)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], np.ndarray] = {}

    def __call__(self, recipe: Recipe, system: SystemScores, seed_index: int) -> np.ndarray:
        key = (recipe.members, recipe.standing, recipe.combination, system.system, seed_index)
        if key not in self._cache:
            self._cache[key] = combined_scores(recipe, system, seed_index)
        return self._cache[key]


def apply_recipe(recipe: Recipe, system: SystemScores, seed: int,
                 combined: CombinedScores | None = None) -> list[Applied]:  # fmt: skip
    """The recipe fit and cut on the system's train sessions, once per model seed (no label read)."""
    train = system.rows(0)
    combine = combined or CombinedScores()
    applied = []
    for seed_index in range(system.seeds(recipe)):
        scores = combine(recipe, system, seed_index)
        threshold = cut_threshold(recipe.cut, scores[train], seed)
        applied.append(Applied(scores, threshold, float(np.mean(scores[train] >= threshold))))
    return applied


def validation_f1(recipe: Recipe, reference: SystemScores, seed: int,
                  combined: CombinedScores | None = None) -> float | None:  # fmt: skip
    """The recipe's F1 on a reference system's labeled validation sessions, mean over model seeds; None when it
    cannot run there."""
    if reference.labels is None:
        raise DataError(f"{reference.system}: a reference system needs its labels")
    if any(member not in reference.members for member in recipe.members):
        return None
    rows = np.flatnonzero((reference.split == VALIDATION) & (reference.labels >= 0))
    try:
        runs = apply_recipe(recipe, reference, seed, combined)
    except DataError:
        return None
    labels = reference.labels[rows]
    return float(np.mean([precision_recall_f1(labels, run.scores[rows] >= run.threshold)[2] for run in runs]))


@dataclass(frozen=True)
class Choice:
    """The chosen recipe for one system, and the evidence: every candidate's validation F1 per reference."""

    recipe: Recipe | None
    references: list[str]
    table: dict[str, dict[str, float | None]]  # recipe key -> reference system -> validation F1
    reason: str | None = None

    def criterion(self, key: str) -> float | None:
        values = self.table[key]
        if not values or any(value is None for value in values.values()):
            return None
        return min(value for value in values.values() if value is not None)


def choose_recipe(recipes: list[Recipe], references: list[SystemScores], seed: int) -> Choice:
    """The recipe with the best worst-case validation F1 over ``references`` (module docstring: criterion)."""
    names = [reference.system for reference in references]
    combined = CombinedScores()
    table = {recipe.key: {reference.system: validation_f1(recipe, reference, seed, combined)
                          for reference in references} for recipe in recipes}  # fmt: skip
    if not references:
        return Choice(None, names, table, "no labeled reference system: nothing to choose a recipe from")
    best: tuple[float, float, int] | None = None
    chosen = None
    for order, recipe in enumerate(recipes):
        values = [value for value in table[recipe.key].values() if value is not None]
        if len(values) < len(references):
            continue
        rank = (min(values), float(np.mean(values)), -order)
        if best is None or rank > best:
            best, chosen = rank, recipe
    reason = None if chosen is not None else "no candidate recipe runs on every reference system"
    return Choice(chosen, names, table, reason)
