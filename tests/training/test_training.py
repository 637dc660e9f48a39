"""Training: methods as settings of one trainer, the meta step, determinism, checkpoints, no target labels, skips."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import call_stage, make_params
from sklearn.metrics import roc_auc_score
from training_fixtures import assert_same_weights, small_config, unlabeled, weights_of, write_system

from zerolog.config import ClassBalanceConfig, Params
from zerolog.methods import METHODS as REGISTRY
from zerolog.methods import MethodKind
from zerolog.training.loop import (
    _LabeledSampler,
    _train_pool,
    domain_coefficient,
    load_checkpoint,
    score,
    train,
)
from zerolog.training.meta import Batch, TrainingOutputs, meta_step, objective
from zerolog.training.methods import METHODS, MethodError, method_settings

REPOSITORY = Path(__file__).resolve().parents[2]


def test_methods_are_settings_of_one_trainer() -> None:
    assert {name: (s.domain_loss, s.meta_learning, s.adapt) for name, s in METHODS.items() if not s.oracle} == {
        "zerolog": (True, True, False),
        "source_only": (False, False, False),
        "dann": (True, False, False),
        "meta": (False, True, False),
        "zerolog_adapt": (True, True, True),
    }
    assert method_settings("supervised_target").labeled_domain == "target"
    assert all(s.labeled_domain == "source" for s in METHODS.values() if not s.oracle)
    with pytest.raises(MethodError, match="unknown method 'dan'"):
        method_settings("dan")


def test_the_trained_methods_are_those_of_the_method_registry_with_trainer_settings() -> None:
    """One method table: the trainer's methods are read from the registry, in its order, never listed again."""
    trained = [name for name, spec in REGISTRY.items() if spec.kind in (MethodKind.TRANSFER, MethodKind.ORACLE)]
    assert list(METHODS) == trained
    assert all(REGISTRY[name].trainer is settings for name, settings in METHODS.items())


def test_domain_coefficient_schedule() -> None:
    config = small_config()
    assert domain_coefficient(config, 0.0) == 0.0
    assert domain_coefficient(config, 0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert domain_coefficient(config, 1.0) == pytest.approx(config.domain.weight * (2 / (1 + np.exp(-10)) - 1))
    constant = dataclasses.replace(config, domain=dataclasses.replace(config.domain, schedule="constant", weight=0.3))
    assert domain_coefficient(constant, 0.1) == 0.3


def test_balanced_sampling_gives_the_configured_anomaly_share(systems) -> None:
    source, _ = systems
    config = small_config(class_balance=ClassBalanceConfig(method="balanced_sampling", anomaly_share=0.25))
    pool = _train_pool([source], labeled=True)
    sampler = _LabeledSampler(pool, config, np.random.default_rng(0))
    for _ in range(5):
        chosen = sampler.take()
        assert chosen.size == 32
        assert int(pool.labels[chosen].sum()) == 8  # round(0.25 * 32)


# ----------------------------------------------------------------------------- the meta step


def toy_batch(seed: int, size: int = 24, length: int = 6, dim: int = 5) -> Batch:
    """Anomalous sessions carry a large first feature somewhere; positions make the chronological split exact."""
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(size, length, dim, generator=generator)
    labels = (torch.arange(size) % 3 == 0).long()
    vectors[labels == 1, 2, 0] += 4.0
    return Batch(vectors, torch.full((size,), length), labels, np.linspace(0, 0.99, size))


def test_meta_step_is_first_order_mldg() -> None:
    """With SGD (lr 1) the update must be exactly −(∇L(S1)(θ) + β·∇L(S2)(θ')), θ' = θ − α·∇L(S1)(θ)."""
    config = small_config()
    meta = dataclasses.replace(config.meta, inner_learning_rate=0.1, outer_weight=0.7, split="chronological")
    settings = method_settings("meta")
    torch.manual_seed(0)
    from zerolog.training.loop import build_model

    model = build_model(5, config)
    batch = toy_batch(0)
    first_half, second_half = batch.subset(np.arange(12)), batch.subset(np.arange(12, 24))

    def gradients(module: torch.nn.Module, part: Batch) -> dict[str, torch.Tensor]:
        module.zero_grad()
        loss, _ = objective(TrainingOutputs(module), None, part, None, settings, 0.0, None)
        loss.backward()
        return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}

    before = weights_of(model)
    inner = gradients(model, first_half)
    virtual = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in virtual.named_parameters():
            if name in inner:
                parameter -= meta.inner_learning_rate * inner[name]
    outer = gradients(virtual, second_half)

    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    meta_step(model, optimizer, batch, None, settings, meta, 0.0, None, None, np.random.default_rng(0))
    changed = 0
    for name, parameter in model.named_parameters():
        expected = before[name] - (inner.get(name, 0) + meta.outer_weight * outer.get(name, 0))
        torch.testing.assert_close(parameter.detach(), expected, rtol=1e-4, atol=1e-5)
        changed += int(not torch.equal(parameter.detach(), before[name]))
    assert changed >= len(inner)  # every parameter with a gradient moved


