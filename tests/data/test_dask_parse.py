"""Parse and sessionize on Dask (issue 14): a 2-worker LocalCluster, started once for this module by the project's
own ``DaskPool`` (the default ``parse.parallel`` and ``sessionize.parallel``), and the stages pointed at it by
``scheduler_address`` (the existing-cluster path). Claims: the same lines and templates as the in-process parse,
line for line, and the same sessions.parquet byte for byte; a worker killed while it holds chunks or parts loses and
duplicates no line and no session."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import call_stage
from distributed import get_task_stream
from raw_fixtures import build_raw_folder, project_params

from zerolog.config import ParallelConfig
from zerolog.data.stream_parse import line_parts
from zerolog.errors import DataError
from zerolog.parallel import DaskPool, map_ordered

RAW_DATASETS = ("hdfs_logs", "bgl_logs", "openstack_2k", "openstack_instances")


@pytest.fixture(scope="module")
def cluster():
    pool = DaskPool(2, None, "test")  # LocalCluster(n_workers=2, threads_per_worker=1), as parse.parallel's default
    try:
        yield pool
    finally:
        pool.close()


def cluster_params(tmp_path: Path, chunk_bytes: int, sample_lines: int, address: str | None):
    params = project_params(tmp_path)
    parallel = ParallelConfig(backend="dask", workers=1 if address is None else 0, scheduler_address=address)
    parse = dataclasses.replace(params.parse, chunk_bytes=chunk_bytes, sample_lines=sample_lines, parallel=parallel)
    return dataclasses.replace(params, parse=parse)


def parsed(params, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    folder = Path(params.paths.parsed) / name
    metrics = json.loads((Path(params.paths.reports) / "data" / "parse" / f"{name}.json").read_text())
    return pd.read_parquet(folder / "lines.parquet"), pd.read_parquet(folder / "templates.parquet"), metrics


def in_process(tmp_path: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    params = cluster_params(tmp_path / "in-process", 10**8, 10**7, None)
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    return parsed(params, name)


def _fail_on(value: int) -> int:
    if value == 3:
        raise DataError("item.log: line 3: broken")
    return value * 2


def test_map_ordered_on_the_cluster_keeps_order_and_the_error_type(cluster):
    assert cluster.workers == 2 and "LocalCluster" in cluster.description
    shared = cluster.share(10)
    assert list(map_ordered(cluster, pow, ((shared, value) for value in range(12)), ahead=4)) == [
        10**v for v in range(12)
    ]
    with pytest.raises(DataError, match="item.log: line 3: broken"):
        list(map_ordered(cluster, _fail_on, ((value,) for value in range(6)), ahead=2))


@pytest.mark.parametrize(
    ("name", "chunk_bytes"),
    [("hdfs_logs", 20_000), ("bgl_logs", 30_000), ("openstack_2k", 40_000), ("openstack_instances", 200_000)],
)
def test_parse_on_a_local_cluster_equals_the_in_process_parse(tmp_path, cluster, name, chunk_bytes):
    """Chunks after a 300-line sample on the cluster's 2 workers, templates found by both the sample and the
    workers (reconciled in chunk order): the same lines.parquet and templates.parquet as one process."""
    expected_lines, expected_templates, expected_metrics = in_process(tmp_path, name)
    params = cluster_params(tmp_path / "cluster", chunk_bytes, 300, cluster.address)
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    lines, templates, metrics = parsed(params, name)
    pd.testing.assert_frame_equal(lines, expected_lines)
    pd.testing.assert_frame_equal(templates, expected_templates)
    assert metrics["parallel"]["pool"].startswith("Dask cluster at tcp://") and metrics["parallel"]["workers"] == 2
    assert metrics["parallel"]["chunks"] >= 8
    for key in ("lines", "parsed", "templates", "files", "timestamps_unparseable", "anomalous_lines"):
        assert metrics[key] == expected_metrics[key], key


def test_a_worker_killed_mid_chunk_loses_and_duplicates_no_line(tmp_path, cluster):
    """SIGKILL one worker while it is running a chunk task: the scheduler reruns its tasks on the other worker
    (the nanny restarts the dead one), and the output is still the in-process parse, every line once."""
    name = "hdfs_logs"
    expected_lines, expected_templates, _ = in_process(tmp_path, name)
    client = cluster.client
    params = cluster_params(tmp_path / "cluster", 3_000, 200, cluster.address)
    build_raw_folder(params, name)
    killed: list[tuple[str, list[str]]] = []

    def kill_a_busy_worker(lines_done: int) -> None:
        if killed or lines_done < 400:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait until a worker holds one of our chunk tasks, then kill it
            busy = {
                address: keys
                for address, keys in client.processing().items()
                if any("parse_chunk_task" in str(key) for key in keys)
            }
            if busy:
                address, keys = next(iter(busy.items()))
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)  # a worker process of this test's own cluster
                killed.append((address, [str(key) for key in keys]))
                return
            time.sleep(0.001)

    call_stage("parse", params, name, progress=kill_a_busy_worker)
    lines, templates, metrics = parsed(params, name)
    assert killed and killed[0][1], "no worker was killed while it held a chunk"
    pd.testing.assert_frame_equal(lines, expected_lines)
    pd.testing.assert_frame_equal(templates, expected_templates)
    assert not lines.duplicated(["file_index", "line_number"]).any() and len(lines) == metrics["lines"] == 2000
    client.wait_for_workers(2, timeout=60)  # the nanny has restarted the killed worker
    assert killed[0][0] not in client.scheduler_info(n_workers=-1)["workers"]  # a new process, a new address


# ----------------------------------------------------------------------------- sessionize


def parsed_in_parts(tmp_path: Path, name: str, chunk_bytes: int):
    """Params whose parse wrote ``name``'s lines.parquet in many parts (in this process), and the part count."""
    params = cluster_params(tmp_path, chunk_bytes, 100, None)
    build_raw_folder(params, name)
    call_stage("parse", params, name)
    return params, len(line_parts(Path(params.paths.parsed) / name / "lines.parquet"))


