"""Generate a diverse log from the real bundled DevStack nova log: one file, or the same lines in a folder of files.

Why: the generated HDFS input (generate.py) has 16 templates and no parse surprises; real systems have many message
shapes, and users bring folders of many small files (a folder per test run). This input has the nova log's 121
templates, its multi-line records and its id-laden messages, at any size.

Method (deterministic): the real nova log ``data/bundled/OpenStack/devstack/openstack-nova-sample.log.gz``
(25,659 lines; Kalaki et al., SPE 2023) is repeated until ``lines`` lines are written. In repetition ``r`` every
UUID (request ids, instance ids, ports) is replaced by a fresh one: the first 128 bits of BLAKE2b of the original
id and ``r``, in UUID form, so an id stays one id within a repetition (an instance stays one session) and is new in
the next. Everything else is verbatim. With ``files`` > 1 the same lines are cut into that many consecutive files
of about equal line counts (``nova-run-00000.log`` ...), each starting at a record's first line (a line that
starts with the upper-case level), as a folder of per-run logs does: a multi-line record is never cut.

Usage: ``python bench/generate_nova.py OUTPUT [--lines N] [--files K]`` (OUTPUT: a file, or a folder when K > 1).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLE = REPOSITORY / "data" / "bundled" / "OpenStack" / "devstack" / "openstack-nova-sample.log.gz"

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: A record's first line (``INFO nova.compute.manager ...``); other lines continue the record before them.
RECORD_START = re.compile(r"[A-Z]+ ")


def fresh_uuid(original: str, repetition: int) -> str:
    """A UUID-shaped id derived from ``original`` and ``repetition`` (deterministic, unique in practice)."""
    digest = hashlib.blake2b(f"{original}/{repetition}".encode("ascii"), digest_size=16).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


def generated_lines(lines: int, sample: Path = SAMPLE) -> Iterator[str]:
    """The first ``lines`` lines of the sample repeated with fresh ids per repetition (line ends included)."""
    with gzip.open(sample, "rt", encoding="utf-8") as handle:
        text = handle.read()
    original = text.splitlines(keepends=True)
    if not original:
        raise SystemExit(f"{sample}: empty sample")
    template = UUID.sub(lambda match: "{" + match.group(0) + "}", text.replace("{", "{{").replace("}", "}}"))
    ids = sorted(set(UUID.findall(text)))
    written, repetition = 0, 0
    while written < lines:
        rows = template.format_map({old: fresh_uuid(old, repetition) for old in ids}).splitlines(keepends=True)
        yield from rows[: lines - written]
        written += min(len(rows), lines - written)
        repetition += 1


def generate(output: Path, lines: int, files: int = 1) -> int:
    """Write ``lines`` lines to the file ``output`` (``files`` = 1) or to ``files`` files in the folder ``output``.
    Returns the number of lines written."""
    if files <= 1:
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w", encoding="utf-8") as handle:
            handle.writelines(generated_lines(lines))
        return lines
    output.mkdir(parents=True, exist_ok=True)
    per_file, index, batch = lines / files, 0, []
    for number, row in enumerate(generated_lines(lines)):
        if batch and number >= (index + 1) * per_file and RECORD_START.match(row):
            (output / f"nova-run-{index:05d}.log").write_text("".join(batch), encoding="utf-8")
            index, batch = index + 1, []
        batch.append(row)
    (output / f"nova-run-{index:05d}.log").write_text("".join(batch), encoding="utf-8")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="log file to write, or a folder with --files > 1")
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines to write (default 1,000,000)")
    parser.add_argument("--files", type=int, default=1, help="files to cut the lines into (default 1)")
    arguments = parser.parse_args(argv)
    written = generate(arguments.output, arguments.lines, arguments.files)
    print(f"{arguments.output}: {written} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
