"""CI quality gate: compare F1s with a baseline (pass on equal/better, fail naming pair, method and drop), update,
profile overrides, and a real `dvc repro` of a profile in a scratch copy of a tiny project."""

import json
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml

from zerolog.config import ConfigError, GateConfig
from zerolog.config_loader import load_params, read_yaml
from zerolog.evaluation.gate import (
    Profile,
    apply_overrides,
    baseline_document,
    collect_f1,
    compare,
    main,
    method_guards,
)

PAIRS = ["hdfs-bgl", "bgl-hdfs"]


def _pair_metrics(status="evaluated", f1s=None, reason=None):
    """A metrics/<pair>.json of deterministic methods (one value each; ROC-AUC 0.9 where F1 is given)."""
    f1s = f1s or {}
    return {
        "status": status,
        "reason": reason,
        "methods": {
            m: {"status": "evaluated", "f1": v, "roc_auc": 0.9}
            if v is not None
            else {"status": "not_available", "reason": "x"}
            for m, v in f1s.items()
        },
    }


def _numbers(f1, roc_auc=None, seeds=1, sd=None):
    return {"seeds": seeds, "F1": f1, "F1 sd": sd, "ROC-AUC": roc_auc, "ROC-AUC sd": sd}


def _current(methods, status="evaluated"):
    return {"hdfs-bgl": {"status": status, "reason": None, "methods": methods}}


SETTINGS = GateConfig(tolerance=0.05, baseline="unused", profiles={}, min_seeds=3, seed_sd_multiplier=3.0)


def _baseline_of(methods, status="evaluated"):
    return baseline_document(Profile("full", Path("unused")), _current(methods, status), SETTINGS)


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


def test_equal_or_better_passes():
    baseline = _baseline_of({"level_rule": _numbers(0.80, 0.7)})
    result = compare(baseline, _current({"level_rule": _numbers(0.80, 0.9)}))
    assert result.passed and any("improved" in note for note in result.notes)


def test_drop_within_tolerance_passes_and_beyond_fails_naming_pair_method_and_drop():
    baseline = _baseline_of({"level_rule": _numbers(0.80, 0.70)})
    result = compare(baseline, _current({"level_rule": _numbers(0.76, 0.60)}))
    assert result.failures == ["hdfs-bgl / level_rule: ROC-AUC 0.6000 < baseline 0.7000 by 0.1000 (tolerance 0.0500)"]


@pytest.mark.parametrize(
    "current,expected",
    [
        ({}, "hdfs-bgl: missing pair"),
        (
            {"hdfs-bgl": {"status": "missing", "reason": "metrics/hdfs-bgl.json: file not found", "methods": {}}},
            "hdfs-bgl: missing pair (metrics/hdfs-bgl.json: file not found)",
        ),
        (
            {"hdfs-bgl": {"status": "not_evaluable", "reason": "3 anomalies", "methods": {}}},
            "hdfs-bgl: status not_evaluable (3 anomalies)",
        ),
        (_current({}), "hdfs-bgl / level_rule: missing method"),
        (_current({"level_rule": _numbers(None)}), "hdfs-bgl / level_rule: no F1 now"),
    ],
)
def test_lost_pairs_and_methods_fail(current, expected):
    result = compare(_baseline_of({"level_rule": _numbers(0.8)}), current)
    assert not result.passed and result.failures[0].startswith(expected)


def test_pairs_not_evaluated_in_the_baseline_are_not_gated():
    baseline = _baseline_of({}, status="not_evaluable")
    result = compare(baseline, _current({"level_rule": _numbers(0.1)}))
    assert result.passed and "now evaluated" in result.notes[0]


def test_one_draw_of_a_stochastic_method_is_not_gated_and_a_mean_over_seeds_is_with_a_wider_tolerance():
    guards, reason = method_guards("zerolog", _numbers(0.6, 0.8, seeds=1), SETTINGS)
    assert guards == {} and "1 seed(s) < gate.min_seeds = 3" in reason
    guards, reason = method_guards("zerolog", _numbers(0.6, 0.8, seeds=3, sd=0.05), SETTINGS)
    spread = 3.0 * 0.05 * (2 / 3) ** 0.5  # 3 sd of the difference of two means over 3 seeds
    assert reason is None and guards["F1"] == {"value": 0.6, "tolerance": pytest.approx(spread, abs=1e-6)}
    guards, _ = method_guards("level_rule", _numbers(0.6, 0.8), SETTINGS)  # deterministic: one value, gate.tolerance
    assert guards["F1"]["tolerance"] == 0.05


def test_a_number_that_cannot_fail_is_not_gated():
    guards, reason = method_guards("level_rule", _numbers(0.0, 0.62), SETTINGS)
    assert "F1" not in guards and "ROC-AUC" in guards and "cannot fail" in reason


