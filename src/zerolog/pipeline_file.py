"""Generate ``dvc.yaml`` from the stage table (zerolog.stages) and params.yaml.

    python -m zerolog.pipeline_file            # write dvc.yaml (make run does this first)
    python -m zerolog.pipeline_file --check    # exit 1 when dvc.yaml differs from what params and code give

Each stage of ``zerolog.stages`` becomes one DVC stage per item (``train-hdfs-bgl``), with
- ``params``: the keys its ``arguments`` function reads, recorded on a read-only view of params
  (zerolog.params_access);
- ``deps``: its ``pipeline/<stage>.py``, every project module its function's module imports, directly or not
  (read from the source with ``ast``, imports inside functions included), and its data inputs;
- ``outs`` / ``metrics`` / ``plots``: as the table declares them.
The stage table itself (zerolog.stages), the CLI glue and this generator are left out of the code deps: they decide
what DVC tracks (params, deps, outs), which DVC compares by itself, not what a stage computes.
"""

from __future__ import annotations

import argparse
import ast
import functools
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

import zerolog
from zerolog.artifacts import ArtifactPaths
from zerolog.config import ConfigError, Params
from zerolog.config_loader import load_params
from zerolog.errors import ZerologError
from zerolog.io import write_text
from zerolog.params_access import RecordingParams, minimal_keys, unwrap
from zerolog.stages import STAGES, Output, Stage

DVC_FILE = Path("dvc.yaml")
PACKAGE_ROOT = Path(zerolog.__file__).resolve().parent  # src/zerolog
#: Modules that decide what DVC tracks, not what a stage computes (module docstring).
NOT_CODE_DEPS = frozenset({"zerolog.stages", "zerolog.pipeline_file", "zerolog.params_access"})
HEADER = (
    "# GENERATED from src/zerolog/stages.py and params.yaml by `python -m zerolog.pipeline_file` (make run does it).\n"
    "# Do not edit by hand: change the stage table or params.yaml, then regenerate. A test fails when it is stale.\n"
)


# ----------------------------------------------------------------------------- code deps


def module_file(module: str) -> Path | None:
    """The source file of a ``zerolog`` module or package, or None when there is none."""
    parts = module.split(".")[1:]
    base = PACKAGE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _imported_modules(path: Path) -> tuple[str, ...]:
    return tuple(_imports_in(path))


def _imports_in(path: Path) -> Iterator[str]:
    """Every ``zerolog`` module that ``path`` imports, anywhere in the file (``from a import b`` may name module b)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] == "zerolog")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "zerolog":
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _with_packages(module: str) -> list[str]:
    """``zerolog.a.b`` and the packages that importing it runs: ``zerolog``, ``zerolog.a``."""
    parts = module.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts) + 1)]


@functools.cache
def import_closure(module: str) -> tuple[Path, ...]:
    """Source files of ``module`` and of every project module it imports, directly or not, sorted."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        for name in _with_packages(pending.pop()):
            if name in seen or name in NOT_CODE_DEPS:
                continue
            path = module_file(name)
            if path is None:
                continue
            seen.add(name)
            pending.extend(_imported_modules(path))
    return tuple(sorted(path for path in map(module_file, seen) if path is not None))


# ----------------------------------------------------------------------------- one stage


def recorded_params(stage: Stage, params: Params, item: str) -> list[str]:
    """The params keys ``stage``'s arguments read for ``item``."""
    view = RecordingParams(params)
    unwrap(stage.build_section(view, item))
    return minimal_keys(view.recorded)


def _relative(path: Path, root: Path) -> str:
    path = Path(path)
    return str(path.resolve().relative_to(root) if path.is_absolute() else path)


def _output_entry(output: Output) -> Any:
    options: dict[str, Any] = {}
    if not output.cache:
        options["cache"] = False
    if output.persist:
        options["persist"] = True
    options.update(output.plot)
    return {str(output.path): options} if options else str(output.path)


def stage_entry(stage: Stage, params: Params, item: str, root: Path) -> dict[str, Any]:
    """The ``dvc.yaml`` entry of ``stage`` for ``item``."""
    paths = ArtifactPaths(params.paths)
    code = [f"pipeline/{stage.name}.py", *(_relative(path, root) for path in import_closure(stage.module))]
    data = [str(path) for path in stage.deps(params, paths, item)]
    entry: dict[str, Any] = {
        "cmd": f"python pipeline/{stage.name}.py {item}".rstrip(),
        "deps": list(dict.fromkeys([*code, *data])),
        "params": recorded_params(stage, params, item),
    }
    for kind in ("outs", "metrics", "plots"):
        chosen = [_output_entry(output) for output in stage.outputs(params, paths, item) if output.kind == kind]
        if chosen:
            entry[kind] = chosen
    return entry


def pipeline_definition(params: Params, root: Path) -> dict[str, Any]:
    """The whole ``dvc.yaml`` as a mapping."""
    stages: dict[str, Any] = {}
    for stage in STAGES:
        for item in stage.items(params):
            name = stage.dvc_name(item)
            if name in stages:
                raise ConfigError(f"{params.source_file}: {stage.each} {item!r} gives DVC stage name {name!r} twice")
            stages[name] = stage_entry(stage, params, item, root)
    return {"stages": stages}


def render(params: Params, root: Path) -> str:
    body = yaml.safe_dump(pipeline_definition(params, root), sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate dvc.yaml from the stage table and params.yaml.")
    parser.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml is stale, writing nothing")
    arguments = parser.parse_args(argv)
    try:
        text = render(load_params(), Path.cwd().resolve())
    except ZerologError as error:
        sys.exit(f"error: {error}")
    current = DVC_FILE.read_text(encoding="utf-8") if DVC_FILE.is_file() else ""
    if arguments.check:
        if current != text:
            sys.exit(f"error: {DVC_FILE} is stale: run `python -m zerolog.pipeline_file` (make pipeline)")
        return
    if current != text:
        write_text(DVC_FILE, text)
        print(f"{DVC_FILE}: written ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
