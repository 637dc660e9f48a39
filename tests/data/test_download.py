"""Tests of the download stage against a real HTTP server on 127.0.0.1 and archives built from bundled data."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from conftest import call_stage
from http_server import ArchiveServer

from zerolog.artifacts import ArtifactPaths
from zerolog.config import Params
from zerolog.config_loader import parse_params, read_yaml
from zerolog.errors import ChecksumError, ConfigError, DataError, DownloadError
from zerolog.stages import stage_named

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "data" / "bundled"
RAW_PARAMS = read_yaml((REPO / "params.yaml").read_text(encoding="utf-8"))


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def first_lines(path: Path, count: int, skip: int = 0) -> bytes:
    """Lines skip+1 .. skip+count of a bundled file (gzip-decompressed when it ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return b"".join(handle.readlines()[skip : skip + count])


# ----------------------------------------------------------------------------- archives from real data

HDFS_MEMBERS = {  # HDFS_v1.zip layout: HDFS.log at the top, the block labels under preprocessed/
    "HDFS.log": first_lines(BUNDLED / "HDFS" / "HDFS_2k.log", 40),
    "preprocessed/anomaly_label.csv": first_lines(BUNDLED / "HDFS" / "HDFS_2k_block_labels.csv", 20),
    "README.md": b"HDFS_v1 test slice\n",
}
OPENSTACK_MEMBERS = {  # nested under a folder, so the members are found by path suffix
    "OpenStack/openstack_abnormal.log": first_lines(BUNDLED / "OpenStack" / "openstack_abnormal_instances.log.gz", 30),
    "OpenStack/openstack_normal1.log": first_lines(BUNDLED / "OpenStack" / "openstack_normal1_instances.log.gz", 30),
    "OpenStack/openstack_normal2.log": first_lines(
        BUNDLED / "OpenStack" / "openstack_normal1_instances.log.gz", 30, skip=30
    ),
    "OpenStack/anomaly_labels.txt": (BUNDLED / "OpenStack" / "anomaly_labels.txt").read_bytes(),
}


def build_zip(members: dict[str, bytes], extra: list[zipfile.ZipInfo | tuple[zipfile.ZipInfo, bytes]] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
        for info, content in extra:
            archive.writestr(info, content)
    return buffer.getvalue()


def build_tar(members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        for info in extra:
            archive.addfile(info)
    return buffer.getvalue()


# kind -> (dataset, archive name, members, archive builder)
CASES = {
    "zip": ("hdfs_logs", "HDFS_v1.zip", HDFS_MEMBERS, build_zip),
    "tar.gz": ("openstack_instances", "OpenStack.tar.gz", OPENSTACK_MEMBERS, build_tar),
}
GOOD_ARCHIVES = {kind: builder(members) for kind, (_, _, members, builder) in CASES.items()}


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    with ArchiveServer() as running:
        yield running


def make_params(
    tmp_path: Path,
    source: str = "loghub",
    base_url: str = "http://127.0.0.1:9/files",
    mirror: Path | None = None,
    archives: dict[str, str | None] | None = None,
    retries: int = 0,
    edit=None,
) -> Params:
    """params.yaml with every output path inside tmp_path (the bundle stays the repository's)."""
    raw = json.loads(json.dumps(RAW_PARAMS))  # deep copy
    for key in raw["paths"]:
        raw["paths"][key] = str(tmp_path / key)
    raw["paths"]["bundled"] = str(BUNDLED)
    raw["paths"]["checksums"] = str(tmp_path / "checksums.json")
    raw["data"].update(
        source=source,
        base_url=base_url,
        mirror=str(mirror) if mirror is not None else None,
        timeout_seconds=5,
        retries=retries,
        retry_wait_seconds=0,
    )
    if archives is not None:
        raw["data"]["archives"] = archives
    if edit is not None:
        edit(raw)
    return parse_params(raw, "params.yaml")


def assert_no_output(params: Params, dataset: str) -> None:
    """Neither the raw folder nor a leftover temporary folder exists."""
    raw = Path(params.paths.raw)
    assert not (raw / dataset).exists()
    assert not raw.exists() or not [path for path in raw.iterdir() if dataset in path.name]


def assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def check_loghub_output(params: Params, dataset: str, members: dict[str, bytes]) -> dict:
    """raw/<dataset>/ holds exactly the dataset's loghub members with a right manifest; returns the manifest."""
    origin = params.datasets[dataset].loghub
    folder = Path(params.paths.raw) / dataset
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dataset"] == dataset and manifest["source"] == "loghub"
    assert set(manifest["files"]) == set(params.datasets[dataset].files)
    assert len(manifest["files"]["logs"]) == len(origin.logs)
    wanted = [*origin.logs, *([origin.labels] if origin.labels else [])]
    listed = [*manifest["files"]["logs"], *([manifest["files"]["labels"]] if "labels" in manifest["files"] else [])]
    for member_suffix, relative in zip(wanted, listed, strict=True):
        (member,) = [name for name in members if name == member_suffix or name.endswith("/" + member_suffix)]
        assert (folder / relative).read_bytes() == members[member]
        assert manifest["sha256"][relative] == sha256(members[member])
    assert sorted(path.name for path in folder.iterdir()) == sorted([*listed, "manifest.json"])
    return manifest


# ----------------------------------------------------------------------------- bundled mode


@pytest.mark.parametrize("dataset", sorted(RAW_PARAMS["datasets"]))
def test_bundled_mode_copies_every_file_and_writes_manifest(tmp_path: Path, dataset: str) -> None:
    params = make_params(tmp_path, source="bundled")
    result = call_stage("download", params, dataset)
    folder = Path(params.paths.raw) / dataset
    manifest = json.loads((folder / "manifest.json").read_text())
    assert result.metrics()["files"] == len(manifest["sha256"])
    assert manifest["dataset"] == dataset and manifest["source"] == "bundled"
    assert manifest["kind"] == params.datasets[dataset].kind
    files = params.datasets[dataset].files
    assert set(manifest["files"]) == set(files)
    for key, value in files.items():
        sources = [value] if isinstance(value, str) else value
        copies = [manifest["files"][key]] if isinstance(value, str) else manifest["files"][key]
        assert isinstance(manifest["files"][key], type(value))
        for source, copy in zip(sources, copies, strict=True):
            content = (BUNDLED / source).read_bytes()
            assert (folder / copy).read_bytes() == content
            assert manifest["sha256"][copy] == sha256(content)


@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_bundled_mode_rejects_missing_or_empty_file(tmp_path: Path, problem: str) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "HDFS").mkdir(parents=True)
    (bundle / "HDFS" / "HDFS_2k.log").write_bytes((BUNDLED / "HDFS" / "HDFS_2k.log").read_bytes())
    if problem == "empty":
        (bundle / "HDFS" / "HDFS_2k_block_labels.csv").write_bytes(b"")

    def edit(raw: dict) -> None:
        raw["paths"]["bundled"] = str(bundle)

    params = make_params(tmp_path, source="bundled", edit=edit)
    with pytest.raises(DataError) as error:
        call_stage("download", params, "hdfs_logs")
    message = assert_one_line(error)
    assert "HDFS_2k_block_labels.csv" in message and "datasets.hdfs_logs.files.labels" in message
    assert ("empty" if problem == "empty" else "missing") in message
    assert_no_output(params, "hdfs_logs")


def runs_bundle(tmp_path: Path) -> Path:
    """A session-per-file bundle: real HDFS_2k lines in run folders, a hidden file, and a label file beside them."""
    bundle = tmp_path / "bundle"
    lines = first_lines(BUNDLED / "HDFS" / "HDFS_2k.log", 30).splitlines(keepends=True)
    for index, run in enumerate(["run-b", "run-a", "run-c"]):
        (bundle / "HDFS" / "runs" / run).mkdir(parents=True)
        (bundle / "HDFS" / "runs" / run / "datanode.log").write_bytes(b"".join(lines[10 * index : 10 * index + 5]))
        (bundle / "HDFS" / "runs" / run / "namenode.log").write_bytes(b"".join(lines[10 * index + 5 : 10 * index + 10]))
    (bundle / "HDFS" / "runs" / ".cache").write_bytes(b"not a log\n")
    (bundle / "HDFS" / "labels.csv").write_bytes(b"run,label\nrun-a,Normal\n")
    return bundle


@pytest.mark.parametrize(
    "logs,expected",
    [
        ("HDFS/runs", [f"run-{run}/{node}.log" for run in "abc" for node in ("datanode", "namenode")]),
        ("HDFS/runs/", [f"run-{run}/{node}.log" for run in "abc" for node in ("datanode", "namenode")]),
        ("HDFS/runs/*/namenode.log", [f"run-{run}/namenode.log" for run in "abc"]),
        ("HDFS/runs/run-[ab]/*", [f"run-{run}/{node}.log" for run in "ab" for node in ("datanode", "namenode")]),
    ],
    ids=["folder", "folder-slash", "glob", "glob-class"],
)
def test_a_folder_or_glob_of_logs_is_listed_sorted_in_the_manifest(tmp_path: Path, logs: str, expected) -> None:
    bundle = runs_bundle(tmp_path)

    def edit(raw: dict) -> None:
        raw["paths"]["bundled"] = str(bundle)
        raw["datasets"]["hdfs_runs"] = {
            "kind": "raw",
            "system": "hdfs",
            "files": {"logs": [logs], "labels": "HDFS/labels.csv"},
            "session": {"rule": "file", "key_regex": "^([^/]+)/"},
            "label": {"rule": "key_file"},
            "split": {"method": "random"},
        }

    params = make_params(tmp_path, source="bundled", edit=edit)
    call_stage("download", params, "hdfs_runs")
    folder = Path(params.paths.raw) / "hdfs_runs"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == {"logs": expected, "labels": "labels.csv"}  # paths below the folder, sorted
    for relative in expected:
        assert (folder / relative).read_bytes() == (bundle / "HDFS" / "runs" / relative).read_bytes()
        assert manifest["sha256"][relative] == sha256((folder / relative).read_bytes())
    assert not (folder / ".cache").exists()


def test_a_glob_that_finds_no_log_is_a_one_line_error(tmp_path: Path) -> None:
    bundle = runs_bundle(tmp_path)

    def edit(raw: dict) -> None:
        raw["paths"]["bundled"] = str(bundle)
        raw["datasets"]["hdfs_runs"] = {
            "kind": "raw",
            "system": "hdfs",
            "files": {"logs": ["HDFS/runs/*/*.txt"]},
            "session": {"rule": "file"},
            "split": {"method": "random"},
        }

    params = make_params(tmp_path, source="bundled", edit=edit)
    with pytest.raises(DataError) as error:
        call_stage("download", params, "hdfs_runs")
    message = assert_one_line(error)
    assert "HDFS/runs/*/*.txt: no log file in this pattern (params datasets.hdfs_runs.files.logs[0])" in message
    assert_no_output(params, "hdfs_runs")


def test_unknown_dataset_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="dataset 'no_such_data' is not in params"):
        call_stage("download", make_params(tmp_path, source="bundled"), "no_such_data")


def test_loghub_mode_copies_datasets_without_loghub_origin_from_bundle(tmp_path: Path) -> None:
    params = make_params(tmp_path, source="loghub")  # base_url is unreachable: must not be used
    call_stage("download", params, "openstack_2k")
    manifest = json.loads((Path(params.paths.raw) / "openstack_2k" / "manifest.json").read_text())
    assert manifest["source"] == "bundled"
    assert manifest["files"] == {"logs": ["OpenStack_2k.log"], "labels": "anomaly_labels.txt"}


# ----------------------------------------------------------------------------- loghub mode over HTTP


@pytest.mark.parametrize("kind", list(CASES))
def test_good_archive_is_extracted_and_its_checksum_recorded_then_enforced(
    tmp_path: Path, server: ArchiveServer, kind: str
) -> None:
    dataset, archive, members, builder = CASES[kind]
    server.serve(archive, GOOD_ARCHIVES[kind])
    params = make_params(tmp_path, base_url=server.url)
    call_stage("download", params, dataset)

    check_loghub_output(params, dataset, members)
    assert [request.range for request in server.requests_for(archive)] == [None]
    assert json.loads(Path(params.paths.checksums).read_text()) == {archive: sha256(GOOD_ARCHIVES[kind])}
    archive_path = Path(params.paths.archives) / archive
    assert archive_path.read_bytes() == GOOD_ARCHIVES[kind]

    # a second run reuses the verified cached archive without asking the server again
    call_stage("download", params, dataset)
    check_loghub_output(params, dataset, members)
    assert len(server.requests_for(archive)) == 1

    # the server now serves other bytes: the recorded sha256 is enforced
    shutil.rmtree(Path(params.paths.raw) / dataset)
    archive_path.unlink()
    altered = builder({name: content + b"altered\n" for name, content in members.items()})
    server.serve(archive, altered)
    with pytest.raises(ChecksumError) as error:
        call_stage("download", params, dataset)
    message = assert_one_line(error)
    assert archive in message and sha256(GOOD_ARCHIVES[kind]) in message and sha256(altered) in message
    assert_no_output(params, dataset)
    assert not archive_path.exists() and not archive_path.with_name(archive + ".part").exists()


def test_cached_archive_that_changed_on_disk_is_rejected_and_removed(tmp_path: Path, server: ArchiveServer) -> None:
    server.serve("HDFS_v1.zip", GOOD_ARCHIVES["zip"])
    params = make_params(tmp_path, base_url=server.url)
    call_stage("download", params, "hdfs_logs")
    archive_path = Path(params.paths.archives) / "HDFS_v1.zip"
    archive_path.write_bytes(GOOD_ARCHIVES["zip"][:-10])  # truncated on disk
    with pytest.raises(ChecksumError) as error:
        call_stage("download", params, "hdfs_logs")
    assert sha256(GOOD_ARCHIVES["zip"]) in assert_one_line(error)
    assert not archive_path.exists()


def test_corrupt_archive_fails_pinned_checksum_and_leaves_nothing(tmp_path: Path, server: ArchiveServer) -> None:
    good = GOOD_ARCHIVES["zip"]
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    server.serve("HDFS_v1.zip", bytes(corrupt))
    params = make_params(tmp_path, base_url=server.url, archives={"HDFS_v1.zip": sha256(good)})
    with pytest.raises(ChecksumError) as error:
        call_stage("download", params, "hdfs_logs")
    message = assert_one_line(error)
    assert "HDFS_v1.zip" in message and sha256(good) in message and sha256(bytes(corrupt)) in message
    assert "data.archives.HDFS_v1.zip" in message
    assert_no_output(params, "hdfs_logs")
    assert list(Path(params.paths.archives).iterdir()) == []
    assert not Path(params.paths.checksums).exists()


def test_truncated_transfer_is_an_error_and_writes_no_output(tmp_path: Path, server: ArchiveServer) -> None:
    server.serve("HDFS_v1.zip", GOOD_ARCHIVES["zip"])
    server.state.drop_after_bytes = [100]  # Content-Length says the whole archive, the body stops at 100 bytes
    params = make_params(tmp_path, base_url=server.url)
    with pytest.raises(DownloadError) as error:
        call_stage("download", params, "hdfs_logs")
    message = assert_one_line(error)
    assert "HDFS_v1.zip" in message and "truncated" in message
    assert f"received 100 of {len(GOOD_ARCHIVES['zip'])} bytes" in message
    assert_no_output(params, "hdfs_logs")
    assert not (Path(params.paths.archives) / "HDFS_v1.zip").exists()
    assert not Path(params.paths.checksums).exists()


def test_run_after_server_dropped_connection_resumes_from_part_file(tmp_path: Path, server: ArchiveServer) -> None:
    good = GOOD_ARCHIVES["tar.gz"]
    cut = len(good) // 3
    server.serve("OpenStack.tar.gz", good)
    server.state.drop_after_bytes = [cut]
    params = make_params(tmp_path, base_url=server.url)
    with pytest.raises(DownloadError, match="kept in .* for the next run to resume"):
        call_stage("download", params, "openstack_instances")
    part = Path(params.paths.archives) / "OpenStack.tar.gz.part"
    assert part.read_bytes() == good[:cut]
    assert_no_output(params, "openstack_instances")

    call_stage("download", params, "openstack_instances")
    assert [request.range for request in server.requests_for("OpenStack.tar.gz")] == [None, f"bytes={cut}-"]
    assert (Path(params.paths.archives) / "OpenStack.tar.gz").read_bytes() == good
    assert not part.exists()
    check_loghub_output(params, "openstack_instances", OPENSTACK_MEMBERS)


def test_retries_resume_within_one_run(tmp_path: Path, server: ArchiveServer) -> None:
    good = GOOD_ARCHIVES["zip"]
    server.serve("HDFS_v1.zip", good)
    server.state.drop_after_bytes = [100, 200]
    params = make_params(tmp_path, base_url=server.url, retries=2)
    call_stage("download", params, "hdfs_logs")
    assert [request.range for request in server.requests_for("HDFS_v1.zip")] == [None, "bytes=100-", "bytes=300-"]
    check_loghub_output(params, "hdfs_logs", HDFS_MEMBERS)


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: ArchiveServer) -> None:
    server.serve("HDFS_v1.zip", GOOD_ARCHIVES["zip"])
    server.state.ignore_range = True
    params = make_params(tmp_path, base_url=server.url)
    part = Path(params.paths.archives) / "HDFS_v1.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 50)  # stale bytes that appending would keep
    call_stage("download", params, "hdfs_logs")
    assert [request.range for request in server.requests_for("HDFS_v1.zip")] == ["bytes=50-"]
    assert (Path(params.paths.archives) / "HDFS_v1.zip").read_bytes() == GOOD_ARCHIVES["zip"]
    check_loghub_output(params, "hdfs_logs", HDFS_MEMBERS)


