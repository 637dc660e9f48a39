"""Stage download: copy a bundled dataset, or fetch, verify and safely extract a full loghub dataset.

Why: every later stage reads ``paths.raw/<dataset>/`` and its ``manifest.json``, never params' file lists,
so the raw folder must be complete and trustworthy or absent. Hence:

- bundled mode copies the real samples in ``paths.bundled`` (offline, the default);
- loghub mode fetches the public archive (Zenodo record 8196385) with a resumable, retried, length-checked
  transfer, checks its sha256 (pinned in ``data.archives``, or recorded in ``paths.checksums`` on first use and
  enforced after), and extracts only safe members (no absolute paths, no ``..``, no links out, no devices);
- the raw folder appears only when everything succeeded (the runner commits it atomically); a bad archive is removed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from zerolog.artifacts import ArtifactPaths
from zerolog.config import DataConfig, DatasetConfig, LoghubOrigin, Params
from zerolog.errors import ChecksumError, DataError, DownloadError
from zerolog.io import read_json, write_json
from zerolog.runner import Outputs

CHUNK_BYTES = 1 << 20  # read and hash in 1 MiB chunks
PROGRESS_MIN_BYTES = 32 << 20  # hashing or extracting less than this takes well under a second: no progress bar
MANIFEST_NAME = "manifest.json"
EXTRACT_FOLDER = ".extract"  # temporary extraction folder inside the (temporary) raw folder


@dataclass(frozen=True)
class FileEntry:
    """One file a dataset needs: its manifest key, list position (None for a single path) and params key."""

    key: str
    index: int | None
    path: str  # relative to the bundle (bundled) or a member path inside the archive (loghub)
    params_key: str
    destination: str | None = None  # a file found by a folder or glob in ``logs``: its path below the folder/glob root


#: Characters that make a ``files.logs`` entry a glob pattern (``pathlib`` syntax, ``**`` for any depth).
GLOB_CHARACTERS = frozenset("*?[")


def glob_root(path: str) -> str:
    """The leading components of a ``files`` entry before its first glob component (the entry itself when it has
    none; ``.`` when the pattern starts at the top): what a pattern can find files under, so the folder DVC tracks
    for it (``Runs/*/app.log`` -> ``Runs``; DVC cannot take a pattern as a dependency)."""
    parts = PurePosixPath(path).parts
    plain = next((i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part)), len(parts))
    return str(PurePosixPath(*parts[:plain])) if plain else "."


# ----------------------------------------------------------------------------- the stage


@dataclass(frozen=True)
class DownloadSection:
    """Stage download's settings: the dataset, its ``datasets.<name>`` section and ``data``."""

    dataset: str
    config: DatasetConfig
    data: DataConfig
    source_file: str  # the params file, named in error messages

    @property
    def loghub(self) -> LoghubOrigin | None:
        """The archive origin when ``data.source: loghub`` and the dataset has one (else: copied from the bundle)."""
        return self.config.loghub if self.data.source == "loghub" else None


def download_section(params: Params, dataset: str) -> DownloadSection:
    return DownloadSection(dataset, params.datasets[dataset], params.data, params.source_file)


@dataclass(frozen=True)
class DownloadInputs:
    """Where the dataset's files come from: the bundle's files, or the verified archive's members."""

    entries: list[FileEntry]
    names: dict[str, str]  # entry path -> its file name in raw/<name>/
    origin: Path  # the bundle folder, or the archive
    empty: list[str] = field(default_factory=list)  # bundled: empty log files skipped (empty_files: skip)
    from_mirror: bool = False
    # loghub, no sha256 pinned: (paths.checksums, archive, its sha256), recorded once the archive extracted
    record: tuple[Path, str, str] | None = None


def load_download_inputs(section: DownloadSection, paths: ArtifactPaths) -> DownloadInputs:
    """The bundle's files (checked), or the loghub archive, fetched and verified (``paths.archives``)."""
    name, dataset = section.dataset, section.config
    if section.loghub is not None:
        return _loghub_inputs(section, paths, section.loghub)
    bundled = Path(paths.paths.bundled)
    entries = _expand_logs(bundled, _file_entries(dataset.files, f"datasets.{name}.files"))
    entries, empty = _without_empty_logs(bundled, entries, dataset, f"datasets.{name}")
    for entry in entries:
        _check_nonempty_file(bundled / entry.path, entry.params_key)
    return DownloadInputs(entries, _destination_names(entries), bundled, empty)


@dataclass(frozen=True)
class DownloadResult:
    """``paths.raw/<name>/``: the dataset's files and ``manifest.json``."""

    section: DownloadSection
    inputs: DownloadInputs

    def metrics(self) -> dict[str, Any]:
        return {"files": len(self.inputs.entries), "empty_files_skipped": len(self.inputs.empty)}

    def write(self, outputs: Outputs) -> None:
        output, inputs, section = outputs["raw"], self.inputs, self.section
        if section.loghub is None:
            for entry in inputs.entries:
                destination = output / inputs.names[entry.path]
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(inputs.origin / entry.path, destination)
        else:
            _extract_entries(inputs, output)
        source = "bundled" if section.loghub is None else "loghub"
        _write_manifest(output, section.dataset, section.config, source, inputs.entries, inputs.names, inputs.origin,
                        inputs.empty)  # fmt: skip
        if inputs.record is not None:
            # First download of an archive that params leave unpinned: record its sha256 only now that it
            # extracted safely with every member the dataset needs; every later run enforces it.
            _record_checksum(*inputs.record)


def compute_download(section: DownloadSection, inputs: DownloadInputs) -> DownloadResult:
    """Stage download: with ``data.source: loghub`` a dataset that has a ``loghub`` origin comes from the archive,
    every other dataset (or every dataset with ``data.source: bundled``) from ``paths.bundled``."""
    return DownloadResult(section, inputs)


# ----------------------------------------------------------------------------- bundled mode


def _without_empty_logs(
    bundled: Path, entries: list[FileEntry], dataset: DatasetConfig, where: str
) -> tuple[list[FileEntry], list[str]]:
    """The entries less the empty log files (rule ``empty_files: skip``), and those files' paths in the bundle.

    Why: in a folder of runs an empty file is a normal run (the service logged nothing), not a broken dataset. Log
    entries are renumbered so the manifest's ``logs`` list stays dense; a dataset whose every log file is empty is
    a DataError naming its params key, as is any empty file under ``empty_files: fail``.
    """
    if dataset.empty_files == "fail":
        return entries, []
    empty = [entry for entry in entries if entry.key == "logs" and _is_empty_file(bundled / entry.path)]
    if not empty:
        return entries, []
    kept = [entry for entry in entries if entry not in empty]
    if not any(entry.key == "logs" for entry in kept):
        raise DataError(f"params {where}.files.logs: every one of its {len(empty)} log files is empty")
    logs = iter(range(len(entries)))
    kept = [replace(entry, index=next(logs)) if entry.key == "logs" and entry.index is not None else entry
            for entry in kept]  # fmt: skip
    return kept, [entry.path for entry in empty]


def _is_empty_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size == 0


# ----------------------------------------------------------------------------- loghub mode


def _loghub_inputs(section: DownloadSection, paths: ArtifactPaths, origin: LoghubOrigin) -> DownloadInputs:
    """The archive's members the dataset needs, the archive fetched (or taken from the mirror) and verified."""
    name, dataset, where = section.dataset, section.config, f"datasets.{section.dataset}.loghub"
    entries = _file_entries(
        {"logs": origin.logs} | ({"labels": origin.labels} if origin.labels is not None else {}), where
    )
    if {entry.key for entry in entries} != set(dataset.files):
        raise DataError(
            f"{section.source_file}: {where}: keys {sorted({entry.key for entry in entries})} must match "
            f"datasets.{name}.files keys {sorted(dataset.files)}"
        )
    if origin.archive not in section.data.archives:
        raise DataError(
            f"{section.source_file}: data.archives: no entry for {origin.archive!r} (named by {where}.archive)"
        )
    archive_path, from_mirror, actual, unpinned = _verified_archive(section, paths, origin.archive)
    record = (Path(paths.paths.checksums), origin.archive, actual) if unpinned else None
    return DownloadInputs(entries, _destination_names(entries), archive_path, from_mirror=from_mirror, record=record)


def _extract_entries(inputs: DownloadInputs, output: Path) -> None:
    """Extract the archive's members into ``output`` (their names in raw/<name>/), through a temporary folder."""
    extract_folder = output / EXTRACT_FOLDER
    wanted = {entry.path: entry.params_key for entry in inputs.entries}
    members = _extract_members(inputs.origin, wanted, extract_folder, inputs.from_mirror)
    for entry in inputs.entries:
        extracted = extract_folder / members[entry.path]
        _check_nonempty_file(extracted, entry.params_key, archive=inputs.origin)
        destination = output / inputs.names[entry.path]
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(extracted, destination)
    shutil.rmtree(extract_folder)


def _verified_archive(section: DownloadSection, paths: ArtifactPaths, archive: str) -> tuple[Path, bool, str, bool]:
    """Return (archive path, whether it is the user's mirror file, its sha256, whether no sha256 was expected).

    The expected sha256 comes from ``data.archives`` or, when that is null, from ``paths.checksums``.
    A mismatch raises ChecksumError and removes the bad archive (a mirror file is left to its owner).
    """
    data = section.data
    checksums_path = Path(paths.paths.checksums)
    if data.archives[archive] is not None:
        expected, expected_from = data.archives[archive], f"{section.source_file} data.archives.{archive}"
    else:
        expected, expected_from = _recorded_checksums(checksums_path).get(archive), str(checksums_path)

    if data.mirror is not None:
        archive_path = Path(data.mirror) / archive
        if not archive_path.is_file():
            raise DownloadError(f"{archive_path}: archive not found in the mirror folder (params data.mirror)")
        from_mirror = True
    else:
        archive_path = Path(paths.paths.archives) / archive
        from_mirror = False
        if not archive_path.is_file():
            part_path = archive_path.with_name(archive_path.name + ".part")
            url = f"{data.base_url.rstrip('/')}/{urllib.parse.quote(archive)}"
            _fetch_resumable(url, part_path, data)
            actual = _sha256_with_progress(part_path)
            if expected is not None and actual != expected:
                part_path.unlink()
                raise ChecksumError(
                    f"{archive_path}: sha256 mismatch (downloaded from {url}): expected {expected} "
                    f"({expected_from}), got {actual}; the archive was removed"
                )
            os.replace(part_path, archive_path)
            return archive_path, False, actual, expected is None

    actual = _sha256_with_progress(archive_path)
    if expected is not None and actual != expected:
        if not from_mirror:
            archive_path.unlink()
        removed = "the mirror file was left in place" if from_mirror else "the archive was removed"
        raise ChecksumError(
            f"{archive_path}: sha256 mismatch: expected {expected} ({expected_from}), got {actual}; {removed}"
        )
    return archive_path, from_mirror, actual, expected is None


# ----------------------------------------------------------------------------- resumable HTTP transfer


class _TransientFailure(Exception):
    """A transfer failure worth retrying (connection dropped, timeout, truncated body, 5xx)."""


class _PermanentFailure(Exception):
    """A transfer failure that retrying cannot fix (404 and other 4xx answers)."""


def _fetch_resumable(url: str, part_path: Path, data: DataConfig) -> None:
    """Download ``url`` into ``part_path``, resuming from the bytes already there, with ``data.retries`` retries.

    On failure the partial file is kept, so a later attempt (or a later run) resumes with an HTTP Range request.
    """
    part_path.parent.mkdir(parents=True, exist_ok=True)
    archive_name = part_path.name.removesuffix(".part")
    attempts = data.retries + 1
    last_failure: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, part_path, data.timeout_seconds)
            return
        except _PermanentFailure as failure:
            raise DownloadError(f"{archive_name}: download from {url} failed: {failure}") from None
        except (_TransientFailure, urllib.error.URLError, http.client.HTTPException, OSError) as failure:
            last_failure = failure
            if attempt < attempts:
                tqdm.write(f"{url}: attempt {attempt} of {attempts} failed ({_one_line(failure)}); retrying")
                time.sleep(data.retry_wait_seconds * attempt)
    kept = part_path.stat().st_size if part_path.exists() else 0
    resume = f"{kept} bytes kept in {part_path} for the next run to resume" if kept else "no bytes received"
    raise DownloadError(
        f"{archive_name}: download from {url} failed after {attempts} attempt(s): {_one_line(last_failure)}; {resume}"
    )


def _fetch_once(url: str, part_path: Path, timeout_seconds: float) -> None:
    """One HTTP attempt: ask for the bytes after those in ``part_path`` and append them.

    A server that ignores Range (answers 200) restarts the file from byte 0; a 416 answer means the partial
    file is already complete (or stale, then it is discarded). A body shorter than Content-Length is a
    truncated transfer.
    """
    offset = part_path.stat().st_size if part_path.exists() else 0
    headers = {"User-Agent": "zerolog-download"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_seconds)
    except urllib.error.HTTPError as error:
        content_range = error.headers.get("Content-Range", "") if error.headers else ""
        error.close()
        if error.code == 416 and offset:
            if _total_from_content_range(content_range) == offset:
                return  # the partial file already holds every byte
            part_path.unlink()
            raise _TransientFailure(f"server refused resuming at byte {offset}; restarting from byte 0") from None
        if 400 <= error.code < 500 and error.code not in (408, 429):
            raise _PermanentFailure(f"HTTP {error.code} {error.reason}") from None
        raise _TransientFailure(f"HTTP {error.code} {error.reason}") from None

    with response:
        if response.status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                part_path.unlink()
                raise _TransientFailure(f"server resumed at byte {start} instead of {offset}; restarting")
            mode = "ab"
        else:
            if offset:
                tqdm.write(f"{url}: server ignored the Range header; restarting from byte 0")
            offset, mode = 0, "wb"
        length_header = response.headers.get("Content-Length", "")
        expected_total = offset + int(length_header) if length_header.isdigit() else None
        received = 0
        with (
            open(part_path, mode) as handle,
            tqdm(
                total=expected_total, initial=offset, unit="B", unit_scale=True, desc=part_path.name, leave=False
            ) as progress,
        ):
            while chunk := response.read(CHUNK_BYTES):
                handle.write(chunk)
                received += len(chunk)
                progress.update(len(chunk))
    if expected_total is not None and offset + received != expected_total:
        raise _TransientFailure(
            f"truncated transfer: received {offset + received} of {expected_total} bytes (Content-Length)"
        )


def _start_from_content_range(header: str) -> int | None:
    """First byte of ``Content-Range: bytes START-END/TOTAL``, or None when unreadable."""
    try:
        return int(header.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _total_from_content_range(header: str) -> int | None:
    """TOTAL of ``Content-Range: bytes START-END/TOTAL`` or ``bytes */TOTAL``, or None when unknown."""
    try:
        return int(header.rsplit("/", 1)[1])
    except (IndexError, ValueError):
        return None


# ----------------------------------------------------------------------------- safe extraction


def _extract_members(archive_path: Path, wanted: dict[str, str], folder: Path, from_mirror: bool) -> dict[str, str]:
    """Check every member of a zip or tar archive, then extract the wanted ones into ``folder``.

    ``wanted`` maps member paths to the params key naming them. Returns {wanted path: member path relative to
    ``folder``}. An unsafe or unreadable archive raises
    DownloadError and (unless it is the user's mirror file) is removed, since its bytes cannot be used.
    """
    try:
        if zipfile.is_zipfile(archive_path):
            return _extract_zip(archive_path, wanted, folder)
        if tarfile.is_tarfile(archive_path):
            return _extract_tar(archive_path, wanted, folder)
        raise _UnsafeArchive("neither a zip nor a tar archive")
    except (_UnsafeArchive, zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        if not from_mirror:
            archive_path.unlink(missing_ok=True)
        removed = "the mirror file was left in place" if from_mirror else "the archive was removed"
        raise DownloadError(f"{archive_path}: rejected: {_one_line(error)}; {removed}") from None


class _UnsafeArchive(Exception):
    """An archive member that could write outside the extraction folder, or an archive we cannot read."""


def _member_problem(name: str) -> str | None:
    """Why a member name is unsafe (absolute, drive letter, ``..`` component), or None when it is safe."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[0].isalpha() and name[1] == ":"):
        return "absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "'..' path component"
    if "\0" in name:
        return "NUL in name"
    return None


def _link_escapes(member_name: str, link_target: str, relative_to_member: bool) -> bool:
    """Whether a link target leaves the extraction folder (symlinks are relative to the member's folder)."""
    if _member_problem(link_target) == "absolute path":
        return True
    base = os.path.dirname(member_name) if relative_to_member else ""
    resolved = os.path.normpath(os.path.join(base, link_target))
    return resolved == ".." or resolved.startswith("../") or os.path.isabs(resolved)


def _extract_zip(archive_path: Path, wanted: dict[str, str], folder: Path) -> dict[str, str]:
    """Zip: every member name is checked here (zipfile has no extraction filter); links and devices are refused."""
    with zipfile.ZipFile(archive_path) as archive:
        infos = archive.infolist()
        for info in infos:
            problem = _member_problem(info.filename)
            mode = info.external_attr >> 16
            if problem is None and stat.S_ISLNK(mode):
                problem = "symbolic link"
            if problem is None and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)):
                problem = "device or special file"
            if problem is not None:
                raise _UnsafeArchive(f"member {info.filename!r}: {problem}")
        files = {_normalized(info.filename): info for info in infos if not info.is_dir()}
        members = _match_members(archive_path, wanted, list(files))
        selected = sorted(set(members.values()))
        root = folder.resolve()
        with _byte_progress(
            sum(files[path].file_size for path in selected), f"extract {archive_path.name}"
        ) as progress:
            for path in selected:
                destination = folder / path
                if not destination.resolve().is_relative_to(root):
                    raise _UnsafeArchive(f"member {path!r}: resolves outside the extraction folder")
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(files[path]) as source, open(destination, "wb") as target:
                    for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                        target.write(chunk)
                        progress.update(len(chunk))
    return members


