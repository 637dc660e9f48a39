"""CI quality gate: compare F1s with a baseline (pass on equal/better, fail naming pair, method and drop), update,
profile overrides, and a real `dvc repro` of a profile in a scratch copy of a tiny project."""

import json
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from zerolog.config import ConfigError, load_params, read_yaml
from zerolog.evaluation.gate import apply_overrides, collect_f1, compare, main

PAIRS = ["hdfs-bgl", "bgl-hdfs"]


def _pair_metrics(status="evaluated", f1s=None, reason=None):
    f1s = f1s or {}
    return {
        "status": status,
        "reason": reason,
        "methods": {m: {"status": "evaluated", "f1": v} if v is not None else {"status": "not_available",
                                                                             "reason": "x"}
                    for m, v in f1s.items()},
    }


def _write_project_params(directory: Path, pairs=PAIRS) -> Path:
    """The repository's params.yaml with metrics under ``directory`` and only ``pairs``; returns its path."""
    raw = read_yaml(Path("params.yaml").read_text(encoding="utf-8"))
    raw["paths"]["metrics"] = str(directory / "metrics")
    raw["pairs"] = {pair: raw["pairs"][pair] for pair in pairs}
    raw["paper"]["pairs"] = [pair for pair in raw["paper"]["pairs"] if pair in pairs]  # paper pairs must be pairs
    raw["gate"]["baseline"] = str(directory / "full.baseline.json")
    raw["gate"]["profiles"] = {}
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _write_metrics(directory: Path, pair: str, metrics: dict) -> None:
    (directory / "metrics").mkdir(parents=True, exist_ok=True)
    (directory / "metrics" / f"{pair}.json").write_text(json.dumps(metrics), encoding="utf-8")


def _baseline(pairs):
    return {"pairs": pairs}


def test_equal_or_better_passes():
    baseline = _baseline({"hdfs-bgl": {"status": "evaluated", "methods": {"zerolog": 0.80, "dann": 0.70}}})
    current = {"hdfs-bgl": {"status": "evaluated", "reason": None, "methods": {"zerolog": 0.80, "dann": 0.90}}}
    result = compare(baseline, current, tolerance=0.05)
    assert result.passed and any("improved" in note for note in result.notes)


def test_drop_within_tolerance_passes_and_beyond_fails_naming_pair_method_and_drop():
    baseline = _baseline({"hdfs-bgl": {"status": "evaluated", "methods": {"zerolog": 0.80, "dann": 0.70}}})
    current = {"hdfs-bgl": {"status": "evaluated", "reason": None, "methods": {"zerolog": 0.76, "dann": 0.60}}}
    result = compare(baseline, current, tolerance=0.05)
    assert result.failures == ["hdfs-bgl / dann: F1 0.6000 < baseline 0.7000 by 0.1000 (tolerance 0.0500)"]


@pytest.mark.parametrize(
    "current,expected",
    [
        ({}, "hdfs-bgl: missing pair"),
        ({"hdfs-bgl": {"status": "missing", "reason": "metrics/hdfs-bgl.json: file not found", "methods": {}}},
         "hdfs-bgl: missing pair (metrics/hdfs-bgl.json: file not found)"),
        ({"hdfs-bgl": {"status": "not_evaluable", "reason": "3 anomalies", "methods": {}}},
         "hdfs-bgl: status not_evaluable (3 anomalies)"),
        ({"hdfs-bgl": {"status": "evaluated", "reason": None, "methods": {}}}, "hdfs-bgl / zerolog: missing method"),
        ({"hdfs-bgl": {"status": "evaluated", "reason": None, "methods": {"zerolog": None}}},
         "hdfs-bgl / zerolog: no F1 now"),
    ],
)
def test_lost_pairs_and_methods_fail(current, expected):
    baseline = _baseline({"hdfs-bgl": {"status": "evaluated", "methods": {"zerolog": 0.8}}})
    result = compare(baseline, current, tolerance=0.05)
    assert not result.passed and result.failures[0].startswith(expected)


def test_pairs_not_evaluated_in_the_baseline_are_not_gated():
    baseline = _baseline({"bgl-openstack": {"status": "not_evaluable", "methods": {}}})
    current = {"bgl-openstack": {"status": "evaluated", "reason": None, "methods": {"zerolog": 0.1}}}
    result = compare(baseline, current, tolerance=0.05)
    assert result.passed and "now evaluated" in result.notes[0]


