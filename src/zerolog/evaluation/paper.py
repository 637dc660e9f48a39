"""Stage paper: the protocol of the published figures, measured beside the realistic one (params ``paper``).

How the public ZeroLog code measured its ">80% F1" (our reading of that code, docs/method.md; nothing copied),
done here as closely as our data allows:
- each domain's MAJORITY class (it depends on the data; the metrics name it per system) is subsampled (seeded) to
  ``paper.anomaly_share`` anomalies (0.5: 1:1), and the kept sessions split ``dev_share`` / rest into dev and train;
- the repo's trainer (``train.*``, ``paper.epochs``) learns from the source's labeled train sessions and the target's
  train sessions WITHOUT labels; the source's dev sessions are its validation split (history only);
- the target's TEST set is every kept target session, train + dev: the sessions it adapted on (transductive);
  decision: P(anomalous) >= ``paper.threshold``;
- reported: the LAST epoch (no target label read), and the BEST epoch by target F1, marked ORACLE (it reads target
  labels, as the public code does), scored outside the trainer from the checkpoint it writes after each epoch;
- ``flag_all``: every test session flagged anomalous, what a 50/50 share alone gives (F1 = 2s / (1 + s) = 0.667).
What differs from the paper is listed in the README and reports/results.md.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.artifacts import SPLIT_CODES, ArtifactPaths, Status, SystemTensors, load_tensors
from zerolog.config import (
    PAPER_KEYS,
    PAPER_OWN_TRAIN_KEYS,
    TRAIN_KEYS,
    MlflowConfig,
    PairConfig,
    PaperConfig,
    Params,
    TrainConfig,
)
from zerolog.errors import DataError
from zerolog.io import write_json
from zerolog.metrics import confusion_counts, precision_recall_f1, ranking_metrics
from zerolog.plots import plot_paper_curve, status_image
from zerolog.runner import Outputs
from zerolog.tracking import Tracker, flatten_params, inputs_md5
from zerolog.training.loop import HISTORY_COLUMNS, load_checkpoint, score, train

PROTOCOL = "paper"
FLAG_ALL = "flag_all"  # reference row: every session anomalous (not a method of the registry: no model, no rule)
EXCLUDED = SPLIT_CODES["test"]  # split code of the sessions a view leaves out: the trainer reads train and val only
ORACLE_SELECTION = "best epoch by target F1 (reads target labels: ORACLE, as the public ZeroLog code)"
TARGET_COLUMNS = ("target/f1", "target/precision", "target/recall", "target/pr_auc", "target/roc_auc")
Logged = tuple[dict[str, float], int]  # (metrics, epoch): what a method's MLflow run logs at step epoch


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class DomainSample:
    """One system's sessions under the paper protocol: rows of its tensors kept in train and in dev."""

    system: str
    train_rows: np.ndarray  # (kept train sessions,) int64, ascending
    dev_rows: np.ndarray  # (kept dev sessions,) int64, ascending
    summary: dict[str, Any] = field(repr=False)  # sizes and which class was subsampled (the metrics' "data")

    @property
    def kept_rows(self) -> np.ndarray:
        """Train and dev rows, ascending: the target's test set under this protocol."""
        return np.sort(np.concatenate([self.train_rows, self.dev_rows]))


def system_generator(seed: int, system: str) -> np.random.Generator:
    """A generator per (seed, system): a system is drawn the same way in every pair it takes part in."""
    return np.random.default_rng([seed, zlib.crc32(system.encode("utf-8"))])


def subsample_to_share(labels: np.ndarray, anomaly_share: float,
                       generator: np.random.Generator) -> tuple[np.ndarray, str]:  # fmt: skip
    """Rows kept so that anomalies make ``anomaly_share`` of them: every session of the class that is short of its
    share, a seeded draw of the other (the majority at 0.5). Unlabeled rows (-1) are never kept.

    Returns (kept rows ascending, the subsampled class: ``normal``, ``anomalous`` or ``none``).
    """
    anomalies, normals = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if anomalies.size == 0 or normals.size == 0:
        raise DataError(f"the paper protocol needs both classes, found {anomalies.size} anomalous and "
                        f"{normals.size} normal labeled sessions")  # fmt: skip
    wanted_normals = int(round(anomalies.size * (1 - anomaly_share) / anomaly_share))
    if wanted_normals < normals.size:
        normals, subsampled = np.sort(generator.choice(normals, wanted_normals, replace=False)), "normal"
    else:
        wanted_anomalies = int(round(normals.size * anomaly_share / (1 - anomaly_share)))
        subsampled = "anomalous" if wanted_anomalies < anomalies.size else "none"
        anomalies = np.sort(generator.choice(anomalies, min(wanted_anomalies, anomalies.size), replace=False))
    return np.sort(np.concatenate([anomalies, normals])).astype(np.int64), subsampled


