"""The persisted detector of a system: one folder, one documented format, everything scoring new lines needs.

``models/target-<system>/detector/`` (``ArtifactPaths.detector``), written by the selection stage for the system's
chosen recipe (zerolog.detection.loso), registered by the report stage in the MLflow Model Registry, read by
``zerolog detect`` and by the served model. No pickle anywhere: JSON, Parquet and ``.npy`` (read with
``allow_pickle=False``), so reading a bundle cannot run code.

- ``detector.json``: ``format_version``, ``kind`` (``pca_spe``), ``method``, ``system``, ``dataset``, ``threshold``
  (value, rule, ``pi_hat``: the share of the train sessions it flags), ``pca`` (weighting, components, train
  sessions), ``system_params`` (log format, timestamp, masking regexes, Drain settings, session rule,
  ``max_unmatched_share``, ``max_len``), ``templates`` (count);
- ``templates.parquet``: the template table: ``column`` (1..V, the count column; 0 is padding), ``template``,
  ``train_sessions`` (train sessions holding it), ``weight`` (its tf-idf weight);
- ``idf.npy``, ``mean.npy``, ``components.npy``: the PCA state, (V + 1,), (V + 1,), (k, V + 1) float64;
- ``drain.json``: the known templates' matcher (``KnownTemplates.state``: the parse's final Drain tree and its
  exceptions); absent when the system's dataset is pre-parsed (no raw lines, no Drain);
- ``example.log``: the first lines of the dataset's first raw log file, the registered model's input example;
- the selected recipe (``detector.json`` ``recipe``: its key, cut and train sessions; zerolog.detection.recipe):
  ``recipe_train_scores.npy`` (members, train sessions) float64, each member's train scores; ``rarity_weights.npy``
  (V + 1,) float64 and ``vocabulary.npy`` (V + 1,) bool, LogLead's rarity state; ``template_sets.parquet`` (``set``,
  ``sessions``), the train sessions of each distinct template set. The score is the recipe's; the PCA state serves
  the ``pca`` member and the templates that weigh most (its squared residuals).

Sessions are cut as the tensors stage cuts them: the first ``max_len`` events count (``system_params.max_len``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.config import DrainConfig, MultilineRule, SessionRule, TimestampConfig, as_dict
from zerolog.data.known_templates import KnownTemplates
from zerolog.detection.recipe import RecipeState
from zerolog.errors import DataError
from zerolog.evaluation.selection import Recipe
from zerolog.features.pca import WEIGHTINGS, PcaSubspace
from zerolog.io import read_json, write_json, write_parquet

FORMAT_VERSION = 1
META_FILE = "detector.json"
NOT_PERSISTED_FILE = "not_persisted.json"  # written instead when evaluate.recommended has no persisted form
TEMPLATES_FILE = "templates.parquet"
ARRAY_NAMES = ("idf", "mean", "components")
DRAIN_FILE = "drain.json"
EXAMPLE_FILE = "example.log"
RECIPE_ARRAYS = {"train_scores": "recipe_train_scores", "rarity_weights": "rarity_weights", "vocabulary": "vocabulary"}
SETS_FILE = "template_sets.parquet"
KIND_PCA = "pca_spe"


@dataclass(frozen=True)
class SystemContext:
    """What ``zerolog detect`` needs of a system's params to read its raw lines as the pipeline did."""

    system: str
    dataset: str
    log_format: str
    timestamp: TimestampConfig
    regex: list[str]
    drain: DrainConfig
    session: SessionRule | None  # None: a pre-parsed dataset (its sessions came made; no rule for raw lines)
    max_unmatched_share: float  # parse.max_unmatched_share: a file with more unmatched lines is refused
    max_len: int  # tensors.max_len: the first max_len events of a session count
    multiline: MultilineRule = field(default_factory=MultilineRule)  # the dataset's multi-line record rule
    empty_files: str = "skip"  # the dataset's empty_files rule: an empty input file is skipped and counted, or fails

    def as_json(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any], where: str) -> SystemContext:
        try:
            session = None if raw["session"] is None else SessionRule(**raw["session"])
            multiline = MultilineRule(**raw.get("multiline", {}))  # a bundle written before the rule: its defaults
            return cls(**{**raw, "timestamp": TimestampConfig(**raw["timestamp"]), "drain": DrainConfig(**raw["drain"]),
                          "session": session, "regex": list(raw["regex"]), "multiline": multiline})  # fmt: skip
        except (KeyError, TypeError) as error:
            raise DataError(f"{where}: system_params: {error}") from None