def test_complete_part_file_is_finished_on_416(tmp_path: Path, server: ArchiveServer) -> None:
    server.serve("HDFS_v1.zip", GOOD_ARCHIVES["zip"])
    params = make_params(tmp_path, base_url=server.url)
    part = Path(params.paths.archives) / "HDFS_v1.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(GOOD_ARCHIVES["zip"])  # every byte arrived, the run died before the rename
    call_stage("download", params, "hdfs_logs")
    assert [request.range for request in server.requests_for("HDFS_v1.zip")] == [f"bytes={len(GOOD_ARCHIVES['zip'])}-"]
    check_loghub_output(params, "hdfs_logs", HDFS_MEMBERS)


def test_missing_file_on_server_is_not_retried(tmp_path: Path, server: ArchiveServer) -> None:
    params = make_params(tmp_path, base_url=server.url, retries=3)
    with pytest.raises(DownloadError, match=r"HDFS_v1.zip: download from .* failed: HTTP 404"):
        call_stage("download", params, "hdfs_logs")
    assert len(server.requests_for("HDFS_v1.zip")) == 1
    assert_no_output(params, "hdfs_logs")


def test_unreachable_server_fails_after_retries(tmp_path: Path, server: ArchiveServer) -> None:
    params = make_params(tmp_path, base_url="http://127.0.0.1:9/files", retries=1)  # port 9: nothing listens
    with pytest.raises(DownloadError, match=r"failed after 2 attempt\(s\)") as error:
        call_stage("download", params, "hdfs_logs")
    assert_one_line(error)
    assert_no_output(params, "hdfs_logs")