def sessionized(params, name: str, parallel: ParallelConfig) -> tuple[bytes, dict]:
    params = dataclasses.replace(params, sessionize=dataclasses.replace(params.sessionize, parallel=parallel))
    call_stage("sessionize", params, name)
    metrics = json.loads((Path(params.paths.reports) / "data" / "sessionize" / f"{name}.json").read_text())
    return (Path(params.paths.sessions) / name / "sessions.parquet").read_bytes(), metrics


IN_PROCESS = ParallelConfig(backend="dask", workers=1, scheduler_address=None)


@pytest.mark.parametrize(
    ("name", "chunk_bytes"), [("hdfs_logs", 20_000), ("bgl_logs", 30_000), ("openstack_instances", 200_000)]
)  # key, window, file rules
def test_sessionize_on_a_local_cluster_equals_the_in_process_sessionize(tmp_path, cluster, name, chunk_bytes):
    """The parts of lines.parquet read and keyed by the cluster's 2 workers, merged in part order: the same
    sessions.parquet, byte for byte, and the same counts as one process reading the parts in turn."""
    params, parts = parsed_in_parts(tmp_path, name, chunk_bytes)
    expected, expected_metrics = sessionized(params, name, IN_PROCESS)
    with get_task_stream(cluster.client) as tasks:
        actual, metrics = sessionized(params, name, ParallelConfig("dask", 0, cluster.address))
    assert parts >= 8 and sum("_read_part" in str(task["key"]) for task in tasks.data) == parts
    assert actual == expected and metrics == expected_metrics


def test_a_worker_killed_while_reading_parts_loses_and_duplicates_no_session(tmp_path, cluster):
    """SIGKILL a worker that holds a part task: the scheduler reruns it on the other worker; the task only reads,
    so the sessions are those of one process, every session once."""
    name = "hdfs_logs"
    params, parts = parsed_in_parts(tmp_path, name, 2_000)
    expected, expected_metrics = sessionized(params, name, IN_PROCESS)
    client, killed = cluster.client, []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            busy = [address for address, keys in client.processing().items()
                    if any("_read_part" in str(key) for key in keys)]  # fmt: skip
            if busy:
                pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                os.kill(pid, signal.SIGKILL)  # a worker process of this test's own cluster
                killed.append(busy[0])
                return
            time.sleep(0.0005)

    killer = threading.Thread(target=kill_a_busy_worker)
    killer.start()
    actual, metrics = sessionized(params, name, ParallelConfig("dask", 0, cluster.address))
    killer.join()
    assert killed, "no worker was killed while it held a part"
    assert parts >= 50 and actual == expected and metrics == expected_metrics
    client.wait_for_workers(2, timeout=60)  # the nanny has restarted the killed worker
