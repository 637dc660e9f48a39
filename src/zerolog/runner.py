"""The one runner of every stage: typed section -> declared inputs -> pure core -> declared outputs and one record.

A stage (a row of ``zerolog.stages``) is three functions of its module and this runner:

- ``<stage>_section(params, item)``: the typed settings the stage receives (a frozen dataclass). The generator runs
  it on a recording view of params, so the keys it reads are exactly the params keys ``dvc.yaml`` declares;
- ``load_<stage>_inputs(section, paths)``: its inputs, read through the ``zerolog.artifacts`` readers of its deps;
- ``compute_<stage>(section, inputs) -> Result``: the computation. No output paths, no ``Tracker``, no atomic folders;
- the runner (``run``): opens every declared output atomically; records the result in MLflow when the section
  carries ``tracking`` (first, because score files and reports name the ids of the runs that made them); lets the
  result write into the temporary paths; commits the outputs only when all of that succeeded. A failure leaves every
  previous output as it was.

Why one runner: each stage used to build its own ``Tracker``, its own atomic folders and its own file layout, so a
reader needed four files to follow one stage, and a stage could write a file that ``dvc.yaml`` did not declare.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from zerolog.artifacts import ArtifactPaths
from zerolog.errors import ZerologError
from zerolog.io import atomic_directory, atomic_path, flatten

if TYPE_CHECKING:  # mlflow is imported only by the stages that record
    from zerolog.tracking import Tracker


class OutputError(ZerologError):
    """A stage asked for an output its declaration does not name, or left a declared one unwritten: a bug."""


class Outputs:
    """The temporary paths of a stage's declared outputs, by the name the stage table gives each
    (``outputs["tensors"]``): where the result writes it. The core never sees where an output finally lives.

    A file output gets a temporary file path; a folder output gets an empty temporary folder. Asking for a name that
    is not declared raises, and the runner raises when a declared output was never asked for: a stage writes exactly
    its declared outputs.
    """

    def __init__(self, stage: str, temporary: Mapping[str, Path]) -> None:
        self._stage = stage
        self._temporary = dict(temporary)
        self.written: set[str] = set()

    def __getitem__(self, name: str) -> Path:
        if name not in self._temporary:
            declared = ", ".join(self._temporary)
            raise OutputError(f"stage {self._stage} wrote output {name!r}, which it does not declare ({declared})")
        self.written.add(name)
        return self._temporary[name]

    def unwritten(self) -> list[str]:
        return [name for name in self._temporary if name not in self.written]


class Result(Protocol):
    """What a stage's core returns."""

    def write(self, outputs: Outputs) -> None:
        """Write every declared output into ``outputs[name]``."""

    def metrics(self) -> Mapping[str, Any]:
        """The stage's numbers: logged (numeric leaves, dotted keys) into the stage's MLflow run."""


@runtime_checkable
class Tracked(Protocol):
    """A result that logs more than its metrics (models, per-seed runs, figures) into the stage's MLflow run."""

    def track(self, tracker: Tracker, run_id: str) -> None: ...


@runtime_checkable
class OwnRuns(Protocol):
    """A result whose MLflow runs are its own, one per method and seed (train, paper), and no stage run: the runner
    has it track them BEFORE it writes, since its outputs name the runs' ids."""

    def track_runs(self, tracker: Tracker) -> None: ...


@dataclass(frozen=True)
class Run:
    """One stage invocation as the runner sees it (the stage table builds it from a row)."""

    stage: str
    item: str
    section: Any  # the stage's own frozen dataclass
    paths: ArtifactPaths  # where the declared inputs live (the core never sees it)
    load: Callable[[Any, ArtifactPaths], Any]  # (section, paths) -> inputs: the artifacts readers of the declared deps
    core: Callable[[Any, Any], Result]  # (section, inputs) -> result
    outputs: dict[str, Path]  # every declared output (outs, metrics and plots alike) by name


def is_folder(path: Path) -> bool:
    """A declared output without a suffix is a folder (``tensors/hdfs``), one with a suffix a file."""
    return Path(path).suffix == ""


@contextlib.contextmanager
def _temporary_outputs(stage: str, declared: Mapping[str, Path]) -> Iterator[Outputs]:
    with contextlib.ExitStack() as stack:
        temporary = {
            name: stack.enter_context(atomic_directory(path) if is_folder(path) else atomic_path(path))
            for name, path in declared.items()
        }
        outputs = Outputs(stage, temporary)
        yield outputs
        missing = outputs.unwritten()
        if missing:
            raise OutputError(f"stage {stage} did not write its declared output(s) {', '.join(map(str, missing))}")


def _record(run: Run, result: Result) -> None:
    """When the section carries ``tracking``: one MLflow run per stage invocation with the result's metrics and what
    the result logs itself (``Tracked``), or, for a result with ``OwnRuns``, its own runs only."""
    tracking = getattr(run.section, "tracking", None)
    if tracking is None:
        return
    from zerolog.tracking import Tracker, flatten_params

    tracker = Tracker(tracking)
    if isinstance(result, OwnRuns):
        result.track_runs(tracker)
        return
    name = f"{run.stage} {run.item}".strip()
    settings = {key: value for key, value in vars(run.section).items() if key != "tracking"}
    with tracker.run(name, {"stage": run.stage, "item": run.item}, flatten_params(settings)) as run_id:
        tracker.log_metrics(run_id, flatten(dict(result.metrics())))  # log_metrics keeps the finite numbers
        if isinstance(result, Tracked):
            result.track(tracker, run_id)


def run(stage: Run) -> Result:
    """Load, compute, write the declared outputs atomically and record; returns the result (tests read it)."""
    inputs = stage.load(stage.section, stage.paths)
    result = stage.core(stage.section, inputs)
    with _temporary_outputs(stage.stage, stage.outputs) as outputs:
        _record(stage, result)  # before write: outputs name the ids of the runs logged (score files, details)
        result.write(outputs)
    return result
