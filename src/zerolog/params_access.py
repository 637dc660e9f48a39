"""Which params keys a piece of code reads, recorded while it reads them.

Why: ``dvc.yaml`` must name every params key a stage depends on, or editing that key leaves a stale output. Each
stage builds its typed section (the only params its core sees) in one function named by its row in
``zerolog.stages``; running that function on a :class:`RecordingParams` view gives the exact dotted keys, and the
generator writes them into ``dvc.yaml``. The same function builds the real section at run time, so what a stage
reads and what DVC tracks cannot drift apart.

A key is recorded at the depth at which its value leaves the view: ``params.train`` handed on whole records
``train``; ``params.systems["hdfs"].log_format`` records ``systems.hdfs.log_format``; a scalar read on the way
(``params.datasets["x"].system`` used to index ``systems``) is recorded too, because the stage's inputs depend on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any


class RecordingParams:
    """A read-only view of a params node (a dataclass or a mapping) that records every key read through it."""

    __slots__ = ("_value", "_path", "_record")

    def __init__(self, value: Any, path: str = "", record: set[str] | None = None) -> None:
        object.__setattr__(self, "_value", value)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_record", set() if record is None else record)

    @property
    def recorded(self) -> set[str]:
        """Every key read so far through this view or any view derived from it."""
        return self._record

    def _child(self, name: str, value: Any) -> Any:
        path = f"{self._path}.{name}" if self._path else name
        if dataclasses.is_dataclass(value) or isinstance(value, Mapping):
            return RecordingParams(value, path, self._record)
        self._record.add(path)
        return value

    def __getattr__(self, name: str) -> Any:
        if not dataclasses.is_dataclass(self._value):
            raise AttributeError(f"{self._path or 'params'} is a mapping; use [{name!r}]")
        return self._child(name, getattr(self._value, name))

    def __getitem__(self, key: str) -> Any:
        if not isinstance(self._value, Mapping):
            raise TypeError(f"{self._path or 'params'} is not a mapping")
        return self._child(str(key), self._value[key])

    def __contains__(self, key: object) -> bool:
        return key in self._value

    def __iter__(self) -> Iterator[str]:
        """Iterating a mapping reads all of it: the whole node is recorded."""
        self._record.add(self._path)
        return iter(self._value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only")


def unwrap(value: Any) -> Any:
    """The real value behind a view (recording its path as read whole), inside lists, tuples and dicts too."""
    if isinstance(value, RecordingParams):
        value._record.add(value._path)
        return value._value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a stage's typed section holding views
        return dataclasses.replace(value, **{field.name: unwrap(getattr(value, field.name))
                                             for field in dataclasses.fields(value) if field.init})  # fmt: skip
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(unwrap(item) for item in value)
    return value


def minimal_keys(keys: set[str]) -> list[str]:
    """The recorded keys without those whose ancestor is recorded whole, sorted (``train`` covers ``train.epochs``)."""
    keys = keys - ALWAYS_READABLE
    kept = []
    for key in sorted(keys):
        if not key:
            raise ValueError("the whole params file was read; a stage must name its sections")
        parts = key.split(".")
        if not any(".".join(parts[:depth]) in keys for depth in range(1, len(parts))):
            kept.append(key)
    return kept


#: Not hyperparameters: where artifacts live (DVC tracks the paths as deps and outs) and the params file's name.
ALWAYS_READABLE = frozenset({"paths", "source_file"})
