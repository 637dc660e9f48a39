"""Stage train: every method of ``train.methods`` on one source→target pair (docs/architecture.md).

``train_pair(params, pair)`` writes, atomically (all or nothing):
- ``paths.models/<pair>/<method>/checkpoint.pt`` (loop.save_checkpoint format),
- ``paths.scores/<pair>/<method>.parquet``: P(anomaly) of the sources' val rows and the target's train/val/test
  rows, no labels; metadata ``method``, ``threshold_source_val``, ``mlflow_run_id`` (JSON-encoded values),
- ``paths.plots/train/<pair>/<method>.csv`` (per-epoch history) and ``<method>.png`` (training curves),
- ``paths.metrics/train/<pair>.json``: per method status, epochs, steps, seconds, seconds_per_epoch, peak_rss_mb,
  final source-val metrics and threshold; the pair's wall ``seconds`` and ``method_workers``.

On CPU the methods train side by side in ``train.method_workers`` spawned processes (``run_method_jobs_in_parallel``),
each with ``torch_threads // method_workers`` torch threads: the GRU's small matrix products gain little from a
second thread (a zerolog epoch: 14.1 s on one, 11.7 s on two), so two methods at once finish a pair sooner. Each
method is seeded on its own, so its result depends on its thread count only, not on what runs beside it. MLflow
runs are written by this process alone (per-epoch metrics as each epoch ends when in-process, after the worker
finishes otherwise).

A source is usable only with at least ``train.min_source_anomalies`` labeled anomalies in its train split. With no
usable source the outputs still exist, saying ``status: skipped`` and why (a ``status.json`` in the model and score
folders, a ``status.png`` in the plot folder, the reason in the metrics file): nothing is trained, nothing faked.
A multi-source pair with a single usable source is skipped the same way, naming the single-source pair it equals.
The target is loaded WITHOUT labels (``labels=None``): training and scoring cannot read them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tqdm.auto import tqdm  # noqa: E402

from zerolog.config import ConfigError, Params, TrainConfig  # noqa: E402
from zerolog.features.tensors import ARRAY_FILES, SPLIT_CODES, SystemTensors, load_tensors  # noqa: E402
from zerolog.io import atomic_directory, atomic_path, write_json  # noqa: E402
from zerolog.tracking import Tracker, flatten_params, inputs_md5  # noqa: E402
from zerolog.model import ZeroLogModel  # noqa: E402
from zerolog.training.loop import HISTORY_COLUMNS, build_model, score, select_device, system_name, train  # noqa: E402
from zerolog.training.methods import method_settings  # noqa: E402

SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
SCORE_COLUMNS = ("domain", "split", "row", "system", "score")
_TRAINING_FILES = ("index", "lengths", "split", "vectors")  # what training reads; sources add labels


def _peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def train_anomaly_count(tensors: SystemTensors) -> int:
    """Labeled anomalies in a system's train split."""
    train_rows = np.asarray(tensors.split) == SPLIT_CODES["train"]
    return int(np.sum(np.asarray(tensors.labels)[train_rows] == 1))


# ----------------------------------------------------------------------------- outputs


def score_rows(sources: list[SystemTensors], target: SystemTensors) -> list[tuple[str, SystemTensors, np.ndarray]]:
    """What the score file covers: each source's val rows, then the target's train, val and test rows."""
    rows = []
    for source in sources:
        rows.append(("source", source, np.flatnonzero(np.asarray(source.split) == SPLIT_CODES["val"])))
    split = np.asarray(target.split)
    rows.append(("target", target, np.flatnonzero(np.isin(split, list(SPLIT_CODES.values())))))
    return rows


def score_frame(
    model: ZeroLogModel, sources: list[SystemTensors], target: SystemTensors, batch_size: int
) -> pd.DataFrame:
    """Scores (no labels) in the contract's columns."""
    parts = []
    for domain, tensors, rows in score_rows(sources, target):
        values = score(model, tensors, rows, batch_size)
        parts.append(
            pd.DataFrame(
                {
                    "domain": domain,
                    "split": [SPLIT_NAMES[int(code)] for code in np.asarray(tensors.split)[rows]],
                    "row": rows.astype(np.int64),
                    "system": system_name(tensors),
                    "score": values.astype(np.float64),
                }
            )
        )
    return pd.concat(parts, ignore_index=True).loc[:, list(SCORE_COLUMNS)]


