"""Small generated inputs for the evaluation tests: tensors, score files and train-status files in a tmp folder.

The real params.yaml is loaded with every output path moved under the tmp folder (conftest.make_params), so the tests
exercise the same validated config the pipeline uses. Scores are generated from the labels with a chosen separation (a
stand-in for a trained model); the evaluator under test never sees how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import make_params

from zerolog.artifacts import SPLIT_NAMES, TRAINING_SUMMARY, ArtifactPaths, write_scores
from zerolog.config import Params
from zerolog.io import write_json

__all__ = ["make_params", "write_tensors", "write_pair_scores", "write_train_status", "build_pair"]


def write_tensors(
    params: Params,
    system: str,
    sessions: int,
    anomaly_share: float,
    seed: int,
    test_anomalies: int | None = None,
    unlabeled_share: float = 0.0,
    templates: int = 12,
    levels: bool = False,
) -> dict[str, np.ndarray]:
    """labels.npy, split.npy (60/10/30 in order), counts.npy and meta.json for one system.

    ``levels``: also level_counts.npy and meta ``level_names`` (INFO, WARNING, ERROR): every session has INFO lines,
    80% of the anomalous ones and 2% of the normal ones an ERROR line, 10% of all a WARNING line (the level_rule input).

    Anomalous sessions add a rare template that no normal session has, so a count-based detector can find them.
    ``test_anomalies`` fixes the number of anomalies in the test split (to build a not-evaluable target).
    """
    generator = np.random.default_rng(seed)
    split = np.zeros(sessions, dtype=np.int8)
    split[int(0.6 * sessions) :] = 1
    split[int(0.7 * sessions) :] = 2
    labels = (generator.random(sessions) < anomaly_share).astype(np.int8)
    if test_anomalies is not None:
        test_rows = np.flatnonzero(split == 2)
        labels[test_rows] = 0
        labels[generator.choice(test_rows, size=test_anomalies, replace=False)] = 1
    labels[generator.random(sessions) < unlabeled_share] = -1
    counts = _session_counts(generator, labels, templates)
    directory = Path(params.paths.tensors) / system
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "labels.npy", labels)
    np.save(directory / "split.npy", split)
    np.save(directory / "counts.npy", counts)
    # Sequences with exactly these counts (events in template order), for the neural trainer.
    max_len = int(counts.sum(axis=1).max())
    index = np.zeros((sessions, max_len), dtype=np.int32)
    lengths = np.zeros(sessions, dtype=np.int32)
    for row in range(sessions):
        events = np.repeat(np.arange(templates + 1), counts[row].astype(int))
        index[row, : events.size], lengths[row] = events, max(1, events.size)
    np.save(directory / "index.npy", index)
    np.save(directory / "lengths.npy", lengths)
    vectors = generator.normal(size=(templates + 1, 8)).astype(np.float32)  # (templates + 1, dim)
    vectors[0] = 0
    np.save(directory / "vectors.npy", vectors)
    (directory / "session_ids.json").write_text(json.dumps([f"{system}-{row}" for row in range(sessions)]))
    dataset = params.systems[system].dataset
    meta = {
        "system": system,
        "dataset": dataset,
        "label_rule": "generated",
        "sessions": sessions,
        "max_len": max_len,
        "templates_list": [f"generated template {column}" for column in range(1, templates + 1)],
    }
    arrays = {"labels": labels, "split": split, "counts": counts}
    if levels:
        level_counts = np.zeros((sessions, 3), dtype=np.int32)  # (sessions, [ERROR, INFO, WARNING])
        level_counts[:, 1] = counts.sum(axis=1).astype(np.int32)
        error_share = np.where(labels == 1, 0.8, 0.02)
        level_counts[:, 0] = generator.random(sessions) < error_share
        level_counts[:, 2] = generator.random(sessions) < 0.1
        meta["level_names"] = ["ERROR", "INFO", "WARNING"]
        arrays["level_counts"] = level_counts
    else:
        level_counts = np.zeros((sessions, 0), dtype=np.int32)  # the data carries no level field
        meta["level_names"] = []
    np.save(directory / "level_counts.npy", level_counts)
    (directory / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return arrays


def _session_counts(generator: np.random.Generator, labels: np.ndarray, templates: int) -> np.ndarray:
    """(sessions, templates + 1) event counts; column 0 is padding. The last 4 templates are anomaly-only.

    A normal session holds each normal template with probability 1/2, 1-10 times (the variance a count-based
    detector's normal subspace must hold); an anomalous one adds one rare template 1-3 times.
    """
    normal_templates = templates - 4
    counts = np.zeros((labels.size, templates + 1))
    present = generator.random((labels.size, normal_templates)) < 0.5
    counts[:, 1 : normal_templates + 1] = generator.integers(1, 11, (labels.size, normal_templates)) * present
    anomalous = np.flatnonzero(labels == 1)
    rare = generator.integers(templates - 3, templates + 1, size=anomalous.size)
    counts[anomalous, rare] += 1 + generator.integers(0, 3, size=anomalous.size)
    return counts.astype(np.float32)


def _scores_for(labels: np.ndarray, separation: float, generator: np.random.Generator) -> np.ndarray:
    signal = np.where(labels == 1, separation, -separation)
    logits = signal + generator.normal(0.0, 1.5, labels.size)
    return 1.0 / (1.0 + np.exp(-logits))


def write_pair_scores(
    params: Params,
    pair: str,
    method: str,
    separation: float,
    seed: int,
    run_id: str | None = None,
    threshold_source_val: float | None = None,
) -> list[Path]:
    """A transfer method's score files, one per model seed of params: every source and target row, scores from the
    labels (generator seeded with ``seed`` + the model seed's position)."""
    config = params.pairs[pair]
    paths = []
    for position, model_seed in enumerate(params.seeds):
        generator = np.random.default_rng(seed + 1000 * position)
        frames = []
        for domain, systems in (("source", config.sources), ("target", [config.target])):
            for system in systems:
                directory = Path(params.paths.tensors) / system
                labels = np.load(directory / "labels.npy")
                split = np.load(directory / "split.npy")
                frames.append(pd.DataFrame({
                    "domain": domain, "split": [SPLIT_NAMES[int(code)] for code in split],
                    "row": np.arange(labels.size, dtype=np.int64), "system": system,
                    "score": _scores_for(labels, separation, generator),
                }))  # fmt: skip
        path = ArtifactPaths(params.paths).score_file(method, pair, config.target, model_seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"method": method, "threshold_source_val": threshold_source_val, "mlflow_run_id": run_id}
        write_scores(path, pd.concat(frames, ignore_index=True), metadata)
        paths.append(path)
    return paths


def write_train_status(
    params: Params, pair: str, status: str = "ok", reason: str | None = None, methods: dict | None = None
) -> None:
    """scores/<pair>/training.json as the train stage writes it (pair status, per-method status)."""
    methods = methods if methods is not None else {m: {"status": "ok"} for m in params.train.methods}
    write_json(
        ArtifactPaths(params.paths).pair_scores(pair) / TRAINING_SUMMARY,
        {"pair": pair, "status": status, "reason": reason, "methods": methods},
    )


def build_pair(params: Params, pair: str, separations: dict[str, float] | None = None) -> None:
    """Score files for every neural method of ``pair`` and its train status (tensors must exist)."""
    separations = separations or {"zerolog": 2.5, "source_only": 1.0, "dann": 2.0, "meta": 1.5}
    for index, method in enumerate(params.train.methods):
        write_pair_scores(params, pair, method, separations.get(method, 1.0), seed=100 + index)
    write_train_status(params, pair)
