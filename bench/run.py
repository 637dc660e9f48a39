"""Benchmark of the full-size path: throughput and peak memory of the parse (logparser3 Drain, our engine in one
process, on a process pool and on a Dask LocalCluster) and of the stages after it, side by side in one run.

What one run does (``make bench`` = ``python bench/run.py``), every measured step in its own subprocess:

1. Generate the input (bench/generate.py, cached in ``--work``): ``--lines`` lines (default HDFS_v1's 11,175,629)
   with ``--block-reuse 20`` (HDFS_v1-like blocks: about 614k sessions of about 20 lines; the parse does not see
   block ids, they are masked), and its first ``--drain-lines`` lines as a prefix file.
2. Parse the prefix with (a) logparser3's Drain as is (``LogParser.parse``: pandas load, ``iterrows`` loop, CSV
   output), (b) the parse stage's engine in one process (``parse.parallel.workers: 1``), (c) drain3 if
   ``--drain3-python`` names a Python with drain3 installed (a separate venv: drain3 pins cachetools 4.2.1, which
   clashes with mlflow). logparser3 is too slow for the whole file, hence the prefix.
3. Parse the whole input with the engine on ``--workers`` workers (default: one per core), twice: (d) on a local
   process pool (``parse.parallel.backend: processes``), (e) on a Dask LocalCluster (``backend: dask``, the
   default; its output is the parse stage of step 4). Same input, same chunks, same workers: the ratio of their
   lines/s, lines/s per worker, and the peak RSS of each worker process.
4. On the whole input: sessionize, ``--repeats`` times on each of (f) a process pool and (g) a Dask LocalCluster
   (``sessionize.parallel``: the parts of lines.parquet read and keyed by the workers, merged by the client), then
   embed (hashing: the bench measures the session stages, not the model load), tensors, one training epoch
   (``train.epochs`` = 1, method ``source_only`` on the generated HDFS).

Reported per step: wall seconds, lines/s (or sessions/s), lines/s over the first and last 10% of the parse loop
(Drain is known to slow down on long files, logpai/logparser issue 33), peak RSS of the process tree (sum over
the processes, sampled every 0.1 s with psutil), of the largest single process and of each worker process (their
``VmHWM`` high-water marks, sampled). A stage over ``--memory-limit-gb`` or ``--stage-timeout`` is stopped and
reported as such. The tables go to stdout and ``--output`` (bench/results.md) with the machine description.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
BENCH = REPOSITORY / "bench"

#: Shares of the parse loop over which the start and end throughput are measured.
EDGE_SHARE = 0.1


# ============================================================================= children (run in subprocesses)


def _progress_rates(events: list[tuple[int, float]], total: int) -> dict[str, float | None]:
    """Lines/s over the first and last ``EDGE_SHARE`` of the lines, from (lines done, seconds) events.

    ``events`` starts with (0, loop start) and ends with (total, loop end); the rate of the first share runs from
    the start to the first event at or past ``EDGE_SHARE · total`` lines, the last share from the last event at
    or before ``(1 − EDGE_SHARE) · total`` lines to the end.
    """
    if total <= 0 or len(events) < 2:
        return {"first_rate": None, "last_rate": None}
    start_lines, start_time = events[0]
    head = next((event for event in events[1:] if event[0] >= EDGE_SHARE * total), events[-1])
    tail = next((event for event in reversed(events[:-1]) if event[0] <= (1 - EDGE_SHARE) * total), events[0])
    end_lines, end_time = events[-1]

    def rate(lines: int, seconds: float) -> float | None:
        return lines / seconds if seconds > 0 else None

    return {
        "first_rate": rate(head[0] - start_lines, head[1] - start_time),
        "last_rate": rate(end_lines - tail[0], end_time - tail[1]),
        "first_lines": head[0] - start_lines,
        "last_lines": end_lines - tail[0],
    }


def child_logparser3(arguments: dict[str, Any]) -> dict[str, Any]:
    """logparser3's Drain exactly as its users run it: ``LogParser(...).parse(file)``."""
    import contextlib
    import io

    from logparser.Drain import LogParser

    started = time.perf_counter()
    log = Path(arguments["log"])
    output = Path(arguments["scratch"])
    output.mkdir(parents=True, exist_ok=True)
    parser = LogParser(
        log_format=arguments["log_format"],
        indir=str(log.parent),
        outdir=str(output),
        depth=arguments["depth"],
        st=arguments["st"],
        rex=arguments["regex"],
    )
    events: list[tuple[int, float]] = []
    loaded = parser.load_data

    def timed_load() -> None:
        loaded()
        events.append((0, time.perf_counter() - started))

    parser.load_data = timed_load

    class ProgressTap(io.TextIOBase):
        """Turns logparser3's "Processed X% of log lines." prints into (lines, seconds) events."""

        def write(self, text: str) -> int:
            if text.startswith("Processed") and parser.df_log is not None:
                share = float(text.split()[1].rstrip("%")) / 100
                events.append((round(share * len(parser.df_log)), time.perf_counter() - started))
            return len(text)

    with contextlib.redirect_stdout(ProgressTap()):
        parser.parse(log.name)
    seconds = time.perf_counter() - started
    total = len(parser.df_log)
    templates = parser.df_log["EventTemplate"].nunique()
    return {
        "lines": total,
        "seconds": seconds,
        "templates": int(templates),
        "load_seconds": events[0][1] if events else None,
        "loop_seconds": events[-1][1] - events[0][1] if len(events) > 1 else None,
        **_progress_rates(events, total),
    }


