"""A system's known templates as a matcher for NEW log lines: the parse stage's final Drain tree, made exact.

Why: ``zerolog detect`` must give a new line the template the parse stage would have given it, so that a session seen
by the pipeline scores the same when it comes back as raw lines, and a line no known template covers must be marked
new instead of silently changing a known template (the detector was fit on the known ones).

What the parse stage writes (``parsed/<dataset>/drain.json``, ``DrainMiner.state``): the final prefix tree with each
leaf cut to its distinct templates. Matching a message against the FINAL tree is not always what the sequential run
gave it (Drain is order-dependent): a message matched through a ``<*>`` node before a later message created a node
for its token now routes elsewhere; a message whose best cluster in its leaf does not cover it would have
generalised that cluster. ``known_exceptions`` finds every such message of the dataset's own lines (each distinct
masked message is checked against the parse's answer), and the detector bundle stores them: a few entries
(openstack_devstack: 0 of 383 distinct messages once short messages are handled as below).

How a masked message ``key`` resolves (``KnownTemplates.resolve``):

1. blank: the empty template (the parse gives a matched line with an empty message ``EMPTY_TEMPLATE``);
2. an exception recorded from the parse: its template;
3. fewer tokens than Drain needs to reach a leaf (``DrainMiner.placeable_tokens``): its own text, as Drain gives it;
4. the final tree's answer when a known template covers it (``DrainMiner.match``);
5. otherwise None: a NEW message, mined among the new lines by a Drain of its own (``NewTemplates``).

A pre-parsed dataset (HDFS's DeepLog sessions, BGL's events) has no Drain tree: its template table (loghub's
``EventTemplate`` texts, ``<*>`` for any text) is the known set (``WildcardTable``), matched against each line's raw
message; a line no template fits is NEW, mined as above.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from zerolog.config import DrainConfig
from zerolog.data.matcher import WILDCARD, DrainMiner
from zerolog.data.stream_parse import (
    EMPTY_TEMPLATE,
    LINES_FOLDER,
    iter_line_batches,
    usable_lines,
)
from zerolog.errors import DataError
from zerolog.io import read_json

#: ``parsed/<dataset>/drain.json``: the parse stage's final Drain tree (``DrainMiner.state``), raw datasets only.
DRAIN_STATE_FILE = "drain.json"
#: Lines read at a time when the dataset's own lines are checked against the final tree.
CHECK_BATCH_LINES = 200_000


def write_drain_state(path: Path, miner: DrainMiner) -> None:
    """Write the miner's final tree as ``drain.json`` (compact JSON, one line). ``path`` is inside an atomic output
    folder of the caller (the parse stage's)."""
    path.write_text(json.dumps(miner.state(), separators=(",", ":")) + "\n", encoding="utf-8")


def read_drain_state(path: Path) -> dict[str, Any]:
    """The tree a parse stage wrote; a DataError naming the file when it is missing or not a Drain state."""
    if not path.is_file():
        raise DataError(f"{path}: no Drain state (a raw dataset's parse writes it; rerun its parse stage)")
    state = read_json(path)
    if not isinstance(state, dict) or state.get("format_version") != 1 or "tree" not in state:
        raise DataError(f"{path}: not a Drain state of format_version 1")
    return state


class WildcardTable:
    """Loghub-style templates (``<*>``: any text, empty included) matched against raw messages, the most specific
    first (most literal characters; ties in table order). A template is its literal segments: a message fits when
    it starts with the first, ends with the last and holds the others in order between, found left to right with
    ``str.find`` (complete for patterns of ``*`` alone, and linear in the message: no regex backtracking). Runs of
    whitespace count as one space in both."""

    def __init__(self, templates: list[str]) -> None:
        self.templates = list(dict.fromkeys(templates))
        segments = [[re.sub(r"\s+", " ", part) for part in text.strip().split(WILDCARD)] for text in self.templates]
        order = sorted(range(len(self.templates)), key=lambda index: -sum(map(len, segments[index])))
        self._ordered = [(self.templates[index], segments[index]) for index in order]

    def match(self, content: str) -> str | None:
        """The most specific template that fits ``content``, or None."""
        text = " ".join(content.split())
        for template, segments in self._ordered:
            if _fits(text, segments):
                return template
        return None


def _fits(text: str, segments: list[str]) -> bool:
    """Whether ``text`` is ``segments`` joined by any texts (``WildcardTable``)."""
    if len(segments) == 1:
        return text == segments[0]
    first, *middle, last = segments
    end = len(text) - len(last)
    if end < len(first) or not text.startswith(first) or not text.endswith(last):
        return False
    position = len(first)
    for segment in middle:
        found = text.find(segment, position, end)
        if found < 0:
            return False
        position = found + len(segment)
    return True


@dataclass
class KnownTemplates:
    """The final tree of a parse plus the messages on which it alone would answer otherwise (module docstring); for
    a pre-parsed dataset, its template table (``table``) and an empty tree with the system's settings and masks."""

    miner: DrainMiner  # a matching copy: never changed
    exceptions: dict[str, str] = field(default_factory=dict)  # masked message -> the parse's template
    table: WildcardTable | None = None  # a pre-parsed dataset's templates, matched on raw messages

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KnownTemplates:
        exceptions = state.get("exceptions") or {}
        if not isinstance(exceptions, dict):
            raise DataError("Drain state: 'exceptions' must map masked messages to templates")
        table = state.get("table")
        if table is not None and not (isinstance(table, list) and all(isinstance(text, str) for text in table)):
            raise DataError("Drain state: 'table' must list template texts")
        return cls(DrainMiner.from_state(state), dict(exceptions), WildcardTable(table) if table is not None else None)

    @classmethod
    def of_table(cls, templates: list[str], drain: DrainConfig, masking: list[str]) -> KnownTemplates:
        """A pre-parsed dataset's known templates: its template texts, and an empty Drain with the system's settings
        and masks (the header split and masking of ``parse_chunk``; new lines are mined with them)."""
        miner = DrainMiner(drain, masking)
        miner.is_copy = True  # matches only, like every known tree
        return cls(miner, {}, WildcardTable(templates))

    def state(self) -> dict[str, Any]:
        """``DrainMiner.state`` with the exceptions (and a pre-parsed dataset's table): what the bundle stores."""
        state = {**self.miner.state(), "exceptions": dict(sorted(self.exceptions.items()))}
        return state if self.table is None else {**state, "table": list(self.table.templates)}

    @property
    def drain(self) -> DrainConfig:
        parser = self.miner.parser
        return DrainConfig(depth=parser.depth + 2, similarity_threshold=parser.st, max_children=parser.maxChild)

    def tree_answer(self, key: str, cluster: int) -> str | None:
        """Steps 1, 3 and 4 of the module docstring for ``key`` whose ``DrainMiner.match`` gave ``cluster``."""
        if not key:
            return EMPTY_TEMPLATE
        tokens = key.split()
        if len(tokens) < self.miner.placeable_tokens:
            return " ".join(tokens)
        return self.miner.template(cluster) if cluster >= 0 else None

    def resolve(self, key: str, cluster: int | None = None) -> str | None:
        """The known template of masked message ``key`` (None: new). ``cluster``: its ``match`` answer, when the
        caller has it already (``parse_chunk`` gives it), else it is computed here."""
        found = self.exceptions.get(key)
        if found is not None:
            return found
        if cluster is None:
            cluster = self.miner.match(key.split())[0] if key else -1
        return self.tree_answer(key, cluster)


def _distinct_pairs(lines_folder: Path) -> Iterator[tuple[list[str], list[str]]]:
    """Per batch of the dataset's parsed lines: its distinct (content, template) pairs, as two lists."""
    columns = ["content", "template", "status"]
    for batch in iter_line_batches(lines_folder, columns, CHECK_BATCH_LINES, read_dictionary=["status", "template"]):
        usable = usable_lines(batch)
        kept = pa.table(
            {"content": usable.column("content"), "template": pc.cast(usable.column("template"), pa.string())}
        )
        kept = kept.group_by(["content", "template"]).aggregate([])
        yield kept.column("content").to_pylist(), kept.column("template").to_pylist()


def known_exceptions(miner: DrainMiner, lines_folder: Path) -> dict[str, str]:
    """Every masked message of the dataset's parsed lines whose tree answer (steps 1, 3, 4) differs from the template
    the parse gave it, with that template. One pass over ``lines.parquet`` (content and template columns)."""
    known = KnownTemplates(miner)
    checked: dict[str, str] = {}  # masked message -> template, within the current batch
    exceptions: dict[str, str] = {}
    for contents, templates in _distinct_pairs(lines_folder):
        checked.clear()
        keys = miner.mask_array([content or "" for content in contents]).to_pylist()
        for key, template in zip(keys, templates, strict=True):
            previous = checked.setdefault(key, template)
            if previous != template:
                raise DataError(
                    f"{lines_folder}: masked message {key!r} has two templates ({previous!r}, {template!r})"
                )
            if key in exceptions:
                continue
            if known.resolve(key) != template:
                exceptions[key] = template
    return exceptions


def known_templates_of_dataset(parsed_folder: Path) -> KnownTemplates:
    """The known templates of a parsed raw dataset: its ``drain.json`` and the exceptions found in its lines."""
    miner = DrainMiner.from_state(read_drain_state(parsed_folder / DRAIN_STATE_FILE))
    return KnownTemplates(miner, known_exceptions(miner, parsed_folder / LINES_FOLDER))


class NewTemplates:
    """Messages no known template covers, mined by a Drain of their own (the system's settings and masking), in
    input order: a NEW template is the final template of its cluster here. Cluster indices only grow, so an index
    names the same new template to the end; its text may still gain ``<*>`` until the input ends."""

    def __init__(self, known: KnownTemplates) -> None:
        self.miner = DrainMiner(known.drain, list(known.miner.masking))

    def add(self, key: str) -> int:
        """The new-template cluster of masked message ``key`` (a step of Drain)."""
        return self.miner.assign(key)

    def texts(self) -> list[str]:
        """Final text of every new-template cluster, by index."""
        return self.miner.templates()
