"""Repository hygiene: no git-tracked text file names a machine's own paths or files the repository does not hold.

A committed file that names a folder of the machine it was written on (a home or temporary folder, the shared-data
folder beside a checkout) or a note kept outside the repository reads fine there and points nowhere in a fresh
clone. Scanned: every file ``git ls-files`` lists, but binary files, the bundled third-party logs under ``data/``
and ``dvc.lock`` (DVC writes it). The patterns are written so that this file does not match them itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SKIPPED_PREFIXES = ("data/",)  # bundled third-party log data (data/bundled/) and data/.gitignore
SKIPPED_FILES = {"dvc.lock"}

# An absolute path on someone's machine: a root folder no project file lives in, not after a word or a path part
# (so ``data/tmp/`` or ``https://host/home/`` do not match; ``sqlite:///`` + an absolute path does).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|home|Users|root)/")
SHARED_DATA = re.compile(r"\.\./shared\b")
# Files a note may cite that live outside the repository: each is a hit unless a tracked file matches it.
SCRATCH, FINDINGS, RESULTS = "scratch" + "/", "findings" + ".md", "RESULTS" + ".md"  # from parts, as above
OUTSIDE_FILES = {
    SCRATCH: re.compile(r"(?<![\w.-])scratch(?=/)"),
    FINDINGS: re.compile(r"(?<![\w.-])findings\.md\b"),
    RESULTS: re.compile(r"(?<![\w.-])RESULTS\.md\b"),
}
# ``method.md §3``: the section must exist, as a heading of docs/method.md that carries the number.
METHOD_SECTION = re.compile(r"method\.md,? §(\d+)")
METHOD_FILE = "docs/method.md"
# A test module named by its path (``tests/training/test_adapt.py``) must be a tracked file.
TEST_PATH = re.compile(r"(?<![\w./-])tests/[\w/]+\.py\b")


def tracked_files(root: Path) -> list[str]:
    """The repository's tracked files, relative to ``root``."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    return [name for name in listing.stdout.decode("utf-8").split("\0") if name]


def scanned_files(names: Iterable[str]) -> list[str]:
    return [name for name in names if not name.startswith(SKIPPED_PREFIXES) and name not in SKIPPED_FILES]


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (a NUL byte, or not UTF-8)."""
    content = path.read_bytes()
    if b"\0" in content:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


def method_sections(method_text: str) -> set[str]:
    """The section numbers docs/method.md's headings carry (``## Model and losses (§4)`` gives 4)."""
    headings = [line for line in method_text.splitlines() if line.startswith("#")]
    return {number for line in headings for number in re.findall(r"§(\d+)", line)}


def missing_outside_files(tracked: Iterable[str]) -> set[str]:
    """The names of OUTSIDE_FILES that no tracked path holds (a folder: any path in it; a file: its name)."""
    paths = list(tracked)
    held = {name for name in OUTSIDE_FILES if name.endswith("/") and any(f"/{name}" in f"/{path}" for path in paths)}
    held |= {Path(path).name for path in paths} & set(OUTSIDE_FILES)
    return set(OUTSIDE_FILES) - held


def line_problems(line: str, missing: set[str], sections: set[str], tracked: set[str]) -> list[str]:
    """What is wrong with one line of a tracked file, one phrase each (empty: nothing)."""
    problems = [f"machine path {match.group(0)!r}" for match in MACHINE_PATH.finditer(line)]
    problems += [f"shared-data path {match.group(0)!r}" for match in SHARED_DATA.finditer(line)]
    problems += [
        f"names {name!r}, which the repository does not hold"
        for name, pattern in OUTSIDE_FILES.items()
        if name in missing and pattern.search(line)
    ]
    problems += [
        f"names method.md §{number}, which no heading of {METHOD_FILE} carries"
        for number in METHOD_SECTION.findall(line)
        if number not in sections
    ]
    problems += [
        f"names {path}, which is not a tracked file" for path in TEST_PATH.findall(line) if path not in tracked
    ]
    return problems


def scan(root: Path, names: Iterable[str], tracked: Iterable[str], sections: set[str]) -> list[str]:
    """Every problem of the text files ``names`` under ``root`` (``tracked``: every file the repository holds), as
    ``file:line: problem``."""
    tracked = set(tracked)
    missing = missing_outside_files(tracked)
    hits = []
    for name in names:
        text = read_text(root / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            hits += [f"{name}:{number}: {problem}" for problem in line_problems(line, missing, sections, tracked)]
    return hits


@pytest.mark.skipif(shutil.which("git") is None or not (REPOSITORY / ".git").exists(), reason="needs a git checkout")
def test_tracked_files_name_no_machine_paths_and_no_missing_files() -> None:
    tracked = tracked_files(REPOSITORY)
    sections = method_sections((REPOSITORY / METHOD_FILE).read_text(encoding="utf-8"))
    hits = scan(REPOSITORY, scanned_files(tracked), tracked, sections)
    assert not hits, "\n".join(hits)


def test_the_scan_names_file_and_line_of_each_bad_reference(tmp_path: Path) -> None:
    root = "/" + "home"  # built from parts: this file must not match the patterns it holds
    missing_section = 7
    lines = [
        "fine: data/tmp/x, https://example.org/home/page, docs/method.md, tests/test_config.py",
        f"cache = '{root}/someone/zerolog/data'",
        "see " + "../" + "shared/loghub for the archives",
        "measured (" + "scratch" + "/research/" + "findings" + ".md)",
        "install breaks mlflow (" + "RESULTS" + ".md)",
        f"the pooling of method.md §{missing_section}",
        "the template vectors (method.md " + "§3)",
        "checked by tests/test_" + "gone.py",
    ]
    (tmp_path / "notes.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "picture.png").write_bytes(b"\x89PNG\0" + f"{root}/someone".encode())
    tracked = {"notes.md", "picture.png", "docs/method.md", "data/bundled/x.log", "reports/results.md",
               "tests/test_config.py"}  # fmt: skip
    assert scanned_files(sorted(tracked)) == [
        "docs/method.md", "notes.md", "picture.png", "reports/results.md", "tests/test_config.py"
    ]  # fmt: skip
    hits = scan(tmp_path, ["notes.md", "picture.png"], tracked, method_sections("# Method\n## Vectors (§3)\n"))
    assert hits == [
        f"notes.md:2: machine path '{root}/'",
        "notes.md:3: shared-data path '../" + "shared'",
        f"notes.md:4: names '{SCRATCH}', which the repository does not hold",
        f"notes.md:4: names '{FINDINGS}', which the repository does not hold",
        f"notes.md:5: names '{RESULTS}', which the repository does not hold",
        f"notes.md:6: names method.md §{missing_section}, which no heading of docs/method.md carries",
        "notes.md:8: names tests/test_" + "gone.py, which is not a tracked file",
    ]
    # A file the repository does hold may be named.
    held = tracked | {f"{SCRATCH}research/{FINDINGS}", RESULTS}
    assert [hit for hit in scan(tmp_path, ["notes.md"], held, {"3"}) if "does not hold" in hit] == []
