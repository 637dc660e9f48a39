"""Stage diagnose: the signals rank what they should, a turned-over semantic shows up, and the stage writes its
files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import call_stage
from sklearn.metrics import roc_auc_score
from training_fixtures import write_system

from zerolog.config import ConfigError
from zerolog.config_loader import load_params
from zerolog.errors import DataError
from zerolog.evaluation.signals import (
    fit_probe,
    max_pooled,
    rarest_template_novelty,
    severity_similarity,
    system_view,
    template_set_novelty,
)

REPOSITORY = Path(__file__).resolve().parents[2]
DIM = 16


def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template tables of two systems and an anchor: the anomaly template (the last) points along the anchor in
    system ``a`` and against it in system ``b``; the other templates are shared noise."""
    generator = np.random.default_rng(3)
    anchor = generator.normal(size=DIM)
    common = generator.normal(size=(11, DIM)) * 0.3
    table_a = np.vstack([common, anchor]).astype(np.float32)
    table_b = np.vstack([common, -anchor]).astype(np.float32)
    return table_a, table_b, anchor


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("tensors")
    table_a, table_b, anchor = tables()
    a = system_view(write_system(root / "a", "a", sessions=400, table=table_a, seed=11, anomaly_share=0.1), "a")
    b = system_view(write_system(root / "b", "b", sessions=400, table=table_b, seed=12, anomaly_share=0.1), "b")
    return a, b, anchor


def validation_auc(view, scores: np.ndarray) -> float:
    rows = view.rows("val")
    return roc_auc_score(view.labels[rows], scores[rows])


def test_novelty_signals_find_a_rare_template_in_both_systems(views) -> None:
    a, b, _ = views
    for view in (a, b):
        assert validation_auc(view, rarest_template_novelty(view)) > 0.95  # the anomaly template is rare in train
        assert validation_auc(view, template_set_novelty(view)) > 0.5


def test_severity_and_probe_turn_over_when_the_semantics_do(views) -> None:
    a, b, anchor = views
    assert validation_auc(a, severity_similarity(a, anchor)) > 0.95
    assert validation_auc(b, severity_similarity(b, anchor)) < 0.5  # the same anchor ranks b's anomalies last
    probe = fit_probe(a, load_params(REPOSITORY / "params.yaml").diagnose, seed=0)
    assert validation_auc(a, probe.decision_function(max_pooled(a))) > 0.95  # held out, same system
    assert validation_auc(b, probe.decision_function(max_pooled(b))) < 0.5  # zero-label transfer goes wrong


def test_template_set_novelty_counts_only_train_sessions(views) -> None:
    a, _, _ = views
    novelty = template_set_novelty(a)
    train = a.rows("train", labeled=False)
    assert novelty.max() == pytest.approx(np.log(train.size + 1))  # a set never seen in train


def write_params(tmp_path: Path, systems: list[str]):
    params = load_params(REPOSITORY / "params.yaml")
    paths = dataclasses.replace(
        params.paths,
        tensors=str(tmp_path / "tensors"),
        metrics=str(tmp_path / "metrics"),
        reports=str(tmp_path / "reports"),
    )
    embed = dataclasses.replace(params.embed, method="hashing", hashing_dimensions=DIM)
    system_configs = {name: params.systems["hdfs"] for name in systems}
    diagnose = dataclasses.replace(params.diagnose, systems=systems, templates_shown=2)
    return dataclasses.replace(params, paths=paths, embed=embed, systems=system_configs, diagnose=diagnose)


def test_diagnose_writes_the_report_and_metrics(tmp_path: Path) -> None:
    table_a, table_b, _ = tables()
    write_system(tmp_path / "tensors" / "a", "a", sessions=300, table=table_a, seed=21)
    write_system(tmp_path / "tensors" / "b", "b", sessions=300, table=table_b, seed=22)
    params = write_params(tmp_path, ["a", "b"])
    result = call_stage("diagnose", params, "")
    metrics = json.loads((tmp_path / "reports" / "transfer_signals.json").read_text())
    assert metrics == json.loads(json.dumps(result.results))  # the result is what the stage wrote
    assert metrics["split"] == "val" and set(metrics["systems"]) == {"a", "b"}
    for system in ("a", "b"):
        aucs = metrics["systems"][system]["roc_auc"]
        assert {"novelty:template_set", "novelty:rarest_template", "probe:a", "probe:b", "severity:emergency"} <= set(
            aucs
        )
        assert aucs["novelty:rarest_template"] > 0.9
    assert metrics["systems"]["b"]["roc_auc"]["probe:a"] < 0.5  # a's labels teach the opposite of b's
    shown = metrics["systems"]["b"]["templates"]
    assert len(shown) == 4 and {row["source"] for row in shown} == {"a"}
    report = (tmp_path / "reports" / "transfer_signals.md").read_text()
    assert "| `probe:a` |" in report and f"{metrics['systems']['b']['roc_auc']['probe:a']:.3f}" in report


def test_a_validation_split_without_anomalies_is_a_one_line_error(tmp_path: Path) -> None:
    table_a, table_b, _ = tables()
    write_system(tmp_path / "tensors" / "a", "a", sessions=200, table=table_a, seed=31)
    write_system(tmp_path / "tensors" / "b", "b", sessions=200, table=table_b, seed=32, anomaly_share=0.0)
    with pytest.raises(DataError, match="system b: its validation split needs both normal and anomalous sessions"):
        call_stage("diagnose", write_params(tmp_path, ["a", "b"]))


@pytest.mark.parametrize(
    ("setting", "value", "key"),
    [
        ("systems", ["hdfs"], "diagnose.systems"),
        ("severity_anchors", [" "], "diagnose.severity_anchors"),
        ("probe_regularization", 0.0, "diagnose.probe_regularization"),
        ("templates_shown", 0, "diagnose.templates_shown"),
    ],
)
def test_invalid_diagnose_settings_name_their_key(setting: str, value, key: str) -> None:
    config = load_params(REPOSITORY / "params.yaml").diagnose
    with pytest.raises(ConfigError, match=f"^{key}: "):
        dataclasses.replace(config, **{setting: value})
