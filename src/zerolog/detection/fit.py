"""Fit and persist a system's recommended detector: the baselines stage's last step (``run_baselines_stage``).

``evaluate.recommended`` names the product's recommended detector, declared in params before any test number was
read (never chosen by test F1): ``pca_mixture``, the PCA SPE of tf-idf event counts off the 95%-variance subspace of
the target's UNLABELED train sessions, cut by a two-component Gaussian mixture on the train SPE. This module fits it
on ``tensors/<system>/`` (train rows only, no label), and writes

- the bundle ``models/target-<system>/detector/`` (zerolog.detection.bundle): what ``zerolog detect``, the registry
  and the served model need to score new raw lines;
- the method's score file in the baselines folder, unless the stage already wrote it; then the bundle's scores and
  cut are checked against that file instead (one fit, two writers, no drift).

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

from zerolog.artifacts import ArtifactPaths, SystemTensors, load_tensors, read_scores, score_frame, write_scores
from zerolog.data.datasets import iterate_text_lines
from zerolog.data.known_templates import DRAIN_STATE_FILE, KnownTemplates, known_templates_of_dataset
from zerolog.data.parse import log_file_paths, read_manifest
from zerolog.detection.bundle import SystemContext, Threshold, write_bundle, write_not_persisted
from zerolog.errors import DataError
from zerolog.evaluation.baselines import run_target_baselines
from zerolog.evaluation.thresholds import mixture_threshold
from zerolog.features.pca import PcaSubspace, Weighting, fit_pca_subspace

#: What the recommended detector can be: the detectors whose fitted state the bundle format holds.
PERSISTABLE_METHODS = ("pca_mixture",)
DECISION_RULE = "SPE >= the 2-component mixture cut on the train SPE"
#: Raw lines kept in the bundle as the registered model's input example.
EXAMPLE_LINES = 20
#: Relative tolerance between this fit's scores and a score file the stage wrote itself (same math, same input).
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
    folder, manifest = read_manifest(params, dataset, ["logs"])
    lines: list[str] = []
    for _, text in iterate_text_lines(log_file_paths(folder, manifest)[0]):
        lines.append(text)
        if len(lines) == EXAMPLE_LINES:
            break
    return lines


def mixture_decision(spe: np.ndarray, train_rows: np.ndarray, seed: int) -> Threshold:
    """The mixture cut on the train SPE and the share of train sessions it flags (pi-hat); no value, with the reason,
    when the train SPE shows no two modes (the detector then scores but flags nothing: ``zerolog detect`` says so).
    ``seed``: the mixture's initialisation only."""
    try:
        value, _ = mixture_threshold(spe[train_rows], False, seed)
    except DataError as error:
        return Threshold(None, f"no label-free cut: {error}", None)
    return Threshold(value, DECISION_RULE, float(np.mean(spe[train_rows] >= value)))


def _check_or_write_scores(path: Path, arrays: SystemTensors, spe: np.ndarray, threshold: Threshold,
                           method: str) -> str:  # fmt: skip
    """Write the method's score file, or check the one the stage wrote against this fit; returns what was done."""
    if not path.is_file():
        frame = score_frame(arrays.system, arrays.split, np.arange(arrays.sessions), spe, domain="target")
        write_scores(path, frame, {"method": method, "detector": method, "threshold_source_val": None,
                                   "decision_threshold": threshold.value, "decision_rule": threshold.rule,
                                   "pi_hat": threshold.pi_hat, "score_scale": "unbounded", "mlflow_run_id": None})
        return "written"
    frame, metadata = read_scores(path)
    stored = frame.sort_values("row")["score"].to_numpy(dtype=np.float64)
    if stored.shape != spe.shape or not np.allclose(stored, spe, rtol=SCORE_TOLERANCE, atol=0.0):
        raise DataError(f"{path}: the stage's {method} scores differ from the persisted detector's fit")
    decision = metadata.get("decision_threshold")
    same = (decision is None and threshold.value is None) or (
        decision is not None and threshold.value is not None
        and bool(np.isclose(float(decision), threshold.value, rtol=SCORE_TOLERANCE, atol=0.0))
    )  # fmt: skip
    if not same:
        raise DataError(f"{path}: decision_threshold {decision} differs from the persisted cut {threshold.value}")
    return "checked against the stage's score file"


