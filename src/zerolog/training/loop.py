"""The trainer: one loop, every method a setting of it (methods.py), and scoring.

Inputs are ``zerolog.features.tensors.SystemTensors`` (memory-mapped ``tensors/<system>/``), or any object with the
same attributes (``index``, ``lengths``, ``labels``, ``split``, ``vectors``, ``meta``). Each system keeps its own
frozen vector table; a batch is looked up per system and the encoder sees only vectors (method.md §3–4).

Choices (every number in params.yaml ``train``; what the sources state is in method.md):
- Epoch: ``min(train.max_steps_per_epoch, max(labeled, target) train batches)`` steps; the shorter stream is
  re-cycled with a fresh shuffle (MetaLog's epoch is max of the two, method.md §5; the cap is ours, for time).
- Class imbalance (ours; source anomalies are rare): ``train.class_balance.method``
  ``weighted_loss`` = cross-entropy with class weights N / (2 N_c) from the labeled train pool (each class weighs
  half of every batch's loss), ``balanced_sampling`` = every labeled batch holds ``anomaly_share`` anomalies
  (drawn with re-cycling), ``none`` = plain cross-entropy on uniform batches.
- λ of the domain loss: ``weight × (2 / (1 + exp(−ramp_speed · p)) − 1)``, p = step / total steps (DANN ramp), or
  constant ``weight``.
- Optimiser (MetaLog code, method.md §6): Adam lr 2e-3, betas (0.9, 0.9), eps 1e-12; lr × 0.75 every 1000 steps;
  gradient-norm clipping (ours; MetaLog's OS script clips at 1).
- ``zerolog_adapt`` (adapt.py): the importance-weighted domain loss from the first step, then
  ``train.adapt.self_training.rounds`` × ``epochs_per_round`` more epochs with a pseudo-labeled target task; λ's
  schedule runs over the first ``train.epochs`` epochs and stays at its end value after them.
- Model selection: the LAST epoch, always. No label of the target is read by any method but the oracle
  ``supervised_target`` (whose labeled domain is the target by definition).
- Validation (labeled domain's val split; the SOURCE for every zero-label method), per epoch: ``val/loss``
  (unweighted cross-entropy), ``val/pr_auc``, ``val/f1`` at ``val/threshold``, which is the F1-best threshold
  (``train.threshold: source_val``) or 0.5 (``fixed_0.5``). ``TrainResult.threshold_source_val`` is always the
  F1-best one (None when the validation split has no anomaly).
- Reproducibility: ``torch.manual_seed(seed)`` before building the model, a ``numpy.random.Generator(seed)`` for all
  sampling, ``train.torch_threads`` CPU threads; deterministic algorithms on CUDA (see ``configure_torch``).
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from tqdm.auto import tqdm

from zerolog.artifacts import SPLIT_CODES, SystemTensors
from zerolog.config import EncoderConfig, SelfTrainingConfig, TrainConfig, as_dict
from zerolog.errors import DataError
from zerolog.features.target_detector import TargetDetection
from zerolog.io import atomic_path
from zerolog.metrics import f1_best_threshold, precision_recall_f1
from zerolog.model import ZeroLogModel, lookup_vectors
from zerolog.training.adapt import importance_weights, pseudo_labels
from zerolog.training.meta import Batch, PseudoTask, concatenate_padded, meta_step, plain_step
from zerolog.training.methods import MethodSettings, method_settings

HISTORY_COLUMNS = (
    "epoch",
    "step",
    "lambda",
    "learning_rate",
    "loss/classification",
    "loss/domain",
    "loss/meta",
    "loss/pseudo",
    "loss/total",
    "train/domain_accuracy",
    "val/loss",
    "val/f1",
    "val/pr_auc",
    "val/threshold",
    "pseudo/round",
    "pseudo/anomalies",
    "pseudo/normals",
    "seconds",
)


# ----------------------------------------------------------------------------- torch set-up


def select_device(config: TrainConfig) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error, not a silent fallback."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise DataError("params.yaml: train.device: cuda requested but no CUDA device is available")
    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


def configure_torch(config: TrainConfig, device: torch.device, seed: int) -> None:
    """Threads, determinism and the torch seed (module docstring).

    ``torch.use_deterministic_algorithms`` is switched on for CUDA only: on CPU it sends the GRU to a slow
    fallback (measured 15x slower forward and backward, torch 2.13), while the CPU kernels are already
    deterministic for a fixed thread count (tests/training/test_training.py checks identical weights for one seed).
    """
    torch.set_num_threads(max(1, min(config.torch_threads, os.cpu_count() or 1)))
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- batches


@dataclass
class _DeviceSystem:
    """A system's tensors plus its vector table on the training device."""

    tensors: SystemTensors
    table: torch.Tensor  # (templates + 1, dim)


