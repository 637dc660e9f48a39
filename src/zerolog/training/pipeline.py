"""Stage train: every transfer method of ``train.methods`` on one source→target pair (docs/architecture.md).

The stage writes, atomically (all or nothing: zerolog.runner):
- ``models/<pair>/<method>/seed-<s>/checkpoint.pt`` (loop.save_checkpoint: weights, optimiser, step; it can resume),
- ``scores/<pair>/<method>.parquet``: P(anomaly) of the sources' val rows and the target's train/val/test rows, no
  labels; metadata ``method``, ``pair``, ``threshold_source_val``, ``mlflow_run_id``,
- ``scores/<pair>/training.json``: the pair's status (``ok`` or ``skipped`` with the reason), the sources used and
  skipped, and per method its epochs, steps, final source-validation metrics and thresholds (what evaluate reads),
- ``plots/train/<pair>/<method>.csv`` (per-epoch history) and ``<method>.png`` (training curves).
Timings and memory go to MLflow only: in a committed file they would change on every rerun.

On CPU the methods train side by side in ``train.method_workers`` spawned processes, each with
``torch_threads // method_workers`` torch threads: the GRU's small matrix products gain little from a second thread
(a zerolog epoch: 14.1 s on one, 11.7 s on two), so two methods at once finish a pair sooner. Each method is seeded
on its own, so its result depends on its thread count only, not on what runs beside it. MLflow runs are written by
this process alone, after training (:meth:`PairTraining.track_runs`): one per method and seed.

A source is usable only with at least ``train.min_source_anomalies`` labeled anomalies in its train split. With no
usable source the outputs still exist, saying ``status: skipped`` and why: nothing is trained, nothing faked. A
multi-source pair with a single usable source is skipped the same way, naming the single-source pair it equals.
The target is loaded WITHOUT labels (``labels=None``): training and scoring cannot read them.

``zerolog_adapt`` (training/adapt.py) also needs the target-side detector (PCA SPE + mixture cut on the target's
unlabeled train counts, :func:`target_detection`, computed once per pair here). Its score file's metadata adds
``pi_hat`` (the detector's flagged train share) and ``threshold_pi_hat``: the top π̂ share of the method's own
target-train scores, its declared threshold rule. When the detector finds no cut (no two modes in the SPE), the
method is recorded ``not_available`` with the reason, and the other methods train as usual.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zerolog.artifacts import (
    SPLIT_CODES,
    TRAINING_SUMMARY,
    ArtifactPaths,
    Status,
    SystemTensors,
    checkpoint_name,
    load_tensors,
    score_file_name,
    score_frame,
    write_scores,
)
from zerolog.config import ConfigError, MlflowConfig, PairConfig, ParallelConfig, Params, TrainConfig
from zerolog.errors import DataError
from zerolog.features.target_detector import TargetDetection, Weighting, pca_mixture_detection
from zerolog.io import write_json
from zerolog.methods import method_spec
from zerolog.model import ZeroLogModel
from zerolog.parallel import map_ordered, open_pool
from zerolog.plots import plot_training_history, status_image
from zerolog.runner import Outputs
from zerolog.tracking import InputData, Tracker, flatten_params, inputs_md5, run_name, split_sizes
from zerolog.training.adapt import top_share_threshold
from zerolog.training.loop import HISTORY_COLUMNS, planned_epochs, save_network, score, select_device, train
from zerolog.training.methods import method_settings

_TRAINING_FILES = ("index", "lengths", "split", "vectors")  # what training reads; sources add labels


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- scores and history


def scores_of(
    model: ZeroLogModel, sources: list[SystemTensors], target: SystemTensors, batch_size: int
) -> pd.DataFrame:
    """Scores (no labels) in the score-file contract's columns: each source's val rows, then the target's train, val
    and test rows."""
    covered = [("source", source, source.rows("val")) for source in sources]
    covered.append(("target", target, np.flatnonzero(np.isin(np.asarray(target.split), list(SPLIT_CODES.values())))))
    parts = [
        score_frame(tensors.system, tensors.split, rows, score(model, tensors, rows, batch_size), domain)
        for domain, tensors, rows in covered
    ]
    return pd.concat(parts, ignore_index=True)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    frame = pd.DataFrame(history).reindex(columns=list(HISTORY_COLUMNS))
    frame.astype({"epoch": int, "step": int}).drop(columns=["seconds"]).to_csv(
        path, index=False
    )  # inside an atomic directory; timings go to MLflow


def _input_example(sources: list[SystemTensors], rows: int = 2) -> np.ndarray:
    """A few real source sessions as zero-padded vectors (rows, seq_len, dim): the logged model's input example."""
    tensors = sources[0]
    chosen = np.arange(min(rows, tensors.sessions))
    longest = int(np.asarray(tensors.lengths[chosen]).max())
    index = np.asarray(tensors.index[chosen, :longest])
    return np.asarray(tensors.vectors, dtype=np.float32)[index]  # (rows, seq_len, dim)


