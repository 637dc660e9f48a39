"""The pipeline, declared once: every stage's library function, the params it receives, its inputs and outputs.

``dvc.yaml`` is generated from this table (``python -m zerolog.pipeline_file``, run by ``make run``), and
``pipeline/<stage>.py`` runs a stage from it (:func:`run_stage`). Why generate: a hand-written ``dvc.yaml`` drifted
from the code (keys read but not declared, modules imported but not listed), and DVC's ``foreach`` cannot give a
pair the tensors of its own systems only, so every pair retrained when any system was added.

A stage's ``arguments(params, item)`` picks the params sections its function receives. The generator runs it on a
recording view, so the params keys in ``dvc.yaml`` are exactly the ones it picks; at run time the same function
builds the real arguments, so the stage cannot read a key that ``dvc.yaml`` does not name. Code deps are the
import closure of the stage's module (``zerolog.pipeline_file``).
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zerolog import runner
from zerolog.artifacts import ArtifactPaths, with_origins
from zerolog.config import ConfigError, Params
from zerolog.config_loader import load_params
from zerolog.data.download import glob_root
from zerolog.errors import ZerologError

Each = Literal["dataset", "system", "pair", "paper_pair"]

#: The served detector's MLflow models-from-code script: logged with each registered detector by the report stage.
SERVED_MODEL_CODE = Path("src/zerolog/detection/served_model.py")
#: The trained network's models-from-code script: logged with each trained method run by the train stage.
NETWORK_CODE = Path("src/zerolog/training/served_network.py")


@dataclass(frozen=True)
class Output:
    """One declared output of a stage: a DVC out, metric or plot. ``name`` is how the stage's result asks for it
    (``outputs["tensors"]``, zerolog.runner.Outputs); a path without a suffix is a folder."""

    name: str
    path: Path
    kind: Literal["outs", "metrics", "plots"] = "outs"
    cache: bool = True
    persist: bool = False  # kept across runs (the embed cache)
    plot: dict[str, str] = field(default_factory=dict)  # DVC plot properties: template, x, y


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline; per dataset, system or pair when ``each`` is set.

    ``module`` holds the stage's three functions, named after the stage (imported only when it runs):
    ``<name>_section(params, item)``, the typed settings it receives (the generator records the keys read, which
    become the stage's params in ``dvc.yaml``); ``load_<name>_inputs(section, paths)``, the reader of its declared
    deps; ``compute_<name>(section, inputs) -> Result``, its pure core. zerolog.runner runs them and writes
    ``outputs``.
    """

    name: str
    summary: str
    each: Each | None
    module: str
    deps: Callable[[Params, ArtifactPaths, str], list[Path]]
    outputs: Callable[[Params, ArtifactPaths, str], list[Output]]

    @property
    def section(self) -> str:
        return f"{self.module}:{self.name}_section"

    @property
    def load(self) -> str:
        return f"{self.module}:load_{self.name}_inputs"

    @property
    def core(self) -> str:
        return f"{self.module}:compute_{self.name}"

    def items(self, params: Params) -> list[str]:
        """The datasets, systems or pairs this stage runs for ([""] for a single stage)."""
        if self.each is None:
            return [""]
        if self.each == "paper_pair":
            return paper_pairs(params)
        names: dict[str, Mapping[str, object]] = {
            "dataset": params.datasets,
            "system": params.systems,
            "pair": params.pairs,
        }
        return list(names[self.each])

    def dvc_name(self, item: str) -> str:
        """DVC allows letters, digits, ``_`` and ``-`` in a stage name: ``train-hdfs-bgl``; ``+`` becomes ``_``."""
        return f"{self.name}-{item.replace('+', '_')}" if item else self.name

    def build_section(self, params: Any, item: str) -> Any:
        """The stage's typed section for ``item`` (``params`` may be a recording view: zerolog.params_access)."""
        return _resolve(self.section)(params, item)

    def call(self, params: Params, item: str, progress: Callable[[int], None] | None = None) -> runner.Result:
        """Run the stage for ``item`` through the one runner; returns its result. ``progress`` (not a param: the
        benchmark's timer of the parse stage) goes to the core."""
        if self.each and item not in self.items(params):
            raise ConfigError(f"{params.source_file}: {self.each} {item!r} is not in params (stage {self.name})")
        paths = ArtifactPaths(params.paths)
        outputs = {output.name: output.path for output in self.outputs(params, paths, item)}
        core = _resolve(self.core) if progress is None else functools.partial(_resolve(self.core), progress=progress)
        invocation = runner.Run(self.name, item, self.build_section(params, item), paths, _resolve(self.load), core,
                                outputs)  # fmt: skip
        return runner.run(invocation)