def child_drain3(arguments: dict[str, Any]) -> dict[str, Any]:
    """drain3 (a separate venv: only the standard library and drain3 here) over the same messages."""
    import re

    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    started = time.perf_counter()
    config = TemplateMinerConfig()
    config.drain_depth = arguments["depth"]
    config.drain_sim_th = arguments["st"]
    config.masking_instructions = [MaskingInstruction(pattern, "*") for pattern in arguments["regex"]]
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    header = re.compile(arguments["header_regex"])
    events = [(0, time.perf_counter() - started)]
    total = 0
    with open(arguments["log"], encoding="utf-8", errors="replace") as handle:
        for total, line in enumerate(handle, start=1):
            found = header.match(line.strip())
            if found is not None:
                miner.add_log_message(found.group("Content"))
            if total % 10_000 == 0:
                events.append((total, time.perf_counter() - started))
    events.append((total, time.perf_counter() - started))
    return {
        "lines": total,
        "seconds": time.perf_counter() - started,
        "templates": len(miner.drain.clusters),
        **_progress_rates(events, total),
    }


def child_parse(arguments: dict[str, Any]) -> dict[str, Any]:
    """The parse engine on one file (``stream_parse_files``) with the given backend and workers, or (``dataset``)
    the parse stage of the bench pipeline."""
    from zerolog.config import ParallelConfig
    from zerolog.config_loader import load_params
    from zerolog.data.stream_parse import line_layout, new_miner, stream_parse_files
    from zerolog.stages import stage_named

    started = time.perf_counter()
    params = load_params(arguments["params"])
    parallel = ParallelConfig(backend=arguments["backend"], workers=arguments["workers"], scheduler_address=None)
    params = dataclasses.replace(params, parse=dataclasses.replace(params.parse, parallel=parallel))
    events: list[tuple[int, float]] = [(0, time.perf_counter() - started)]

    def progress(lines: int) -> None:
        events.append((lines, time.perf_counter() - started))

    if arguments.get("dataset"):
        metrics = stage_named("parse").call(params, arguments["dataset"], progress=progress).metrics()
        lines, templates, details = metrics["lines"], metrics["templates"], metrics["parallel"]
    else:
        layout_of = arguments.get("layout")  # a dataset whose log format the input has (default: the system hdfs)
        system = params.dataset_system(layout_of) if layout_of else params.systems["hdfs"]
        multiline = params.datasets[layout_of].multiline if layout_of else None
        log = Path(arguments["log"])
        files = sorted(path for path in log.iterdir() if path.is_file()) if log.is_dir() else [log]
        output = Path(arguments["scratch"])
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
        summary = stream_parse_files(
            files,
            line_layout(system, None, multiline),
            new_miner(system),
            params.parse,
            output,
            "log_format",
            progress=progress,
        )
        lines, templates = summary.lines, len(summary.templates)
        details = {
            "pool": summary.pool,
            "workers": summary.workers,
            "files": len(files),
            "chunks": len(summary.chunk_lines),
            "drain_clusters": summary.clusters,
            "miner_changes_after_sample": summary.miner_changes_after_sample,
            "matched_after_sample": summary.matched_after_sample,
        }
        shutil.rmtree(output, ignore_errors=True)
    seconds = time.perf_counter() - started
    return {
        "lines": lines,
        "seconds": seconds,
        "templates": templates,
        "parallel": details,
        **_progress_rates(events, lines),
    }


