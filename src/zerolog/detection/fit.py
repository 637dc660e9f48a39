"""Persist a system's selected detector: the selection stage's last step (``run_select_stage``).

The stage selection chooses the system's recipe leave-one-system-out (zerolog.evaluation.loso) and writes its scores;
this module fits the recipe's members on ``tensors/<system>/`` (train rows only, no label) into the bundle
``models/target-<system>/detector/`` (zerolog.detection.bundle, zerolog.detection.recipe): what ``zerolog detect``,
the registry and the served model need to score new raw lines. The bundle's scores of the system's own sessions are
checked against the stage's score file (one recipe, two writers, no drift).

The system's params in the bundle are the dataset's own layout (``Params.dataset_system``), its session rule, the
parse stage's ``max_unmatched_share`` and the tensors' ``max_len``; the known templates are the parse stage's final
Drain tree (``parsed/<dataset>/drain.json``) with the exceptions found in the dataset's own lines, or, for a
pre-parsed dataset, the template texts of its sessions (loghub's ``<*>`` texts) matched on raw lines' messages
(``KnownTemplates.of_table``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zerolog.artifacts import ArtifactPaths, SystemTensors, load_tensors, read_scores
from zerolog.data.datasets import iterate_text_lines
from zerolog.data.known_templates import DRAIN_STATE_FILE, KnownTemplates, known_templates_of_dataset
from zerolog.data.parse import log_file_paths, read_manifest
from zerolog.detection.bundle import SystemContext, Threshold, write_bundle, write_not_persisted
from zerolog.detection.recipe import RecipeState
from zerolog.errors import DataError
from zerolog.evaluation.loso import METHOD, select_recipe
from zerolog.evaluation.selection import Recipe
from zerolog.features.pca import PcaSubspace, fit_pca_subspace

#: Raw lines kept in the bundle as the registered model's input example.
EXAMPLE_LINES = 20
#: Relative tolerance between the bundle's scores and the selection stage's score file (same math, same input).
SCORE_TOLERANCE = 1e-9


def system_context(params: Any, system: str, max_len: int) -> SystemContext:
    """The system's params as its dataset reads them (the dataset's own log format and timestamp where it sets
    them); ``params`` may be a stage's declared view (``systems.<system>``, ``datasets.<dataset>``, ``parse``)."""
    dataset = params.systems[system].dataset
    layout = params.dataset_system(dataset)
    return SystemContext(system=system, dataset=dataset, log_format=layout.log_format, timestamp=layout.timestamp,
                         regex=list(layout.regex), drain=layout.drain, session=params.datasets[dataset].session,
                         max_unmatched_share=params.parse.max_unmatched_share, max_len=max_len,
                         multiline=params.datasets[dataset].multiline,
                         empty_files=params.datasets[dataset].empty_files)  # fmt: skip


def example_lines(params: Any, dataset: str) -> list[str]:
    """The first ``EXAMPLE_LINES`` lines of a raw dataset's first log file (as the download stage listed them), for
    the registered model's input example."""
    folder, manifest = read_manifest(ArtifactPaths(params.paths), dataset, params.datasets[dataset].kind, ["logs"])
    lines: list[str] = []
    for _, text in iterate_text_lines(log_file_paths(folder, manifest)[0]):
        lines.append(text)
        if len(lines) == EXAMPLE_LINES:
            break
    return lines


def _check_scores(path: Path, state: RecipeState, counts: np.ndarray, spe: np.ndarray) -> None:
    """The bundle's scores of the system's own sessions must be the selection stage's (one recipe, two writers)."""
    stored = read_scores(path)[0].sort_values("row")["score"].to_numpy(dtype=np.float64)
    ours = state.score(counts, np.zeros((counts.shape[0], 0)), spe)
    if stored.shape != ours.shape or not np.allclose(stored, ours, rtol=SCORE_TOLERANCE, atol=1e-12):
        raise DataError(f"{path}: the selection stage's scores differ from the persisted recipe's")


def write_system_detector(params: Any, arrays: SystemTensors, recipe: Recipe | None,
                          decision: dict[str, Any] | None, reason: str | None) -> dict[str, Any]:  # fmt: skip
    """Persist the system's selected recipe (``recipe``, its cut and pi-hat in ``decision``) as the bundle of
    ``zerolog detect``, the registry and serving; without a recipe, a record of ``reason``. Returns the summary."""
    paths, system = ArtifactPaths(params.paths), arrays.system
    if recipe is None or decision is None:
        write_not_persisted(paths.detector(system), METHOD, str(reason))
        return {"method": METHOD, "bundle": None, "reason": reason}
    train_rows = arrays.rows("train")
    counts = np.asarray(arrays.counts, dtype=np.float64)  # (sessions, templates + 1)
    pca, loglead = params.evaluate.detectors.pca, params.evaluate.detectors.loglead
    subspace: PcaSubspace = fit_pca_subspace(counts[train_rows], pca.variance, pca.weighting)
    spe = subspace.spe(counts)  # (sessions,)
    state = RecipeState.fit(recipe, float(decision["threshold"]), counts, train_rows,
                            (loglead.rarity_threshold, loglead.rarity_common_threshold))  # fmt: skip
    state = state.with_train_scores(counts, train_rows, spe)
    _check_scores(paths.score_file(METHOD, "", system, params.seeds[0]), state, counts, spe)
    context = system_context(params, system, int(arrays.meta["max_len"]))
    parsed = paths.parsed(context.dataset)
    templates = list(arrays.meta["templates_list"])
    raw = (parsed / DRAIN_STATE_FILE).is_file()
    # a pre-parsed dataset: its template texts (loghub <*> texts) matched on raw messages; others are new
    known = (
        known_templates_of_dataset(parsed) if raw else KnownTemplates.of_table(templates, context.drain, context.regex)
    )
    threshold = Threshold(state.threshold, f"{recipe.key}: combined score >= its {recipe.cut} cut on the train "
                          "scores", float(decision["pi_hat"]))  # fmt: skip
    example = example_lines(params, context.dataset) if raw else []
    write_bundle(paths.detector(system), METHOD, context, templates, subspace, threshold, known, state.holding,
                 example, state)  # fmt: skip
    return {"method": METHOD, "recipe": recipe.key, "bundle": str(paths.detector(system)),
            "threshold": state.threshold, "pi_hat": threshold.pi_hat}  # fmt: skip


def run_select_stage(params: Any, system: str) -> None:
    """stage selection: the system's recipe chosen leave-one-system-out (``zerolog.evaluation.loso.select_recipe``),
    then persisted for ``zerolog detect``, the registry and serving (the stage table calls this, so the evaluation
    layer does not import the detection layer after it)."""
    choice = select_recipe(system, params.selection, params.seed, params.seeds, params.mlflow,
                           ArtifactPaths(params.paths), list(params.systems))  # fmt: skip
    arrays = load_tensors(ArtifactPaths(params.paths).tensors(system))
    entry = write_system_detector(params, arrays, choice.recipe, choice.decision, choice.reason)
    if entry["bundle"] is None:
        print(f"selection {system}: no detector persisted: {entry['reason']}", flush=True)
        return
    print(
        f"selection {system}: {entry['recipe']} persisted in {entry['bundle']} (cut {entry['threshold']:.6g}, "
        f"pi-hat {entry['pi_hat']:.3f})",
        flush=True,
    )


__all__ = ["run_select_stage", "system_context", "write_system_detector"]