def _extract_tar(archive_path: Path, wanted: dict[str, str], folder: Path) -> dict[str, str]:
    """Tar (any compression): check every member, then extract the wanted ones with tarfile's ``data`` filter."""
    with tarfile.open(archive_path, "r:*") as archive:
        infos = archive.getmembers()
        for info in infos:
            problem = _member_problem(info.name)
            if problem is None and info.issym() and _link_escapes(info.name, info.linkname, relative_to_member=True):
                problem = f"symbolic link to {info.linkname!r} outside the archive"
            if problem is None and info.islnk() and _link_escapes(info.name, info.linkname, relative_to_member=False):
                problem = f"hard link to {info.linkname!r} outside the archive"
            if problem is None and (info.ischr() or info.isblk() or info.isfifo()):
                problem = "device or special file"
            if problem is not None:
                raise _UnsafeArchive(f"member {info.name!r}: {problem}")
        files = {_normalized(info.name): info for info in infos if info.isfile()}
        members = _match_members(archive_path, wanted, list(files))
        selected = [files[path] for path in sorted(set(members.values()))]
        folder.mkdir(parents=True, exist_ok=True)
        with _byte_progress(sum(info.size for info in selected), f"extract {archive_path.name}") as progress:
            for info in selected:
                archive.extract(info, folder, filter="data")
                progress.update(info.size)
    # the data filter may have rewritten names (leading "/" or "./" stripped): find each file where it landed
    return {path: _normalized(files[member].name) for path, member in members.items()}


