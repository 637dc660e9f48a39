"""Tests of the benchmark tools: bench/generate.py (the generated full-size input) and bench/run.py's helpers."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "bench"))
import generate  # noqa: E402
import generate_nova  # noqa: E402
import run as bench_run  # noqa: E402

sys.path.remove(str(REPOSITORY / "bench"))

SAMPLE_LINES = generate.SAMPLE.read_text(encoding="utf-8").splitlines()
BLOCK = re.compile(r"blk_-?\d+")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("lines", [1, 1999, 2000, 4321])
def test_generate_writes_the_requested_lines_deterministically(tmp_path, lines):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    assert generate.generate(first, lines) == lines
    generate.generate(second, lines)
    assert sha256(first) == sha256(second)
    text = first.read_text(encoding="utf-8")
    assert text.count("\n") == lines and text.endswith("\n")
    assert not list(tmp_path.glob("*.partial"))


def test_generate_command_line_matches_the_function(tmp_path):
    target = tmp_path / "cli.log"
    completed = subprocess.run(
        [sys.executable, str(REPOSITORY / "bench" / "generate.py"), str(target), "--lines", "2500"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "2500 lines" in completed.stderr
    generate.generate(tmp_path / "function.log", 2500)
    assert sha256(target) == sha256(tmp_path / "function.log")


def repetition_lines(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [lines[start : start + len(SAMPLE_LINES)] for start in range(0, len(lines), len(SAMPLE_LINES))]


def test_repetitions_get_fresh_block_ids_consistent_within_each(tmp_path):
    """Each repetition maps every sample block to one new id (sessions stay sessions), new in every repetition;
    everything but dates and block ids is the sample's own text."""
    path = tmp_path / "g.log"
    generate.generate(path, 3 * len(SAMPLE_LINES))
    sample_ids = {block for line in SAMPLE_LINES for block in BLOCK.findall(line)}
    seen: set[str] = set()
    for repetition in repetition_lines(path):
        mapping: dict[str, str] = {}
        for original, generated in zip(SAMPLE_LINES, repetition, strict=True):
            assert BLOCK.sub("B", original[6:]) == BLOCK.sub("B", generated[6:])
            for old, new in zip(BLOCK.findall(original), BLOCK.findall(generated), strict=True):
                assert mapping.setdefault(old, new) == new  # one id per original block in a repetition
                assert new.startswith("blk_-") == old.startswith("blk_-")
        fresh = set(mapping.values())
        assert len(fresh) == len(mapping) == len(sample_ids)  # distinct blocks stay distinct
        assert not fresh & sample_ids and not fresh & seen  # never a sample id, never an earlier repetition's
        seen |= fresh


def test_block_reuse_shares_ids_across_that_many_repetitions(tmp_path):
    path, labels = tmp_path / "g.log", tmp_path / "labels.csv"
    generate.generate(path, 5 * len(SAMPLE_LINES), labels, block_reuse=2)
    ids = [set(BLOCK.findall("\n".join(repetition))) for repetition in repetition_lines(path)]
    assert ids[0] == ids[1] and ids[2] == ids[3] and not ids[1] & ids[2] and not ids[3] & ids[4]
    rows = labels.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "BlockId,Label" and len(rows) == 1 + 3 * len(ids[0])
    label_of = dict(row.split(",") for row in rows[1:])
    assert set(label_of) == ids[0] | ids[2] | ids[4]
    original_labels = dict(row.split(",") for row in generate.SAMPLE_LABELS.read_text().splitlines()[1:])
    for original, generated in zip(SAMPLE_LINES, repetition_lines(path)[2], strict=True):
        for old, new in zip(BLOCK.findall(original), BLOCK.findall(generated), strict=True):
            assert label_of[new] == original_labels[old]
    assert sum(label == "Anomaly" for label in label_of.values()) == 3 * sum(
        label == "Anomaly" for label in original_labels.values()
    )


def test_time_moves_forward_across_repetitions(tmp_path):
    path = tmp_path / "g.log"
    generate.generate(path, 3 * len(SAMPLE_LINES))
    repetitions = repetition_lines(path)
    stamps = [[line[:13] for line in repetition] for repetition in repetitions]
    for earlier, later in zip(stamps, stamps[1:], strict=False):  # consecutive pairs
        # two-digit years, all in 20xx here: the text order is the time order
        assert max(earlier) < min(later)
    assert [stamp[6:] for stamp in stamps[1]] == [line[6:13] for line in SAMPLE_LINES]  # time of day kept


