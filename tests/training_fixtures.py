"""Tiny systems in the tensors/<system>/ format and a shrunk trainer config, shared by the training, adaptation,
ablation, signals and tracking tests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from zerolog.artifacts import SystemTensors, load_tensors
from zerolog.config import TrainConfig
from zerolog.config_loader import load_params

REPOSITORY = Path(__file__).resolve().parents[1]


def write_system(
    directory: Path,
    name: str,
    sessions: int = 300,
    templates: int = 12,
    dim: int = 16,
    anomaly_share: float = 0.15,
    seed: int = 0,
    table: np.ndarray | None = None,
    max_len: int = 24,
) -> SystemTensors:
    """A tiny system in the tensors/<system>/ format: normal sessions draw templates 1..templates-1 at random;
    an anomalous session also contains template ``templates`` once (the signal a model must find)."""
    generator = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    vectors = np.zeros((templates + 1, dim), np.float32)  # row 0: padding
    vectors[1:] = generator.normal(size=(templates, dim)) if table is None else table
    lengths = generator.integers(4, max_len - 4, size=sessions).astype(np.int32)
    labels = (generator.random(sessions) < anomaly_share).astype(np.int8)
    index = np.zeros((sessions, max_len), np.int32)
    counts = np.zeros((sessions, templates + 1), np.float32)
    for row in range(sessions):
        sequence = generator.integers(1, templates, size=lengths[row])
        if labels[row]:
            sequence[generator.integers(0, lengths[row])] = templates
        index[row, : lengths[row]] = sequence
        np.add.at(counts[row], sequence, 1)
    split = generator.choice(np.array([0, 1, 2], np.int8), size=sessions, p=[0.6, 0.2, 0.2])
    arrays = {
        "index": index,
        "lengths": lengths,
        "labels": labels,
        "split": split,
        "vectors": vectors,
        "counts": counts,
        "level_counts": np.zeros((sessions, 0), np.int32),
    }
    for array_name, array in arrays.items():
        np.save(directory / f"{array_name}.npy", array)
    meta = {
        "system": name,
        "sessions": sessions,
        "max_len": max_len,
        "templates_list": [f"template {column}" for column in range(1, templates + 1)],
    }  # the tensors contract
    (directory / "meta.json").write_text(json.dumps(meta))
    (directory / "session_ids.json").write_text(json.dumps([f"{name}:{row}" for row in range(sessions)]))
    return load_tensors(directory)


def small_config(**changes) -> TrainConfig:
    """params.yaml's train section, shrunk for tests (a small encoder, few short epochs)."""
    config = load_params(REPOSITORY / "params.yaml").train
    config = dataclasses.replace(
        config,
        encoder=dataclasses.replace(config.encoder, hidden_size=16),
        domain=dataclasses.replace(config.domain, discriminator_hidden_size=16),
        optimizer=dataclasses.replace(config.optimizer, learning_rate=0.01),  # the tiny task learns in seconds
        batch_size=32,
        epochs=3,
        max_steps_per_epoch=8,
        device="cpu",
        # tiny tensors: a second thread only adds synchronisation (measured 20x slower on a loaded 2-core VM)
        torch_threads=1,
    )
    return dataclasses.replace(config, **changes)


def unlabeled(tensors: SystemTensors) -> SystemTensors:
    return dataclasses.replace(tensors, labels=None)


def weights_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def assert_same_weights(first: torch.nn.Module, second: torch.nn.Module) -> None:
    first_weights, second_weights = weights_of(first), weights_of(second)
    assert first_weights.keys() == second_weights.keys()
    for name in first_weights:
        assert torch.equal(first_weights[name], second_weights[name]), name


# ----------------------------------------------------------------------------- methods and schedules