def _byte_progress(total_bytes: int, description: str) -> tqdm:
    """A byte progress bar, hidden below ``PROGRESS_MIN_BYTES`` (extracting or hashing the full archives)."""
    return tqdm(
        total=total_bytes,
        unit="B",
        unit_scale=True,
        desc=description,
        leave=False,
        disable=total_bytes < PROGRESS_MIN_BYTES,
    )


def _normalized(name: str) -> str:
    """A member name without leading ``./`` (and trailing ``/``), as a POSIX relative path."""
    return str(PurePosixPath(name.replace("\\", "/")))


def _match_members(archive_path: Path, wanted: dict[str, str], member_paths: list[str]) -> dict[str, str]:
    """Map each wanted path to the one archive file whose path equals it or ends with it (whole components)."""
    matches: dict[str, str] = {}
    for path, params_key in wanted.items():
        parts = PurePosixPath(path).parts
        candidates = [member for member in member_paths if PurePosixPath(member).parts[-len(parts) :] == parts]
        exact = [member for member in candidates if member == _normalized(path)]
        if exact:
            candidates = exact
        if not candidates:
            raise DataError(f"{archive_path}: no member {path!r} in the archive (params {params_key})")
        if len(candidates) > 1:
            raise DataError(
                f"{archive_path}: member {path!r} (params {params_key}) is ambiguous: {', '.join(sorted(candidates))}"
            )
        matches[path] = candidates[0]
    return matches


