"""Tests of the one pool module (src/zerolog/parallel.py): ordered, lazy, bounded mapping; errors surface as raised.

The Dask backend on a 2-worker LocalCluster is tested in tests/data/test_dask_parse.py (one cluster for the module).
"""

from __future__ import annotations

import pytest

import zerolog.parallel as parallel
from zerolog.config import ConfigError, ParallelConfig
from zerolog.parallel import InlinePool, ProcessPool, map_ordered, open_pool


def test_map_ordered_draws_items_lazily_and_bounds_what_is_in_flight():
    """At most ``ahead`` items are drawn beyond those yielded, so an item can see the results before it."""
    drawn: list[int] = []
    yielded: list[int] = []

    def items():
        for value in range(10):
            drawn.append(value)
            # never more than 3 drawn and not yet yielded
            assert len(drawn) - len(yielded) <= 3
            yield (value, len(yielded))

    results = []
    for result in map_ordered(InlinePool(), lambda value, seen: (value * value, seen), items(), ahead=3):
        results.append(result)
        yielded.append(result[0])
    assert [square for square, _ in results] == [value * value for value in range(10)]
    assert results[9][1] >= 6  # item 9 was drawn after at least 6 results had been taken


def test_a_task_error_is_raised_as_raised_and_the_rest_is_cancelled():
    ran: list[int] = []

    def task(value: int) -> int:
        ran.append(value)
        if value == 2:
            raise ValueError("bad item 2")
        return value

    with pytest.raises(ValueError, match="bad item 2"):
        list(map_ordered(InlinePool(), task, ((value,) for value in range(8)), ahead=2))
    assert ran == [0, 1, 2]  # inline tasks run when their result is read: nothing after the failure ran


def test_process_pool_maps_in_order_and_surfaces_errors():
    pool = ProcessPool(2)
    try:
        assert list(map_ordered(pool, pow, ((value, 3) for value in range(20)), ahead=4)) == [v**3 for v in range(20)]
        with pytest.raises(ValueError, match="invalid literal"):
            list(map_ordered(pool, int, [("7",), ("x",), ("9",)], ahead=2))
    finally:
        pool.close()


def test_open_pool_picks_the_backend(monkeypatch):
    with open_pool(ParallelConfig(backend="processes", workers=1, scheduler_address=None), "parse.parallel") as pool:
        assert isinstance(pool, InlinePool) and pool.workers == 1
    with open_pool(ParallelConfig(backend="processes", workers=2, scheduler_address=None), "parse.parallel") as pool:
        assert isinstance(pool, ProcessPool) and pool.workers == 2
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_SECONDS", 1)
    nowhere = ParallelConfig(backend="dask", workers=0, scheduler_address="tcp://127.0.0.1:1")
    message = r"parse\.parallel\.scheduler_address: no Dask cluster at 'tcp://127\.0\.0\.1:1'"
    with pytest.raises(ConfigError, match=message) as caught, open_pool(nowhere, "parse.parallel"):
        pass
    assert "\n" not in str(caught.value)
