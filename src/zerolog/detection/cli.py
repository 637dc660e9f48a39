"""The ``zerolog detect`` command (also ``python -m zerolog detect``).

    zerolog detect LOGS... --system SYSTEM (--pair PAIR --method METHOD | --model models:/NAME/VERSION)
                   [--output FILE] [--format parquet|csv] [--workers N] [--dask | --scheduler ADDRESS]
                   [--params params.yaml] [--no-progress]

LOGS: log files, folders (every file below, sorted) or ``-`` (standard input). The settings come from the params file
(``detect``, ``parse.chunk_bytes``, ``mlflow``): the repository's ``params.yaml`` by default. A bad input or argument
is one line on standard error and exit status 1, with no output file left behind.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zerolog.config_loader import load_params
from zerolog.errors import ZerologError

DEFAULT_OUTPUT = "detections.parquet"


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="zerolog detect",
        description="Apply a trained detector to new raw logs: "
        "one row per session with its score, flag and the templates that weigh most.",
    )
    command.add_argument("logs", nargs="+", help="log files, folders, or - for standard input")
    command.add_argument("--system", required=True, help="the system the logs come from (params systems.<name>)")
    command.add_argument("--pair", help="a source->target pair of the last dvc repro (its target must be --system)")
    command.add_argument("--method", help="with --pair: zerolog, source_only, dann, meta, or the recommended detector")
    command.add_argument("--model", help="a registered detector, models:/<name>/<version> (instead of --pair/--method)")
    command.add_argument("--output", "-o", default=DEFAULT_OUTPUT, help=f"output file (default {DEFAULT_OUTPUT})")
    command.add_argument("--format", choices=("parquet", "csv"), help="output format (default: from the extension)")
    command.add_argument("--workers", type=int, default=1, help="processes parsing chunks (1: this process)")
    command.add_argument(
        "--dask", action="store_true", help="parse the chunks on a dask.distributed LocalCluster of --workers workers"
    )
    command.add_argument("--scheduler", help="parse the chunks on the Dask cluster at this address (tcp://host:8786)")
    command.add_argument("--params", default="params.yaml", help="params file (default params.yaml)")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    return command


def _output_format(arguments: argparse.Namespace) -> str:
    if arguments.format:
        return arguments.format
    return "csv" if Path(arguments.output).suffix.lower() == ".csv" else "parquet"


def run(arguments: argparse.Namespace) -> str:
    """Load the detector, run it, return the summary (every error a ZerologError)."""
    from zerolog.detection.detect import DetectOptions, run_detect, summary_text
    from zerolog.detection.loading import from_pipeline
    from zerolog.errors import ConfigError

    if bool(arguments.model) == bool(arguments.pair or arguments.method):
        raise ConfigError("name the detector: --pair PAIR --method METHOD, or --model models:/NAME/VERSION")
    if not arguments.model and not (arguments.pair and arguments.method):
        raise ConfigError("--pair and --method go together")
    if arguments.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {arguments.workers}")
    params = load_params(arguments.params)
    top = params.detect.top_templates
    if arguments.model:
        from zerolog.detection.registry import load_registered

        detector = load_registered(arguments.model, arguments.system, top, params.mlflow)
    else:
        detector = from_pipeline(params, arguments.system, arguments.pair, arguments.method, top)
    on_dask = arguments.dask or arguments.scheduler is not None
    options = DetectOptions(top, params.detect.partition_bytes, params.parse.chunk_bytes, arguments.workers,
                            _output_format(arguments), False if arguments.no_progress else None,
                            "dask" if on_dask else "processes", arguments.scheduler)  # fmt: skip
    return summary_text(run_detect(detector, arguments.logs, Path(arguments.output), options))


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    try:
        print(run(arguments))
    except ZerologError as error:
        sys.exit(f"error: {error}")