def test_meta_step_changes_parameters_and_lowers_meta_test_loss() -> None:
    config = small_config()
    meta = dataclasses.replace(config.meta, split="chronological")
    settings = method_settings("zerolog")
    torch.manual_seed(1)
    from zerolog.training.loop import build_model

    model = build_model(5, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optimizer.learning_rate)
    batch, target = toy_batch(1), toy_batch(2)
    target = Batch(target.vectors, target.lengths, None, target.positions)
    meta_test = batch.subset(np.arange(12, 24))

    def meta_test_loss() -> float:
        with torch.no_grad():
            loss, _ = objective(TrainingOutputs(model), None, meta_test, target, settings, 0.5, None)
        return float(loss)

    before_loss, before = meta_test_loss(), weights_of(model)
    losses = []
    for _ in range(5):
        parts = meta_step(model, optimizer, batch, target, settings, meta, 0.5, None, 1.0, np.random.default_rng(0))
        losses.append(meta_test_loss())
    assert set(parts) >= {"loss/classification", "loss/domain", "loss/meta", "loss/total"}
    assert any(not torch.equal(before[name], value) for name, value in weights_of(model).items())
    assert losses[0] < before_loss and losses[-1] < losses[0]


# ----------------------------------------------------------------------------- training runs


@pytest.mark.parametrize("method", ["source_only", "zerolog"])
def test_smoke_run_learns_and_beats_chance_on_held_out_source(systems, method: str) -> None:
    source, target = systems
    config = small_config(epochs=5, max_steps_per_epoch=100)
    result = train(config, [source], unlabeled(target), method, seed=3, progress=False)
    # an epoch is max(source, target) train batches (the cap of 100 is not reached here)
    longest = max(source.rows("train").size, target.rows("train").size)
    assert len(result.history) == 5 and result.steps == 5 * int(np.ceil(longest / 32))
    first, last = result.history[0], result.history[-1]
    assert last["loss/classification"] < first["loss/classification"]
    test_rows = source.rows("test")
    scores = score(result.model, source, test_rows, batch_size=64)
    assert scores.shape == test_rows.shape and ((scores >= 0) & (scores <= 1)).all()
    assert roc_auc_score(np.asarray(source.labels)[test_rows], scores) > 0.8
    assert last["val/f1"] > 0.5  # chance F1 at 15% anomalies is about 0.26
    assert result.threshold == result.threshold_source_val is not None
    if method == "zerolog":
        assert not np.isnan(last["loss/domain"]) and not np.isnan(last["loss/meta"])
    else:
        assert np.isnan(last["loss/domain"]) and np.isnan(last["loss/meta"])


def test_same_seed_same_weights_other_seed_differs(systems) -> None:
    source, target = systems
    config = small_config(epochs=1, max_steps_per_epoch=4)
    first = train(config, [source], unlabeled(target), "zerolog", seed=5, progress=False)
    second = train(config, [source], unlabeled(target), "zerolog", seed=5, progress=False)
    assert_same_weights(first.model, second.model)
    assert first.history[0]["loss/total"] == second.history[0]["loss/total"]
    third = train(config, [source], unlabeled(target), "zerolog", seed=6, progress=False)
    assert not torch.equal(
        weights_of(first.model)["classifier.linear.weight"], weights_of(third.model)["classifier.linear.weight"]
    )