def write_system_detector(params: Any, arrays: SystemTensors, scores_folder: Path, variance: float,
                          weighting: Weighting) -> dict[str, Any]:  # fmt: skip
    """Fit ``evaluate.recommended`` on the system's train sessions, write its bundle and (or check) its score file
    in ``scores_folder``; returns the status entry of the baselines stage's ``status.json``.

    ``variance``, ``weighting``: the PCA's settings in params (the caller's: the baselines stage reads them where
    its own PCA detectors do), the explained-variance share and the count weighting (loglizer's tf-idf)."""
    method, system = params.evaluate.recommended, arrays.system
    paths = ArtifactPaths(params.paths)
    if method not in PERSISTABLE_METHODS:
        reason = (f"evaluate.recommended {method!r} has no persisted form for zerolog detect (persistable: "
                  f"{', '.join(PERSISTABLE_METHODS)})")
        write_not_persisted(paths.detector(system), method, reason)
        return {"method": method, "bundle": None, "score_file": "not persisted", "threshold": None, "pi_hat": None,
                "reason": reason}
    train_rows = arrays.rows("train")
    counts = np.asarray(arrays.counts, dtype=np.float64)  # (sessions, templates + 1)
    subspace: PcaSubspace = fit_pca_subspace(counts[train_rows], variance, weighting)
    spe = subspace.spe(counts)  # (sessions,)
    threshold = mixture_decision(spe, train_rows, params.seed)
    context = system_context(params, system, int(arrays.meta["max_len"]))
    parsed = paths.parsed(context.dataset)
    templates = list(arrays.meta["templates_list"])
    raw = (parsed / DRAIN_STATE_FILE).is_file()
    # a pre-parsed dataset: its template texts (loghub <*> texts) matched on raw messages; others are new
    known = known_templates_of_dataset(parsed) if raw else KnownTemplates.of_table(templates, context.drain,
                                                                                   context.regex)
    holding = (counts[train_rows] > 0).sum(axis=0)  # (templates + 1,)
    example = example_lines(params, context.dataset) if raw else []
    write_bundle(paths.detector(system), method, context, templates, subspace, threshold, known, holding, example)
    done = _check_or_write_scores(scores_folder / f"{method}.parquet", arrays, spe, threshold, method)
    return {"method": method, "bundle": str(paths.detector(system)), "score_file": done, "threshold": threshold.value,
            "pi_hat": threshold.pi_hat, "drain_state": known is not None}  # fmt: skip


def run_baselines_stage(params: Any, system: str, seeds: list[int]) -> None:
    """Stage baselines: every target-only detector, rule and oracle of the system
    (``zerolog.evaluation.baselines.run_target_baselines``, unchanged), then its recommended detector persisted
    for ``zerolog detect``, the registry and serving (``write_system_detector``; the stage table calls this, so the
    evaluation layer does not import the detection layer after it)."""
    run_target_baselines(params, system, seeds)
    paths = ArtifactPaths(params.paths)
    # the PCA settings of the baselines stage's own pca / pca_mixture detectors: one setting, read by both
    settings = params.evaluate.detectors.pca
    entry = write_system_detector(params, load_tensors(paths.tensors(system)), paths.target_scores(system),
                                  settings.variance, settings.weighting)  # fmt: skip
    if entry["bundle"] is None:
        print(f"baselines {system}: recommended detector not persisted: {entry['reason']}", flush=True)
        return
    threshold = entry["threshold"]
    cut = "no label-free cut" if threshold is None else f"cut {threshold:.6g}, pi-hat {entry['pi_hat']:.3f}"
    print(f"baselines {system}: recommended detector {entry['method']} persisted in {entry['bundle']} ({cut}; "
          f"score file {entry['score_file']})", flush=True)


__all__ = ["PERSISTABLE_METHODS", "run_baselines_stage", "mixture_decision", "system_context", "write_system_detector"]