def test_update_then_check_from_the_command_line(tmp_path, capsys):
    params = _write_project_params(tmp_path)
    _write_metrics(tmp_path, "hdfs-bgl", _pair_metrics(f1s={"zerolog": 0.81, "dann": 0.7, "supervised_target": None}))
    _write_metrics(tmp_path, "bgl-hdfs", _pair_metrics("not_evaluable", reason="9 anomalies"))
    assert main(["update", "--params", str(params)]) == 0
    baseline = json.loads((tmp_path / "full.baseline.json").read_text())
    assert baseline["pairs"]["hdfs-bgl"]["methods"] == {"zerolog": 0.81, "dann": 0.7, "supervised_target": None}
    assert baseline["profile"] == "full"

    assert main(["check", "--params", str(params)]) == 0
    assert "passed" in capsys.readouterr().out

    _write_metrics(tmp_path, "hdfs-bgl", _pair_metrics(f1s={"zerolog": 0.70, "dann": 0.7}))
    assert main(["check", "--params", str(params)]) == 1
    output = capsys.readouterr().out
    assert "FAIL: hdfs-bgl / zerolog: F1 0.7000 < baseline 0.8100 by 0.1100" in output and "FAILED (1" in output

    (tmp_path / "metrics" / "bgl-hdfs.json").unlink()
    assert main(["check", "--params", str(params)]) == 1
    assert "FAIL: bgl-hdfs: missing pair" in capsys.readouterr().out


def test_check_without_baseline_or_with_unknown_profile_is_a_usage_error(tmp_path, capsys):
    params = _write_project_params(tmp_path)
    assert main(["check", "--params", str(params)]) == 2
    assert "baseline not found" in capsys.readouterr().err
    assert main(["check", "--profile", "quick", "--params", str(params)]) == 2
    assert "unknown profile 'quick'" in capsys.readouterr().err


def test_update_refuses_missing_pairs(tmp_path, capsys):
    params = _write_project_params(tmp_path)
    _write_metrics(tmp_path, "hdfs-bgl", _pair_metrics(f1s={"zerolog": 0.8}))
    assert main(["update", "--params", str(params)]) == 2
    assert "bgl-hdfs" in capsys.readouterr().err
    assert not (tmp_path / "full.baseline.json").exists()


def test_overrides_are_typed_and_must_name_existing_keys():
    raw = {"train": {"epochs": 10, "encoder": {"hidden_size": 100}}, "evaluate": {"methods": ["a"]}}
    result = apply_overrides(raw, ["train.epochs=2", "evaluate.methods=[a, b]", "train.encoder.hidden_size=8"], "q")
    assert result == {"train": {"epochs": 2, "encoder": {"hidden_size": 8}}, "evaluate": {"methods": ["a", "b"]}}
    assert raw["train"]["epochs"] == 10  # the input is not modified
    with pytest.raises(ConfigError, match="unknown key train.epoch"):
        apply_overrides(raw, ["train.epoch=2"], "profiles/quick.yaml")


def test_the_repository_quick_profile_applies_cleanly():
    from zerolog.config import load_params, parse_params
    from zerolog.evaluation.gate import load_profile

    params = load_params()
    profile = load_profile(params, "quick")
    assert profile.overrides and profile.baseline.name == "quick.baseline.json"
    raw = read_yaml(Path("params.yaml").read_text(encoding="utf-8"))
    quick = parse_params(apply_overrides(raw, profile.overrides, "profiles/quick.yaml"))
    assert quick.train.epochs < params.train.epochs  # fewer epochs
    assert quick.systems == params.systems and quick.datasets == params.datasets  # the same data


MAKE_METRICS = textwrap.dedent(
    """
    # A stand-in pipeline: F1 grows with train.epochs, so the profile's overrides decide the verdict.
    import json, pathlib, yaml
    params = yaml.safe_load(open("params.yaml"))
    epochs = params["train"]["epochs"]
    pathlib.Path("metrics").mkdir(exist_ok=True)
    for pair in params["pairs"]:
        metrics = {"status": "evaluated", "reason": None,
                   "methods": {"zerolog": {"status": "evaluated", "f1": round(0.5 + 0.1 * epochs, 4)}}}
        pathlib.Path("metrics", pair + ".json").write_text(json.dumps(metrics))
    """
)