def test_target_labels_are_never_read(systems) -> None:
    """Labels None (any access would fail), poisoned (all −1 / all 1) or real: one and the same model."""
    source, target = systems
    config = small_config(epochs=1, max_steps_per_epoch=3)
    reference = train(config, [source], unlabeled(target), "zerolog", seed=2, progress=False)
    for poison in (np.full(target.sessions, -1, np.int8), np.ones(target.sessions, np.int8), target.labels):
        poisoned = dataclasses.replace(target, labels=poison)
        result = train(config, [source], poisoned, "zerolog", seed=2, progress=False)
        assert_same_weights(reference.model, result.model)


def test_multi_source_with_different_tables(systems, tmp_path: Path) -> None:
    """Two sources with their own vector tables (different sizes) train one model together."""
    source, target = systems
    other = write_system(tmp_path / "other", "other", sessions=120, templates=7, seed=9)
    config = small_config(epochs=1, max_steps_per_epoch=3)
    result = train(config, [source, other], unlabeled(target), "dann", seed=0, progress=False)
    assert np.isfinite(result.history[-1]["loss/total"])
    assert score(result.model, other, other.rows("val")).shape == other.rows("val").shape


def test_supervised_target_is_the_oracle_on_target_labels(systems) -> None:
    source, target = systems
    config = small_config(epochs=2, max_steps_per_epoch=5)
    result = train(config, [], target, "supervised_target", seed=0, progress=False)
    assert np.isfinite(result.history[-1]["val/loss"])
    with pytest.raises(Exception, match="needs labels"):
        train(config, [], unlabeled(target), "supervised_target", seed=0, progress=False)


