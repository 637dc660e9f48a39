"""What ``zerolog detect`` reads: a log file, a folder of them, or standard input, cut into chunks of whole lines.

A folder stands for every file below it (recursively, hidden files and folders skipped), in sorted path order, each
named by its path below the folder (what the ``file`` session rule keys on, as the download stage's manifest does); a
single file is named by its file name; standard input (``-``) by ``<stdin>``. ``.gz`` files are decompressed.

Chunks are the parse engine's (``zerolog.data.stream_parse.LineChunk``): about ``chunk_bytes`` of whole lines, a
byte range of a plain file or the lines themselves (gzip, standard input), never spanning two files.
"""

from __future__ import annotations

import itertools
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zerolog.data.stream_parse import LineChunk, plan_chunks, stream_chunks
from zerolog.errors import DataError

STDIN = "-"
STDIN_NAME = "<stdin>"


@dataclass(frozen=True)
class InputFile:
    """One input: a file (``path``) or standard input (``path`` None); ``name`` is how it is shown and keyed."""

    path: Path | None
    name: str

    def size_estimate(self) -> int | None:
        """Bytes of text it holds: the file size, a gzip file's recorded uncompressed size (modulo 4 GiB, as gzip
        records it), None for standard input."""
        if self.path is None:
            return None
        size = self.path.stat().st_size
        if self.path.suffix != ".gz" or size < 4:
            return size
        with open(self.path, "rb") as handle:
            handle.seek(-4, 2)
            return int(struct.unpack("<I", handle.read(4))[0])


def _folder_files(folder: Path) -> list[InputFile]:
    files = sorted(path for path in folder.rglob("*") if path.is_file()
                   and not any(part.startswith(".") for part in path.relative_to(folder).parts))  # fmt: skip
    if not files:
        raise DataError(f"{folder}: no log file in the folder")
    return [InputFile(path, path.relative_to(folder).as_posix()) for path in files]


def input_files(inputs: list[str]) -> list[InputFile]:
    """The inputs named on the command line, in order; ``-`` is standard input (once, alone)."""
    if not inputs:
        raise DataError("no input: name a log file, a folder, or - for standard input")
    if STDIN in inputs and len(inputs) > 1:
        raise DataError("standard input (-) cannot be combined with files")
    files: list[InputFile] = []
    for entry in inputs:
        if entry == STDIN:
            files.append(InputFile(None, STDIN_NAME))
            continue
        path = Path(entry)
        if path.is_dir():
            files.extend(_folder_files(path))
        elif path.is_file():
            files.append(InputFile(path, path.name))
        else:
            raise DataError(f"{path}: no such file or folder")
    names = [file.name for file in files]
    duplicate = next((name for name in names if names.count(name) > 1), None)
    if duplicate is not None:
        raise DataError(f"{duplicate}: two inputs have this name; give one folder or distinct files")
    return files


def chunks(files: list[InputFile], chunk_bytes: int) -> Iterator[LineChunk]:
    """Every input's chunks in input order, numbered from 0 across inputs."""
    counter = itertools.count()
    for file_index, file in enumerate(files):
        if file.path is None:
            yield from stream_chunks(sys.stdin.buffer, file_index, file.name, chunk_bytes, counter)
            continue
        for chunk in plan_chunks([file.path], chunk_bytes):
            # plan_chunks numbers one file's chunks from 0 and gives it file index 0: renumber across inputs
            yield LineChunk(index=next(counter), file_index=file_index, path=chunk.path, start=chunk.start,
                            end=chunk.end, data=chunk.data)  # fmt: skip


__all__ = ["STDIN", "STDIN_NAME", "InputFile", "chunks", "input_files"]