def _resolve(name: str) -> Callable[..., Any]:
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def paper_pairs(params: Params) -> list[str]:
    """The pairs measured under the paper's protocol: ``paper.pairs`` when ``protocols`` lists ``paper``, else none."""
    return list(params.paper.pairs) if "paper" in params.protocols else []


def _pair_systems(params: Params, pair: str) -> list[str]:
    return [*params.pairs[pair].sources, params.pairs[pair].target]


def _bundled_files(params: Params, dataset: str) -> list[Path]:
    """The dataset's files in the bundle (what the download stage copies in ``data.source: bundled``); a glob
    pattern in ``files.logs`` stands for the folder it searches (a file added there reruns the stage)."""
    names: list[str] = []
    for value in params.datasets[dataset].files.values():
        names.extend([value] if isinstance(value, str) else value)
    return list(dict.fromkeys(Path(params.paths.bundled) / glob_root(name) for name in names))


def _metric(name: str, path: Path) -> Output:
    return Output(name, path, "metrics", cache=False)


# ----------------------------------------------------------------------------- the stages


def _targets(params: Params) -> list[str]:
    return list(dict.fromkeys(pair.target for pair in params.pairs.values()))


STAGES: list[Stage] = [
    Stage(
        "download", "copy (bundled) or fetch (loghub) one dataset", "dataset", "zerolog.data.download",
        deps=lambda params, paths, dataset: _bundled_files(params, dataset),
        outputs=lambda params, paths, dataset: [Output("raw", paths.raw(dataset))],
    ),
    Stage(
        "parse", "parse one dataset's logs into lines and templates", "dataset", "zerolog.data.parse",
        deps=lambda params, paths, dataset: [paths.raw(dataset)],
        outputs=lambda params, paths, dataset: [
            Output("parsed", paths.parsed(dataset)),
            Output("report", paths.data_report("parse", dataset), cache=False),
        ],
    ),
    Stage(
        "sessionize", "group one dataset's lines into labeled, split sessions", "dataset",
        "zerolog.data.sessionize",
        deps=lambda params, paths, dataset: [paths.raw(dataset), paths.parsed(dataset)],
        outputs=lambda params, paths, dataset: [
            Output("sessions", paths.sessions(dataset)),
            Output("report", paths.data_report("sessionize", dataset), cache=False),
        ],
    ),
    Stage(
        "embed", "embed every template of every dataset into one semantic space", None, "zerolog.features.embed",
        deps=lambda params, paths, _: [paths.sessions(dataset) for dataset in params.datasets],
        outputs=lambda params, paths, _: [
            Output("vectors", paths.template_vectors(), persist=True),
            Output("report", paths.data_report("embed", "embed"), cache=False),
        ],
    ),
    Stage(
        "tensors", "one system's sessions as padded template-index sequences, labels, splits, counts", "system",
        "zerolog.features.tensors",
        deps=lambda params, paths, system: [
            paths.sessions(params.systems[system].dataset), paths.template_vectors()
        ],
        outputs=lambda params, paths, system: [
            Output("tensors", paths.tensors(system)),
            Output("report", paths.data_report("tensors", system), cache=False),
        ],
    ),
    Stage(
        "train", "every transfer method on one source->target pair", "pair", "zerolog.training.pipeline",
        deps=lambda params, paths, pair: [
            *[paths.tensors(system) for system in _pair_systems(params, pair)],
            NETWORK_CODE,  # the logged model's code (MLflow models-from-code): a path, never imported here
        ],
        outputs=lambda params, paths, pair: [
            Output("models", paths.models(pair)),
            Output("scores", paths.pair_scores(pair)),
            Output("plots", paths.plots("train", pair), "plots", cache=False,
                   plot={"template": "linear", "x": "epoch", "y": "val/f1"}),
        ],
    ),
    Stage(
        "baselines", "target-only label-free detectors, the level rule and the supervised ORACLE on one system",
        "system", "zerolog.evaluation.baselines",
        deps=lambda params, paths, system: [paths.tensors(system)],
        outputs=lambda params, paths, system: [Output("scores", paths.target_scores(system))],
    ),
    Stage(
        "selection", "one system's detector recipe, chosen on the OTHER labeled systems (leave-one-system-out)",
        "system", "zerolog.detection.loso",
        deps=lambda params, paths, system: [
            *[paths.tensors(other) for other in params.systems],
            *[paths.target_scores(other) for other in params.systems],
            paths.raw(params.systems[system].dataset), paths.parsed(params.systems[system].dataset),
        ],
        outputs=lambda params, paths, system: [
            Output("scores", paths.selected_scores(system)), Output("detector", paths.detector(system)),
            _metric("metrics", paths.stage_metrics("selection", system)),
        ],
    ),
    Stage(
        "evaluate", "every method of one pair on the target's test split, label-free thresholds", "pair",
        "zerolog.evaluation.evaluate",
        deps=lambda params, paths, pair: [
            *[paths.tensors(system) for system in _pair_systems(params, pair)],
            paths.pair_scores(pair),
            paths.target_scores(params.pairs[pair].target),
            paths.selected_scores(params.pairs[pair].target),
        ],
        outputs=lambda params, paths, pair: [
            _metric("metrics", paths.pair_metrics(pair)),
            Output("details", paths.evaluation_details(pair), cache=False),
            Output("pr", paths.plots("evaluate", pair) / "pr", "plots", cache=False,
                   plot={"template": "simple", "x": "recall", "y": "precision"}),
            Output("confusion", paths.plots("evaluate", pair) / "confusion", "plots", cache=False,
                   plot={"template": "confusion", "x": "actual", "y": "predicted"}),
            Output("pr_curves", paths.plots("evaluate", pair) / "pr_curves.png", "plots", cache=False),
        ],
    ),
    Stage(
        "paper", "one pair under the published protocol: 1:1 classes, test = adaptation set, best epoch ORACLE",
        "paper_pair", "zerolog.evaluation.paper",
        deps=lambda params, paths, pair: [paths.tensors(system) for system in _pair_systems(params, pair)],
        outputs=lambda params, paths, pair: [
            _metric("metrics", paths.paper_metrics(pair)),
            Output("plots", paths.paper_plots(pair), "plots", cache=False,
                   plot={"template": "linear", "x": "epoch", "y": "target/f1"}),
        ],
    ),
    Stage(
        "diagnose", "which label-free signals rank anomalies in every labeled system (validation splits)", None,
        "zerolog.evaluation.signals",
        deps=lambda params, paths, _: [paths.tensors(system) for system in params.diagnose.systems],
        outputs=lambda params, paths, _: [
            Output("markdown", paths.report("transfer_signals.md"), cache=False),
            Output("numbers", paths.report("transfer_signals.json"), cache=False),
        ],
    ),
    Stage(
        "report", "the results table, the F1 heatmap and the README block", None,
        "zerolog.report",
        deps=lambda params, paths, _: [
            *[paths.evaluation_details(pair) for pair in params.pairs],
            *[paths.paper_metrics(pair) for pair in paper_pairs(params)],
            *[paths.detector(target) for target in _targets(params)],  # registered (zerolog.detection.registry)
            SERVED_MODEL_CODE,  # the registered model's code (MLflow models-from-code): a path, never imported here
        ],
        outputs=lambda params, paths, _: [
            Output("results", paths.report("results.md"), cache=False),
            Output("heatmap", paths.report("f1_heatmap.png"), "plots", cache=False),
        ],
    ),
]  # fmt: skip

STAGES_BY_NAME = {stage.name: stage for stage in STAGES}


def stage_named(name: str) -> Stage:
    if name not in STAGES_BY_NAME:
        raise ConfigError(f"unknown stage {name!r} (known: {', '.join(STAGES_BY_NAME)})")
    return STAGES_BY_NAME[name]


def run_stage(name: str, arguments: list[str]) -> None:
    """Run stage ``name`` for the item in ``arguments`` (none for a single stage); a ZerologError is one line."""
    stage = stage_named(name)
    usage = f"usage: python pipeline/{name}.py" + (f" {stage.each.upper()}" if stage.each else "")
    if len(arguments) != (1 if stage.each else 0) or (arguments and arguments[0] in ("-h", "--help")):
        sys.exit(usage)
    item = arguments[0] if arguments else ""
    paths = None
    try:
        params = load_params()
        paths = ArtifactPaths(params.paths)
        stage.call(params, item)
    except ZerologError as error:
        sys.exit(f"error: {error if paths is None else with_origins(str(error), paths)}")