def write_score_file(path: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """Parquet with JSON-encoded key-value metadata (read back by zerolog.evaluation.inputs.read_scores)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    encoded = {key.encode("utf-8"): json.dumps(value).encode("utf-8") for key, value in metadata.items()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **encoded})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def write_history(path: Path, history: list[dict[str, float]]) -> None:
    frame = pd.DataFrame(history).reindex(columns=list(HISTORY_COLUMNS))
    frame["epoch"] = frame["epoch"].astype(int)
    frame["step"] = frame["step"].astype(int)
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)


def plot_history(path: Path, history: list[dict[str, float]], title: str) -> None:
    """Training curves: losses (left) and source-validation metrics (right) per epoch."""
    frame = pd.DataFrame(history)
    figure, (losses, validation) = plt.subplots(1, 2, figsize=(10, 3.6))
    for column in ("loss/classification", "loss/domain", "loss/meta", "val/loss"):
        if column in frame and frame[column].notna().any():
            losses.plot(frame["epoch"], frame[column], marker="o", label=column)
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.legend(fontsize=8)
    for column in ("val/f1", "val/pr_auc"):
        if column in frame and frame[column].notna().any():
            validation.plot(frame["epoch"], frame[column], marker="o", label=f"source {column}")
    validation.set_xlabel("epoch")
    validation.set_ylim(0, 1.02)
    validation.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _status_image(path: Path, text: str) -> None:
    figure = plt.figure(figsize=(8, 1.2))
    figure.text(0.01, 0.5, text, va="center", fontsize=9, wrap=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)


def _input_example(sources: list[SystemTensors], rows: int = 2) -> np.ndarray:
    """A few real source sessions as zero-padded vectors (rows, seq_len, dim): the logged model's input example."""
    tensors = sources[0]
    chosen = np.arange(min(rows, tensors.index.shape[0]))
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
    checkpoint_path: str


@dataclass
class MethodOutcome:
    """A trained method as the stage records it: weights (CPU), history, thresholds, timings, target scores."""

    method: str
    weights: dict[str, Any]  # state dict, CPU tensors
    history: list[dict[str, float]]
    threshold: float | None
    threshold_source_val: float | None
    seconds: float
    seconds_per_epoch: float
    steps: int
    epochs: int
    device: str
    scores: pd.DataFrame  # score_frame(...): sources' val rows, target's train/val/test rows, no labels
    peak_rss_mb: float


def method_workers(config: TrainConfig) -> int:
    """Processes that train methods side by side: ``train.method_workers`` on CPU (at most one per method), else 1.

    On CUDA the methods share one device and run in turn.
    """
    if select_device(config).type != "cpu":
        return 1
    return max(1, min(config.method_workers, len(config.methods)))


def run_method_job(
    job: MethodJob, on_epoch: Callable[[dict[str, float]], None] | None = None, progress: bool = False
) -> MethodOutcome:
    """Train ``job.method`` (loop.train) and score its rows; the target is loaded WITHOUT labels."""
    sources = [load_tensors(directory) for directory in job.source_directories]
    target = dataclasses.replace(load_tensors(job.target_directory), labels=None)
    result = train(
        job.config, sources, target, job.method, job.seed, progress=progress,
        checkpoint_path=job.checkpoint_path, on_epoch=on_epoch,
    )  # fmt: skip
    return MethodOutcome(
        method=job.method,
        weights={name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()},
        history=result.history,
        threshold=result.threshold,
        threshold_source_val=result.threshold_source_val,
        seconds=result.seconds,
        seconds_per_epoch=result.seconds_per_epoch,
        steps=result.steps,
        epochs=result.epochs,
        device=result.device,
        scores=score_frame(result.model, sources, target, job.config.score_batch_size),
        peak_rss_mb=_peak_rss_mb(),
    )


def _run_in_worker(job: MethodJob) -> MethodOutcome:
    return run_method_job(job)


def run_method_jobs_in_parallel(jobs: list[MethodJob], workers: int) -> list[MethodOutcome]:
    """``jobs`` in ``workers`` spawned processes, each with ``torch_threads // workers`` threads; outcomes in order.

    Each job is seeded and deterministic on its own, so the outcome of a method does not depend on which other
    method shares the machine, only on its thread count (the same as ``method_workers: 1`` with that many threads).
    """
    threads = max(1, jobs[0].config.torch_threads // workers)
    jobs = [dataclasses.replace(job, config=dataclasses.replace(job.config, torch_threads=threads)) for job in jobs]
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_run_in_worker, job) for job in jobs]
        names = ", ".join(job.method for job in jobs)
        with tqdm(total=len(futures), desc=f"train {names} ({workers} workers)", unit="method") as bar:
            for future in as_completed(futures):
                future.result()  # a worker's error surfaces here, as raised
                bar.update(1)
        return [future.result() for future in futures]