@dataclass(frozen=True)
class Threshold:
    """A detector's stored label-free decision: ``score >= value`` is anomalous."""

    value: float | None  # None: the detector found no label-free cut on its train scores (``rule`` says why)
    rule: str  # how it was set, in words (never from target labels)
    pi_hat: float | None = None  # share of the target's train sessions the decision flags


@dataclass(frozen=True)
class DetectorBundle:
    """A read bundle (module docstring)."""

    folder: Path
    method: str
    context: SystemContext
    templates: list[str]  # the template table: templates[i] is count column i + 1
    subspace: PcaSubspace
    threshold: Threshold
    known: KnownTemplates | None  # None: the system's dataset is pre-parsed (no Drain state)
    meta: dict[str, Any]
    example: list[str]  # raw lines of the system's log ([] for a pre-parsed dataset)
    recipe: RecipeState | None = None  # the selected recipe; None: the bundle scores the PCA SPE alone

    @property
    def reads_raw_lines(self) -> bool:
        """Whether new raw lines can be parsed and sessionized as the pipeline did (a raw dataset's bundle)."""
        return self.known is not None and self.context.session is not None


def write_bundle(folder: Path, method: str, context: SystemContext, templates: list[str], subspace: PcaSubspace,
                 threshold: Threshold, known: KnownTemplates | None, train_sessions_holding: np.ndarray,
                 example: list[str], recipe: RecipeState | None = None) -> None:  # fmt: skip
    """Write a bundle into the (empty) ``folder`` (the runner commits it atomically). ``train_sessions_holding``
    (V + 1,) train sessions holding each column (the template table's ``train_sessions``); ``example``: raw lines."""
    if subspace.columns != len(templates) + 1:
        raise DataError(f"{folder}: {subspace.columns} count columns for {len(templates)} templates + padding")
    meta = {
        "format_version": FORMAT_VERSION, "kind": KIND_PCA, "method": method, "system": context.system,
        "dataset": context.dataset, "threshold": dataclasses.asdict(threshold),
        "pca": {"weighting": subspace.weighting, "components": int(subspace.components.shape[0]),
                "train_sessions": subspace.train_sessions},
        "system_params": context.as_json(), "templates": len(templates), "drain": known is not None,
    }  # fmt: skip
    if recipe is not None:
        meta["recipe"] = {"key": recipe.recipe.key, "threshold": recipe.threshold,
                          "train_sessions": recipe.train_sessions}  # fmt: skip
    table = pd.DataFrame({
        "column": pd.Series(np.arange(1, len(templates) + 1), dtype="int32"),
        "template": pd.Series(templates, dtype="string"),
        "train_sessions": pd.Series(np.asarray(train_sessions_holding)[1:], dtype="int64"),
        "weight": pd.Series(subspace.idf[1:] if subspace.weighting == "tfidf" else np.ones(len(templates))),
    })  # fmt: skip
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_parquet(folder / TEMPLATES_FILE, table)
    for name in ARRAY_NAMES:  # .npy, not .npz: a zip member carries the time it was written
        np.save(folder / f"{name}.npy", np.asarray(getattr(subspace, name), dtype=np.float64), allow_pickle=False)
    if known is not None:
        state = json.dumps(known.state(), separators=(",", ":"), sort_keys=True)
        (folder / DRAIN_FILE).write_text(state + "\n", encoding="utf-8")
    if example:
        (folder / EXAMPLE_FILE).write_text("".join(f"{line}\n" for line in example), encoding="utf-8")
    if recipe is not None:
        _write_recipe(folder, recipe)


def _write_recipe(output: Path, recipe: RecipeState) -> None:
    for field_name, name in RECIPE_ARRAYS.items():
        np.save(output / f"{name}.npy", np.asarray(getattr(recipe, field_name)), allow_pickle=False)
    sets = pd.DataFrame({"set": pd.Series(list(recipe.set_counts), dtype="string"),
                         "sessions": pd.Series(list(recipe.set_counts.values()), dtype="int64")})  # fmt: skip
    write_parquet(output / SETS_FILE, sets)