# ----------------------------------------------------------------------------- manifest and helpers


def _file_entries(files: dict[str, str | list[str]], where: str) -> list[FileEntry]:
    """Flatten a params ``files`` mapping (values a path or a list of paths) into entries, checking each path."""
    entries = []
    for key, value in files.items():
        paths = [(None, value)] if isinstance(value, str) else list(enumerate(value))
        for index, path in paths:
            params_key = f"{where}.{key}" + (f"[{index}]" if index is not None else "")
            if not path or _member_problem(path) is not None:
                raise DataError(f"params {params_key}: {path!r} must be a relative path without '..'")
            entries.append(FileEntry(key, index, path, params_key))
    return entries


def _expand_logs(bundled: Path, entries: list[FileEntry]) -> list[FileEntry]:
    """Replace each ``logs`` entry that names a folder or a glob pattern by the files it finds, sorted by path.

    Why: a system that writes one log file per run or container is given as a folder (``Runs/``) or a pattern
    (``Runs/*/app.log``); the manifest then lists every file, sorted, so that parse reads them in a stable order and
    ``session: {rule: file}`` can key sessions by path. Each file keeps its path below the folder (or below the
    pattern's leading plain components) in raw/<name>/. Hidden files (a component starting with ``.``) are skipped.
    A folder or pattern that finds no file is a DataError naming it and its params key.
    """
    expanded: list[FileEntry] = []
    for entry in entries:
        parts = PurePosixPath(entry.path).parts
        is_pattern = any(GLOB_CHARACTERS & set(part) for part in parts)
        if entry.key != "logs" or not (is_pattern or (bundled / entry.path).is_dir()):
            expanded.append(entry)
            continue
        root_path = glob_root(entry.path)
        root = bundled / root_path
        found = root.rglob("*") if not is_pattern else root.glob(str(PurePosixPath(entry.path).relative_to(root_path)))
        relative = sorted(
            path.relative_to(root).as_posix()
            for path in found
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
        )
        if not relative:
            what = "pattern" if is_pattern else "folder"
            raise DataError(f"{bundled / entry.path}: no log file in this {what} (params {entry.params_key})")
        prefix = PurePosixPath(root_path)
        first_index = sum(1 for earlier in expanded if earlier.key == entry.key)
        expanded.extend(
            FileEntry(entry.key, first_index + offset, str(prefix / path), f"{entry.params_key} ({path})", path)
            for offset, path in enumerate(relative)
        )
    return expanded