# ----------------------------------------------------------------------------- one method, in-process or in a worker


@dataclass(frozen=True)
class MethodJob:
    """What training one method needs; plain values, so that a worker process can receive it."""

    config: TrainConfig
    source_directories: list[str]
    target_directory: str
    method: str
    seed: int
    detection: TargetDetection | None = None  # the target detector's scores and pi-hat (zerolog_adapt only)
    pair: str = ""  # named in the per-epoch progress lines only


@dataclass
class MethodOutcome:
    """A trained method as the stage records it: weights (CPU), history, thresholds, timings, target scores."""

    method: str
    seed: int
    weights: dict[str, Any]  # state dict, CPU tensors
    checkpoint: bytes  # loop.save_checkpoint's file after the last epoch (weights, optimiser, step: it can resume)
    history: list[dict[str, float]]
    threshold: float | None
    threshold_source_val: float | None
    seconds: float
    seconds_per_epoch: float
    steps: int
    epochs: int
    device: str
    scores: pd.DataFrame  # scores_of(...): sources' val rows, target's train/val/test rows, no labels
    peak_rss_mb: float
    adaptation: dict[str, Any] = dataclasses.field(default_factory=dict)  # zerolog_adapt: pi_hat, threshold, rounds


def method_workers(config: TrainConfig, runs: int) -> int:
    """Processes that train methods side by side: ``train.method_workers`` on CPU (at most one per run), else 1.

    On CUDA the methods share one device and run in turn.
    """
    if select_device(config).type != "cpu":
        return 1
    return max(1, min(config.method_workers, runs))


def epoch_line(job: MethodJob, row: dict[str, float]) -> str:
    """One line per finished epoch: what a log outside a terminal shows instead of progress bars (issue 12)."""
    total = planned_epochs(job.config, job.method)
    return (f"train {job.pair} {job.method}/seed-{job.seed}: epoch {int(row['epoch'])}/{total}, "
            f"loss {row['loss/total']:.4f}, source val/f1 {row['val/f1']:.3f}, {row['seconds']:.1f} s")  # fmt: skip


def run_method_job(job: MethodJob, progress: bool = False, epoch_lines: bool | None = None) -> MethodOutcome:
    """Train ``job.method`` (loop.train) and score its rows; the target is loaded WITHOUT labels.

    ``epoch_lines``: print a line per epoch (default: when stdout is not a terminal, e.g. CI logs or ``dvc repro``
    piped, where progress bars show nothing for minutes; flushed: worker processes share stdout)."""
    if epoch_lines is None:
        epoch_lines = not sys.stdout.isatty()
    sources = [load_tensors(directory) for directory in job.source_directories]
    target = dataclasses.replace(load_tensors(job.target_directory), labels=None)
    on_epoch = (lambda row: print(epoch_line(job, row), flush=True)) if epoch_lines else None
    with tempfile.TemporaryDirectory(prefix="zerolog-train-") as folder:
        checkpoint = Path(folder) / "checkpoint.pt"
        result = train(job.config, sources, target, job.method, job.seed, progress=progress and not epoch_lines,
                       checkpoint_path=checkpoint, on_epoch=on_epoch, detection=job.detection)  # fmt: skip
        checkpoint_bytes = checkpoint.read_bytes()
    scores = scores_of(result.model, sources, target, job.config.score_batch_size)
    weights = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    adaptation = _adaptation_summary(result.pi_hat, result.domain_weights, result.self_training, scores)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB
    return MethodOutcome(job.method, job.seed, weights, checkpoint_bytes, result.history, result.threshold,
                         result.threshold_source_val, result.seconds, result.seconds_per_epoch, result.steps,
                         result.epochs, result.device, scores, peak_rss_mb, adaptation)  # fmt: skip


def _adaptation_summary(pi_hat: float | None, domain_weights: list[float] | None, rounds: list[dict[str, Any]],
                        scores: pd.DataFrame) -> dict[str, Any]:  # fmt: skip
    """What a zerolog_adapt run records (score metadata, training.json): π̂, its threshold (the top π̂ share of the
    method's own target-train scores), the IWDAN weights and each self-training round's pseudo-label counts."""
    if pi_hat is None:
        return {}
    train_scores = scores.loc[(scores["domain"] == "target") & (scores["split"] == "train"), "score"].to_numpy()
    return {"pi_hat": pi_hat, "threshold_pi_hat": top_share_threshold(train_scores, pi_hat),
            "domain_weights": domain_weights, "self_training": rounds}  # fmt: skip