def test_checkpoint_round_trip_with_weights_only(systems, tmp_path: Path) -> None:
    source, target = systems
    config = small_config(epochs=1, max_steps_per_epoch=2)
    path = tmp_path / "model" / "checkpoint.pt"
    result = train(config, [source], unlabeled(target), "dann", seed=0, progress=False, checkpoint_path=path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"weights", "optimizer", "scheduler", "sampling", "config", "step", "epoch"}
    assert raw["step"] == 2 and raw["epoch"] == 1 and raw["method"] == "dann"
    assert raw["config"]["encoder"]["hidden_size"] == 16 and raw["optimizer"]["state"]  # Adam moments are kept
    model, _ = load_checkpoint(path)
    assert_same_weights(result.model.cpu(), model)
    rows = source.rows("val")
    np.testing.assert_allclose(score(model, source, rows), score(result.model, source, rows), rtol=1e-6)
    again = train(
        config,
        [source],
        unlabeled(target),
        "dann",
        seed=0,
        progress=False,
        checkpoint_path=tmp_path / "twice" / "checkpoint.pt",
    )
    assert_same_weights(again.model, result.model)
    # identical content gives identical bytes (DVC hashes the file): no temporary name inside the archive
    assert (tmp_path / "twice" / "checkpoint.pt").read_bytes() == path.read_bytes()


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("method", ["zerolog", "dann"])
def test_training_resumes_from_a_checkpoint_exactly(systems, tmp_path: Path, method: str) -> None:
    """A run killed during epoch 2 and resumed from its epoch-1 checkpoint ends with the weights of a run that never
    stopped."""
    source, target = systems
    config = small_config(epochs=3, max_steps_per_epoch=4, checkpoint_every_epochs=1)
    whole = train(config, [source], unlabeled(target), method, seed=5, progress=False)

    def crash_in_epoch_two(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise _Interrupted  # before epoch 2's checkpoint is written: the file holds epoch 1

    with pytest.raises(_Interrupted):
        train(
            config,
            [source],
            unlabeled(target),
            method,
            seed=5,
            progress=False,
            checkpoint_path=tmp_path / "checkpoint.pt",
            on_epoch=crash_in_epoch_two,
        )
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train(
        config, [source], unlabeled(target), method, seed=5, progress=False, resume_from=tmp_path / "checkpoint.pt"
    )
    assert_same_weights(resumed.model, whole.model)
    assert [row["epoch"] for row in resumed.history] == [2, 3] and resumed.steps == whole.steps


# ----------------------------------------------------------------------------- the stage


def _stage_params(tmp_path: Path) -> Params:
    return make_params(tmp_path, {"train.encoder.hidden_size": 16, "train.domain.discriminator_hidden_size": 16})


def test_train_pair_skips_an_unusable_source_with_a_reason(tmp_path: Path) -> None:
    params = _stage_params(tmp_path)
    write_system(tmp_path / "tensors" / "hdfs", "hdfs", anomaly_share=0.01, sessions=200)  # ~1 train anomaly
    write_system(tmp_path / "tensors" / "bgl", "bgl")
    call_stage("train", params, "hdfs-bgl")
    summary = json.loads((tmp_path / "scores" / "hdfs-bgl" / "training.json").read_text())
    assert summary["status"] == "skipped"
    assert "train.min_source_anomalies" in summary["reason"] and "hdfs" in summary["sources_skipped"]
    assert json.loads((tmp_path / "models" / "hdfs-bgl" / "status.json").read_text())["status"] == "skipped"
    for folder in (tmp_path / "models" / "hdfs-bgl", tmp_path / "scores" / "hdfs-bgl"):
        assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.parquet"))
    assert (tmp_path / "plots" / "train" / "hdfs-bgl" / "status.png").is_file()


def test_train_stage_prints_a_line_per_epoch_and_method_outside_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: a CI log (stdout not a terminal, as under pytest's capture) gets one line per epoch and method."""
    params = make_params(tmp_path, {"train.methods": ["zerolog", "source_only"], "train.epochs": 2,
                                    "train.encoder.hidden_size": 8})  # fmt: skip
    write_system(tmp_path / "tensors" / "hdfs", "hdfs", seed=1)
    write_system(tmp_path / "tensors" / "bgl", "bgl", seed=2)
    call_stage("train", params, "hdfs-bgl")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("train hdfs-bgl ")]
    expected = [f"train hdfs-bgl {method}/seed-42: epoch {epoch}/2" for method in ("zerolog", "source_only")
                for epoch in (1, 2)]  # fmt: skip
    assert [line.split(",")[0] for line in lines] == expected
    assert all("source val/f1" in line and line.endswith(" s") for line in lines)


def test_multi_source_pair_left_with_one_source_is_skipped_as_a_duplicate(tmp_path: Path) -> None:
    """bgl+openstack-hdfs with openstack unusable is bgl-hdfs again: skipped, naming the pair it equals."""
    params = _stage_params(tmp_path)
    write_system(tmp_path / "tensors" / "openstack", "openstack", anomaly_share=0.01, sessions=200)  # ~1 anomaly
    write_system(tmp_path / "tensors" / "bgl", "bgl")
    write_system(tmp_path / "tensors" / "hdfs", "hdfs")
    call_stage("train", params, "bgl+openstack-hdfs")
    summary = json.loads((tmp_path / "scores" / "bgl+openstack-hdfs" / "training.json").read_text())
    assert summary["status"] == "skipped" and summary["sources"] == ["bgl"]
    assert "the same experiment as bgl-hdfs" in summary["reason"] and "openstack" in summary["sources_skipped"]
    assert not list((tmp_path / "models").rglob("*.pt"))


def test_mixed_precision_is_a_no_op_on_cpu(systems) -> None:
    """train.mixed_precision autocasts on CUDA only: on CPU the weights equal a float32 run's, bit for bit."""
    source, target = systems
    config = small_config(epochs=1, max_steps_per_epoch=3)
    plain = train(config, [source], unlabeled(target), "zerolog", seed=3, progress=False)
    mixed = train(
        dataclasses.replace(config, mixed_precision=True, device="cpu"),
        [source],
        unlabeled(target),
        "zerolog",
        seed=3,
        progress=False,
    )
    assert_same_weights(plain.model, mixed.model)