def child_stage(arguments: dict[str, Any]) -> dict[str, Any]:
    """One pipeline stage on the bench params (sessionize, embed, tensors, train one epoch)."""
    from zerolog.artifacts import ArtifactPaths
    from zerolog.config_loader import load_params
    from zerolog.stages import stage_named

    params = load_params(arguments["params"])
    paths = ArtifactPaths(params.paths)
    stage = arguments["stage"]
    started = time.perf_counter()
    result: dict[str, Any] = {}
    if stage == "sessionize":
        from zerolog.config import ParallelConfig
        from zerolog.parallel import worker_count

        parallel = ParallelConfig(backend=arguments["backend"], workers=arguments["workers"], scheduler_address=None)
        params = dataclasses.replace(params, sessionize=dataclasses.replace(params.sessionize, parallel=parallel))
        metrics = stage_named("sessionize").call(params, arguments["dataset"]).metrics()
        result = {
            "sessions": metrics["sessions"],
            "anomalous": metrics["anomalous"],
            "lines": metrics["lines"],
            "parallel": {"backend": parallel.backend, "workers": worker_count(parallel)},
        }
    elif stage == "embed":
        stage_named("embed").call(params, "")
    elif stage == "tensors":
        stage_named("tensors").call(params, "hdfs")
        meta = json.loads((paths.tensors("hdfs") / "meta.json").read_text())
        result = {"sessions": meta["sessions"]}
    elif stage == "train":
        from zerolog.artifacts import load_tensors
        from zerolog.training.loop import train

        tensors = load_tensors(paths.tensors("hdfs"))
        trained = train(params.train, [tensors], None, "source_only", params.seeds[0], progress=False)
        validated = int(tensors.rows("val").size)
        seen = trained.steps * params.train.batch_size
        result = {
            "sessions": seen + validated,
            "train_sessions": seen,
            "validation_sessions": validated,
            "steps": trained.steps,
            "device": trained.device,
        }
    else:
        raise SystemExit(f"unknown stage {stage}")
    result["seconds"] = time.perf_counter() - started
    return result


CHILDREN = {"logparser3": child_logparser3, "drain3": child_drain3, "parse": child_parse, "stage": child_stage}


def child_main(kind: str, arguments_json: str, result_path: str) -> None:
    result = CHILDREN[kind](json.loads(arguments_json))
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


# ============================================================================= measuring (parent)


@dataclass
class Measurement:
    """One subprocess run: its result (written by the child), time, memory and how it ended."""

    name: str
    result: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0
    peak_tree_mib: float = 0.0  # sum of RSS over the process and its descendants, sampled
    peak_process_mib: float = 0.0  # largest single process (its VmHWM, sampled)
    process_peaks: dict[int, tuple[str, float]] = field(default_factory=dict)  # pid -> (role, VmHWM MiB)
    status: str = "ok"
    log: Path | None = None

    def peaks(self, role: str) -> list[float]:
        """Peak RSS (MiB) of every process of ``role``: ``client`` (the child itself), ``worker`` (a spawned
        worker process: process pool or Dask), ``other`` (e.g. multiprocessing's resource tracker)."""
        return [peak for kind, peak in self.process_peaks.values() if kind == role]


def run_measured(
    name: str,
    python: str,
    kind: str,
    arguments: dict[str, Any],
    work: Path,
    memory_limit_gb: float,
    timeout: float,
    script: Path | None = None,
) -> Measurement:
    """Run ``bench/run.py child <kind>`` (or ``script``, for tests) under ``python``; sample the tree's RSS; stop it
    past the limits. The child writes its result as JSON to the path given last on its command line."""
    import psutil

    result_path = work / f"{name}.result.json"
    result_path.unlink(missing_ok=True)
    log_path = work / f"{name}.log"
    measurement = Measurement(name=name, log=log_path)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY / "src"), "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            [python, str(script or Path(__file__).resolve()), "child", kind, json.dumps(arguments), str(result_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY,
            env=environment,
        )
    done = threading.Event()
    limit_bytes = memory_limit_gb * 2**30

    def sample() -> None:
        try:
            root = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = _sample_tree(psutil, root, measurement)
            measurement.peak_tree_mib = max(measurement.peak_tree_mib, total / 2**20)
            elapsed = time.perf_counter() - started
            if total > limit_bytes or elapsed > timeout:
                measurement.status = (
                    f"stopped: RSS {total / 2**30:.1f} GiB > {memory_limit_gb} GiB"
                    if total > limit_bytes
                    else f"stopped: over {timeout:.0f} s"
                )
                _kill_tree(psutil, root)
                return
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    measurement.wall_seconds = time.perf_counter() - started
    del usage  # wait4's ru_maxrss is not used: Linux carries the forking parent's RSS over exec into it
    if process.returncode != 0 and measurement.status == "ok":
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["?"]
        measurement.status = f"failed (exit {process.returncode}): {tail[0][:160]}"
    if result_path.is_file():
        measurement.result = json.loads(result_path.read_text(encoding="utf-8"))
    return measurement