def split_train_dev(rows: np.ndarray, labels: np.ndarray, dev_share: float,
                    generator: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``rows`` split into (train, dev), ``dev_share`` of each class in dev (rounded), both ascending."""
    train_parts, dev_parts = [], []
    for label in (0, 1):
        members = generator.permutation(rows[labels[rows] == label])
        in_dev = int(round(dev_share * members.size))
        dev_parts.append(members[:in_dev])
        train_parts.append(members[in_dev:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(dev_parts))


def _class_counts(labels: np.ndarray, rows: np.ndarray) -> dict[str, int]:
    chosen = labels[rows]
    return {"sessions": int(rows.size), "anomalous": int(np.sum(chosen == 1)), "normal": int(np.sum(chosen == 0))}


def sample_domain(tensors: SystemTensors, role: str, config: PaperConfig) -> DomainSample:
    """Subsample one system to ``paper.anomaly_share`` and split it into train and dev (module docstring)."""
    labels = np.asarray(tensors.labels)  # (sessions,) 1 / 0 / -1: every split of the realistic protocol pooled
    generator = system_generator(config.seed, tensors.system)
    kept, subsampled = subsample_to_share(labels, config.anomaly_share, generator)
    train_rows, dev_rows = split_train_dev(kept, labels, config.dev_share, generator)
    summary = {
        "role": role,
        "dataset": tensors.dataset,
        "available": _class_counts(labels, np.flatnonzero(labels >= 0)),
        "unlabeled_dropped": int(np.sum(labels < 0)),
        "subsampled_class": subsampled,
        "kept": _class_counts(labels, kept),
        "train": _class_counts(labels, train_rows),
        "dev": _class_counts(labels, dev_rows),
    }
    if role == "target":
        summary["test"] = {**_class_counts(labels, kept), "is": "train + dev: every kept session (adapted on)"}
    return DomainSample(tensors.system, train_rows, dev_rows, summary)


def protocol_view(tensors: SystemTensors, sample: DomainSample, with_labels: bool) -> SystemTensors:
    """The system as the trainer sees it under this protocol, in memory: ``split`` 0 for the kept train rows, 1 for
    the dev rows, ``EXCLUDED`` for the rest (never read by the trainer); labels only when ``with_labels``."""
    split = np.full(tensors.sessions, EXCLUDED, dtype=np.int8)  # (sessions,)
    split[sample.train_rows] = SPLIT_CODES["train"]
    split[sample.dev_rows] = SPLIT_CODES["val"]
    return dataclasses.replace(tensors, split=split, labels=np.asarray(tensors.labels) if with_labels else None)


# ----------------------------------------------------------------------------- decisions


def decision_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 at ``scores >= threshold``, confusion counts, PR-AUC and ROC-AUC."""
    predictions = scores >= threshold
    precision, recall, f1 = precision_recall_f1(labels, predictions)
    return {"f1": f1, "precision": precision, "recall": recall, "threshold": threshold,
            **confusion_counts(labels, predictions).as_dict(), **ranking_metrics(labels, scores)}  # fmt: skip


def flag_all_entry(labels: np.ndarray) -> dict[str, Any]:
    """Every session flagged anomalous: precision = the anomaly share, recall 1."""
    precision, recall, f1 = precision_recall_f1(labels, np.ones(labels.size, dtype=bool))
    return {"status": str(Status.EVALUATED), "oracle": False, "f1": f1, "precision": precision, "recall": recall,
            "rule": "every session anomalous: what the class share alone yields"}  # fmt: skip


def best_epoch(curve: pd.DataFrame) -> pd.Series:
    """The row of the highest target F1 (the earliest on ties), as the public code keeps the first best."""
    return curve.loc[curve["target/f1"].idxmax()]


# ----------------------------------------------------------------------------- training, with the ORACLE curve beside


@dataclass(frozen=True)
class TargetTest:
    """The target's test set under this protocol, for the evaluator's side only (never passed to the trainer)."""

    rows: np.ndarray  # (test sessions,) rows of the target's tensors: every kept session, train + dev
    labels: np.ndarray  # (test sessions,) 1 / 0
    threshold: float  # decision: P(anomalous) >= threshold


class TargetCurve:
    """Per-epoch target metrics at the paper's threshold: ORACLE (reads target labels), kept outside the trainer.

    The trainer's ``on_epoch`` hands over the epoch's history row only, so the model of each epoch is read from the
    checkpoint the trainer writes after it (``train.checkpoint_every_epochs`` = 1 here); whichever epoch a
    checkpoint holds is scored once, and the last epoch is scored from the returned model. Nothing flows back: the
    trainer never sees this object, the target's labels live only here, and the checkpoint is only read.
    """

    def __init__(self, target: SystemTensors, test: TargetTest, checkpoint: Path, batch_size: int) -> None:
        self.target, self.test = target, test  # target: its view WITHOUT labels
        self.checkpoint, self.batch_size = checkpoint, batch_size
        self.logged: list[Logged] = []  # (metrics, epoch) for MLflow, in the order they came
        self.history: dict[int, dict[str, float]] = {}
        self.metrics: dict[int, dict[str, Any]] = {}

    def on_epoch(self, row: dict[str, float]) -> None:
        """The trainer's callback: keep the epoch's history row, score the newest checkpoint if not yet scored."""
        self.history[int(row["epoch"])] = dict(row)
        self.logged.append(
            ({key: value for key, value in row.items() if key not in ("epoch", "step")}, int(row["epoch"]))
        )
        if self.checkpoint.is_file():
            model, checkpoint = load_checkpoint(self.checkpoint)
            self.record(int(checkpoint["epoch"]), model)

    def record(self, epoch: int, model: Any) -> dict[str, Any]:
        """Score the target's test rows with ``model`` (the model after ``epoch``) once; its metrics."""
        if epoch not in self.metrics:
            scores = score(model, self.target, self.test.rows, self.batch_size)  # (test sessions,) P(anomalous)
            self.metrics[epoch] = decision_metrics(self.test.labels, scores, self.test.threshold)
            decision = {f"oracle/target/{key}": self.metrics[epoch][key] for key in ("f1", "precision", "recall")}
            self.logged.append((decision, epoch))
        return self.metrics[epoch]

    def frame(self, epochs: int) -> pd.DataFrame:
        """One row per epoch 1..``epochs``: the trainer's history and the target metrics; DataError if one is
        missing."""
        missing = [epoch for epoch in range(1, epochs + 1) if epoch not in self.metrics or epoch not in self.history]
        if missing:
            raise DataError(f"{self.checkpoint}: no target metrics for epoch(s) {missing}")
        rows = []
        for epoch in range(1, epochs + 1):
            history = {key: self.history[epoch].get(key, math.nan) for key in HISTORY_COLUMNS if key != "seconds"}
            target = {column: self.metrics[epoch][column.removeprefix("target/")] for column in TARGET_COLUMNS}
            rows.append({**history, **{key: math.nan if value is None else value for key, value in target.items()}})
        return pd.DataFrame(rows)


def train_with_curve(config: TrainConfig, sources: list[SystemTensors], target: SystemTensors, method: str,
                     seed: int, test: TargetTest) -> tuple[Any, pd.DataFrame, float, list[Logged]]:  # fmt: skip
    """Train ``method`` with the repo's trainer (``target`` WITHOUT labels) while ``TargetCurve`` scores every epoch
    on ``test``. Returns (the last-epoch model, the per-epoch curve, seconds, the per-epoch (metrics, epoch) to log)."""
    if target.labels is not None:
        raise DataError(f"{target.directory}: the target must reach the trainer without labels (labels given)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zerolog-paper-") as folder:
        curve = TargetCurve(target, test, Path(folder) / "checkpoint.pt", config.score_batch_size)
        result = train(config, sources, target, method, seed, progress=False,
                       checkpoint_path=curve.checkpoint, on_epoch=curve.on_epoch)  # fmt: skip
        curve.record(result.epochs, result.model)
        frame = curve.frame(result.epochs)
    return result.model, frame, time.perf_counter() - started, curve.logged


# ----------------------------------------------------------------------------- one pair


def paper_train_config(trainer: Mapping[str, Any], config: PaperConfig) -> TrainConfig:
    """The trainer's settings: ``train.*`` as they are, but ``paper.methods`` and ``paper.epochs``, one method at a
    time, and a checkpoint after every epoch (what ``TargetCurve`` reads)."""
    return TrainConfig(**trainer, methods=list(config.methods), method_workers=1, epochs=config.epochs,
                       checkpoint_every_epochs=1)  # fmt: skip


def method_entry(labels: np.ndarray, last_scores: np.ndarray, curve: pd.DataFrame, threshold: float,
                 run_id: str | None) -> dict[str, Any]:  # fmt: skip
    """A method's metrics: the LAST epoch (its own result, headline f1/precision/recall) and the best epoch by target
    F1, marked ORACLE."""
    last = decision_metrics(labels, last_scores, threshold)
    best = best_epoch(curve)
    best_entry = {"epoch": int(best["epoch"]), "oracle": True, "selected_by": ORACLE_SELECTION}
    best_entry.update({column.removeprefix("target/"): _finite(best[column]) for column in TARGET_COLUMNS})
    return {
        "status": str(Status.EVALUATED),
        "oracle": False,
        "f1": last["f1"], "precision": last["precision"], "recall": last["recall"],
        "last_epoch": {"epoch": int(curve["epoch"].iloc[-1]), "oracle": False, **last},
        "best_epoch_oracle": best_entry,
        "mlflow_run_id": run_id,
    }  # fmt: skip


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def _skip_reason(samples: dict[str, DomainSample], sources: list[str], min_source_anomalies: int) -> str | None:
    """Why the pair is skipped (a source with too few anomalies to learn from, as in stage train), or None."""
    for source in sources:
        anomalies = samples[source].summary["train"]["anomalous"]
        if anomalies < min_source_anomalies:
            return (f"source {source}: {anomalies} anomalies in its kept train sessions, fewer than "
                    f"train.min_source_anomalies = {min_source_anomalies}")  # fmt: skip
    return None


def _two_classes(tensors: SystemTensors) -> str | None:
    labels = np.asarray(tensors.labels)
    if np.any(labels == 1) and np.any(labels == 0):
        return None
    return f"{tensors.system}: {int(np.sum(labels == 1))} anomalous and {int(np.sum(labels == 0))} normal sessions"


def _aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A method's entry over its model seeds (the data draw stays ``paper.seed``): the mean over seeds, with
    ``<key>_sd``, of the last epoch's numbers and of the best epoch's (ORACLE), and each seed's entry under ``seeds``.
    One run is a draw: the same trainer's zero-label F1 moves with float rounding (issue 10)."""
    entries = list(per_seed.values())
    seeds = {str(seed): {"f1": value["f1"], "best_epoch_oracle_f1": value["best_epoch_oracle"].get("f1"),
                         "best_epoch": value["best_epoch_oracle"]["epoch"], "mlflow_run_id": value["mlflow_run_id"]}
             for seed, value in per_seed.items()}  # fmt: skip
    entry = {**entries[0], "seeds": seeds}
    entry.pop("mlflow_run_id", None)
    for key in ("f1", "precision", "recall"):
        entry[key], entry[f"{key}_sd"] = _mean_and_sd([value[key] for value in entries])
        entry["last_epoch"] = {**entry["last_epoch"], key: entry[key], f"{key}_sd": entry[f"{key}_sd"]}
    best = dict(entry["best_epoch_oracle"])
    best.pop("epoch", None)
    for key in ("f1", "precision", "recall"):
        best[key], best[f"{key}_sd"] = _mean_and_sd([value["best_epoch_oracle"].get(key) for value in entries])
    best["epochs"] = [value["best_epoch_oracle"]["epoch"] for value in entries]
    entry["best_epoch_oracle"] = best
    return entry


def _mean_and_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    present = [float(value) for value in values if value is not None]
    if not present:
        return None, None
    return float(np.mean(present)), float(np.std(present, ddof=1)) if len(present) > 1 else None  # one run: no sd


@dataclass(frozen=True)
class PaperSection:
    """Stage paper's settings: the pair, ``paper.*`` but its pair list (adding a pair to ``paper.pairs`` leaves the
    other pairs' stages as they are), the trainer's (``train.*`` but the keys ``paper`` sets), the model seeds."""

    pair: str
    pair_config: PairConfig
    config: PaperConfig
    train_config: TrainConfig
    seeds: list[int]
    tracking: MlflowConfig


def paper_section(params: Params, pair: str) -> PaperSection:
    settings = {key: getattr(params.paper, key) for key in PAPER_KEYS if key != "pairs"}
    trainer = {key: getattr(params.train, key) for key in TRAIN_KEYS if key not in PAPER_OWN_TRAIN_KEYS}
    config = PaperConfig(pairs=[pair], **settings)
    return PaperSection(pair, params.pairs[pair], config, paper_train_config(trainer, config), params.seeds,
                        params.mlflow)  # fmt: skip


def load_paper_inputs(section: PaperSection, paths: ArtifactPaths) -> dict[str, SystemTensors]:
    """The tensors of the pair's sources and target, by system."""
    return {
        name: load_tensors(paths.tensors(name)) for name in [*section.pair_config.sources, section.pair_config.target]
    }


@dataclass
class SeedRun:
    """One method trained with one model seed under the protocol: its metrics entry, curve and what MLflow logs."""

    method: str
    seed: int
    entry: dict[str, Any]  # method_entry: its mlflow_run_id set by PaperResult.track_runs
    curve: pd.DataFrame  # per epoch: the trainer's history and the target metrics (ORACLE)
    epoch_metrics: list[Logged]  # (metrics, epoch), as TargetCurve collected them
    final_metrics: dict[str, Any]  # logged at step paper.epochs

    @property
    def name(self) -> str:
        return f"{self.method}-seed-{self.seed}"


@dataclass
class PaperResult:
    """``metrics/paper/<pair>.json`` and ``plots/paper/<pair>/``; one MLflow run per method and seed (the runner
    tracks them before it writes: the metrics name their ids)."""

    section: PaperSection
    document: dict[str, Any]  # the metrics file but its methods, status and reason
    status: Status
    reason: str | None = None
    runs: list[SeedRun] = field(default_factory=list)
    flag_all: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    input_files: list[Path] = field(default_factory=list)  # what the runs' inputs_md5 tag digests

    def metrics(self) -> dict[str, Any]:
        return self.document

    def _plot(self, folder: Path, run: SeedRun) -> list[Path]:
        csv, png = folder / f"{run.name}.csv", folder / f"{run.name}.png"
        run.curve.to_csv(csv, index=False)
        title = f"{self.section.pair} {run.method} seed {run.seed}: paper protocol, target F1 per epoch (ORACLE view)"
        plot_paper_curve(png, run.curve, self.section.config.threshold, title)
        return [csv, png]

    def track_runs(self, tracker: Tracker) -> None:
        section = self.section
        tags = {**self.tags, "inputs_md5": inputs_md5(self.input_files)} if self.runs else {}
        logged: dict[str, Any] = flatten_params(
            {"paper": section.config, "train": section.train_config, "pairs": {section.pair: section.pair_config}}
        )
        for run in self.runs:
            name = f"paper/{section.pair}/{run.method}/seed-{run.seed}"
            with tracker.run(name, {**tags, "method": run.method, "seed": str(run.seed)},
                             {**logged, "model_seed": str(run.seed)}) as run_id:  # fmt: skip
                for metrics, epoch in run.epoch_metrics:
                    tracker.log_metrics(run_id, metrics, step=epoch)
                tracker.log_metrics(run_id, run.final_metrics, step=section.config.epochs)
                with tempfile.TemporaryDirectory() as folder:
                    tracker.log_artifacts(run_id, self._plot(Path(folder), run), "plots")
            run.entry["mlflow_run_id"] = run_id

    def write(self, outputs: Outputs) -> None:
        plots, pair = outputs["plots"], self.section.pair
        if self.status != Status.EVALUATED:
            status_image(plots / "status.png",
                         f"{pair} (paper protocol): {self.status.value.replace('_', ' ')} — {self.reason}")  # fmt: skip
        methods: dict[str, Any] = {}
        for run in self.runs:
            self._plot(plots, run)
            methods.setdefault(run.method, {})[run.seed] = run.entry
        document = {**self.document, "methods": {method: _aggregate(per_seed) for method, per_seed in methods.items()}}
        if self.status == Status.EVALUATED:
            document["methods"][FLAG_ALL] = self.flag_all
        write_json(outputs["metrics"], {**document, "status": str(self.status), "reason": self.reason})


def _measure(section: PaperSection, sources: list[SystemTensors], target: SystemTensors, test: TargetTest,
             method: str, seed: int) -> SeedRun:  # fmt: skip
    """Train ``method`` with model seed ``seed`` under the protocol; its metrics entry and curve."""
    config = section.train_config
    model, curve, seconds, epoch_metrics = train_with_curve(config, sources, target, method, seed, test)
    last_scores = score(model, target, test.rows, config.score_batch_size)
    entry = method_entry(test.labels, last_scores, curve, test.threshold, None)
    final = {
        "last_epoch/f1": entry["f1"], "last_epoch/precision": entry["precision"],
        "last_epoch/recall": entry["recall"], "best_epoch_oracle/f1": entry["best_epoch_oracle"]["f1"],
        "best_epoch_oracle/epoch": entry["best_epoch_oracle"]["epoch"],
        "flag_all/f1": flag_all_entry(test.labels)["f1"], "time/seconds": seconds,
    }  # fmt: skip
    print(
        f"paper {section.pair} {method} seed {seed}: {section.config.epochs} epochs in {seconds:.1f} s; target F1 last "
        f"epoch {entry['f1']:.3f}, best epoch (ORACLE) {entry['best_epoch_oracle']['f1']:.3f}",
        flush=True,
    )
    return SeedRun(method, seed, entry, curve, epoch_metrics, final)


def compute_paper(section: PaperSection, systems: dict[str, SystemTensors]) -> PaperResult:
    """Stage paper for a pair (module docstring)."""
    started = time.perf_counter()
    pair, pair_config, config = section.pair, section.pair_config, section.config
    document: dict[str, Any] = {
        "protocol": PROTOCOL, "pair": pair, "sources": list(pair_config.sources), "target": pair_config.target,
        "anomaly_share": config.anomaly_share, "dev_share": config.dev_share, "threshold": config.threshold,
        "epochs": config.epochs, "seed": config.seed, "seeds": list(section.seeds), "data": {}, "methods": {},
    }  # fmt: skip
    one_class = [reason for reason in map(_two_classes, systems.values()) if reason]
    if one_class:
        status = Status.NOT_EVALUABLE if _two_classes(systems[pair_config.target]) else Status.SKIPPED
        return PaperResult(section, document, status, "needs both classes: " + "; ".join(one_class))
    samples = {name: sample_domain(tensors, "target" if name == pair_config.target else "source", config)
               for name, tensors in systems.items()}  # fmt: skip
    document["data"] = {name: sample.summary for name, sample in samples.items()}
    reason = _skip_reason(samples, pair_config.sources, section.train_config.min_source_anomalies)
    if reason is not None:
        return PaperResult(section, document, Status.SKIPPED, reason)
    target, target_sample = systems[pair_config.target], samples[pair_config.target]
    test_rows = target_sample.kept_rows
    test = TargetTest(test_rows, np.asarray(target.labels)[test_rows].astype(np.int64), config.threshold)
    sources = [protocol_view(systems[name], samples[name], with_labels=True) for name in pair_config.sources]
    target_view = protocol_view(target, target_sample, with_labels=False)
    runs = [_measure(section, sources, target_view, test, method, seed) for method in config.methods
            for seed in section.seeds]  # fmt: skip
    tags = {"stage": "paper", "protocol": PROTOCOL, "pair": pair, "sources": ",".join(pair_config.sources),
            "target": pair_config.target}  # fmt: skip
    input_files = [tensors.directory / f"{name}.npy" for tensors in systems.values()
                   for name in ("index", "lengths", "labels", "split", "vectors")]  # fmt: skip
    print(f"paper {pair}: stage done in {time.perf_counter() - started:.1f} s", flush=True)
    return PaperResult(section, document, Status.EVALUATED, None, runs, flag_all_entry(test.labels), tags, input_files)
