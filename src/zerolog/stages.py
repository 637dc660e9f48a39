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

import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zerolog.artifacts import ArtifactPaths, with_origins
from zerolog.config import ConfigError, Params, load_params
from zerolog.data.download import glob_root
from zerolog.errors import ZerologError
from zerolog import runner
from zerolog.params_access import declared, unwrap

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

    ``section``, ``load`` and ``core`` name the stage's three functions (``module:function``, all in the stage's
    module, imported only when the stage runs): the typed settings it receives (built from params; the generator
    records the keys read, which become the stage's params in ``dvc.yaml``), the reader of its declared deps and its
    pure computation. zerolog.runner runs them and writes ``outputs``.
    """

    name: str
    summary: str
    each: Each | None
    section: str  # "module:function": (params, item) -> the stage's typed section
    load: str  # "module:function": (section, ArtifactPaths) -> inputs
    core: str  # "module:function": (section, inputs) -> zerolog.runner.Result
    deps: Callable[[Params, ArtifactPaths, str], list[Path]]
    outputs: Callable[[Params, ArtifactPaths, str], list[Output]]
    # TRANSITION (removed when every stage is converted): the old entry, (params view, item) -> keyword arguments
    legacy_function: str = ""
    legacy_arguments: Callable[[Any, str], dict[str, Any]] | None = None

    @property
    def module(self) -> str:
        return (self.core or self.legacy_function).split(":")[0]

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
        if self.legacy_arguments is not None:
            return self.legacy_arguments(params, item)
        return _resolve(self.section)(params, item)

    def call(self, params: Params, item: str) -> Any:
        """Run the stage for ``item`` through the one runner; returns its result."""
        if self.each and item not in self.items(params):
            raise ConfigError(f"{params.source_file}: {self.each} {item!r} is not in params (stage {self.name})")
        if self.legacy_arguments is not None:
            return _resolve(self.legacy_function)(**self.legacy_arguments(params, item))
        paths = ArtifactPaths(params.paths)
        outputs = {output.name: output.path for output in self.outputs(params, paths, item)}
        invocation = runner.Run(self.name, item, self.build_section(params, item), paths, _resolve(self.load),
                                _resolve(self.core), outputs)  # fmt: skip
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


def _download_arguments(params: Any, dataset: str) -> dict[str, Any]:
    return {"params": declared(params, ["data", f"datasets.{dataset}"], "download"), "name": dataset}


def _parse_arguments(params: Any, dataset: str) -> dict[str, Any]:
    system = params.datasets[dataset].system
    keys = ["parse", f"datasets.{dataset}"]
    keys += [f"systems.{system}.{key}" for key in ("log_format", "regex", "timestamp", "drain")]
    return {"params": declared(params, keys, "parse"), "name": dataset}


def _sessionize_arguments(params: Any, dataset: str) -> dict[str, Any]:
    return {"params": declared(params, ["seed", "sessionize", f"datasets.{dataset}"], "sessionize"), "name": dataset}


def _embed_arguments(params: Any, _: str) -> dict[str, Any]:
    return {"config": params.embed, "tracking": params.mlflow, "paths": _paths(params)}


def _paths(params: Any) -> ArtifactPaths:
    return ArtifactPaths(unwrap(params.paths))


def _baselines_arguments(params: Any, system: str) -> dict[str, Any]:
    keys = [
        "seed",
        "train",
        "evaluate.baselines",
        "evaluate.detectors",
        "evaluate.oracle",
        "evaluate.level_rule",
        "mlflow",
    ]
    return {"params": declared(params, keys, "baselines"), "system": system, "seeds": params.seeds}


def _select_arguments(params: Any, system: str) -> dict[str, Any]:
    # the bundle (zerolog.detection.fit): the system's params as its dataset reads them, the members' settings
    dataset = params.systems[system].dataset
    keys = [
        "selection",
        "seed",
        "seeds",
        "mlflow",
        "systems",
        f"datasets.{dataset}",
        "parse.max_unmatched_share",
        "evaluate.detectors.pca",
        "evaluate.detectors.loglead",
    ]
    return {"params": declared(params, keys, "selection"), "system": system}


def _evaluate_arguments(params: Any, pair: str) -> dict[str, Any]:
    return {"pair": pair, "pair_config": params.pairs[pair], "config": params.evaluate, "seed": params.seed,
            "seeds": params.seeds, "tracking": params.mlflow, "paths": _paths(params)}  # fmt: skip


def _diagnose_arguments(params: Any, _: str) -> dict[str, Any]:
    return {"config": params.diagnose, "embed": params.embed, "seed": params.seed, "paths": _paths(params)}


def _report_arguments(params: Any, _: str) -> dict[str, Any]:
    paper = params.paper if "paper" in params.protocols else None  # the paper protocol's section, when measured
    return {"pairs": params.pairs, "evaluate": params.evaluate, "paper": paper, "tracking": params.mlflow,
            "paths": _paths(params), "detect": params.detect, "chunk_bytes": params.parse.chunk_bytes}  # fmt: skip


def _targets(params: Params) -> list[str]:
    return list(dict.fromkeys(pair.target for pair in params.pairs.values()))


STAGES: list[Stage] = [
    Stage(
        "download", "copy (bundled) or fetch (loghub) one dataset", "dataset",
        "", "", "", legacy_function="zerolog.data.download:download_dataset", legacy_arguments=_download_arguments,
        deps=lambda params, paths, dataset: _bundled_files(params, dataset),
        outputs=lambda params, paths, dataset: [Output("raw", paths.raw(dataset))],
    ),
    Stage(
        "parse", "parse one dataset's logs into lines and templates", "dataset",
        "", "", "", legacy_function="zerolog.data.parse:parse_dataset", legacy_arguments=_parse_arguments,
        deps=lambda params, paths, dataset: [paths.raw(dataset)],
        outputs=lambda params, paths, dataset: [
            Output("parsed", paths.parsed(dataset)), Output("report", paths.data_report("parse", dataset), cache=False)
        ],
    ),
    Stage(
        "sessionize", "group one dataset's lines into labeled, split sessions", "dataset",
        "", "", "", legacy_function="zerolog.data.sessionize:sessionize_dataset", legacy_arguments=_sessionize_arguments,
        deps=lambda params, paths, dataset: [paths.raw(dataset), paths.parsed(dataset)],
        outputs=lambda params, paths, dataset: [
            Output("sessions", paths.sessions(dataset)), Output("report", paths.data_report("sessionize", dataset), cache=False)
        ],
    ),
    Stage(
        "embed", "embed every template of every dataset into one semantic space", None,
        "", "", "", legacy_function="zerolog.features.embed:embed_templates", legacy_arguments=_embed_arguments,
        deps=lambda params, paths, _: [paths.sessions(dataset) for dataset in params.datasets],
        outputs=lambda params, paths, _: [
            Output("vectors", paths.template_vectors(), persist=True), Output("report", paths.data_report("embed", "embed"), cache=False)
        ],
    ),
    Stage(
        "tensors", "one system's sessions as padded template-index sequences, labels, splits, counts", "system",
        "zerolog.features.tensors:tensors_section", "zerolog.features.tensors:load_tensor_inputs",
        "zerolog.features.tensors:compute_tensors",
        deps=lambda params, paths, system: [
            paths.sessions(params.systems[system].dataset), paths.template_vectors()
        ],
        outputs=lambda params, paths, system: [
            Output("tensors", paths.tensors(system)), Output("report", paths.data_report("tensors", system), cache=False)
        ],
    ),
    Stage(
        "train", "every transfer method on one source->target pair", "pair",
        "zerolog.training.pipeline:train_section", "zerolog.training.pipeline:load_train_inputs",
        "zerolog.training.pipeline:compute_train",
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
        "system",
        "", "", "", legacy_function="zerolog.evaluation.baselines:run_target_baselines", legacy_arguments=_baselines_arguments,
        deps=lambda params, paths, system: [paths.tensors(system)],
        outputs=lambda params, paths, system: [Output("scores", paths.target_scores(system))],
    ),
    Stage(
        "selection", "one system's detector recipe, chosen on the OTHER labeled systems (leave-one-system-out)",
        "system",
        "", "", "", legacy_function="zerolog.detection.fit:run_select_stage", legacy_arguments=_select_arguments,
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
        "", "", "", legacy_function="zerolog.evaluation.evaluate:evaluate_pair", legacy_arguments=_evaluate_arguments,
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
        "paper_pair", "zerolog.evaluation.paper:paper_section", "zerolog.evaluation.paper:load_paper_inputs",
        "zerolog.evaluation.paper:compute_paper",
        deps=lambda params, paths, pair: [paths.tensors(system) for system in _pair_systems(params, pair)],
        outputs=lambda params, paths, pair: [
            _metric("metrics", paths.paper_metrics(pair)),
            Output("plots", paths.paper_plots(pair), "plots", cache=False,
                   plot={"template": "linear", "x": "epoch", "y": "target/f1"}),
        ],
    ),
    Stage(
        "diagnose", "which label-free signals rank anomalies in every labeled system (validation splits)", None,
        "", "", "", legacy_function="zerolog.evaluation.signals:diagnose", legacy_arguments=_diagnose_arguments,
        deps=lambda params, paths, _: [paths.tensors(system) for system in params.diagnose.systems],
        outputs=lambda params, paths, _: [
            Output("markdown", paths.report("transfer_signals.md"), cache=False),
            Output("numbers", paths.report("transfer_signals.json"), cache=False),
        ],
    ),
    Stage(
        "report", "the results table, the F1 heatmap and the README block", None,
        "", "", "", legacy_function="zerolog.report:build_report", legacy_arguments=_report_arguments,
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
