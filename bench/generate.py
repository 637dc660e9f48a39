"""Generate a full-size HDFS log from the real bundled sample, streamed to disk (never held in memory).

Method (deterministic, no randomness): the real 2,000-line sample ``data/bundled/HDFS/HDFS_2k.log`` (loghub) is
repeated until the requested number of lines is written (default: HDFS_v1's 11,175,629 lines; the last
repetition is cut). Repetition ``r`` (0-based) is the sample with

- **timestamps shifted** by ``r × shift_days`` whole days (``shift_days`` = the sample's span rounded up to
  whole days, 2 for HDFS_2k), so time only moves forward from one repetition to the next and the time of day,
  hence every ``<Time>`` field, is the sample's own;
- **fresh block ids**: every distinct block id of the sample gets, in repetition ``r``, the id
  ``blk_[-](r + 1) · 10^13 + i · 10^8 + h`` where ``i`` is the block's first-seen index in the sample and ``h``
  eight digits of the BLAKE2b hash of the original id; the sign is the original's. Ids are unique across
  repetitions and never equal a sample id, and one original block maps to one id within a repetition, so the
  lines of a block stay one session;
- everything else (Pid, level, component, IP addresses, sizes) as in the sample.

Optionally (``--labels``) the block label file is written beside it: each fresh id with its original block's
HDFS_v1 label (``HDFS_2k_block_labels.csv``), so sessionize can label the generated sessions.

Sessions are as long as in the sample (2,200 blocks in 2,000 lines, about one line per block), so the
generated file has about 1.1 sessions per line: 12.3M sessions at full size, 21x HDFS_v1's 575,061 blocks.
``--block-reuse K`` gives K consecutive repetitions the same fresh ids (the ``r + 1`` above becomes
``r // K + 1``): a block then collects its lines from K repetitions (about 1.1 K lines), and K = 20 gives
HDFS_v1's block count and session length (about 614k blocks, median 19 lines in HDFS_v1) at full size. The parse
does not see the difference (block ids are masked before Drain); the session stages do.

Usage: ``python bench/generate.py OUTPUT [--lines N] [--labels LABELS_CSV] [--block-reuse K]``
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLE = REPOSITORY / "data" / "bundled" / "HDFS" / "HDFS_2k.log"
SAMPLE_LABELS = REPOSITORY / "data" / "bundled" / "HDFS" / "HDFS_2k_block_labels.csv"

#: HDFS_v1's line count (loghub, HDFS.log).
HDFS_V1_LINES = 11_175_629

BLOCK = re.compile(r"blk_(-?)(\d+)")
DATE_FORMAT = "%y%m%d"
STAMP_FORMAT = "%y%m%d %H%M%S"


class _SampleTemplate:
    """The sample as one format string with a slot per date and per block id, so a repetition is one ``format``."""

    def __init__(self, sample: Path) -> None:
        lines = sample.read_text(encoding="utf-8").splitlines(keepends=True)
        if not lines:
            raise SystemExit(f"{sample}: empty sample")
        self.block_ids: list[str] = []  # "blk_..." in first-seen order
        self.block_index: dict[str, int] = {}
        self.dates: list[str] = []
        date_index: dict[str, int] = {}
        self.line_templates: list[str] = []
        for number, line in enumerate(lines, start=1):
            date, rest = line[:6], line[6:]
            try:
                datetime.datetime.strptime(line[:13], STAMP_FORMAT)
            except ValueError:
                raise SystemExit(f"{sample}: line {number}: does not start with a yymmdd HHMMSS time") from None
            slot = date_index.setdefault(date, len(date_index))
            if slot == len(self.dates):
                self.dates.append(date)
            rest = rest.replace("{", "{{").replace("}", "}}")

            def block_slot(match: re.Match[str]) -> str:
                block = match.group(0)
                if block not in self.block_index:
                    self.block_index[block] = len(self.block_ids)
                    self.block_ids.append(block)
                return f"{{b{self.block_index[block]}}}"

            self.line_templates.append(f"{{d{slot}}}" + BLOCK.sub(block_slot, rest))
        stamps = [datetime.datetime.strptime(line[:13], STAMP_FORMAT) for line in lines]
        self.first_date = min(stamps)
        # The fewest whole days that move the sample's first moment past its last one.
        self.shift_days = (max(stamps) - self.first_date).days + 1
        self.text = "".join(self.line_templates)
        self.suffix = [self._hash_digits(block) for block in self.block_ids]

    @staticmethod
    def _hash_digits(block: str) -> int:
        return int.from_bytes(hashlib.blake2b(block.encode("ascii"), digest_size=8).digest(), "big") % 10**8

    def fresh_ids(self, block_set: int) -> list[str]:
        """The fresh id of every sample block in block set ``block_set`` (sample first-seen order)."""
        ids = []
        for index, block in enumerate(self.block_ids):
            sign = "-" if block.startswith("blk_-") else ""
            ids.append(f"blk_{sign}{(block_set + 1) * 10**13 + index * 10**8 + self.suffix[index]}")
        return ids

    def slots(self, repetition: int, block_reuse: int) -> dict[str, str]:
        shift = datetime.timedelta(days=repetition * self.shift_days)
        values = {
            f"d{slot}": (datetime.datetime.strptime(date, DATE_FORMAT) + shift).strftime(DATE_FORMAT)
            for slot, date in enumerate(self.dates)
        }
        values.update({f"b{index}": block for index, block in enumerate(self.fresh_ids(repetition // block_reuse))})
        return values

    def repetition(self, repetition: int, block_reuse: int = 1) -> str:
        """The whole sample for one repetition, as text."""
        if (self.first_date + datetime.timedelta(days=(repetition + 1) * self.shift_days)).year > 2068:
            raise SystemExit("generate: too many repetitions for two-digit years (past 2068)")
        return self.text.format_map(self.slots(repetition, block_reuse))


def generate(
    output: Path,
    lines: int,
    labels: Path | None = None,
    block_reuse: int = 1,
    sample: Path = SAMPLE,
    sample_labels: Path = SAMPLE_LABELS,
) -> int:
    """Write ``lines`` generated lines to ``output`` (and block labels to ``labels``); returns the line count.

    Written to ``output`` with a ``.partial`` suffix and renamed at the end, so a killed run leaves no file
    that looks complete.
    """
    if lines < 1:
        raise SystemExit("generate: --lines must be at least 1")
    if block_reuse < 1:
        raise SystemExit("generate: --block-reuse must be at least 1")
    template = _SampleTemplate(sample)
    label_of = _read_labels(sample_labels) if labels is not None else {}
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    label_partial = labels.with_name(labels.name + ".partial") if labels is not None else None
    written = 0
    sample_lines = len(template.line_templates)
    with open(partial, "w", encoding="utf-8", newline="") as handle:
        label_handle = open(label_partial, "w", encoding="utf-8", newline="") if label_partial else None  # noqa: SIM115
        try:
            if label_handle is not None:
                label_handle.write("BlockId,Label\n")
            repetitions = -(-lines // sample_lines)
            for repetition in range(repetitions):
                text = template.repetition(repetition, block_reuse)
                take = min(sample_lines, lines - written)
                if take < sample_lines:
                    text = "".join(text.splitlines(keepends=True)[:take])
                handle.write(text)
                written += take
                last_of_set = repetition % block_reuse == block_reuse - 1 or repetition == repetitions - 1
                if label_handle is not None and last_of_set:  # one label row per fresh id, once its set is done
                    whole = take == sample_lines or repetition % block_reuse > 0
                    used = range(len(template.block_ids)) if whole else _blocks_in(template, take)
                    fresh = template.fresh_ids(repetition // block_reuse)
                    label_handle.write("".join(f"{fresh[i]},{label_of[template.block_ids[i]]}\n" for i in used))
        finally:
            if label_handle is not None:
                label_handle.close()
    partial.replace(output)
    if labels is not None and label_partial is not None:
        label_partial.replace(labels)
    return written


def _blocks_in(template: _SampleTemplate, take: int) -> list[int]:
    """Indices of the blocks that occur in the first ``take`` lines of the sample, first-seen order."""
    seen: dict[int, None] = {}
    for line in template.line_templates[:take]:
        for slot in re.findall(r"\{b(\d+)\}", line):
            seen.setdefault(int(slot), None)
    return list(seen)


def _read_labels(path: Path) -> dict[str, str]:
    labels = {}
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            block, label = line.rstrip("\n").split(",")
            labels[block] = label
    return labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="log file to write (e.g. bench/output/HDFS_full.log)")
    parser.add_argument("--lines", type=int, default=HDFS_V1_LINES, help=f"lines to write (default {HDFS_V1_LINES:,})")
    parser.add_argument("--labels", type=Path, default=None, help="also write BlockId,Label for the fresh block ids")
    parser.add_argument(
        "--block-reuse",
        type=int,
        default=1,
        help="consecutive repetitions sharing one set of fresh block ids (default 1: fresh every repetition)",
    )
    arguments = parser.parse_args(argv)
    written = generate(arguments.output, arguments.lines, arguments.labels, arguments.block_reuse)
    print(f"{arguments.output}: {written} lines", file=sys.stderr)


if __name__ == "__main__":
    main()
