"""Leave-one-system-out selection (zerolog.evaluation.selection, stage selection): a system's labels cannot choose
its own recipe, the criterion is the best worst case over the references, and the chosen recipe is what evaluate
and the bundle apply."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import call_stage
from evaluation_fixtures import make_params, write_tensors

from zerolog.artifacts import ArtifactPaths, load_tensors, read_scores
from zerolog.config import SelectionConfig
from zerolog.detection.bundle import read_bundle
from zerolog.evaluation.selection import Recipe, SystemScores, apply_recipe, candidate_recipes, choose_recipe, standing

SYSTEMS = {"hdfs": (0.1, 1), "bgl": (0.15, 2), "openstack": (0.2, 3)}  # anomaly share, generator seed


def _config(**changes) -> SelectionConfig:
    settings = {"criterion": "worst_case", "members": ["pca", "template_rarity"], "sizes": [1, 2],
                "standings": ["rank"], "combinations": ["mean"], "cuts": ["mixture", "otsu"], "min_val_anomalies": 1,
                "fallback": "pca|rank|mean|mixture", **changes}  # fmt: skip
    return SelectionConfig(**settings)


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """Three generated systems with their baselines; bgl's recipe chosen on hdfs and openstack."""
    params = make_params(tmp_path_factory.mktemp("selected"), {"selection.min_val_anomalies": 1})
    for system, (share, seed) in SYSTEMS.items():
        write_tensors(params, system, sessions=400, anomaly_share=share, seed=seed)
    for system in SYSTEMS:
        call_stage("baselines", params, system)
    call_stage("selection", params, "bgl")
    return params


def _recipe(params) -> dict:
    summary = json.loads((ArtifactPaths(params.paths).selected_scores("bgl") / "recipe.json").read_text())
    return {key: summary[key] for key in ("recipe", "references", "criterion", "validation_f1", "best_candidates")}


def test_a_targets_own_labels_cannot_change_its_recipe(selected):
    """Poison bgl's labels (flipped; then erased, as for a system nobody labeled): the same recipe, the same
    evidence. Poisoning a REFERENCE's labels changes the evidence: the test can fail."""
    before = _recipe(selected)
    assert before["recipe"] is not None and before["references"] == ["hdfs", "openstack"]
    labels_file = ArtifactPaths(selected.paths).tensors("bgl") / "labels.npy"
    original = np.load(labels_file)
    try:
        for poisoned in (1 - original, np.full_like(original, -1)):
            np.save(labels_file, poisoned.astype(original.dtype))
            call_stage("selection", selected, "bgl")
            assert _recipe(selected) == before
    finally:
        np.save(labels_file, original)
    reference = ArtifactPaths(selected.paths).tensors("hdfs") / "labels.npy"
    kept = np.load(reference)
    try:
        np.save(reference, (1 - kept).astype(kept.dtype))
        call_stage("selection", selected, "bgl")
        assert _recipe(selected)["validation_f1"] != before["validation_f1"]
    finally:
        np.save(reference, kept)
        call_stage("selection", selected, "bgl")


def test_the_recipes_scores_cut_and_bundle_agree(selected):
    """The score file holds the recipe's cut and the share of train sessions it flags; the bundle of zerolog detect
    holds the same recipe and scores the system's sessions as the score file does."""
    result = call_stage("selection", selected, "bgl")
    paths = ArtifactPaths(selected.paths)
    frame, metadata = read_scores(paths.score_file("loso", "", "bgl", selected.seeds[0]))
    assert result.choice.recipe is not None and result.choice.recipe.key == metadata["detector"]
    assert result.runs[0].threshold == metadata["decision_threshold"]
    np.testing.assert_array_equal(result.runs[0].scores, frame.sort_values("row")["score"].to_numpy())
    train = frame[frame["split"] == "train"]["score"].to_numpy()
    assert metadata["pi_hat"] == pytest.approx(np.mean(train >= metadata["decision_threshold"]))
    assert 0 < metadata["pi_hat"] < 0.5
    bundle = read_bundle(paths.detector("bgl"))
    assert bundle.method == "loso" and bundle.recipe is not None
    assert bundle.recipe.recipe.key == metadata["detector"] == _recipe(selected)["recipe"]["key"]
    assert bundle.threshold.value == pytest.approx(metadata["decision_threshold"])
    counts = np.asarray(load_tensors(paths.tensors("bgl")).counts, dtype=np.float64)  # (sessions, V + 1)
    ours = bundle.recipe.score(counts, np.zeros((counts.shape[0], 0)), bundle.subspace.spe(counts))
    np.testing.assert_allclose(ours, frame.sort_values("row")["score"].to_numpy(), rtol=1e-9, atol=1e-12)
    metrics = json.loads((Path(selected.paths.metrics) / "selection" / "bgl.json").read_text())
    assert metrics["recipe"]["key"] == metadata["detector"] and set(metrics["validation_f1"]) == {"hdfs", "openstack"}


def _system(name: str, scores: dict[str, np.ndarray], labels: np.ndarray | None) -> SystemScores:
    split = np.array([0] * 60 + [1] * 40, dtype=np.int8)
    return SystemScores(name, split, {member: [values] for member, values in scores.items()}, labels)


def test_the_criterion_is_the_best_worst_case_over_the_references():
    """Member a separates reference r1 perfectly and fails on r2; member b is fair on both: worst case picks b."""
    generator = np.random.default_rng(0)
    labels = np.zeros(100, dtype=np.int8)
    labels[[5, 15, 25, 35, 45, 62, 72, 82, 92, 97]] = 1
    noise = generator.random(100)
    perfect, useless = labels * 10.0 + noise, noise * 10.0
    fair = labels * 10.0 + noise * 12.0
    references = [_system("r1", {"a": perfect, "b": fair}, labels), _system("r2", {"a": useless, "b": fair}, labels)]
    config = _config(members=["a", "b"], sizes=[1], fallback="a|rank|mean|mixture")
    choice = choose_recipe(candidate_recipes(config), references, seed=0)
    assert choice.recipe is not None and choice.recipe.members == ("b",)
    table = choice.table[choice.recipe.key]
    assert min(table.values()) == choice.criterion(choice.recipe.key)
    assert all((choice.criterion(key) or 0.0) <= min(table.values()) for key in choice.table)
    assert choose_recipe(candidate_recipes(config), [], seed=0).reason is not None  # nothing to judge on


def test_ranks_tie_within_rounding_and_recipes_apply_without_labels():
    train = np.array([1.0, 1.0, 2.0, 3.0])
    nudged = np.array([1.0 + 1e-13, 2.0 - 1e-13, 5.0])
    assert standing("rank", train, nudged).tolist() == standing("rank", train, np.array([1.0, 2.0, 5.0])).tolist()
    generator = np.random.default_rng(1)
    scores = generator.normal(0, 1, 100)
    scores[::10] += 8.0  # an anomalous tenth, in train as everywhere
    target = _system("new", {"a": scores}, None)  # no labels at all
    (applied,) = apply_recipe(Recipe(("a",), "robust_z", "mean", "mixture"), target, seed=0)
    assert applied.flagged_train_share == pytest.approx(0.1) and applied.scores.shape == (100,)