def test_member_missing_from_archive_names_params_key(tmp_path: Path, server: ArchiveServer) -> None:
    members = {name: content for name, content in HDFS_MEMBERS.items() if not name.startswith("preprocessed/")}
    server.serve("HDFS_v1.zip", build_zip(members))
    params = make_params(tmp_path, base_url=server.url)
    with pytest.raises(DataError, match=r"anomaly_label.csv.*datasets.hdfs_logs.loghub.labels") as error:
        call_stage("download", params, "hdfs_logs")
    assert_one_line(error)
    assert_no_output(params, "hdfs_logs")
    assert not Path(params.paths.checksums).exists()  # an archive that did not work out is never recorded


# ----------------------------------------------------------------------------- unsafe archives


def zip_member(name: str, mode: int = 0o100644) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    return info, b"/etc/passwd" if stat.S_ISLNK(mode) else b"evil\n"


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.devmajor, info.devminor = 1, 3
    return info


# An absolute member name in a folder the test may write to (the temporary folder), where a bad extraction would land.
EVIL_ABSOLUTE = str(Path(tempfile.gettempdir()) / "zerolog-evil")
UNSAFE = {
    "zip-parent": ("zip", [zip_member("../evil")], "'..'"),
    "zip-absolute": ("zip", [zip_member(EVIL_ABSOLUTE)], "absolute"),
    "zip-nested-parent": ("zip", [zip_member("preprocessed/../../evil")], "'..'"),
    "zip-symlink": ("zip", [zip_member("link", stat.S_IFLNK | 0o777)], "symbolic link"),
    "tar-parent": ("tar.gz", [tar_member("../evil")], "'..'"),
    "tar-absolute": ("tar.gz", [tar_member(EVIL_ABSOLUTE)], "absolute"),
    "tar-symlink-out": ("tar.gz", [tar_member("OpenStack/link", tarfile.SYMTYPE, "../../outside")], "symbolic link"),
    "tar-symlink-absolute": ("tar.gz", [tar_member("link", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
    "tar-hardlink-out": ("tar.gz", [tar_member("link", tarfile.LNKTYPE, "../outside")], "hard link"),
    "tar-device": ("tar.gz", [tar_member("OpenStack/null", tarfile.CHRTYPE)], "device"),
}


@pytest.mark.parametrize("case", list(UNSAFE))
def test_unsafe_archive_is_rejected(tmp_path: Path, server: ArchiveServer, case: str) -> None:
    kind, extra, reason = UNSAFE[case]
    dataset, archive, members, builder = CASES[kind]
    content = builder(members, extra)
    server.serve(archive, content)
    workdir = tmp_path / "work"
    workdir.mkdir()
    params = make_params(workdir, base_url=server.url)
    with pytest.raises(DownloadError) as error:
        call_stage("download", params, dataset)
    message = assert_one_line(error)
    assert archive in message and "rejected" in message and reason in message
    assert_no_output(params, dataset)
    assert not (Path(params.paths.archives) / archive).exists()
    assert not Path(params.paths.checksums).exists()
    assert not (tmp_path / "evil").exists() and not (workdir / "evil").exists()
    assert not Path(EVIL_ABSOLUTE).exists()


# ----------------------------------------------------------------------------- mirror folder


def test_mirror_folder_is_used_instead_of_the_url(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "OpenStack.tar.gz").write_bytes(GOOD_ARCHIVES["tar.gz"])
    params = make_params(tmp_path, mirror=mirror)  # base_url is unreachable
    call_stage("download", params, "openstack_instances")
    check_loghub_output(params, "openstack_instances", OPENSTACK_MEMBERS)
    recorded = json.loads(Path(params.paths.checksums).read_text())
    assert recorded == {"OpenStack.tar.gz": sha256(GOOD_ARCHIVES["tar.gz"])}

    changed = build_tar({name: content[::-1] for name, content in OPENSTACK_MEMBERS.items()})
    (mirror / "OpenStack.tar.gz").write_bytes(changed)
    with pytest.raises(ChecksumError) as error:
        call_stage("download", params, "openstack_instances")
    message = assert_one_line(error)
    assert sha256(GOOD_ARCHIVES["tar.gz"]) in message and sha256(changed) in message
    assert (mirror / "OpenStack.tar.gz").exists()  # the user's mirror file is never deleted
    check_loghub_output(params, "openstack_instances", OPENSTACK_MEMBERS)  # the earlier output is untouched

    (mirror / "OpenStack.tar.gz").unlink()
    with pytest.raises(DownloadError, match=r"OpenStack.tar.gz: archive not found .*data.mirror"):
        call_stage("download", params, "openstack_instances")


# ----------------------------------------------------------------------------- folders of runs under dvc repro


def _runs_project(root: Path, logs: str) -> Path:
    """A DVC project holding only the download stage of a dataset ``runs``: a folder of test runs (two services'
    logs per run, one of them empty in one run), given to ``files.logs`` as ``logs`` (a glob or a folder)."""
    project = root / "project"
    for run, (compute, api) in enumerate([(b"INFO a x\n", b"INFO b y\n"), (b"INFO c z\n", b"")], start=1):
        folder = project / "bundle" / "runs" / "Campaign" / f"Test_{run}" / "round_1"
        folder.mkdir(parents=True)
        (folder / "nova-compute.log").write_bytes(compute)
        (folder / "nova-api.log").write_bytes(api)
    raw = read_yaml((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["paths"]["bundled"] = "bundle"
    raw["datasets"]["runs"] = {
        "kind": "raw", "system": "openstack", "files": {"logs": [logs]}, "log_format": "<Level> <Component> <Content>",
        "timestamp": {"fields": [], "format": ""}, "session": {"rule": "file", "key_regex": "^(.+)/round_"},
        "split": {"method": "random"},
    }  # fmt: skip
    (project / "params.yaml").write_text(json.dumps(raw), encoding="utf-8")
    (project / "pipeline").mkdir()
    shutil.copy(REPO / "pipeline" / "download.py", project / "pipeline" / "download.py")
    params = parse_params(raw, "params.yaml")
    stage = stage_named("download")
    entry = {
        "cmd": "python pipeline/download.py runs",
        "params": ["data", "datasets.runs"],
        "deps": ["pipeline/download.py", *map(str, stage.deps(params, ArtifactPaths(params.paths), "runs"))],
        "outs": [str(output.path) for output in stage.outputs(params, ArtifactPaths(params.paths), "runs")],
    }
    (project / "dvc.yaml").write_text(json.dumps({"stages": {"download-runs": entry}}), encoding="utf-8")
    (project / ".dvc").mkdir()
    (project / ".dvc" / "config").write_text("[core]\n    analytics = false\n    no_scm = true\n", encoding="utf-8")
    return project


@pytest.mark.parametrize("logs", ["runs/*/*/*/nova-*.log", "runs"])
def test_a_glob_or_folder_of_runs_goes_through_dvc_repro(tmp_path, logs):
    """README "Adding a system": a glob or a folder in files.logs, run by the real ``dvc repro`` (DVC tracks the
    folder a glob searches; an empty file is skipped and named in the manifest); a run added to the folder makes
    the stage stale."""
    project = _runs_project(tmp_path, logs)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    completed = subprocess.run([*dvc, "repro"], cwd=project, env=environment, capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr + completed.stdout
    manifest = json.loads((project / "data" / "raw" / "runs" / "manifest.json").read_text())
    assert manifest["files"]["logs"] == [
        "Campaign/Test_1/round_1/nova-api.log",
        "Campaign/Test_1/round_1/nova-compute.log",
        "Campaign/Test_2/round_1/nova-compute.log",
    ]
    assert manifest["empty_files"] == ["runs/Campaign/Test_2/round_1/nova-api.log"]
    folder = project / "bundle" / "runs" / "Campaign" / "Test_3" / "round_1"
    folder.mkdir(parents=True)
    (folder / "nova-compute.log").write_bytes(b"INFO d w\n")
    status = subprocess.run([*dvc, "status", "--json"], cwd=project, env=environment, capture_output=True, text=True)
    assert "download-runs" in json.loads(status.stdout), status.stdout


def _runs_params(root: Path, empty_files: str, contents: list[bytes]) -> Params:
    raw = read_yaml((REPO / "params.yaml").read_text(encoding="utf-8"))
    for key in ("bundled", "raw"):
        raw["paths"][key] = str(root / key)
    raw["datasets"]["runs"] = {
        "kind": "raw",
        "system": "openstack",
        "files": {"logs": ["runs"]},
        "session": {"rule": "file"},
        "split": {"method": "random"},
        "empty_files": empty_files,
    }
    for run, content in enumerate(contents):
        (root / "bundled" / "runs" / f"run_{run}").mkdir(parents=True)
        (root / "bundled" / "runs" / f"run_{run}" / "app.log").write_bytes(content)
    return parse_params(raw, "params.yaml")


@pytest.mark.parametrize(
    ("empty_files", "contents", "error"),
    [
        (
            "fail",
            [b"INFO a\n", b""],
            "run_1/app.log: file is empty (params datasets.runs.files.logs[0] (run_1/app.log))",
        ),
        ("skip", [b"", b""], "params datasets.runs.files.logs: every one of its 2 log files is empty"),
    ],
)
def test_empty_log_files_fail_by_rule_or_when_all_are_empty(tmp_path, empty_files, contents, error):
    params = _runs_params(tmp_path, empty_files, contents)
    with pytest.raises(DataError) as caught:
        call_stage("download", params, "runs")
    assert str(caught.value).endswith(error) and "\n" not in str(caught.value)
    assert not (tmp_path / "raw" / "runs").exists()