def _on_device(tensors: SystemTensors, device: torch.device) -> _DeviceSystem:
    table = torch.from_numpy(np.array(tensors.vectors, dtype=np.float32)).to(device)
    return _DeviceSystem(tensors, table)


def _gather(system: _DeviceSystem, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors and lengths of ``rows`` of one system, trimmed to their longest session."""
    lengths = np.asarray(system.tensors.lengths[rows], dtype=np.int64)  # (n,)
    longest = max(1, int(lengths.max()))
    index = torch.from_numpy(np.asarray(system.tensors.index[rows, :longest], dtype=np.int64)).to(device)  # (n, t)
    return lookup_vectors(system.table, index), torch.from_numpy(lengths)  # (n, t, dim), (n,)


def _make_batch(
    systems: Sequence[_DeviceSystem], pool: _Pool, chosen: np.ndarray, device: torch.device, labeled: bool = True
) -> Batch:
    """A batch of the ``chosen`` items of ``pool`` (``systems``: its system numbers), grouped by system."""
    system_ids, rows, labels = pool.system_ids[chosen], pool.rows[chosen], pool.labels[chosen]
    vectors, lengths, label_parts, positions = None, [], [], []
    for system_id in np.unique(system_ids):
        part = np.flatnonzero(system_ids == system_id)
        system = systems[int(system_id)]
        part_vectors, part_lengths = _gather(system, rows[part], device)
        vectors = part_vectors if vectors is None else concatenate_padded(vectors, part_vectors)
        lengths.append(part_lengths)
        positions.append(rows[part] / int(system.tensors.index.shape[0]))
        label_parts.append(labels[part])
    assert vectors is not None
    batch_labels = torch.from_numpy(np.concatenate(label_parts)).to(device) if labeled else None
    return Batch(vectors, torch.cat(lengths), batch_labels, np.concatenate(positions))


class _Stream:
    """Endless shuffled passes over a pool of items (indices 0..n−1); each pass is a fresh permutation."""

    def __init__(self, size: int, generator: np.random.Generator) -> None:
        if size <= 0:
            raise ValueError("empty pool")
        self.size = size
        self.generator = generator
        self.order = generator.permutation(size)
        self.cursor = 0

    def state(self) -> dict[str, Any]:
        return {"order": torch.from_numpy(np.asarray(self.order, dtype=np.int64)), "cursor": self.cursor}

    def restore(self, state: dict[str, Any]) -> None:
        self.order, self.cursor = state["order"].numpy(), int(state["cursor"])

    def take(self, count: int) -> np.ndarray:
        taken = []
        while count > 0:
            if self.cursor == self.size:
                self.order, self.cursor = self.generator.permutation(self.size), 0
            chunk = self.order[self.cursor : self.cursor + count]
            taken.append(chunk)
            self.cursor += len(chunk)
            count -= len(chunk)
        return np.concatenate(taken)


@dataclass
class _Pool:
    """Train sessions of one domain as parallel arrays: system number, row, label (−1 for unlabeled pools)."""

    system_ids: np.ndarray
    rows: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


def _labeled_rows(tensors: SystemTensors, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``split`` labeled 0 or 1, and their labels (int64)."""
    rows = np.flatnonzero(np.asarray(tensors.split) == SPLIT_CODES[split])
    known = np.asarray(tensors.labels)[rows]
    rows = rows[(known == 0) | (known == 1)]
    return rows, np.asarray(tensors.labels)[rows].astype(np.int64)


def _train_pool(systems: Sequence[SystemTensors], labeled: bool) -> _Pool:
    """The train-split sessions of ``systems``; labeled pools keep only sessions labeled 0 or 1."""
    system_ids, rows, labels = [], [], []
    for number, tensors in enumerate(systems):
        if labeled:
            chosen, chosen_labels = _labeled_rows(tensors, "train")
        else:  # target labels are never read
            chosen = np.flatnonzero(np.asarray(tensors.split) == SPLIT_CODES["train"])
            chosen_labels = np.full(chosen.size, -1, dtype=np.int64)
        labels.append(chosen_labels)
        system_ids.append(np.full(chosen.size, number, dtype=np.int64))
        rows.append(chosen.astype(np.int64))
    return _Pool(np.concatenate(system_ids), np.concatenate(rows), np.concatenate(labels))


class _LabeledSampler:
    """Labeled batches: uniform, or with a fixed anomaly share (``balanced_sampling``)."""

    def __init__(self, pool: _Pool, config: TrainConfig, generator: np.random.Generator) -> None:
        self.pool = pool
        self.batch_size = config.batch_size
        self.balanced = config.class_balance.method == "balanced_sampling"
        self.streams: dict[str, _Stream]  # the checkpoint's names; built in this order (it fixes the draws)
        if self.balanced:
            self.anomalies = np.flatnonzero(pool.labels == 1)
            self.normals = np.flatnonzero(pool.labels == 0)
            self.anomaly_count = int(round(config.class_balance.anomaly_share * self.batch_size))
            self.streams = {"anomalies": _Stream(self.anomalies.size, generator),
                            "normals": _Stream(self.normals.size, generator)}  # fmt: skip
        else:
            self.streams = {"labeled": _Stream(len(pool), generator)}

    def take(self) -> np.ndarray:
        if self.balanced:
            anomalies = self.anomalies[self.streams["anomalies"].take(self.anomaly_count)]
            normals = self.normals[self.streams["normals"].take(self.batch_size - self.anomaly_count)]
            return np.concatenate([anomalies, normals])
        return self.streams["labeled"].take(self.batch_size)

    def state(self) -> dict[str, Any]:
        return {name: stream.state() for name, stream in self.streams.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for name, stream in self.streams.items():
            stream.restore(state[name])


def class_weights_for(labels: np.ndarray) -> np.ndarray:
    """N / (2 N_c) per class (0, 1): both classes weigh the same in total."""
    counts = np.bincount(labels, minlength=2).astype(np.float64)
    return labels.size / (2.0 * np.maximum(counts, 1.0))


def domain_coefficient(config: TrainConfig, progress: float) -> float:
    """λ at training progress p in [0, 1] (DANN ramp or constant)."""
    if config.domain.schedule == "constant":
        return config.domain.weight
    return config.domain.weight * (2.0 / (1.0 + math.exp(-config.domain.ramp_speed * progress)) - 1.0)


# ----------------------------------------------------------------------------- scoring and validation


@torch.no_grad()
def score(model: ZeroLogModel, tensors: SystemTensors, rows: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """P(anomaly) of sessions ``rows`` of one system, in the order of ``rows`` (float64, shape (len(rows),))."""
    rows = np.asarray(rows, dtype=np.int64)
    result = np.empty(rows.size, dtype=np.float64)
    if rows.size == 0:
        return result
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    system = _on_device(tensors, device)
    order = np.argsort(np.asarray(tensors.lengths[rows]), kind="stable")  # similar lengths together: less padding
    for start in range(0, rows.size, batch_size):
        chosen = order[start : start + batch_size]
        vectors, lengths = _gather(system, rows[chosen], device)
        result[chosen] = model.anomaly_probability(vectors, lengths).double().cpu().numpy()
    model.train(was_training)
    return result


@dataclass
class ValidationScores:
    """Scores and labels of the labeled domain's validation split."""

    labels: np.ndarray
    scores: np.ndarray


def validation_scores(model: ZeroLogModel, systems: Sequence[SystemTensors], batch_size: int) -> ValidationScores:
    labels, scores = [], []
    for tensors in systems:
        rows, rows_labels = _labeled_rows(tensors, "val")
        labels.append(rows_labels)
        scores.append(score(model, tensors, rows, batch_size))
    return ValidationScores(np.concatenate(labels), np.concatenate(scores))


def validation_metrics(validation: ValidationScores, rule: str) -> dict[str, float]:
    """val/loss, val/pr_auc, val/f1 at val/threshold (rule ``source_val`` or ``fixed_0.5``); NaN when undefined."""
    labels, scores = validation.labels, validation.scores
    metrics = {name: math.nan for name in ("val/loss", "val/pr_auc", "val/f1", "val/threshold")}
    if labels.size == 0:
        return metrics
    probability_of_truth = np.clip(np.where(labels == 1, scores, 1.0 - scores), 1e-12, 1.0)
    metrics["val/loss"] = float(-np.mean(np.log(probability_of_truth)))
    if labels.min() == 0 and labels.max() == 1:
        metrics["val/pr_auc"] = float(average_precision_score(labels, scores))
    if rule == "fixed_0.5":
        metrics["val/threshold"] = 0.5
        metrics["val/f1"] = precision_recall_f1(labels, scores >= 0.5)[2]
    else:
        best = f1_best_threshold(labels, scores)
        if best is not None:
            metrics["val/threshold"], metrics["val/f1"] = best
    return metrics


# ----------------------------------------------------------------------------- checkpoints


def build_model(input_size: int, config: TrainConfig) -> ZeroLogModel:
    return ZeroLogModel(input_size, config.encoder, config.domain.discriminator_hidden_size, config.recurrence)


@dataclass
class _Adaptation:
    """``zerolog_adapt``'s state: the detector's view of the target train pool and the current pseudo-labeled task."""

    self_training: SelfTrainingConfig | None  # None: rounds 0 (off)
    detection: TargetDetection
    detector_train_scores: np.ndarray  # (target pool,) the detector's scores of target_pool.rows
    round: int = 0
    pool: _Pool | None = None  # the pseudo-labeled sessions of the current round (None: no pseudo task this round)
    sampler: _LabeledSampler | None = None
    class_weights: torch.Tensor | None = None  # (2,) of the pseudo-label loss, weighted_loss only
    counts: dict[str, int] = field(default_factory=dict)  # this round's anomalies / normals
    log: list[dict[str, Any]] = field(default_factory=list)  # one entry per round started


@dataclass
class _Session:
    """One training run in progress: the model, its optimiser and schedule, the samplers and the step counter."""

    config: TrainConfig
    settings: MethodSettings
    device: torch.device
    generator: np.random.Generator
    labeled: list[SystemTensors]
    labeled_systems: list[_DeviceSystem]
    labeled_pool: _Pool
    sampler: _LabeledSampler
    target_system: _DeviceSystem | None
    target_pool: _Pool | None
    target_stream: _Stream | None
    class_weights: np.ndarray  # (2,) N / (2 N_c), logged even when the loss is unweighted
    loss_weights: torch.Tensor | None  # (2,) on the device, weighted_loss only
    model: ZeroLogModel
    optimizer: torch.optim.Adam
    scheduler: torch.optim.lr_scheduler.StepLR
    steps_per_epoch: int
    total_steps: int  # of λ's schedule: the first train.epochs epochs
    total_epochs: int  # train.epochs, plus the self-training rounds' epochs
    domain_weights: torch.Tensor | None = None  # (2,) IWDAN w_c on the device (adapt.py), or None
    adaptation: _Adaptation | None = None
    step: int = 0
    epoch: int = 0


def _sampling_state(session: _Session) -> dict[str, Any]:
    """Everything random that training has consumed, so that a resumed run continues exactly."""
    target = None if session.target_stream is None else session.target_stream.state()
    return {
        "numpy_generator": session.generator.bit_generator.state,
        "torch_generator": torch.get_rng_state(),
        "streams": {**session.sampler.state(), "target": target},
        "self_training": _self_training_state(session.adaptation),
    }


def _self_training_state(adaptation: _Adaptation | None) -> dict[str, Any] | None:
    """The current round's pseudo-labeled pool, its sampler's streams and the rounds' log (None: no round yet)."""
    if adaptation is None or adaptation.round == 0:
        return None
    state: dict[str, Any] = {"round": adaptation.round, "counts": dict(adaptation.counts),
                             "log": [dict(entry) for entry in adaptation.log], "pool": None}  # fmt: skip
    if adaptation.pool is not None and adaptation.sampler is not None:
        state["pool"] = {"rows": torch.from_numpy(adaptation.pool.rows),
                         "labels": torch.from_numpy(adaptation.pool.labels)}  # fmt: skip
        state["streams"] = adaptation.sampler.state()
    return state


def _restore_self_training(session: _Session, state: dict[str, Any] | None) -> None:
    """Rebuild the round's pseudo-labeled task from a checkpoint (before the generator state is restored: building a
    sampler draws permutations, which the restored streams and generator then overwrite)."""
    adaptation = session.adaptation
    if adaptation is None or state is None:
        return
    assert session.target_pool is not None
    adaptation.round, adaptation.log = int(state["round"]), [dict(entry) for entry in state["log"]]
    labels = np.full(len(session.target_pool), -1, dtype=np.int64)
    if state["pool"] is not None:  # the pseudo-labeled rows are a subsequence of the pool's (unique) rows
        labels[np.isin(session.target_pool.rows, state["pool"]["rows"].numpy())] = state["pool"]["labels"].numpy()
    _pseudo_sampler(session, labels)
    adaptation.counts = {key: int(value) for key, value in state["counts"].items()}
    if adaptation.sampler is not None:
        adaptation.sampler.restore(state["streams"])


def save_checkpoint(path: str | Path, session: _Session, method: str) -> None:
    """Write the model, optimiser, schedule, step, epoch and sampling state atomically.

    Plain types and tensors only, so it loads with ``torch.load(weights_only=True)``; ``resume_from`` of
    :func:`train` continues from it exactly.
    """
    checkpoint = {
        "weights": {name: tensor.detach().cpu() for name, tensor in session.model.state_dict().items()},
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "sampling": _sampling_state(session),
        "config": as_dict(session.config),
        "method": method,
        "step": int(session.step),
        "epoch": int(session.epoch),
    }
    _save(path, checkpoint)


def save_network(path: str | Path, weights: dict[str, torch.Tensor], config: TrainConfig) -> None:
    """Write trained weights alone in the checkpoint layout (``weights`` and ``config``: what
    :func:`load_checkpoint` needs to rebuild the network), atomically; the MLflow model's artifact."""
    _save(path, {"weights": weights, "config": as_dict(config)})


def _save(path: str | Path, content: dict[str, Any]) -> None:
    """``torch.save`` to memory first, then atomically to ``path``: torch.save names the archive's inner folder
    after the file it writes, and atomic_path's temporary file has a random name, so identical weights would give
    different bytes (and md5s)."""
    buffer = io.BytesIO()
    torch.save(content, buffer)
    with atomic_path(path) as temporary:
        Path(temporary).write_bytes(buffer.getvalue())


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    return torch.load(path, map_location=device, weights_only=True)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ZeroLogModel, dict[str, Any]]:
    """Rebuild the model from a checkpoint (``torch.load(weights_only=True)``); returns (model, checkpoint dict)."""
    checkpoint = read_checkpoint(path, device)
    weights = checkpoint["weights"]
    input_size = int(weights["encoder.gru.weight_ih_l0"].shape[1])  # (3 * hidden, input_size)
    encoder = EncoderConfig(**checkpoint["config"]["encoder"])
    model = ZeroLogModel(input_size, encoder, int(checkpoint["config"]["domain"]["discriminator_hidden_size"]))
    model.load_state_dict(weights)
    return model.to(device).eval(), checkpoint


def _resume(session: _Session, checkpoint: dict[str, Any]) -> None:
    """Put ``session`` where ``checkpoint`` left it (weights, optimiser, schedule, samplers, counters)."""
    session.model.load_state_dict(checkpoint["weights"])
    session.optimizer.load_state_dict(checkpoint["optimizer"])
    session.scheduler.load_state_dict(checkpoint["scheduler"])
    sampling = checkpoint["sampling"]
    _restore_self_training(session, sampling.get("self_training"))
    session.generator.bit_generator.state = sampling["numpy_generator"]
    torch.set_rng_state(sampling["torch_generator"])
    streams = sampling["streams"]
    session.sampler.restore(streams)
    if session.target_stream is not None and streams["target"] is not None:
        session.target_stream.restore(streams["target"])
    session.step, session.epoch = int(checkpoint["step"]), int(checkpoint["epoch"])


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """A trained model (last epoch) and what happened on the way."""

    model: ZeroLogModel
    method: str
    history: list[dict[str, float]]  # one row per epoch, keys HISTORY_COLUMNS
    threshold: float | None  # by train.threshold (fixed_0.5 or source_val); None if source val has no anomaly
    threshold_source_val: float | None  # F1-best on the labeled domain's val split, or None
    seconds: float
    seconds_per_epoch: float
    steps: int
    epochs: int
    device: str
    class_weights: list[float] = field(default_factory=list)
    pi_hat: float | None = None  # zerolog_adapt: the target detector's π̂ the run used
    domain_weights: list[float] | None = None  # zerolog_adapt with importance weighting: w_0, w_1
    self_training: list[dict[str, Any]] = field(default_factory=list)  # per round: pseudo-label counts, used or not


def _check_inputs(settings: MethodSettings, labeled: Sequence[SystemTensors], target: SystemTensors | None) -> None:
    if not labeled:
        raise DataError(f"method {settings.name}: no labeled system to train on")
    for tensors in labeled:
        if getattr(tensors, "labels", None) is None:
            raise DataError(f"{getattr(tensors, 'directory', '?')}: method {settings.name} needs labels")
    if settings.uses_unlabeled_target and target is None:
        raise DataError(f"method {settings.name}: the domain loss needs an unlabeled target")
    dims = {int(tensors.vectors.shape[1]) for tensors in [*labeled, *([target] if target is not None else [])]}
    if len(dims) != 1:
        raise DataError(f"template vectors of the systems differ in dimension {sorted(dims)} (one embed stage for all)")


def _target_side(
    settings: MethodSettings, target: SystemTensors | None, device: torch.device, generator: np.random.Generator
) -> tuple[_DeviceSystem | None, _Pool | None, _Stream | None]:
    """The unlabeled target's train sessions, for methods with a domain loss (its labels are never read)."""
    if not settings.uses_unlabeled_target:
        return None, None, None
    assert target is not None
    pool = _train_pool([target], labeled=False)
    if len(pool) == 0:
        raise DataError(f"{getattr(target, 'directory', 'target')}: the target has no train sessions")
    return _on_device(target, device), pool, _Stream(len(pool), generator)


def labeled_anomaly_share(pool: _Pool, config: TrainConfig) -> float:
    """π_S(anomaly) as the domain loss sees it: the expected anomaly share of a labeled batch (adapt.py)."""
    if config.class_balance.method == "balanced_sampling":
        return config.class_balance.anomaly_share
    return float(np.mean(pool.labels == 1))


def _adaptation(
    settings: MethodSettings, config: TrainConfig, labeled_pool: _Pool, target_pool: _Pool | None,
    detection: TargetDetection | None, device: torch.device,
) -> tuple[_Adaptation | None, torch.Tensor | None]:  # fmt: skip
    """zerolog_adapt's state and IWDAN domain weights (None, None for other methods or with every switch off)."""
    adapt = config.adapt
    self_training = adapt.self_training if adapt.self_training.rounds > 0 else None
    if not settings.adapt or (adapt.domain_weighting == "none" and self_training is None):
        return None, None
    if detection is None:
        raise DataError(f"method {settings.name}: train.adapt needs the target detector's scores and pi-hat")
    assert target_pool is not None
    weights = None
    if adapt.domain_weighting == "importance":
        shares = importance_weights(detection.pi_hat, labeled_anomaly_share(labeled_pool, config))
        weights = torch.tensor(shares, dtype=torch.float32, device=device)
    detector_scores = np.asarray(detection.scores, dtype=np.float64)[target_pool.rows]
    return _Adaptation(self_training, detection, detector_scores), weights


def _optimiser(model: ZeroLogModel, config: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.StepLR]:
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.optimizer.learning_rate,
        betas=(config.optimizer.betas[0], config.optimizer.betas[1]),
        eps=config.optimizer.eps,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=config.optimizer.lr_decay_every_steps, gamma=config.optimizer.lr_decay
    )
    return optimizer, scheduler


def planned_epochs(config: TrainConfig, method: str) -> int:
    """Epochs a run of ``method`` trains: ``train.epochs``, plus the self-training rounds' for ``zerolog_adapt``."""
    if not method_settings(method).adapt:
        return config.epochs
    return config.epochs + config.adapt.self_training.rounds * config.adapt.self_training.epochs_per_round


def _start(
    config: TrainConfig, sources: Sequence[SystemTensors], target: SystemTensors | None, method: str, seed: int,
    detection: TargetDetection | None = None,
) -> _Session:  # fmt: skip
    """Seed everything and build the samplers, the model and its optimiser (in this order: it fixes the draws)."""
    settings = method_settings(method)
    labeled = list(sources) if settings.labeled_domain == "source" else ([target] if target is not None else [])
    _check_inputs(settings, labeled, target)
    device = select_device(config)
    configure_torch(config, device, seed)
    generator = np.random.default_rng(seed)
    labeled_systems = [_on_device(tensors, device) for tensors in labeled]
    labeled_pool = _train_pool(labeled, labeled=True)
    if len(labeled_pool) == 0 or labeled_pool.labels.max() < 1:
        raise DataError(f"method {method}: the labeled train split has no anomaly to learn from")
    sampler = _LabeledSampler(labeled_pool, config, generator)
    target_system, target_pool, target_stream = _target_side(settings, target, device, generator)
    weights = class_weights_for(labeled_pool.labels)
    loss_weights = None
    if config.class_balance.method == "weighted_loss":
        loss_weights = torch.tensor(weights, dtype=torch.float32, device=device)
    model = build_model(int(labeled[0].vectors.shape[1]), config).to(device)
    model.train()
    optimizer, scheduler = _optimiser(model, config)
    longest_stream = max(len(labeled_pool), len(target_pool) if target_pool is not None else 0)
    steps_per_epoch = max(1, min(config.max_steps_per_epoch, math.ceil(longest_stream / config.batch_size)))
    adaptation, domain_weights = _adaptation(settings, config, labeled_pool, target_pool, detection, device)
    total_epochs = planned_epochs(config, method)
    return _Session(
        config, settings, device, generator, labeled, labeled_systems, labeled_pool, sampler, target_system,
        target_pool, target_stream, weights, loss_weights, model, optimizer, scheduler, steps_per_epoch,
        steps_per_epoch * config.epochs, total_epochs, domain_weights, adaptation,
    )  # fmt: skip


def _coefficient(session: _Session) -> float:
    """λ of the domain loss at the current step (0 for methods without one)."""
    if not session.settings.domain_loss:
        return 0.0
    return domain_coefficient(session.config, min(1.0, session.step / session.total_steps))


# ----------------------------------------------------------------------------- self-training (adapt.py)


def _pseudo_sampler(session: _Session, labels: np.ndarray) -> None:
    """Make the current round's pseudo-labeled pool and sampler from (target pool,) labels −1/0/1 (or none)."""
    adaptation, pool = session.adaptation, session.target_pool
    assert adaptation is not None and adaptation.self_training is not None and pool is not None
    chosen = np.flatnonzero(labels >= 0)
    pseudo = _Pool(pool.system_ids[chosen], pool.rows[chosen], labels[chosen])
    anomalies, normals = int(np.sum(pseudo.labels == 1)), int(np.sum(pseudo.labels == 0))
    adaptation.counts = {"anomalies": anomalies, "normals": normals}
    adaptation.pool, adaptation.sampler, adaptation.class_weights = None, None, None
    if anomalies < adaptation.self_training.min_pseudo_anomalies or normals == 0:
        return  # too few agreed anomalies: this round trains without the pseudo task
    adaptation.pool = pseudo
    adaptation.sampler = _LabeledSampler(pseudo, session.config, session.generator)
    if session.config.class_balance.method == "weighted_loss":
        adaptation.class_weights = torch.tensor(class_weights_for(pseudo.labels), dtype=torch.float32,
                                                device=session.device)  # fmt: skip


def _begin_round_if_due(session: _Session) -> None:
    """At the first epoch of a self-training round: pseudo-label the target train pool with the current model."""
    adaptation = session.adaptation
    if adaptation is None or adaptation.self_training is None:
        return
    beyond_base = session.epoch - session.config.epochs  # epochs done after zerolog's own
    if beyond_base < 0 or beyond_base % adaptation.self_training.epochs_per_round != 0:
        return
    assert session.target_system is not None and session.target_pool is not None
    model_scores = score(session.model, session.target_system.tensors, session.target_pool.rows,
                         session.config.score_batch_size)  # fmt: skip
    detection = adaptation.detection
    rule = adaptation.self_training
    labels = pseudo_labels(model_scores, adaptation.detector_train_scores, detection.threshold, detection.pi_hat,
                           rule.normal_share, rule.rule)  # fmt: skip
    adaptation.round = beyond_base // adaptation.self_training.epochs_per_round + 1
    _pseudo_sampler(session, labels)
    adaptation.log.append({"round": adaptation.round, "epoch": session.epoch + 1, **adaptation.counts,
                           "used": adaptation.pool is not None})  # fmt: skip


def _pseudo_task(session: _Session) -> PseudoTask | None:
    """A pseudo-labeled target batch of the current round, or None (no round, or the round has no pseudo task)."""
    adaptation = session.adaptation
    if adaptation is None or adaptation.sampler is None or adaptation.pool is None:
        return None
    assert session.target_system is not None
    batch = _make_batch([session.target_system], adaptation.pool, adaptation.sampler.take(), session.device)
    return PseudoTask(batch, adaptation.class_weights)


def _step(session: _Session) -> dict[str, float]:
    """One optimisation step: a labeled batch, an unlabeled target batch (domain loss), plain or meta step."""
    config, device = session.config, session.device
    coefficient = _coefficient(session)
    source_batch = _make_batch(session.labeled_systems, session.labeled_pool, session.sampler.take(), device)
    target_batch = None
    if session.target_stream is not None and session.target_pool is not None and session.target_system is not None:
        target_chosen = session.target_stream.take(config.batch_size)
        target_batch = _make_batch([session.target_system], session.target_pool, target_chosen, device, labeled=False)
    pseudo = _pseudo_task(session)
    # bfloat16 autocast (train.mixed_precision, CUDA only): no loss scaling needed, unlike float16.
    use_autocast = config.mixed_precision and device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
        if session.settings.meta_learning:
            parts = meta_step(
                session.model, session.optimizer, source_batch, target_batch, session.settings, config.meta,
                coefficient, session.loss_weights, config.gradient_clip_norm, session.generator,
                session.domain_weights, pseudo,
            )  # fmt: skip
        else:
            parts = plain_step(
                session.model, session.optimizer, source_batch, target_batch, session.settings, coefficient,
                session.loss_weights, config.gradient_clip_norm, session.domain_weights, pseudo,
            )  # fmt: skip
    session.scheduler.step()
    session.step += 1
    return parts


def _epoch(session: _Session, progress: bool) -> tuple[dict[str, float], ValidationScores]:
    """Run one epoch of steps; its history row (mean losses, λ, learning rate, source validation metrics)."""
    started = time.perf_counter()
    _begin_round_if_due(session)
    session.epoch += 1
    sums: dict[str, float] = {}
    steps = range(session.steps_per_epoch)
    for _ in tqdm(steps, desc=f"epoch {session.epoch}", unit="step", leave=False, disable=not progress):
        for name, value in _step(session).items():
            sums[name] = sums.get(name, 0.0) + value
    row = {name: math.nan for name in HISTORY_COLUMNS}
    row.update({name: total / session.steps_per_epoch for name, total in sums.items()})
    row["epoch"], row["step"] = session.epoch, session.step
    row["lambda"] = _coefficient(session)
    row["learning_rate"] = session.optimizer.param_groups[0]["lr"]
    if session.adaptation is not None and session.adaptation.round > 0:
        row["pseudo/round"] = session.adaptation.round
        row.update({f"pseudo/{name}": count for name, count in session.adaptation.counts.items()})
    validation = validation_scores(session.model, session.labeled, session.config.score_batch_size)
    row.update(validation_metrics(validation, session.config.threshold))
    session.model.train()
    row["seconds"] = time.perf_counter() - started
    return row, validation


def _result(session: _Session, method: str, history: list[dict[str, float]], validation: ValidationScores,
            seconds: float) -> TrainResult:  # fmt: skip
    session.model.eval()
    best = f1_best_threshold(validation.labels, validation.scores)
    threshold_source_val = best[0] if best is not None else None
    return TrainResult(
        model=session.model,
        method=method,
        history=history,
        threshold=0.5 if session.config.threshold == "fixed_0.5" else threshold_source_val,
        threshold_source_val=threshold_source_val,
        seconds=seconds,
        seconds_per_epoch=seconds / max(1, len(history)),
        steps=session.step,
        epochs=session.epoch,
        device=str(session.device),
        class_weights=[float(weight) for weight in session.class_weights],
        pi_hat=None if session.adaptation is None else session.adaptation.detection.pi_hat,
        domain_weights=None if session.domain_weights is None else [float(w) for w in session.domain_weights.tolist()],
        self_training=[] if session.adaptation is None else [dict(entry) for entry in session.adaptation.log],
    )


def train(
    config: TrainConfig,
    sources: Sequence[SystemTensors],
    target: SystemTensors | None,
    method: str,
    seed: int,
    progress: bool = True,
    checkpoint_path: str | Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    resume_from: str | Path | None = None,
    detection: TargetDetection | None = None,
) -> TrainResult:
    """Train ``method`` (methods.py) and return the last-epoch model.

    ``sources``: labeled systems (their train labels are the classifier's; their val split validates).
    ``target``: the target system; zero-label methods use only its UNLABELED train sessions (its ``labels`` may be
    None and are never read). ``supervised_target`` (oracle) trains and validates on ``target``'s labels instead
    and ignores ``sources``. ``checkpoint_path``: written every ``train.checkpoint_every_epochs`` epochs and at the
    end. ``on_epoch``: called with each epoch's history row (e.g. to log to MLflow as training goes).
    ``resume_from``: a checkpoint of the same run; training continues after its epoch, exactly as if never
    stopped (the history then holds the epochs run here only). ``detection``: the target-side detector's scores and
    π̂ (zerolog.features.target_detector), read by ``zerolog_adapt`` only; it holds no label.
    """
    started = time.perf_counter()
    session = _start(config, sources, target, method, seed, detection)
    if resume_from is not None:
        _resume(session, read_checkpoint(resume_from, session.device))
    history: list[dict[str, float]] = []
    validation = ValidationScores(np.zeros(0, dtype=np.int64), np.zeros(0))
    epochs = tqdm(range(session.epoch + 1, session.total_epochs + 1), desc=f"train {method}", unit="epoch",
                  disable=not progress)  # fmt: skip
    for _ in epochs:
        row, validation = _epoch(session, progress)
        history.append(row)
        epochs.set_postfix({"loss": f"{row['loss/total']:.4f}", "val/f1": f"{row['val/f1']:.3f}"})
        if on_epoch is not None:
            on_epoch(row)
        if checkpoint_path is not None and (
            session.epoch % config.checkpoint_every_epochs == 0 or session.epoch == session.total_epochs
        ):
            save_checkpoint(checkpoint_path, session, method)
    if not history:
        validation = validation_scores(session.model, session.labeled, config.score_batch_size)
    return _result(session, method, history, validation, time.perf_counter() - started)