def _read_recipe(folder: Path, meta: dict[str, Any], holding: np.ndarray) -> RecipeState | None:
    if "recipe" not in meta:
        return None
    try:
        arrays = {field_name: np.load(folder / f"{name}.npy", allow_pickle=False)
                  for field_name, name in RECIPE_ARRAYS.items()}  # fmt: skip
        sets = pd.read_parquet(folder / SETS_FILE)
        recipe = Recipe.from_key(str(meta["recipe"]["key"]))
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{folder}: unreadable recipe state ({error})") from None
    if arrays["train_scores"].shape[0] != len(recipe.members):
        raise DataError(f"{folder}: recipe_train_scores.npy has {arrays['train_scores'].shape[0]} rows for "
                        f"{len(recipe.members)} members")  # fmt: skip
    return RecipeState(
        recipe,
        float(meta["recipe"]["threshold"]),
        int(meta["recipe"]["train_sessions"]),
        holding,
        dict(zip(sets["set"].astype(str), sets["sessions"].astype(int), strict=True)),
        arrays["rarity_weights"],
        arrays["vocabulary"].astype(bool),
        arrays["train_scores"],
    )


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no {META_FILE} (not a detector bundle; the selection stage writes one per system)")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION or meta.get("kind") != KIND_PCA:
        raise DataError(f"{path}: not a {KIND_PCA} detector of format_version {FORMAT_VERSION}")
    return meta


def _read_subspace(folder: Path, meta: dict[str, Any]) -> PcaSubspace:
    arrays = {}
    for name in ARRAY_NAMES:
        try:
            arrays[name] = np.asarray(np.load(folder / f"{name}.npy", allow_pickle=False), dtype=np.float64)
        except (OSError, ValueError) as error:
            raise DataError(f"{folder / (name + '.npy')}: unreadable PCA array ({error})") from None
    idf, mean, components = (arrays[name] for name in ARRAY_NAMES)
    weighting = meta["pca"]["weighting"]
    agree = idf.shape == mean.shape and components.ndim == 2 and components.shape[1:] == mean.shape
    if weighting not in WEIGHTINGS or not agree:
        raise DataError(
            f"{folder}: PCA arrays disagree (weighting {weighting}, idf {idf.shape}, mean {mean.shape}, "
            f"components {components.shape})"
        )
    return PcaSubspace(weighting, idf, mean, components, int(meta["pca"]["train_sessions"]))


def not_persisted_reason(folder: str | Path) -> str | None:
    """Why the selection stage wrote no detector in ``folder`` (its ``NOT_PERSISTED_FILE``), or None."""
    marker = Path(folder) / NOT_PERSISTED_FILE
    return str(read_json(marker)["reason"]) if marker.is_file() else None


def write_not_persisted(folder: str | Path, method: str, reason: str) -> None:
    """The stage's declared output (an empty folder) when no recipe was chosen: a record saying why."""
    write_json(Path(folder) / NOT_PERSISTED_FILE, {"method": method, "reason": reason})


def read_bundle(folder: str | Path) -> DetectorBundle:
    """Read and check a bundle folder; a one-line DataError names the file at fault."""
    folder = Path(folder)
    reason = not_persisted_reason(folder)
    if reason is not None:
        raise DataError(f"{folder}: no detector to apply ({reason})")
    meta = _read_meta(folder)
    try:
        table = pd.read_parquet(folder / TEMPLATES_FILE)
    except (OSError, ValueError) as error:
        raise DataError(f"{folder / TEMPLATES_FILE}: unreadable ({error})") from None
    if table["column"].tolist() != list(range(1, len(table) + 1)):
        raise DataError(f"{folder / TEMPLATES_FILE}: column must run 1..{len(table)} in order")
    subspace = _read_subspace(folder, meta)
    if subspace.columns != len(table) + 1:
        raise DataError(f"{folder / 'mean.npy'}: {subspace.columns} columns for {len(table)} templates + padding")
    known = None
    if (folder / DRAIN_FILE).is_file():
        try:
            known = KnownTemplates.from_state(read_json(folder / DRAIN_FILE))
        except (DataError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"{folder / DRAIN_FILE}: not a Drain state ({error})") from None
    threshold = Threshold(**meta["threshold"])
    context = SystemContext.from_json(meta["system_params"], str(folder / META_FILE))
    example_file = folder / EXAMPLE_FILE
    example = example_file.read_text(encoding="utf-8").splitlines() if example_file.is_file() else []
    holding = np.concatenate([[0], table["train_sessions"].to_numpy(dtype=np.int64)])  # (V + 1,)
    return DetectorBundle(folder, str(meta["method"]), context, table["template"].astype(str).tolist(), subspace,
                          threshold, known, meta, example, _read_recipe(folder, meta, holding))  # fmt: skip


__all__ = ["DetectorBundle", "SystemContext", "Threshold", "read_bundle", "write_bundle"]