@pytest.mark.parametrize("profile_file", sorted(Path("profiles").glob("*.baseline.json")), ids=lambda p: p.name)
def test_every_number_a_committed_baseline_gates_can_fail(profile_file):
    """Issue 11: a gate whose numbers cannot fall below their tolerance guards nothing. Each guarded number of the
    committed baselines, lowered by just more than its tolerance, fails the gate naming it."""
    baseline = json.loads(profile_file.read_text())
    guarded = [
        (pair, method, metric, guard)
        for pair, entry in baseline["pairs"].items()
        for method, guards in entry.get("guards", {}).items()
        for metric, guard in guards.items()
    ]
    assert guarded, f"{profile_file}: gates nothing"
    for pair, method, metric, guard in guarded:
        assert guard["value"] - guard["tolerance"] > 0
        current = {
            name: {
                "status": entry["status"],
                "reason": entry["reason"],
                "methods": {
                    m: {key: g["value"] for key, g in gs.items()} | {"seeds": 99}
                    for m, gs in entry.get("guards", {}).items()
                },
            }
            for name, entry in baseline["pairs"].items()
        }
        assert compare(baseline, current).passed
        current[pair]["methods"][method][metric] = guard["value"] - guard["tolerance"] - 1e-3
        failures = compare(baseline, current).failures
        assert len(failures) == 1 and failures[0].startswith(f"{pair} / {method}: {metric}")


def test_update_then_check_from_the_command_line(tmp_path, capsys):
    params = _write_project_params(tmp_path)
    _write_metrics(
        tmp_path, "hdfs-bgl", _pair_metrics(f1s={"level_rule": 0.81, "zerolog": 0.7, "supervised_target": None})
    )
    _write_metrics(tmp_path, "bgl-hdfs", _pair_metrics("not_evaluable", reason="9 anomalies"))
    assert main(["update", "--params", str(params)]) == 0
    baseline = json.loads((tmp_path / "full.baseline.json").read_text())
    assert baseline["pairs"]["hdfs-bgl"]["guards"] == {
        "level_rule": {"F1": {"value": 0.81, "tolerance": 0.05}, "ROC-AUC": {"value": 0.9, "tolerance": 0.05}}
    }
    assert "zerolog" in baseline["pairs"]["hdfs-bgl"]["not_gated"]  # one draw of a stochastic method
    assert baseline["profile"] == "full"

    assert main(["check", "--params", str(params)]) == 0
    assert "passed" in capsys.readouterr().out

    _write_metrics(tmp_path, "hdfs-bgl", _pair_metrics(f1s={"level_rule": 0.70, "zerolog": 0.7}))
    assert main(["check", "--params", str(params)]) == 1
    output = capsys.readouterr().out
    assert "FAIL: hdfs-bgl / level_rule: F1 0.7000 < baseline 0.8100 by 0.1100" in output and "FAILED (1" in output

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
    _write_metrics(tmp_path, "hdfs-bgl", _pair_metrics(f1s={"level_rule": 0.8}))
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
    from zerolog.config_loader import load_params, parse_params
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
                   "methods": {"level_rule": {"status": "evaluated", "f1": round(0.5 + 0.1 * epochs, 4)}}}
        pathlib.Path("metrics", pair + ".json").write_text(json.dumps(metrics))
    """
)


@pytest.mark.slow
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
    assert baseline["pairs"]["hdfs-bgl"]["guards"]["level_rule"]["F1"]["value"] == 0.7  # 0.5 + 0.1 x 2: it ran
    assert baseline["overrides"] == ["train.epochs=2"]
    assert main(["check", "--profile", "quick"]) == 0

    (project / "profiles" / "quick.yaml").write_text(
        "baseline: profiles/quick.baseline.json\noverrides:\n  - train.epochs=1\n", encoding="utf-8"
    )
    assert main(["check", "--profile", "quick"]) == 1
    assert "FAIL: hdfs-bgl / level_rule: F1 0.6000 < baseline 0.7000" in capsys.readouterr().out
    # The workspace is untouched: same params, no metrics, no DVC lock or MLflow store of the scratch runs.
    assert (project / "params.yaml").read_text(encoding="utf-8") == before
    assert not (project / "metrics").exists() and not (project / "dvc.lock").exists()
    assert list(scratch.iterdir()) == []  # every scratch copy was removed


def test_collect_reads_roc_auc_beside_f1_and_the_seeds_of_a_mean(tmp_path):
    params = load_params(_write_project_params(tmp_path))
    metrics = _pair_metrics(f1s={"zerolog": 0.0})
    metrics["methods"]["zerolog"].update(roc_auc=0.69, roc_auc_sd=0.02, seeds={"42": {}, "43": {}})
    _write_metrics(tmp_path, "hdfs-bgl", metrics)
    collected = collect_f1(params, tmp_path / "metrics")
    assert collected["hdfs-bgl"]["methods"]["zerolog"] == {
        "seeds": 2,
        "F1": 0.0,
        "F1 sd": None,
        "ROC-AUC": 0.69,
        "ROC-AUC sd": 0.02,
    }
