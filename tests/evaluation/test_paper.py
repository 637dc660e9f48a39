"""Stage paper: the published protocol (1:1 classes, test = adaptation set, P >= 0.5, best epoch ORACLE), on tiny
generated tensors; its params, its place in the pipeline and in the report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPOSITORY, call_stage
from evaluation_fixtures import build_pair, make_params, write_tensors

from zerolog.artifacts import ArtifactPaths, load_tensors
from zerolog.config import PAPER_OWN_TRAIN_KEYS, TRAIN_KEYS, ConfigError
from zerolog.config_loader import load_params, parse_params, read_yaml
from zerolog.errors import DataError
from zerolog.evaluation.paper import (
    EXCLUDED,
    FLAG_ALL,
    TargetTest,
    paper_train_config,
    protocol_view,
    sample_domain,
    split_train_dev,
    subsample_to_share,
    train_with_curve,
)
from zerolog.pipeline_file import pipeline_definition
from zerolog.report import (
    README_PAPER_END,
    README_PAPER_START,
    ReportSettings,
    published_section,
    read_pair_metrics,
    read_paper_metrics,
    update_readme_results,
)
from zerolog.training.loop import score, train

PAIR = "hdfs-bgl"


def _labels(anomalies: int, normals: int, unlabeled: int = 0, seed: int = 0) -> np.ndarray:
    values = np.array([1] * anomalies + [0] * normals + [-1] * unlabeled, dtype=np.int8)
    return np.random.default_rng(seed).permutation(values)


# ----------------------------------------------------------------------------- subsampling and splits


def test_the_majority_class_is_subsampled_to_one_to_one_and_the_minority_kept_whole():
    labels = _labels(anomalies=30, normals=200, unlabeled=7)
    kept, subsampled = subsample_to_share(labels, 0.5, np.random.default_rng(1))
    assert subsampled == "normal"
    assert np.sum(labels[kept] == 1) == 30 and np.sum(labels[kept] == 0) == 30
    assert set(np.flatnonzero(labels == 1)) <= set(kept)  # every anomaly kept
    assert not np.any(labels[kept] == -1)  # unlabeled sessions never kept
    # more anomalous than normal sessions (the bundled HDFS before its anomaly_share): the anomalies are subsampled
    labels = _labels(anomalies=120, normals=40)
    kept, subsampled = subsample_to_share(labels, 0.5, np.random.default_rng(1))
    assert subsampled == "anomalous" and set(np.flatnonzero(labels == 0)) <= set(kept)
    assert np.sum(labels[kept] == 1) == 40 and np.sum(labels[kept] == 0) == 40
    # another share: 0.25 anomalies
    kept, _ = subsample_to_share(_labels(30, 200), 0.25, np.random.default_rng(1))
    assert kept.size == 120


def test_subsampling_is_seeded():
    labels = _labels(anomalies=30, normals=200)
    first, _ = subsample_to_share(labels, 0.5, np.random.default_rng(7))
    again, _ = subsample_to_share(labels, 0.5, np.random.default_rng(7))
    other, _ = subsample_to_share(labels, 0.5, np.random.default_rng(8))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_one_class_is_an_error():
    with pytest.raises(DataError, match="needs both classes, found 0 anomalous and 50 normal"):
        subsample_to_share(_labels(0, 50), 0.5, np.random.default_rng(0))


def test_train_and_dev_split_each_class_in_half():
    labels = _labels(anomalies=31, normals=31)
    rows = np.arange(labels.size)
    train, dev = split_train_dev(rows, labels, 0.5, np.random.default_rng(3))
    assert np.intersect1d(train, dev).size == 0 and np.union1d(train, dev).size == rows.size
    assert abs(int(np.sum(labels[dev] == 1)) - int(np.sum(labels[train] == 1))) <= 1
    assert abs(dev.size - train.size) <= 2


def test_a_system_is_drawn_the_same_way_in_every_pair(tmp_path):
    params = make_params(tmp_path)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.2, seed=2)
    tensors = load_tensors(Path(params.paths.tensors) / "bgl")
    as_target = sample_domain(tensors, "target", params.paper)
    as_source = sample_domain(tensors, "source", params.paper)
    assert np.array_equal(as_target.train_rows, as_source.train_rows)
    assert np.array_equal(as_target.kept_rows, np.union1d(as_source.train_rows, as_source.dev_rows))
    other = sample_domain(tensors, "source", dataclasses.replace(params.paper, seed=params.paper.seed + 1))
    assert not np.array_equal(other.train_rows, as_source.train_rows)


def test_the_trainer_sees_kept_train_and_dev_only_and_the_target_without_labels(tmp_path):
    params = make_params(tmp_path)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.2, seed=2)
    tensors = load_tensors(Path(params.paths.tensors) / "bgl")
    sample = sample_domain(tensors, "target", params.paper)
    view = protocol_view(tensors, sample, with_labels=False)
    assert view.labels is None and np.array_equal(view.rows("train"), sample.train_rows)
    assert np.array_equal(view.rows("val"), sample.dev_rows)
    excluded = np.setdiff1d(np.arange(tensors.sessions), sample.kept_rows)
    assert np.all(view.split[excluded] == EXCLUDED) and excluded.size > 0
    assert np.array_equal(np.asarray(tensors.split), np.load(tensors.directory / "split.npy"))  # nothing written


# ----------------------------------------------------------------------------- the stage


def _paper_params(tmp_path: Path, overrides: dict | None = None):
    settings = {"paper.pairs": [PAIR, "bgl-hdfs"], "paper.epochs": 3, **(overrides or {})}
    return make_params(tmp_path, settings)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """hdfs (source, 8% anomalous: normal class subsampled) -> bgl (target, 25%), through the stage table."""
    params = _paper_params(tmp_path_factory.mktemp("paper"))
    write_tensors(params, "hdfs", sessions=700, anomaly_share=0.08, seed=1)
    write_tensors(params, "bgl", sessions=300, anomaly_share=0.25, seed=2)
    call_stage("paper", params, PAIR)
    paths = ArtifactPaths(params.paths)
    return params, json.loads(paths.paper_metrics(PAIR).read_text(encoding="utf-8"))


def test_metrics_layout(measured):
    params, metrics = measured
    assert metrics["protocol"] == "paper" and metrics["pair"] == PAIR and metrics["status"] == "evaluated"
    assert set(metrics["methods"]) == {*params.paper.methods, FLAG_ALL}
    zerolog = metrics["methods"]["zerolog"]
    for key in ("f1", "precision", "recall"):
        assert 0.0 <= zerolog[key] <= 1.0 and zerolog[key] == zerolog["last_epoch"][key]  # headline = last epoch
    assert zerolog["oracle"] is False and zerolog["last_epoch"]["oracle"] is False
    assert zerolog["last_epoch"]["epoch"] == params.paper.epochs and zerolog["last_epoch"]["threshold"] == 0.5
    data = metrics["data"]
    assert data["hdfs"]["role"] == "source" and data["bgl"]["role"] == "target"
    assert data["hdfs"]["subsampled_class"] == "normal"
    for system in ("hdfs", "bgl"):
        kept = data[system]["kept"]
        assert kept["anomalous"] == kept["normal"] == data[system]["available"]["anomalous"]


def test_the_target_test_set_is_every_kept_target_session(measured):
    _, metrics = measured
    target = metrics["data"]["bgl"]
    assert (
        target["test"]["sessions"]
        == target["kept"]["sessions"]
        == target["train"]["sessions"] + target["dev"]["sessions"]
    )
    last = metrics["methods"]["zerolog"]["last_epoch"]
    counted = sum(last[key] for key in ("true_positives", "false_positives", "true_negatives", "false_negatives"))
    assert counted == target["test"]["sessions"]
    assert last["true_positives"] + last["false_negatives"] == target["test"]["anomalous"]


def test_the_best_epoch_is_marked_oracle_and_is_the_curve_maximum(measured):
    params, metrics = measured
    best = metrics["methods"]["zerolog"]["best_epoch_oracle"]
    assert best["oracle"] is True and "ORACLE" in best["selected_by"]
    (seed,) = params.seeds  # one model seed in the test params: its curve gives the best epoch
    curve = pd.read_csv(ArtifactPaths(params.paths).paper_plots(PAIR) / f"zerolog-seed-{seed}.csv")
    assert list(curve["epoch"]) == list(range(1, params.paper.epochs + 1))
    assert best["f1"] == pytest.approx(curve["target/f1"].max())
    assert best["epochs"] == [int(curve.loc[curve["target/f1"].idxmax(), "epoch"])]
    assert curve["target/f1"].iloc[-1] == pytest.approx(metrics["methods"]["zerolog"]["f1"])
    assert best["f1"] >= metrics["methods"]["zerolog"]["f1"]
    assert (ArtifactPaths(params.paths).paper_plots(PAIR) / f"zerolog-seed-{seed}.png").is_file()
    assert set(metrics["methods"]["zerolog"]["seeds"]) == {str(seed)} and metrics["seeds"] == [seed]


def test_flag_all_is_what_the_class_share_alone_yields(measured):
    _, metrics = measured
    flag_all = metrics["methods"][FLAG_ALL]
    share = metrics["data"]["bgl"]["test"]["anomalous"] / metrics["data"]["bgl"]["test"]["sessions"]
    assert share == pytest.approx(0.5)
    assert flag_all["recall"] == 1.0 and flag_all["precision"] == pytest.approx(share)
    assert flag_all["f1"] == pytest.approx(2 * share / (1 + share)) and flag_all["oracle"] is False


def test_the_oracle_curve_never_reaches_the_trainer(tmp_path):
    """Target labels go to the curve only: training with the true labels, with shuffled ones, and with no curve at
    all (the trainer alone) gives the same last-epoch scores; a target given with labels is refused."""
    params = _paper_params(tmp_path)
    write_tensors(params, "hdfs", sessions=400, anomaly_share=0.2, seed=1)
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.3, seed=2)
    source, target = (load_tensors(Path(params.paths.tensors) / name) for name in ("hdfs", "bgl"))
    source_view = protocol_view(source, sample_domain(source, "source", params.paper), with_labels=True)
    target_sample = sample_domain(target, "target", params.paper)
    target_view = protocol_view(target, target_sample, with_labels=False)
    rows = target_sample.kept_rows
    labels = np.asarray(target.labels)[rows].astype(np.int64)
    trainer = {key: getattr(params.train, key) for key in TRAIN_KEYS if key not in PAPER_OWN_TRAIN_KEYS}
    config = paper_train_config(trainer, params.paper)
    results = []
    for curve_labels in (labels, np.random.default_rng(0).permutation(labels)):
        model, curve, _, _ = train_with_curve(config, [source_view], target_view, "zerolog", 5,
                                           TargetTest(rows, curve_labels, 0.5))  # fmt: skip
        results.append(score(model, target_view, rows))
        assert len(curve) == params.paper.epochs
    alone = train(config, [source_view], target_view, "zerolog", 5, progress=False)
    assert np.array_equal(results[0], results[1]) and np.array_equal(results[0], score(alone.model, target_view, rows))
    with pytest.raises(DataError, match="without labels"):
        train_with_curve(config, [source_view], protocol_view(target, target_sample, with_labels=True), "zerolog",
                         5, TargetTest(rows, labels, 0.5))  # fmt: skip


def test_a_pair_that_cannot_be_measured_says_why(tmp_path):
    params = _paper_params(tmp_path)
    write_tensors(params, "hdfs", sessions=200, anomaly_share=0.03, seed=1)  # ~3 anomalies in the kept train half
    write_tensors(params, "bgl", sessions=200, anomaly_share=0.0, seed=2)
    paths = ArtifactPaths(params.paths)
    call_stage("paper", params, PAIR)
    metrics = json.loads(paths.paper_metrics(PAIR).read_text(encoding="utf-8"))
    assert metrics["status"] == "not_evaluable" and "bgl: 0 anomalous" in metrics["reason"]
    assert metrics["methods"] == {} and (paths.paper_plots(PAIR) / "status.png").is_file()
    call_stage("paper", params, "bgl-hdfs")
    metrics = json.loads(paths.paper_metrics("bgl-hdfs").read_text(encoding="utf-8"))
    assert metrics["status"] == "skipped" and metrics["protocol"] == "paper"


# ----------------------------------------------------------------------------- params and pipeline


def _raw() -> dict:
    return read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("protocols", ["realistic", "paperish"], "protocols[1]: 'paperish' is not one of 'realistic' or 'paper'"),
        ("protocols", ["paper"], "protocols: must include realistic"),
        ("protocols", ["realistic", "realistic"], "protocols: name each protocol once"),
        ("paper.pairs", ["hdfs-vax"], "paper.pairs[0]: unknown pair 'hdfs-vax'"),
        ("paper.methods", ["level_rule"], "paper.methods[0]: level_rule is not a transfer method"),
        ("paper.methods", ["zerolg"], "paper.methods[0]: unknown method 'zerolg'"),
        ("paper.anomaly_share", 1.0, "paper.anomaly_share: must lie in (0, 1)"),
        ("paper.threshold", 0.0, "paper.threshold: must lie in (0, 1)"),
        ("paper.epochs", 0, "paper.epochs: must be at least 1"),
        ("paper.epoch", 3, "paper.epoch: unknown key"),
    ],
)
def test_bad_paper_params_are_one_line_errors_naming_the_key(key, value, message):
    raw = _raw()
    section, _, leaf = key.rpartition(".")
    (raw[section] if section else raw)[leaf] = value
    with pytest.raises(ConfigError) as caught:
        parse_params(raw, "params.yaml")
    assert str(caught.value).startswith("params.yaml: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_realistic_is_the_default_and_paper_adds_its_stages():
    params = load_params(REPOSITORY / "params.yaml")
    assert params.protocols[0] == "realistic"
    stages = pipeline_definition(params, REPOSITORY)["stages"]
    paper = {name for name in stages if name.startswith("paper-")}
    assert paper == {f"paper-{pair}" for pair in params.paper.pairs}
    entry = stages[f"paper-{PAIR}"]
    assert {"paper.epochs", "paper.methods", "paper.seed", "seeds", "train.encoder"} <= set(entry["params"])
    forbidden = {"paper", "paper.pairs", "train", "train.epochs", "train.methods", "evaluate", "seed"}
    assert not forbidden & set(entry["params"])  # adding a paper pair does not rerun the others
    assert set(entry["deps"]) >= {"data/tensors/hdfs", "data/tensors/bgl", "src/zerolog/evaluation/paper.py"}
    assert f"metrics/paper/{PAIR}.json" in stages["report"]["deps"]
    realistic_only = dataclasses.replace(params, protocols=["realistic"])
    stages = pipeline_definition(realistic_only, REPOSITORY)["stages"]
    assert not any(name.startswith("paper-") for name in stages)
    assert not any("metrics/paper" in dep for dep in stages["report"]["deps"])


def test_the_stage_refuses_a_pair_not_measured_under_the_paper_protocol(tmp_path):
    params = _paper_params(tmp_path, {"protocols": ["realistic"]})
    with pytest.raises(ConfigError, match="paper_pair 'hdfs-bgl' is not in params"):
        call_stage("paper", params, PAIR)


# ----------------------------------------------------------------------------- report


def test_the_report_sets_published_paper_and_realistic_figures_side_by_side(measured, tmp_path):
    params, metrics = measured
    for system in ("hdfs", "bgl"):
        call_stage("baselines", params, system)
        call_stage("selection", params, system)
    build_pair(params, PAIR)
    call_stage("evaluate", params, PAIR)
    settings = ReportSettings(
        {PAIR: params.pairs[PAIR]}, params.evaluate, dataclasses.replace(params.paper, pairs=[PAIR])
    )
    paths = ArtifactPaths(params.paths)
    results = read_pair_metrics(settings, paths)
    text = "\n".join(published_section(settings, results, read_paper_metrics(settings, paths)))
    row = next(line for line in text.splitlines() if line.startswith(f"| {PAIR} |"))
    zerolog = metrics["methods"]["zerolog"]
    assert "81.12%" in row and f"{zerolog['f1']:.3f}" in row
    best = zerolog["best_epoch_oracle"]
    assert f"{best['f1']:.3f} (epochs {', '.join(map(str, best['epochs']))})" in row
    assert f"{metrics['methods'][FLAG_ALL]['f1']:.3f}" in row
    assert f"{results[PAIR]['methods']['zerolog']['f1']:.3f}" in row  # the realistic protocol's zerolog
    assert "best epoch F1 (ORACLE)" in text and "MiniLM" in text and "normal class subsampled" in text
    for pair in ("bgl-hdfs", "openstack-bgl", "openstack-hdfs"):  # published, not measured here
        assert f"| {pair} |" in text
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\nSTALE-BLOCK\n<!-- results:end -->\n"
                      f"{README_PAPER_START}\nSTALE-BLOCK\n{README_PAPER_END}\n", encoding="utf-8")  # fmt: skip
    update_readme_results(settings, paths, readme)
    updated = readme.read_text(encoding="utf-8")
    assert "STALE-BLOCK" not in updated and row in updated
