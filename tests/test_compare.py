"""make compare: the experiments' headline numbers in a table that fits a terminal, read from `dvc exp show --json`."""

import json

from zerolog.compare import changed_params, experiment_rows, main


def _commit(name, rev, params, f1s, experiments=None):
    metrics = {f"metrics/{pair}.json": {"data": {"methods": methods}} for pair, methods in f1s.items()}
    return {
        "rev": rev,
        "name": name,
        "data": {"params": {"params.yaml": {"data": params}}, "metrics": metrics},
        "experiments": experiments,
    }


def _shown():
    params = {
        "pairs": {"hdfs-bgl": {}, "bgl-hdfs": {}},
        "evaluate": {"recommended": "pca_mixture", "contamination_prior": 0.05},
    }
    changed = json.loads(json.dumps(params))
    changed["evaluate"]["contamination_prior"] = 0.03
    f1s = {
        "hdfs-bgl": {"pca_mixture": {"f1": 0.69}, "zerolog": {"f1": 0.4, "f1_sd": 0.05}},
        "bgl-hdfs": {"pca_mixture": {"f1": 0.65}},
    }
    experiment = {"name": "lower-prior", "revs": [_commit(None, "abc1234def", changed, {"hdfs-bgl": {}})]}
    return [_commit(None, "workspace", params, f1s), _commit("main", "0123456789", params, f1s, [experiment])]


def test_rows_are_the_workspace_the_baseline_and_its_experiments():
    assert [row["name"] for row in experiment_rows(_shown())] == ["workspace", "main", "lower-prior"]


def test_changed_params_name_each_key_that_differs_from_the_baseline():
    rows = experiment_rows(_shown())
    assert changed_params(rows[2]["params"], rows[1]["params"]) == "evaluate.contamination_prior=0.03"
    assert changed_params(rows[0]["params"], rows[1]["params"]) == ""


def test_table_shows_recommended_and_zerolog_per_pair_and_fits_a_terminal(tmp_path, capsys):
    path = tmp_path / "shown.json"
    path.write_text(json.dumps(_shown()))
    assert main(["--from-json", str(path)]) == 0
    output = capsys.readouterr().out
    line = next(text for text in output.splitlines() if text.startswith("hdfs-bgl  zerolog"))
    assert line.split()[2:] == ["0.400±0.050", "0.400±0.050", "-"]  # workspace, main, the experiment (not measured)
    assert "lower-prior: evaluate.contamination_prior=0.03" in output
    assert max(len(text) for text in output.splitlines()) <= 100


def test_unreadable_input_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "shown.json"
    path.write_text("not json")
    assert main(["--from-json", str(path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
