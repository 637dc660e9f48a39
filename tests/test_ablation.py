"""make ablation (zerolog.ablation): the four GRU rows from two runs per pair and seed, the report, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_params
from training_fixtures import write_system

from zerolog import ablation


def test_ablation_rows_report_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params = make_params(tmp_path, {"train.max_steps_per_epoch": 2, "train.encoder.hidden_size": 8,
                                    "train.adapt.self_training.rounds": 1,
                                    "train.adapt.self_training.epochs_per_round": 1})  # fmt: skip
    write_system(tmp_path / "tensors" / "hdfs", "hdfs", seed=1)
    write_system(tmp_path / "tensors" / "bgl", "bgl", seed=2, anomaly_share=0.2)
    results, text = ablation.run_ablation(params, ["hdfs-bgl"], [42], 1, ["val", "test"], tmp_path / "cache")
    pair = results["hdfs-bgl"]
    assert set(pair["rows"]) == {*ablation.ROWS, "detector"}
    for row in ablation.ROWS:
        entry = pair["rows"][row]["seeds"]["42"]
        assert 0 <= entry["test"]["f1"] <= 1 and 0 <= entry["val"]["roc_auc"] <= 1
    assert "source_val" in pair["rows"]["zerolog"]["seeds"]["42"]["test"]
    assert pair["self_training"]["42"]["rounds"][0]["round"] == 1
    assert "## TEST F1" in text and "## The bar" in text and "| hdfs-bgl |" in text
    assert f"PARTIAL RUN**: pairs hdfs-bgl × model seeds [42] only, 1 of the {len(params.pairs)} pairs" in text
    arm = tmp_path / "cache" / "hdfs-bgl" / "plain" / "seed-42"
    assert (arm / "base" / "scores.parquet").is_file() and (arm / "base" / "checkpoint.pt").is_file()
    (final,) = arm.glob("final-*")
    assert (final / "scores.parquet").is_file() and not (final / "checkpoint.pt").exists()

    def no_training(job):  # a rerun with nothing changed trains nothing
        raise AssertionError(f"retrained {job.pair} {job.arm}")

    monkeypatch.setattr(ablation, "run_arm", no_training)
    again, _ = ablation.run_ablation(params, ["hdfs-bgl"], [42], 1, ["val", "test"], tmp_path / "cache")
    assert again["hdfs-bgl"]["rows"] == pair["rows"]


def test_a_self_training_change_reruns_the_rounds_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = {"train.max_steps_per_epoch": 2, "train.encoder.hidden_size": 8, "train.adapt.self_training.rounds": 1,
                 "train.adapt.self_training.epochs_per_round": 1}  # fmt: skip
    write_system(tmp_path / "tensors" / "hdfs", "hdfs", seed=1)
    write_system(tmp_path / "tensors" / "bgl", "bgl", seed=2, anomaly_share=0.2)
    first, _ = ablation.run_ablation(make_params(tmp_path, overrides), ["hdfs-bgl"], [42], 1, ["val"],
                                     tmp_path / "cache")  # fmt: skip
    trained_phases = []
    original = ablation._phase
    monkeypatch.setattr(ablation, "_phase", lambda folder, *rest, **keywords: trained_phases.append(folder.name)
                        or original(folder, *rest, **keywords))  # fmt: skip
    params = make_params(tmp_path, {**overrides, "train.adapt.self_training.rule": "detector"})
    second, _ = ablation.run_ablation(params, ["hdfs-bgl"], [42], 1, ["val"], tmp_path / "cache")
    assert len(trained_phases) == 2 and all(name.startswith("final-") for name in trained_phases)
    for row in ("zerolog", "adapt_no_self_training"):  # the base phases: the same runs
        assert second["hdfs-bgl"]["rows"][row] == first["hdfs-bgl"]["rows"][row]