def run_method_jobs(jobs: list[MethodJob], workers: int) -> list[MethodOutcome]:
    """``jobs`` in ``workers`` spawned processes (zerolog.parallel), each with ``torch_threads // workers`` threads,
    or in turn here with one worker; outcomes in order (each job's result depends on its thread count only: module
    docstring)."""
    if workers > 1:
        threads = max(1, jobs[0].config.torch_threads // workers)
        jobs = [dataclasses.replace(job, config=dataclasses.replace(job.config, torch_threads=threads)) for job in jobs]
    with open_pool(ParallelConfig("processes", workers, None), "train.method_workers") as pool:
        return list(map_ordered(pool, run_method_job, [(job, workers == 1) for job in jobs], ahead=len(jobs)))


# ----------------------------------------------------------------------------- one method's records


def _method_entry(outcome: MethodOutcome, config: TrainConfig, run_id: str) -> dict[str, Any]:
    """What training.json keeps of a method: no timings (those go to MLflow)."""
    final = outcome.history[-1] if outcome.history else {}
    return {
        "status": str(Status.OK),
        "epochs": outcome.epochs,
        "steps": outcome.steps,
        "device": outcome.device,
        "val/f1": _clean(final.get("val/f1")),
        "val/pr_auc": _clean(final.get("val/pr_auc")),
        "val/loss": _clean(final.get("val/loss")),
        "threshold": outcome.threshold,
        "threshold_rule": config.threshold,
        "threshold_source_val": outcome.threshold_source_val,
        "mlflow_run_id": run_id,
        **outcome.adaptation,
    }


def _write_plots(folder: Path, outcome: MethodOutcome, pair: str) -> list[Path]:
    """``<method>/seed-<s>.csv`` (per-epoch history) and ``.png`` (training curves) under ``folder``."""
    csv, png = (folder / outcome.method / f"seed-{outcome.seed}{suffix}" for suffix in (".csv", ".png"))
    csv.parent.mkdir(exist_ok=True)
    write_history(csv, outcome.history)
    plot_training_history(png, outcome.history, f"{pair} {outcome.method} seed {outcome.seed}")
    return [png, csv]


def _track_method(tracker: Tracker, run_id: str, outcome: MethodOutcome, config: TrainConfig, pair: str,
                  example: np.ndarray) -> None:  # fmt: skip
    """Log one method run's per-epoch history (step = epoch), final metrics, timings, plots and model."""
    for row in outcome.history:
        tracker.log_metrics(
            run_id, {k: v for k, v in row.items() if k not in ("epoch", "step")}, step=int(row["epoch"])
        )
    final = outcome.history[-1] if outcome.history else {}
    tracker.log_metrics(
        run_id,
        {
            "final/val/f1": final.get("val/f1", math.nan),
            "final/val/pr_auc": final.get("val/pr_auc", math.nan),
            "final/val/loss": final.get("val/loss", math.nan),
            "final/threshold_source_val": (
                math.nan if outcome.threshold_source_val is None else outcome.threshold_source_val
            ),
            "time/seconds": outcome.seconds,
            "time/seconds_per_epoch": outcome.seconds_per_epoch,
            "memory/peak_rss_mb": outcome.peak_rss_mb,
        },
        step=outcome.epochs,
    )
    with tempfile.TemporaryDirectory() as folder:
        tracker.log_artifacts(run_id, _write_plots(Path(folder), outcome, pair), "plots")
        network = Path(folder) / "network.pt"
        save_network(network, outcome.weights, config)
        tracker.log_model(run_id, network, example)


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class TrainSection:
    """Stage train's settings: the pair, ``train.*``, the model seeds, and the target detector of ``zerolog_adapt``
    (evaluate.detectors.pca's variance and weighting, the data ``seed``: the baselines stage's ``pca_mixture``)."""

    pair: str
    pair_config: PairConfig
    config: TrainConfig
    seeds: list[int]
    tracking: MlflowConfig
    detector_variance: float
    detector_weighting: Weighting
    seed: int


def train_section(params: Params, pair: str) -> TrainSection:
    detector = params.evaluate.detectors.pca
    return TrainSection(pair, params.pairs[pair], params.train, params.seeds, params.mlflow, detector.variance,
                        detector.weighting, params.seed)  # fmt: skip


@dataclass(frozen=True)
class TrainInputs:
    sources: list[SystemTensors]  # the pair's sources, with labels
    target: SystemTensors  # WITHOUT labels: nothing of the stage can read them


def load_train_inputs(section: TrainSection, paths: ArtifactPaths) -> TrainInputs:
    target = load_tensors(paths.tensors(section.pair_config.target))
    return TrainInputs([load_tensors(paths.tensors(source)) for source in section.pair_config.sources],
                       dataclasses.replace(target, labels=None))  # fmt: skip


def _usable_sources(sources: list[SystemTensors], config: TrainConfig) -> tuple[list[SystemTensors], dict[str, str]]:
    """Sources with at least ``train.min_source_anomalies`` labeled train anomalies, and why the others are not."""
    usable: list[SystemTensors] = []
    skipped: dict[str, str] = {}
    for tensors in sources:
        assert tensors.labels is not None
        anomalies = int(np.sum(np.asarray(tensors.labels)[tensors.rows("train")] == 1))
        if anomalies < config.min_source_anomalies:
            skipped[tensors.system] = (
                f"{anomalies} labeled anomalies in its train split, fewer than train.min_source_anomalies"
                f" = {config.min_source_anomalies}"
            )
        else:
            usable.append(tensors)
    return usable, skipped


def _skip_reason(pair_config: PairConfig, usable: list[SystemTensors], skipped: dict[str, str]) -> str | None:
    """Why the pair is not trained, or None. A multi-source pair left with one source is the single-source
    experiment again (same data, same seed): training it twice would report one result under two names."""
    reasons = "; ".join(f"source {name}: {reason}" for name, reason in skipped.items())
    if not usable:
        return f"no usable source ({reasons})"
    if len(pair_config.sources) > 1 and len(usable) == 1:
        alone = usable[0].system
        return f"only {alone} is usable ({reasons}): the same experiment as {alone}-{pair_config.target}"
    return None


def target_detection(
    target: SystemTensors, variance: float, weighting: Weighting, seed: int
) -> tuple[TargetDetection | None, str | None]:
    """The target-side detector of ``zerolog_adapt`` on the target's unlabeled train counts, or None and why not.

    The baselines stage's ``pca_mixture`` (the recommended detector) computed by the same functions
    (features.target_detector) with the same settings and seed, here in-process: the train stage does not wait for
    the baselines stage, and its π̂ equals the one in that stage's score file (tests/training/test_adapt.py).
    """
    try:
        return pca_mixture_detection(np.asarray(target.counts), np.asarray(target.split), variance, weighting,
                                     seed), None  # fmt: skip
    except DataError as error:
        return None, f"{target.system}: the target detector (PCA SPE + mixture cut) gives no pi-hat: {error}"


def _adapt_methods(config: TrainConfig) -> list[str]:
    return [method for method in config.methods if method_settings(method).adapt]


def _job_tags(outcome: MethodOutcome) -> dict[str, str]:
    """A train run's own tags: its method, the method's kind and its model seed (``seed``; ``model_seed`` kept)."""
    seed = str(outcome.seed)
    return {"method": outcome.method, "kind": str(method_spec(outcome.method).kind), "seed": seed, "model_seed": seed}


@dataclass
class PairTraining:
    """Stage train's result: the pair's summary (training.json but its methods) and every method run's outcome.

    Its MLflow runs (one per method and seed, :meth:`track_runs`) are opened after training, and their ids go into
    the score files and training.json: the runner tracks it before it writes."""

    section: TrainSection
    summary: dict[str, Any]  # pair, sources, sources_skipped, target, seeds, status, reason
    outcomes: list[MethodOutcome] = dataclasses.field(default_factory=list)
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)  # method -> why it could not run
    usable: list[SystemTensors] = dataclasses.field(default_factory=list)
    target: SystemTensors | None = None
    input_files: list[Path] = dataclasses.field(default_factory=list)  # what the runs' inputs_md5 tag digests
    run_ids: dict[str, str] = dataclasses.field(default_factory=dict)  # "<method>/seed-<s>" -> MLflow run id

    def metrics(self) -> dict[str, Any]:
        return self.summary

    def track_runs(self, tracker: Tracker) -> None:
        """One MLflow run per method and seed: tags, params, datasets, per-epoch metrics, plots and the model."""
        if not self.outcomes or self.target is None:
            return
        section = self.section
        pair, target = section.pair, section.pair_config.target
        tags = {"pair": pair, "sources": ",".join(self.summary["sources"]), "target": target, "stage": "train",
                "inputs_md5": inputs_md5(self.input_files)}  # fmt: skip
        example = _input_example(self.usable)
        # what a train run reads, as MLflow datasets: each labeled source's tensors and the target's (no labels)
        datasets = [InputData(tensors.directory, "train", split_sizes(tensors)) for tensors in self.usable]
        datasets.append(InputData(self.target.directory, "target", split_sizes(self.target)))
        for outcome in self.outcomes:
            params = flatten_params({"train": section.config, "pairs": {section.pair: section.pair_config},
                                     "seed": outcome.seed})  # fmt: skip
            with tracker.run(run_name(section.pair, outcome.method, outcome.seed), {**tags, **_job_tags(outcome)},
                             params) as run_id:  # fmt: skip
                tracker.log_datasets([run_id], datasets)
                _track_method(tracker, run_id, outcome, section.config, section.pair, example)
            self.run_ids[f"{outcome.method}/seed-{outcome.seed}"] = run_id

    def write(self, outputs: Outputs) -> None:
        models, scores, plots = outputs["models"], outputs["scores"], outputs["plots"]
        pair = self.section.pair
        if self.summary["status"] == str(Status.SKIPPED):
            write_json(models / "status.json", {"pair": pair, "status": str(Status.SKIPPED),
                                                "reason": self.summary["reason"]})  # fmt: skip
            write_json(scores / TRAINING_SUMMARY, self.summary)
            status_image(plots / "status.png", f"{pair}: skipped — {self.summary['reason']}")
            return
        methods: dict[str, Any] = {name: {"status": str(Status.NOT_AVAILABLE), "reason": reason}
                                   for name, reason in self.unavailable.items()}  # fmt: skip
        for outcome in self.outcomes:
            run_id = self.run_ids[f"{outcome.method}/seed-{outcome.seed}"]
            checkpoint = models / checkpoint_name(outcome.method, outcome.seed)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(outcome.checkpoint)
            metadata = {"method": outcome.method, "pair": pair, "seed": outcome.seed,
                        "threshold_source_val": outcome.threshold_source_val, "mlflow_run_id": run_id,
                        **outcome.adaptation}  # fmt: skip
            write_scores(scores / score_file_name(outcome.method, outcome.seed), outcome.scores, metadata)
            _write_plots(plots, outcome, pair)
            seeds = methods.setdefault(outcome.method, {"status": str(Status.OK), "seeds": {}})["seeds"]
            seeds[str(outcome.seed)] = _method_entry(outcome, self.section.config, run_id)
        write_json(scores / TRAINING_SUMMARY, {**self.summary, "methods": methods})