def _log_epoch(tracker: Tracker, run_id: str, row: dict[str, float]) -> None:
    tracker.log_metrics(run_id, {k: v for k, v in row.items() if k not in ("epoch", "step")}, step=int(row["epoch"]))


def _record_method(
    tracker: Tracker,
    run_id: str,
    outcome: MethodOutcome,
    config: TrainConfig,
    pair: str,
    scores: Path,
    plots: Path,
    example: np.ndarray,
) -> dict[str, Any]:
    """Write one method's score file, history and plot; log its final metrics, plots and model; finish its run."""
    method = outcome.method
    write_score_file(
        scores / f"{method}.parquet",
        outcome.scores,
        {"method": method, "pair": pair, "threshold_source_val": outcome.threshold_source_val, "mlflow_run_id": run_id},
    )
    write_history(plots / f"{method}.csv", outcome.history)
    plot_history(plots / f"{method}.png", outcome.history, f"{pair} {method}")
    final = outcome.history[-1] if outcome.history else {}
    entry = {
        "status": "ok",
        "epochs": outcome.epochs,
        "steps": outcome.steps,
        "seconds": round(outcome.seconds, 2),
        "seconds_per_epoch": round(outcome.seconds_per_epoch, 3),
        "peak_rss_mb": round(outcome.peak_rss_mb, 1),
        "device": outcome.device,
        "val/f1": _clean(final.get("val/f1")),
        "val/pr_auc": _clean(final.get("val/pr_auc")),
        "val/loss": _clean(final.get("val/loss")),
        "threshold": outcome.threshold,
        "threshold_rule": config.threshold,
        "threshold_source_val": outcome.threshold_source_val,
        "mlflow_run_id": run_id,
    }
    tracker.log_metrics(
        run_id,
        {
            "final/val/f1": final.get("val/f1", math.nan),
            "final/val/pr_auc": final.get("val/pr_auc", math.nan),
            "final/val/loss": final.get("val/loss", math.nan),
            "final/threshold_source_val": math.nan if outcome.threshold_source_val is None else outcome.threshold_source_val,
            "time/seconds": outcome.seconds,
            "time/seconds_per_epoch": outcome.seconds_per_epoch,
            "memory/peak_rss_mb": entry["peak_rss_mb"],
        },
        step=outcome.epochs,
    )
    tracker.log_artifacts(run_id, [plots / f"{method}.png", plots / f"{method}.csv"], "plots")
    model = build_model(int(example.shape[-1]), config)
    model.load_state_dict(outcome.weights)
    tracker.log_model(run_id, model.eval(), example)
    tracker.finish(run_id)
    return entry


# ----------------------------------------------------------------------------- the stage


def _write_skipped(params: Params, pair: str, summary: dict[str, Any]) -> None:
    status = {"pair": pair, "status": "skipped", "reason": summary["reason"]}
    with atomic_directory(Path(params.paths.models) / pair) as models:
        write_json(models / "status.json", status)
    with atomic_directory(Path(params.paths.scores) / pair) as scores:
        write_json(scores / "status.json", status)
    with atomic_directory(Path(params.paths.plots) / "train" / pair) as plots:
        _status_image(plots / "status.png", f"{pair}: skipped — {summary['reason']}")
    write_json(Path(params.paths.metrics) / "train" / f"{pair}.json", summary)