def test_profile_runs_dvc_repro_in_a_scratch_copy_and_leaves_the_workspace_alone(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    params = read_yaml(Path("params.yaml").read_text(encoding="utf-8"))
    params["paths"]["metrics"] = "metrics"
    params["pairs"] = {"hdfs-bgl": params["pairs"]["hdfs-bgl"]}
    params["paper"]["pairs"] = ["hdfs-bgl"]
    params["train"]["epochs"] = 10
    params["gate"]["profiles"] = {"quick": "profiles/quick.yaml"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    (project / "make_metrics.py").write_text(MAKE_METRICS, encoding="utf-8")
    (project / "dvc.yaml").write_text(
        "stages:\n  pipeline:\n    cmd: python make_metrics.py\n    deps: [make_metrics.py]\n"
        "    params: [train.epochs]\n    metrics:\n      - metrics/hdfs-bgl.json:\n          cache: false\n",
        encoding="utf-8",
    )
    (project / "profiles").mkdir()
    (project / "profiles" / "quick.yaml").write_text(
        "baseline: profiles/quick.baseline.json\noverrides:\n  - train.epochs=2\n", encoding="utf-8"
    )
    (project / ".dvc").mkdir()
    (project / ".dvc" / "config").write_text("[core]\n    analytics = false\n    autostage = false\n", encoding="utf-8")
    monkeypatch.chdir(project)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = (project / "params.yaml").read_text(encoding="utf-8")

    assert main(["update", "--profile", "quick"]) == 0
    baseline = json.loads((project / "profiles" / "quick.baseline.json").read_text())
    assert baseline["pairs"]["hdfs-bgl"]["methods"] == {"zerolog": 0.7}  # 0.5 + 0.1 x 2 epochs: the override ran
    assert baseline["overrides"] == ["train.epochs=2"]
    assert main(["check", "--profile", "quick"]) == 0

    (project / "profiles" / "quick.yaml").write_text(
        "baseline: profiles/quick.baseline.json\noverrides:\n  - train.epochs=1\n", encoding="utf-8"
    )
    assert main(["check", "--profile", "quick"]) == 1
    assert "FAIL: hdfs-bgl / zerolog: F1 0.6000 < baseline 0.7000" in capsys.readouterr().out
    # The workspace is untouched: same params, no metrics, no DVC lock or MLflow store of the scratch runs.
    assert (project / "params.yaml").read_text(encoding="utf-8") == before
    assert not (project / "metrics").exists() and not (project / "dvc.lock").exists()
    assert list(scratch.iterdir()) == []  # every scratch copy was removed


def test_a_ranking_drop_fails_even_when_f1_is_zero_in_both():
    """A zero-label method with F1 0 (its threshold does not transfer) is still gated on ROC-AUC."""
    baseline = _baseline({"hdfs-bgl": {"status": "evaluated", "methods": {"dann": 0.0}, "roc_auc": {"dann": 0.80}}})
    current = {"hdfs-bgl": {"status": "evaluated", "reason": None, "methods": {"dann": 0.0}, "roc_auc": {"dann": 0.60}}}
    result = compare(baseline, current, tolerance=0.05)
    assert result.failures == ["hdfs-bgl / dann: ROC-AUC 0.6000 < baseline 0.8000 by 0.2000 (tolerance 0.0500)"]
    current["hdfs-bgl"]["roc_auc"]["dann"] = 0.78
    assert compare(baseline, current, tolerance=0.05).passed


def test_collect_reads_roc_auc_beside_f1(tmp_path):
    params = load_params(_write_project_params(tmp_path))
    metrics = _pair_metrics(f1s={"zerolog": 0.0})
    metrics["methods"]["zerolog"]["roc_auc"] = 0.69
    _write_metrics(tmp_path, "hdfs-bgl", metrics)
    collected = collect_f1(params, tmp_path / "metrics")
    assert collected["hdfs-bgl"]["methods"] == {"zerolog": 0.0} and collected["hdfs-bgl"]["roc_auc"] == {"zerolog": 0.69}