def _sample_tree(psutil: Any, root: Any, measurement: Measurement) -> int:
    """One sample: the tree's summed RSS (bytes); updates the largest process's and each process's peak."""
    total = 0
    try:
        for member in [root, *root.children(recursive=True)]:
            with _ignore_gone(psutil):
                total += member.memory_info().rss
                peak = _high_water_mib(member.pid)
                measurement.peak_process_mib = max(measurement.peak_process_mib, peak)
                role, before = measurement.process_peaks.get(member.pid, (None, 0.0))
                if role is None:  # spawned workers (process pool and Dask alike) run multiprocessing's spawn_main
                    command = " ".join(member.cmdline())
                    role = "client" if member.pid == root.pid else "worker" if "spawn_main" in command else "other"
                measurement.process_peaks[member.pid] = (role, max(before, peak))
    except psutil.NoSuchProcess:
        pass
    return total


def _high_water_mib(pid: int) -> float:
    """Peak RSS of one process since its exec (``VmHWM`` in /proc/<pid>/status, MiB); 0 when unreadable.

    A high-water mark, so a peak between two samples is still seen at the next one. Unlike ru_maxrss it starts
    afresh at exec, so a child of a large parent (a pytest run with torch loaded) reports its own memory.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return 0.0


class _ignore_gone:  # noqa: N801 (context manager used like a function)
    def __init__(self, psutil: Any) -> None:
        self.psutil = psutil

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is not None and issubclass(kind, (self.psutil.NoSuchProcess, self.psutil.AccessDenied))


def _kill_tree(psutil: Any, root: Any) -> None:
    """Stop the process this bench started and its descendants (by process id, nothing else)."""
    members = [*root.children(recursive=True), root]
    for member in members:
        with _ignore_gone(psutil):
            member.kill()


# ============================================================================= inputs and params


def prepare_inputs(work: Path, lines: int, drain_lines: int, block_reuse: int) -> tuple[Path, Path, Path]:
    """The generated full input, its labels and the prefix file (regenerated when missing or of another size)."""
    sys.path.insert(0, str(BENCH))
    import generate

    full = work / f"HDFS_{lines}_reuse{block_reuse}.log"
    labels = work / f"HDFS_{lines}_reuse{block_reuse}_block_labels.csv"
    prefix = work / f"HDFS_{drain_lines}_reuse{block_reuse}.log"
    if not (full.is_file() and labels.is_file()):
        print(f"generating {full.name} ({lines:,} lines) ...", flush=True)
        generate.generate(full, lines, labels, block_reuse)
    if not prefix.is_file():
        generate.generate(prefix, min(drain_lines, lines), None, block_reuse)
    return full, labels, prefix


#: The dataset whose log format and Drain settings parse the generated nova inputs (bench/generate_nova.py).
NOVA_LAYOUT = "openstack_devstack"


def prepare_diverse_inputs(
    work: Path, lines: int, drain_lines: int, files: int, block_reuse: int
) -> dict[str, tuple[Path, Path]]:
    """Per kind of input (HDFS, nova file, nova folder): the whole input of ``lines`` lines and the prefix
    logparser3 parses (for the folder: the nova file's prefix, the same lines in one file)."""
    sys.path.insert(0, str(BENCH))
    import generate
    import generate_nova

    hdfs = work / f"HDFS_{lines}_reuse{block_reuse}.log"
    hdfs_prefix = work / f"HDFS_{drain_lines}_reuse{block_reuse}.log"
    nova = work / f"nova_{lines}.log"
    nova_prefix = work / f"nova_{drain_lines}.log"
    folder = work / f"nova_{lines}_in_{files}_files"
    for path, make in (
        (hdfs, lambda: generate.generate(hdfs, lines, None, block_reuse)),
        (hdfs_prefix, lambda: generate.generate(hdfs_prefix, drain_lines, None, block_reuse)),
        (nova, lambda: generate_nova.generate(nova, lines)),
        (nova_prefix, lambda: generate_nova.generate(nova_prefix, drain_lines)),
        (folder, lambda: generate_nova.generate(folder, lines, files)),
    ):
        if not path.exists():
            print(f"generating {path.name} ...", flush=True)
            make()
    return {
        "generated HDFS, one file": (hdfs, hdfs_prefix),
        "nova (ids varied), one file": (nova, nova_prefix),
        f"nova (ids varied), {files:,} files": (folder, nova_prefix),
    }


def bench_params(work: Path, full: Path, labels: Path, chunk_bytes: int | None) -> Path:
    """A params.yaml for the bench pipeline: outputs under ``work/pipeline``, dataset hdfs_logs = the generated
    file (raw folder with a manifest, the file linked), system hdfs trained on it, hashing embeddings, one epoch."""
    import yaml

    from zerolog.config_loader import read_yaml

    raw = read_yaml((REPOSITORY / "params.yaml").read_text(encoding="utf-8"), "params.yaml")
    root = work / "pipeline"
    for key in raw["paths"]:
        if key != "bundled":
            raw["paths"][key] = str(root / Path(raw["paths"][key]).name)
    raw["paths"]["bundled"] = str(REPOSITORY / raw["paths"]["bundled"])
    raw["systems"]["hdfs"]["dataset"] = "hdfs_logs"
    raw["datasets"]["hdfs_logs"]["files"] = {"logs": [full.name], "labels": labels.name}
    if chunk_bytes:
        raw["parse"]["chunk_bytes"] = chunk_bytes
    raw["embed"]["method"] = "hashing"
    raw["train"]["epochs"] = 1
    raw["train"]["methods"] = ["source_only"]
    folder = Path(raw["paths"]["raw"]) / "hdfs_logs"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (full, labels):
        link = folder / path.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path.resolve())
    manifest = {
        "dataset": "hdfs_logs",
        "kind": "raw",
        "source": "generated (bench/generate.py)",
        "files": {"logs": [full.name], "labels": labels.name},
        "sha256": {},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


# ============================================================================= report


def machine_description() -> dict[str, str]:
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    import pyarrow

    return {
        "nproc": str(os.cpu_count()),
        "cores available": str(len(os.sched_getaffinity(0))),
        "CPU": cpu,
        "RAM": memory,
        "load average at start": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "Python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
    }


def _number(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def parse_table(rows: list[tuple[str, str, Measurement]]) -> str:
    header = (
        "| parser | input | lines | wall s | lines/s | lines/s first 10% | lines/s last 10% | templates "
        "| peak RSS tree MiB | peak RSS largest process MiB | status |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    body = []
    for label, input_name, measurement in rows:
        result = measurement.result
        lines = result.get("lines")
        seconds = result.get("seconds") or measurement.wall_seconds
        rate = lines / seconds if lines and seconds else None
        body.append(
            f"| {label} | {input_name} | {_number(lines)} | {_number(measurement.wall_seconds, 1)} | {_number(rate)} "
            f"| {_number(result.get('first_rate'))} | {_number(result.get('last_rate'))} "
            f"| {_number(result.get('templates'))} "
            f"| {_number(measurement.peak_tree_mib)} | {_number(measurement.peak_process_mib)} | {measurement.status} |"
        )
    return "\n".join([header, *body])


def pool_table(rows: list[tuple[str, Measurement]]) -> str:
    """The whole-file parse on each pool, side by side: throughput per worker and memory of each worker process."""
    header = (
        "| pool | workers | lines | wall s | lines/s | lines/s per worker | lines/s first 10% | lines/s last 10% "
        "| peak RSS per worker MiB | peak RSS client MiB | peak RSS tree MiB | status |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
    )
    body = []
    for label, measurement in rows:
        result = measurement.result
        workers = result.get("parallel", {}).get("workers")
        rate = lines_per_second(measurement)
        per_worker = rate / workers if rate and workers else None
        worker_peaks = " / ".join(_number(peak) for peak in sorted(measurement.peaks("worker"), reverse=True)) or "–"
        body.append(
            f"| {label} | {_number(workers)} | {_number(result.get('lines'))} | {_number(measurement.wall_seconds, 1)} "
            f"| {_number(rate)} | {_number(per_worker)} | {_number(result.get('first_rate'))} "
            f"| {_number(result.get('last_rate'))} | {worker_peaks} "
            f"| {_number(max(measurement.peaks('client'), default=None))} "
            f"| {_number(measurement.peak_tree_mib)} | {measurement.status} |"
        )
    return "\n".join([header, *body])


def stage_table(rows: list[tuple[str, Measurement]]) -> str:
    header = (
        "| stage | sessions | wall s | sessions/s | peak RSS tree MiB | peak RSS largest process MiB | status |\n"
        "|---|---:|---:|---:|---:|---:|---|"
    )
    body = []
    for label, measurement in rows:
        sessions = measurement.result.get("sessions")
        seconds = measurement.result.get("seconds") or measurement.wall_seconds
        rate = sessions / seconds if sessions and seconds else None
        body.append(
            f"| {label} | {_number(sessions)} | {_number(measurement.wall_seconds, 1)} | {_number(rate)} "
            f"| {_number(measurement.peak_tree_mib)} | {_number(measurement.peak_process_mib)} "
            f"| {measurement.status} |"
        )
    return "\n".join([header, *body])


def lines_per_second(measurement: Measurement) -> float | None:
    result = measurement.result
    if measurement.status != "ok" or not result.get("lines") or not result.get("seconds"):
        return None
    return result["lines"] / result["seconds"]


# ============================================================================= main


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    from generate import HDFS_V1_LINES  # noqa: PLC0415 (bench/ is on sys.path when run as a script)

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=HDFS_V1_LINES, help="lines of the generated input")
    parser.add_argument("--drain-lines", type=int, default=200_000, help="prefix parsed by every parser")
    parser.add_argument("--block-reuse", type=int, default=20, help="bench/generate.py --block-reuse")
    parser.add_argument("--chunk-bytes", type=int, default=None, help="override parse.chunk_bytes")
    parser.add_argument("--workers", type=int, default=0, help="workers of both pools (0: one per core)")
    parser.add_argument("--repeats", type=int, default=1, help="whole-file parses per pool, alternating pool and Dask")
    parser.add_argument("--drain3-python", default=None, help="a Python with drain3 installed (separate venv)")
    parser.add_argument(
        "--diverse-lines",
        type=int,
        default=1_000_000,
        help="lines of each diverse-parse input (generated HDFS, nova file, nova folder)",
    )
    parser.add_argument("--diverse-files", type=int, default=5_000, help="files of the nova folder")
    parser.add_argument(
        "--diverse-drain-lines",
        type=int,
        default=50_000,
        help="prefix of each diverse-parse input parsed by logparser3",
    )
    parser.add_argument("--skip-diverse", action="store_true", help="no diverse-input parses")
    parser.add_argument("--skip-pipeline", action="store_true", help="parse only: no sessionize/tensors/train")
    parser.add_argument("--skip-full", action="store_true", help="prefix only: no full-size parse nor pipeline")
    parser.add_argument("--memory-limit-gb", type=float, default=10.0, help="stop a step whose tree RSS passes this")
    parser.add_argument("--stage-timeout", type=float, default=900.0, help="stop a step running longer (seconds)")
    parser.add_argument(
        "--work", type=Path, default=BENCH / "output", help="generated inputs and outputs (ignored by git)"
    )
    parser.add_argument("--output", type=Path, default=BENCH / "results.md", help="markdown report")
    return parser.parse_args(argv)


@dataclass
class _Run:
    """What one bench run measured, for the report."""

    prefix_name: str
    full_name: str
    parses: list[tuple[str, str, Measurement]] = field(default_factory=list)  # prefix parses
    pools: list[tuple[str, Measurement]] = field(default_factory=list)  # whole-file parses, one per pool
    session_pools: list[tuple[str, Measurement]] = field(default_factory=list)  # sessionize, one per pool
    stages: list[tuple[str, Measurement]] = field(default_factory=list)
    diverse: list[tuple[str, Measurement, Measurement]] = field(default_factory=list)  # (input, engine, logparser3)


def main(argv: list[str] | None = None) -> None:
    arguments = _arguments(argv)
    work = arguments.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    bench_started = time.perf_counter()
    machine = machine_description()
    full, labels, prefix = prepare_inputs(work, arguments.lines, arguments.drain_lines, arguments.block_reuse)
    params_path = bench_params(work, full, labels, arguments.chunk_bytes)

    from zerolog.config_loader import load_params
    from zerolog.data.stream_parse import header_regex

    system = load_params(params_path).systems["hdfs"]
    common = {
        "log_format": system.log_format,
        "regex": system.regex,
        "depth": system.drain.depth,
        "st": system.drain.similarity_threshold,
    }
    run = _Run(f"{prefix.name} (first {min(arguments.drain_lines, arguments.lines):,} lines)", f"{full.name} (whole)")

    def step(name: str, python: str, kind: str, child_arguments: dict[str, Any]) -> Measurement:
        print(f"[{time.perf_counter() - bench_started:6.0f} s] {name} ...", flush=True)
        measurement = run_measured(
            name, python, kind, child_arguments, work, arguments.memory_limit_gb, arguments.stage_timeout
        )
        print(
            f"         {measurement.status}, {measurement.wall_seconds:.1f} s, "
            f"peak RSS {measurement.peak_tree_mib:.0f} MiB",
            flush=True,
        )
        return measurement

    run.parses.append(
        (
            "(a) logparser3 Drain, as is",
            run.prefix_name,
            step(
                "logparser3-drain-prefix",
                sys.executable,
                "logparser3",
                {**common, "log": str(prefix), "scratch": str(work / "logparser3-output")},
            ),
        )
    )
    run.parses.append(
        (
            "(b) parse engine, one process",
            run.prefix_name,
            step(
                "engine-prefix",
                sys.executable,
                "parse",
                {
                    "params": str(params_path),
                    "log": str(prefix),
                    "scratch": str(work / "engine-prefix"),
                    "backend": "processes",
                    "workers": 1,
                },
            ),
        )
    )
    if arguments.drain3_python:
        regex, _ = header_regex(system.log_format)
        run.parses.append(
            (
                "(c) drain3 (separate venv)",
                run.prefix_name,
                step(
                    "drain3-prefix",
                    arguments.drain3_python,
                    "drain3",
                    {**common, "log": str(prefix), "header_regex": regex.pattern},
                ),
            )
        )
    if not arguments.skip_diverse:
        run.diverse = diverse_parses(arguments, work, params_path, step)
    if not arguments.skip_full:
        for repeat in range(1, arguments.repeats + 1):  # alternating, so that a change of load hits both alike
            run.pools.append(
                (
                    f"(d) process pool, run {repeat}",
                    step(
                        f"pool-full-{repeat}",
                        sys.executable,
                        "parse",
                        {
                            "params": str(params_path),
                            "log": str(full),
                            "scratch": str(work / "pool-full"),
                            "backend": "processes",
                            "workers": arguments.workers,
                        },
                    ),
                )
            )
            dask = step(
                f"dask-full-{repeat}",
                sys.executable,
                "parse",
                {"params": str(params_path), "dataset": "hdfs_logs", "backend": "dask", "workers": arguments.workers},
            )
            run.pools.append((f"(e) Dask LocalCluster, run {repeat}", dask))
        if not arguments.skip_pipeline and dask.status == "ok":  # on the last Dask run's output
            for repeat in range(1, arguments.repeats + 1):  # the chunk map of sessionize, alternating as above
                for letter, backend, label in (("f", "processes", "process pool"), ("g", "dask", "Dask LocalCluster")):
                    run.session_pools.append((f"({letter}) {label}, run {repeat}", step(
                        f"sessionize-{backend}-{repeat}", sys.executable, "stage", {
                            "params": str(params_path), "stage": "sessionize", "dataset": "hdfs_logs",
                            "backend": backend, "workers": arguments.workers})))  # fmt: skip
            for stage in ("embed", "tensors", "train"):
                measurement = step(
                    stage, sys.executable, "stage", {"params": str(params_path), "stage": stage, "dataset": "hdfs_logs"}
                )
                label = "train (1 epoch: steps x batch + validation scoring)" if stage == "train" else stage
                run.stages.append((label, measurement))
                if measurement.status != "ok":
                    break
    machine["load average at end"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
    text = report(run, machine, arguments, argv, time.perf_counter() - bench_started)
    arguments.output.write_text(text, encoding="utf-8")
    print()
    print(text)


Step = Callable[[str, str, str, dict[str, Any]], Measurement]  # (name, python, child kind, arguments) -> measured


def diverse_parses(
    arguments: argparse.Namespace, work: Path, params_path: Path, step: Step
) -> list[tuple[str, Measurement, Measurement]]:
    """Each diverse input parsed whole by the engine on a Dask LocalCluster (the default backend), and its prefix by
    logparser3: per input, (label, engine measurement, logparser3 measurement)."""
    from zerolog.config_loader import load_params

    params = load_params(params_path)
    inputs = prepare_diverse_inputs(
        work, arguments.diverse_lines, arguments.diverse_drain_lines, arguments.diverse_files, arguments.block_reuse
    )
    rows, drained = [], {}
    for label, (log, prefix) in inputs.items():
        layout = None if label.startswith("generated HDFS") else NOVA_LAYOUT
        system = params.dataset_system(layout) if layout else params.systems["hdfs"]
        if prefix not in drained:
            drained[prefix] = step(
                f"logparser3-{prefix.stem}",
                sys.executable,
                "logparser3",
                {
                    "log_format": system.log_format,
                    "regex": system.regex,
                    "depth": system.drain.depth,
                    "st": system.drain.similarity_threshold,
                    "log": str(prefix),
                    "scratch": str(work / "logparser3-output"),
                },
            )
        engine = step(
            f"dask-{log.stem}",
            sys.executable,
            "parse",
            {
                "params": str(params_path),
                "log": str(log),
                "layout": layout,
                "scratch": str(work / "engine-diverse"),
                "backend": "dask",
                "workers": arguments.workers,
            },
        )
        rows.append((label, engine, drained[prefix]))
    return rows


def diverse_table(rows: list[tuple[str, Measurement, Measurement]]) -> list[str]:
    """The diverse-input parses side by side, with each input's ratio to the HDFS input and to logparser3."""
    header = (
        "| input | files | lines | chunks | templates | lines matched in the client after the sample | wall s "
        "| lines/s | / HDFS input's lines/s | logparser3 lines/s (prefix) | / logparser3 | peak RSS client MiB "
        "| status |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    hdfs_rate = lines_per_second(rows[0][1])
    body = []
    for label, engine, drain in rows:
        rate, drain_rate = lines_per_second(engine), lines_per_second(drain)
        details = engine.result.get("parallel", {})
        body.append(
            f"| {label} | {_number(details.get('files'))} | {_number(engine.result.get('lines'))} "
            f"| {_number(details.get('chunks'))} | {_number(engine.result.get('templates'))} "
            f"| {_number(details.get('matched_after_sample'))} | {_number(engine.wall_seconds, 1)} | {_number(rate)} "
            f"| **{_number(rate / hdfs_rate if rate and hdfs_rate else None, 2)}** | {_number(drain_rate)} "
            f"| **{_number(rate / drain_rate if rate and drain_rate else None, 1)}** "
            f"| {_number(max(engine.peaks('client'), default=None))} | {engine.status} |"
        )
    return [header, *body]


def _pool_ratios(pools: list[tuple[str, Measurement]], included: str) -> list[str]:
    """Dask / process pool lines/s of each consecutive (pool, Dask) pair of runs, and their median."""
    rates = [lines_per_second(measurement) for _, measurement in pools]
    ratios = [dask / pool for pool, dask in zip(rates[0::2], rates[1::2], strict=False) if pool and dask]
    if not ratios:
        return []
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    return [
        f"Dask LocalCluster / process pool lines/s: **{statistics.median(ratios):.2f}** "
        f"(median of {len(ratios)} pair(s): {each}; "
        f"whole runs: {included})."
    ]


def report(
    run: _Run, machine: dict[str, str], arguments: argparse.Namespace, argv: list[str] | None, seconds: float
) -> str:
    """bench/results.md: the command, the machine, the tables and the ratios."""
    lines_out = ["# Benchmark: full-size path (bench/run.py)", ""]
    lines_out.append(f"Command: `{' '.join(['python bench/run.py', *(argv if argv is not None else sys.argv[1:])])}`  ")
    lines_out.append(f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; total bench wall time {seconds:.0f} s.")
    lines_out += ["", "## Machine", ""] + [f"- {key}: {value}" for key, value in machine.items()]
    lines_out += ["", "The machine is shared (see the load averages): compare ratios measured in this one run.", ""]
    lines_out += ["## Parse: the same prefix", "", parse_table(run.parses), ""]
    drain_rate = lines_per_second(run.parses[0][2])
    ratios = [
        f"- {label}: **{rate / drain_rate:.1f}x** logparser3 Drain's lines/s ({rate:,.0f} vs {drain_rate:,.0f})"
        for label, _, measurement in run.parses[1:]
        if (rate := lines_per_second(measurement)) and drain_rate
    ]
    if not arguments.drain3_python:
        ratios.append("- drain3: skipped (no `--drain3-python`; it needs its own venv, see bench/README.md)")
    lines_out += ["Throughput against logparser3 (whole-run lines/s, load and output included):", "", *ratios, ""]
    lines_out.append(
        f"logparser3's Drain parses only the first {min(arguments.drain_lines, arguments.lines):,} lines "
        "(it is too slow for the whole file); its lines/s are whole-run (pandas load, parse loop, CSV "
        "output). First/last 10% columns are the parse loop alone."
    )
    if run.diverse:
        lines_out += [
            "",
            "## Parse: diverse inputs, Dask LocalCluster (the default backend)",
            "",
            *diverse_table(run.diverse),
            "",
            "Goals (issue 20): each nova input at 0.5 or more of the HDFS input's lines/s, and each input "
            "above 10x logparser3's lines/s. Whole-run lines/s (cluster start, the sample mined in the "
            "client, the map, the parts written). logparser3 parses the first "
            f"{arguments.diverse_drain_lines:,} lines of the one-file form of each input (the folder holds "
            "the same lines as the nova file) and counts only the lines its format matches. The nova "
            "inputs: bench/generate_nova.py (the bundled DevStack nova log repeated, its ids varied per "
            "repetition; the folder cuts the same lines into files at record starts).",
        ]
    if run.pools:
        lines_out += [
            "",
            f"## Parse: the whole input, {run.full_name}, process pool vs Dask LocalCluster",
            "",
            pool_table(run.pools),
            "",
        ]
        lines_out += _pool_ratios(run.pools, "pool or cluster start, the sample mined in the client, the map, parts")
        details = {label.split(",")[0]: measurement.result.get("parallel", {}) for label, measurement in run.pools}
        lines_out += ["", f"Settings: {json.dumps(details)}"]
    if run.session_pools:
        lines_out += [
            "",
            f"## Sessionize: the whole input's parts, {run.full_name}, process pool vs Dask LocalCluster",
            "",
            pool_table(run.session_pools),
            "",
        ]
        lines_out += _pool_ratios(run.session_pools, "pool or cluster start, the map, the merge, grouping and writing")
        lines_out += [
            "",
            "Workers read, filter and key the parts of lines.parquet (the chunk map); the client merges "
            "them in part order, groups, labels, splits and writes sessions.parquet. Lines/s: lines of "
            "lines.parquet over the stage's seconds. First/last 10% columns are parse-only (–).",
        ]
    if run.stages:
        lines_out += ["", "## Session stages on the whole generated input", "", stage_table(run.stages), ""]
        lines_out.append("See bench/README.md (Memory of the session stages) for what each stage holds in memory.")
    return "\n".join(lines_out) + "\n"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.path.insert(0, str(BENCH))
        main()