def compute_train(section: TrainSection, inputs: TrainInputs) -> PairTraining:
    """Stage train for a pair (module docstring): every method of ``train.methods`` once per model seed."""
    config, pair_config = section.config, section.pair_config
    for method in config.methods:
        if method_settings(method).oracle:
            raise ConfigError(f"train.methods: {method} reads target labels; the baselines stage trains it")
    usable, skipped = _usable_sources(inputs.sources, config)
    summary: dict[str, Any] = {
        "pair": section.pair, "sources": [tensors.system for tensors in usable], "sources_skipped": skipped,
        "target": pair_config.target, "seeds": list(section.seeds),
    }  # fmt: skip
    reason = _skip_reason(pair_config, usable, skipped)
    if reason is not None:
        return PairTraining(section, {**summary, "status": str(Status.SKIPPED), "reason": reason})
    target = inputs.target
    detection, unavailable = None, {}
    if _adapt_methods(config):
        detection, reason = target_detection(target, section.detector_variance, section.detector_weighting,
                                             section.seed)  # fmt: skip
        unavailable = {method: reason for method in _adapt_methods(config) if reason is not None}
    input_files = [tensors.directory / f"{name}.npy" for tensors in usable for name in (*_TRAINING_FILES, "labels")]
    input_files += [target.directory / f"{name}.npy" for name in (*_TRAINING_FILES, *(["counts"] if detection else []))]
    jobs = [
        MethodJob(config, [str(tensors.directory) for tensors in usable], str(target.directory), method, model_seed,
                  detection if method_settings(method).adapt else None, section.pair)
        for method in config.methods if method not in unavailable for model_seed in section.seeds
    ]  # fmt: skip
    outcomes = run_method_jobs(jobs, method_workers(config, len(jobs)))
    return PairTraining(section, {**summary, "status": str(Status.OK), "reason": None}, outcomes, unavailable, usable,
                        target, input_files)  # fmt: skip