def _destination_names(entries: list[FileEntry]) -> dict[str, str]:
    """File name in raw/<name>/ for each entry's path: its base name, or the whole relative path on a clash; files
    found by a folder or glob keep their path below it. Two entries landing on one name is a DataError."""
    base_names = [PurePosixPath(entry.path).name for entry in entries]
    names = {
        entry.path: entry.destination
        if entry.destination is not None
        else (base if base_names.count(base) == 1 else _normalized(entry.path))
        for entry, base in zip(entries, base_names, strict=True)
    }
    owners: dict[str, str] = {}
    for entry in entries:
        name = names[entry.path]
        if owners.setdefault(name, entry.params_key) != entry.params_key:
            raise DataError(f"params {entry.params_key}: {entry.path!r} lands on {name!r} like {owners[name]}")
    return names


def _check_nonempty_file(path: Path, params_key: str, archive: Path | None = None) -> None:
    """Raise DataError naming the file and params key when ``path`` is missing, not a file, or empty."""
    origin = f" (from {archive})" if archive is not None else ""
    if not path.is_file():
        raise DataError(f"{path}: file missing{origin} (params {params_key})")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty{origin} (params {params_key})")


def _write_manifest(
    output: Path,
    name: str,
    dataset: DatasetConfig,
    source: str,
    entries: list[FileEntry],
    names: dict[str, str],
    origin_root: Path,
    empty_files: list[str] | None = None,
) -> None:
    """Write manifest.json: files (same keys and shapes as params, paths relative to the folder), sha256, and each
    file's origin (the bundled file, or ``<archive>/<member>``), so errors can name what the user edits; the empty
    log files skipped (``empty_files``, key present only when there were some)."""
    files: dict[str, str | list[str]] = {}
    for entry in entries:
        if entry.index is None:
            files[entry.key] = names[entry.path]
        else:
            files.setdefault(entry.key, [])
            files[entry.key].append(names[entry.path])  # type: ignore[union-attr]
    sha256 = {names[entry.path]: _sha256_with_progress(output / names[entry.path]) for entry in entries}
    origins = {names[entry.path]: str(origin_root / entry.path) for entry in entries}  # what the user edits
    manifest = {
        "dataset": name,
        "kind": dataset.kind,
        "source": source,
        "files": files,
        "sha256": sha256,
        "origins": origins,
    }
    if empty_files:
        manifest["empty_files"] = list(empty_files)
    write_json(output / MANIFEST_NAME, manifest)


def _sha256_with_progress(path: Path) -> str:
    """sha256 of a file, with a progress bar (the full archives take seconds to hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle, _byte_progress(path.stat().st_size, f"sha256 {path.name}") as bar:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _recorded_checksums(path: Path) -> dict[str, str]:
    """The archive sha256 values recorded on earlier downloads ({} when none were recorded yet)."""
    if not path.exists():
        return {}
    recorded = read_json(path)
    if not isinstance(recorded, dict) or not all(isinstance(value, str) for value in recorded.values()):
        raise DataError(f"{path}: expected a JSON object mapping archive names to sha256 strings")
    return recorded


def _record_checksum(path: Path, archive: str, digest: str) -> None:
    """Add ``archive: digest`` to the checksum record (atomically rewritten)."""
    recorded = _recorded_checksums(path)
    recorded[archive] = digest
    write_json(path, recorded)


def _one_line(error: BaseException | None) -> str:
    """An exception as one line of text (type name when it carries no message)."""
    text = " ".join(str(error).split()) if error is not None else ""
    return text or type(error).__name__
