"""Benchmark of ``zerolog detect`` on the full-size generated HDFS log: lines/s and peak memory beside the parse
stage's engine on the same input (issues 13, 20).

What one run does (``make bench-detect`` = ``python bench/detect.py``):

1. A detector to apply: the pipeline's own stages (download, parse, sessionize, embed with ``hashing``, tensors,
   baselines of every system, then selection of hdfs: its recipe chosen on the other systems' labels) on the
   bundled data, system ``hdfs`` on its raw dataset ``hdfs_logs`` (the default ``hdfs_deeplog`` is pre-parsed, no
   raw lines to read again), in ``--work``/pipeline, outputs and MLflow store there; the supervised oracle as
   logistic regression (the bench measures detect, not the baselines). Cached.
2. The input: bench/generate.py with ``--block-reuse 20``, as ``make bench`` makes it (default HDFS_v1's 11,175,629
   lines, about 614k sessions of about 20 lines). Cached in ``--work``.
3. ``zerolog detect`` of the whole input with the system's recommended detector (``evaluate.recommended``) on
   ``--workers`` parsing processes, in a subprocess measured as bench/run.py measures its steps (``run_measured``:
   wall time, summed RSS of the process tree and each process's high-water mark, sampled every 0.1 s).
4. The parse stage's engine (``stream_parse_files``, the stage's default Dask LocalCluster of ``--workers``
   workers) on the same input, measured the same way: the report gives detect's lines/s over the parse's.
5. ``--profile N`` (default 25): detect once more with one process under cProfile; the report lists the N
   functions with the most own time (where a change would pay).

The HDFS_2k detector sees sessions of 1-2 lines in training; the generated blocks are about 20 lines long, so it
flags most of them: the bench measures throughput and memory, not detection quality.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import json
import pstats
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPOSITORY = BENCH.parent
SYSTEM, DATASET, PAIR = "hdfs", "hdfs_logs", "bgl-hdfs"  # a pair whose target is hdfs names its target-only detector


def child_detect(arguments: dict[str, Any]) -> dict[str, Any]:
    """The command's own functions, in the measured subprocess; the summary goes to the step's log."""
    from zerolog.config_loader import load_params
    from zerolog.detection.detect import DetectOptions, run_detect, summary_text
    from zerolog.detection.loading import from_pipeline

    params = load_params(arguments["params"])
    method = params.evaluate.recommended
    detector = from_pipeline(params, SYSTEM, PAIR, method, params.detect.top_templates)
    options = DetectOptions(params.detect.top_templates, params.detect.partition_bytes, params.parse.chunk_bytes,
                            arguments["workers"], "parquet", False)  # fmt: skip
    profiler = cProfile.Profile() if arguments.get("profile") else None
    with profiler or contextlib.nullcontext():
        result = run_detect(detector, [arguments["input"]], Path(arguments["output"]), options)
    print(summary_text(result), flush=True)
    counts = result.counts
    measured = {
        "method": method,
        "lines": counts.total("lines"),
        "sessions": counts.sessions,
        "flagged": counts.flagged,
        "seconds": result.seconds,
        "peak_rss_client_mib": result.peak_rss_mib,
    }
    if profiler is not None:  # the functions that took most time, their own time first (cProfile's tottime)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime").print_stats(arguments["profile"])
        measured["profile"] = text.getvalue()[text.getvalue().index("ncalls") :].rstrip()
    return measured


def build_detector(work: Path) -> Path:
    """Step 1: the params file of a small pipeline whose baselines stage persisted the hdfs detector."""
    import yaml

    from zerolog.artifacts import ArtifactPaths
    from zerolog.config import as_dict
    from zerolog.config_loader import parse_params, read_yaml
    from zerolog.stages import stage_named

    folder = work / "pipeline"
    params_file = folder / "params.yaml"
    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"))
    raw["paths"] = {**raw["paths"], **{key: str(folder / key) for key in raw["paths"] if key != "bundled"},
                    "bundled": str(REPOSITORY / raw["paths"]["bundled"])}  # fmt: skip
    raw["systems"][SYSTEM]["dataset"] = DATASET
    raw["embed"]["method"] = "hashing"
    raw["evaluate"]["oracle"]["model"] = "logistic_regression"
    raw["mlflow"]["tracking_uri"] = f"sqlite:///{folder / 'mlflow.db'}"
    params = parse_params(raw, str(params_file))
    if (ArtifactPaths(params.paths).detector(SYSTEM) / "detector.json").is_file() and params_file.is_file():
        return params_file
    folder.mkdir(parents=True, exist_ok=True)
    for system in params.systems.values():  # the selection stage picks hdfs's recipe on the OTHER systems' labels
        for stage in ("download", "parse", "sessionize"):
            stage_named(stage).call(params, system.dataset)
    stage_named("embed").call(params, "")
    for system_name in params.systems:
        stage_named("tensors").call(params, system_name)
        stage_named("baselines").call(params, system_name)
    stage_named("selection").call(params, SYSTEM)
    params_file.write_text(yaml.safe_dump(as_dict(params), sort_keys=False), encoding="utf-8")
    return params_file


def report(arguments: argparse.Namespace, argv: list[str], machine: dict[str, str], measurement: Any, parse: Any,
           input_path: Path) -> str:  # fmt: skip
    from run import _number, lines_per_second

    result = measurement.result
    seconds = result.get("seconds") or measurement.wall_seconds
    lines = result.get("lines")
    detect_rate, parse_rate = lines_per_second(measurement), lines_per_second(parse)
    ratio = detect_rate / parse_rate if detect_rate and parse_rate else None
    parse_workers = parse.result.get("parallel", {}).get("pool", "?")
    workers = [f"{peak:,.0f}" for _, (role, peak) in sorted(measurement.process_peaks.items()) if role == "worker"]
    command = " ".join(["python bench/detect.py", *argv])
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        "# Benchmark: zerolog detect (bench/detect.py)", "", f"Command: `{command}`  ", f"Date: {when}", "",
        "## Machine", "", *[f"- {key}: {value}" for key, value in machine.items()], "",
        "The machine is shared (see the load average): lines/s are of this run, on a loaded machine.", "",
        "## zerolog detect on the whole generated input", "",
        "| input | detector | workers | lines | sessions | flagged | wall s | lines/s | peak RSS tree MiB "
        "| peak RSS largest process MiB | peak RSS per worker MiB | status |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        f"| {input_path.name} | {result.get('method', '?')} of {SYSTEM} (fit on {DATASET}) | {arguments.workers} "
        f"| {_number(lines)} | {_number(result.get('sessions'))} | {_number(result.get('flagged'))} "
        f"| {_number(measurement.wall_seconds, 1)} | {_number(lines / seconds if lines and seconds else None)} "
        f"| {_number(measurement.peak_tree_mib)} | {_number(measurement.peak_process_mib)} "
        f"| {' / '.join(workers) or '–'} | {measurement.status} |",
        "", "lines/s: the run's own time (detector load, parse, spill, sessions, scores, output), without the "
        "interpreter start. The detector was chosen and fit on the bundled 2k-line samples, whose HDFS sessions have "
        "1-2 lines; the generated blocks have about 20: this measures throughput and memory, not detection.", "",
        "## The parse stage's engine on the same input, in the same run", "",
        "| input | engine | lines | wall s | lines/s | peak RSS tree MiB | status |",
        "|---|---|---:|---:|---:|---:|---|",
        f"| {input_path.name} | parse (stream_parse_files, {parse_workers}) | {_number(parse.result.get('lines'))} "
        f"| {_number(parse.wall_seconds, 1)} | {_number(parse_rate)} | {_number(parse.peak_tree_mib)} "
        f"| {parse.status} |", "",
        f"zerolog detect / parse lines/s: **{_number(ratio, 2)}** (goal, issue 20: 0.8 or more). Both whole runs: "
        "the parse's pool start, sample, map and parts written; detect's as above.", "",
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    command.add_argument("--lines", type=int, default=11_175_629, help="lines of the generated input (HDFS_v1's)")
    command.add_argument("--block-reuse", type=int, default=20, help="bench/generate.py --block-reuse")
    command.add_argument("--workers", type=int, default=2, help="zerolog detect --workers")
    command.add_argument("--memory-limit-gb", type=float, default=10.0, help="stop the run past this tree RSS")
    command.add_argument("--timeout", type=float, default=3600.0, help="stop the run past this many seconds")
    command.add_argument("--work", type=Path, default=BENCH / "output", help="inputs and outputs (ignored by git)")
    command.add_argument("--output", type=Path, default=BENCH / "detect_results.md", help="markdown report")
    command.add_argument(
        "--profile",
        type=int,
        default=25,
        help="also profile detect in one process (cProfile, workers 1: the chunks' work included) "
        "and report this many top functions; 0: no profile run",
    )
    arguments = command.parse_args(argv)
    sys.path[:0] = [str(REPOSITORY / "src"), str(BENCH)]  # this checkout's zerolog, as run_measured gives the child
    import generate
    from run import machine_description, run_measured

    arguments.work.mkdir(parents=True, exist_ok=True)
    params_file = build_detector(arguments.work)
    input_path = arguments.work / f"HDFS_{arguments.lines}_reuse{arguments.block_reuse}.log"
    if not input_path.is_file():
        print(f"generating {input_path.name} ({arguments.lines:,} lines) ...", flush=True)
        generate.generate(input_path, arguments.lines, None, arguments.block_reuse)
    machine = machine_description()
    child = {"params": str(params_file), "input": str(input_path), "workers": arguments.workers,
             "output": str(arguments.work / "detections.parquet")}  # fmt: skip
    parse_child = {
        "params": str(params_file),
        "log": str(input_path),
        "scratch": str(arguments.work / "parse-output"),
        "backend": "dask",
        "workers": arguments.workers,
    }  # the parse stage's engine and default backend
    parse = run_measured("parse", sys.executable, "parse", parse_child, arguments.work, arguments.memory_limit_gb,
                         arguments.timeout)  # fmt: skip
    measurement = run_measured("detect", sys.executable, "detect", child, arguments.work, arguments.memory_limit_gb,
                               arguments.timeout, script=Path(__file__).resolve())  # fmt: skip
    profiled = None
    if arguments.profile:
        profile_child = {**child, "workers": 1, "profile": arguments.profile}
        profiled = run_measured(
            "detect-profile",
            sys.executable,
            "detect",
            profile_child,
            arguments.work,
            arguments.memory_limit_gb,
            arguments.timeout,
            script=Path(__file__).resolve(),
        )
    machine["load average at end"] = " ".join(f"{value:.2f}" for value in __import__("os").getloadavg())
    text = report(arguments, argv, machine, measurement, parse, input_path)
    if profiled is not None and profiled.status == "ok":
        text += "\n".join(
            [
                "",
                "## Where detect's time goes (cProfile, one process)",
                "",
                f"`zerolog detect` of the same input with `--workers 1` under cProfile ({profiled.wall_seconds:.1f} s "
                "wall, profiler overhead included), the top functions by their own time:",
                "",
                "```",
                profiled.result["profile"],
                "```",
                "",
            ]
        )
    arguments.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        result = child_detect(json.loads(sys.argv[3]))
        Path(sys.argv[4]).write_text(json.dumps(result), encoding="utf-8")
    else:
        main()