def test_progress_rates_over_the_first_and_last_tenth():
    """Start and end throughput from (lines, seconds) events: 1,000 lines/s, then 100 lines/s at the end."""
    events = [(0, 0.0)] + [(lines, lines / 1000) for lines in range(1000, 10_000, 1000)]
    events.append((10_000, 9.0 + 10.0))  # the last 1,000 lines took 10 s
    rates = bench_run._progress_rates(events, 10_000)
    assert rates["first_rate"] == pytest.approx(1000.0)
    assert rates["last_rate"] == pytest.approx(100.0)


def test_measured_child_reports_peak_memory_of_its_process_tree(tmp_path):
    """run_measured sees a child that holds ~200 MiB (and its exit status); a failing child is reported."""
    script = tmp_path / "hog.py"
    script.write_text(
        "import sys, time, json\nblock = bytearray(200 * 2**20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
        "time.sleep(0.5)\njson.dump({'lines': 1, 'seconds': 0.5}, open(sys.argv[-1], 'w'))\n"
    )
    measured = bench_run.run_measured("hog", sys.executable, "unused", {}, tmp_path, 4.0, 60, script=script)
    assert measured.status == "ok" and measured.result == {"lines": 1, "seconds": 0.5}
    assert 200 <= measured.peak_process_mib < 400 and measured.peak_tree_mib >= 150
    failing = tmp_path / "fail.py"
    failing.write_text("raise SystemExit('broken input')\n")
    broken = bench_run.run_measured("fail", sys.executable, "unused", {}, tmp_path, 4.0, 60, script=failing)
    assert broken.status.startswith("failed (exit 1)") and "broken input" in broken.status


def test_measured_child_reports_each_spawned_worker_apart_from_the_client(tmp_path):
    """Peak memory per worker: a worker process spawned by the child (as process pools and Dask spawn theirs) that
    holds ~150 MiB is reported as a worker, the child itself as the client."""
    script = tmp_path / "spawner.py"
    script.write_text(
        "import json, multiprocessing, sys, time\n"
        "def hold():\n"
        "    block = bytearray(150 * 2**20)\n"
        "    for i in range(0, len(block), 4096): block[i] = 1\n"
        "    time.sleep(1.0)\n"
        "if __name__ == '__main__':\n"
        "    worker = multiprocessing.get_context('spawn').Process(target=hold)\n"
        "    worker.start(); worker.join()\n"
        "    json.dump({'lines': 1, 'seconds': 1.0}, open(sys.argv[-1], 'w'))\n"
    )
    measured = bench_run.run_measured("spawner", sys.executable, "unused", {}, tmp_path, 4.0, 60, script=script)
    assert measured.status == "ok"
    (worker,) = measured.peaks("worker")
    (client,) = measured.peaks("client")
    assert 150 <= worker < 300 and client < 100


def test_pool_ratios_pair_each_pool_run_with_the_dask_run_after_it():
    def measured(seconds: float) -> bench_run.Measurement:
        return bench_run.Measurement(name="x", result={"lines": 1000, "seconds": seconds})

    runs = [
        ("pool", measured(1.0)),
        ("dask", measured(2.0)),
        ("pool", measured(2.0)),
        ("dask", measured(1.0)),
        ("pool", measured(1.0)),
        ("dask", measured(1.25)),
    ]
    (line,) = bench_run._pool_ratios(runs, "the map")
    assert "**0.80**" in line and "0.50, 2.00, 0.80" in line and "whole runs: the map" in line


def test_nova_repetitions_vary_every_id_and_keep_the_rest(tmp_path):
    sample = gzip_lines(generate_nova.SAMPLE)
    path = tmp_path / "nova.log"
    generate_nova.generate(path, 2 * len(sample) + 5)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * len(sample) + 5
    first, second = lines[: len(sample)], lines[len(sample) : 2 * len(sample)]
    uuid = generate_nova.UUID
    assert [uuid.sub("ID", line) for line in first] == [uuid.sub("ID", line) for line in sample]
    assert [uuid.sub("ID", line) for line in second] == [uuid.sub("ID", line) for line in sample]
    first_ids = {found for line in first for found in uuid.findall(line)}
    second_ids = {found for line in second for found in uuid.findall(line)}
    original = {found for line in sample for found in uuid.findall(line)}
    assert len(first_ids) == len(second_ids) == len(original)
    assert not first_ids & second_ids and not (first_ids | second_ids) & original


def test_nova_folder_holds_the_same_lines_cut_at_record_starts(tmp_path):
    one, folder = tmp_path / "nova.log", tmp_path / "runs"
    generate_nova.generate(one, 3_000)
    generate_nova.generate(folder, 3_000, files=40)
    files = sorted(folder.iterdir())
    assert 30 <= len(files) <= 40
    assert "".join(path.read_text(encoding="utf-8") for path in files) == one.read_text(encoding="utf-8")
    assert all(generate_nova.RECORD_START.match(path.read_text(encoding="utf-8")) for path in files)


def gzip_lines(path: Path) -> list[str]:
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()