def train_pair(params: Params, pair: str) -> None:
    """Stage train for ``pair`` (module docstring)."""
    if pair not in params.pairs:
        raise ConfigError(f"{params.source_file}: pairs.{pair}: unknown pair (known: {', '.join(params.pairs)})")
    config = params.train
    for method in config.methods:
        if method_settings(method).oracle:
            raise ConfigError(
                f"{params.source_file}: train.methods: {method} reads target labels; the baselines stage trains it"
            )
    pair_config = params.pairs[pair]
    tensors_root = Path(params.paths.tensors)

    usable: list[SystemTensors] = []
    skipped: dict[str, str] = {}
    for source in pair_config.sources:
        tensors = load_tensors(tensors_root / source)
        anomalies = train_anomaly_count(tensors)
        if anomalies < config.min_source_anomalies:
            skipped[source] = (
                f"{anomalies} labeled anomalies in its train split, fewer than train.min_source_anomalies"
                f" = {config.min_source_anomalies}"
            )
        else:
            usable.append(tensors)
    summary: dict[str, Any] = {
        "pair": pair,
        "sources": [system_name(tensors) for tensors in usable],
        "sources_skipped": skipped,
        "target": pair_config.target,
    }
    if not usable:
        reasons = "; ".join(f"source {name}: {reason}" for name, reason in skipped.items())
        _write_skipped(params, pair, {**summary, "status": "skipped", "reason": f"no usable source ({reasons})"})
        return
    if len(pair_config.sources) > 1 and len(usable) == 1:
        # A multi-source pair left with one source is the single-source experiment again: same data, same seed.
        # Training it twice would cost minutes and report one result under two names.
        alone = summary["sources"][0]
        reasons = "; ".join(f"source {name}: {reason}" for name, reason in skipped.items())
        reason = f"only {alone} is usable ({reasons}): the same experiment as {alone}-{pair_config.target}"
        _write_skipped(params, pair, {**summary, "status": "skipped", "reason": reason})
        return

    # The target without its labels: nothing below can read them.
    target = dataclasses.replace(load_tensors(tensors_root / pair_config.target), labels=None)
    input_files = [Path(tensors.directory) / f"{name}.npy" for tensors in usable for name in (*_TRAINING_FILES, "labels")]
    input_files += [Path(target.directory) / f"{name}.npy" for name in _TRAINING_FILES]
    assert set(_TRAINING_FILES) <= set(ARRAY_FILES)
    tags = {
        "pair": pair,
        "sources": ",".join(summary["sources"]),
        "target": pair_config.target,
        "inputs_md5": inputs_md5(input_files),
    }
    tracker = Tracker(params.mlflow)
    logged_params = flatten_params(params)
    example = _input_example(usable)

    started = time.perf_counter()
    methods: dict[str, Any] = {}
    run_ids: dict[str, str] = {}
    finished: set[str] = set()
    with (
        atomic_directory(Path(params.paths.models) / pair) as models,
        atomic_directory(Path(params.paths.scores) / pair) as scores,
        atomic_directory(Path(params.paths.plots) / "train" / pair) as plots,
    ):
        try:
            for method in config.methods:
                run_ids[method] = tracker.start_run(f"{pair}/{method}", {**tags, "method": method}, logged_params)
            jobs = [
                MethodJob(
                    config=config,
                    source_directories=[str(tensors.directory) for tensors in usable],
                    target_directory=str(target.directory),
                    method=method,
                    seed=params.seed,
                    checkpoint_path=str(models / method / "checkpoint.pt"),
                )
                for method in config.methods
            ]
            workers = method_workers(config)
            if workers == 1:
                outcomes = [
                    run_method_job(
                        job,
                        on_epoch=lambda row, run=run_ids[job.method]: _log_epoch(tracker, run, row),
                        progress=True,
                    )
                    for job in jobs
                ]
            else:
                outcomes = run_method_jobs_in_parallel(jobs, workers)
                for outcome in outcomes:
                    for row in outcome.history:
                        _log_epoch(tracker, run_ids[outcome.method], row)
            for outcome in outcomes:
                methods[outcome.method] = _record_method(
                    tracker, run_ids[outcome.method], outcome, config, pair, scores, plots, example
                )
                finished.add(outcome.method)
        except BaseException:
            for method, run_id in run_ids.items():
                if method not in finished:
                    tracker.finish(run_id, "FAILED")
            raise
    write_json(
        Path(params.paths.metrics) / "train" / f"{pair}.json",
        {
            **summary, "status": "ok", "reason": None, "methods": methods,
            "method_workers": method_workers(config), "seconds": round(time.perf_counter() - started, 2),
        },
    )
