"""Map a function over items in worker processes: a local process pool, or a Dask cluster; one home for both.

Why one module: the parse stage (and training, which maps methods over processes) needs one thing, "run this
function on these items, N at a time, results in order", and the choices behind it are made here once: spawned
processes (no fork: the parent may hold pyarrow or torch thread pools), one thread per worker, where Dask runs.

Backends (``ParallelConfig.backend``, params ``<stage>.parallel``):

- ``dask``: dask.distributed. With no ``scheduler_address``, a ``LocalCluster`` of ``workers`` single-threaded
  worker processes on this machine (no set-up; started in about 6 s on 2 cores). With one, the existing cluster
  at that address (every worker must import the same zerolog, and see the same files: see README "Parse on a
  Dask cluster"). A task lost with a dying worker is run again by the scheduler, so mapped functions must be
  idempotent (the same output, written under the same name, however often they run).
- ``processes``: a ``concurrent.futures.ProcessPoolExecutor`` of ``workers`` spawned processes. A worker that
  dies breaks the pool (``BrokenProcessPool``): no rerun.

``workers: 0`` means one worker per available core. Callers decide whether to open a pool at all (one worker,
or too little work to pay for starting one, runs in the caller's process: ``InlinePool``).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import multiprocessing
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from zerolog.config import ConfigError, ParallelConfig

#: Seconds to wait for an existing Dask scheduler (and for its first worker) before giving up.
CONNECT_TIMEOUT_SECONDS = 30


class TaskFuture(Protocol):
    """What ``Pool.submit`` returns: ``concurrent.futures.Future`` and ``distributed.Future`` both fit."""

    def result(self) -> Any: ...

    def cancel(self) -> Any: ...


class Pool(Protocol):
    """Worker processes that run submitted functions; ``share`` sends a read-only value once for many tasks."""

    workers: int
    description: str

    def submit(self, function: Callable[..., Any], *arguments: Any) -> TaskFuture: ...

    def share(self, value: Any) -> Any: ...

    def close(self) -> None: ...


def worker_count(config: ParallelConfig) -> int:
    """Workers a pool of ``config`` has on this machine (0: one per core this process may run on); a cluster says
    its own."""
    if config.workers:
        return config.workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------- backends


class _InlineFuture:
    """Runs its function in the caller's process when its result is first asked for (so results come in order)."""

    def __init__(self, function: Callable[..., Any], arguments: tuple[Any, ...]) -> None:
        self._call: tuple[Callable[..., Any], tuple[Any, ...]] | None = (function, arguments)
        self._value: Any = None

    def result(self) -> Any:
        if self._call is not None:
            function, arguments = self._call
            self._value, self._call = function(*arguments), None
        return self._value

    def cancel(self) -> bool:
        self._call = None
        return True


class InlinePool:
    """No worker processes: each task runs in this process, when its result is read."""

    workers = 1
    description = "in-process"

    def submit(self, function: Callable[..., Any], *arguments: Any) -> TaskFuture:
        return _InlineFuture(function, arguments)

    def share(self, value: Any) -> Any:
        return value

    def close(self) -> None:
        return None


class ProcessPool:
    """``workers`` spawned processes (concurrent.futures); values are pickled with every task that uses them."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.description = f"process pool ({workers} processes)"
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, function: Callable[..., Any], *arguments: Any) -> TaskFuture:
        return self._executor.submit(function, *arguments)

    def share(self, value: Any) -> Any:
        return value

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _identity(value: Any) -> Any:
    return value


class DaskPool:
    """A dask.distributed client.

    On a new ``LocalCluster`` of ``workers`` processes, or on the cluster at ``address``.
    """

    def __init__(self, workers: int, address: str | None, where: str) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        if address is None:
            # one thread per worker process: the mapped functions are CPU-bound Python (the GIL)
            self._cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self.client = Client(self._cluster)
            self.description = f"Dask LocalCluster ({workers} worker processes)"
        else:
            try:
                self.client = Client(address, timeout=CONNECT_TIMEOUT_SECONDS)
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError) as error:
                raise ConfigError(f"{where}.scheduler_address: no Dask cluster at {address!r} ({error})") from None
            workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            self.description = f"Dask cluster at {address} ({workers} workers)"
        self.workers = workers
        self.address: str = self.client.scheduler.address  # where other clients (and stages) can connect

    def submit(self, function: Callable[..., Any], *arguments: Any) -> TaskFuture:
        return self.client.submit(function, *arguments, pure=False)

    def share(self, value: Any) -> Any:
        """The value as the result of a task, not ``scatter``: a task's result lost with its worker is recomputed
        from the task (the scheduler keeps it); scattered data lost with its worker is gone for good."""
        return self.client.submit(_identity, value, pure=False)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


@contextlib.contextmanager
def open_pool(config: ParallelConfig, where: str) -> Iterator[Pool]:
    """The pool ``config`` asks for (``where``: its params key, named in errors); closed on exit."""
    workers = worker_count(config)
    pool: Pool
    if config.backend == "dask":
        pool = DaskPool(workers, config.scheduler_address, where)
    elif workers == 1:
        pool = InlinePool()
    else:
        pool = ProcessPool(workers)
    try:
        yield pool
    finally:
        pool.close()


# ----------------------------------------------------------------------------- values shared with many tasks


@dataclass(frozen=True)
class Pickled:
    """A value pickled once by the client and named by the digest of its bytes, so that a worker process unpickles
    it once per version (``value``, memoised), not once per task: the parse's copy of the template tree, the known
    templates of ``zerolog detect``. Send it with ``Pool.share``."""

    digest: str
    data: bytes

    @classmethod
    def of_bytes(cls, data: bytes) -> Pickled:
        """From bytes the value's owner pickled itself (e.g. a cut-down copy)."""
        return cls(hashlib.blake2b(data, digest_size=16).hexdigest(), data)

    @classmethod
    def of(cls, value: Any) -> Pickled:
        return cls.of_bytes(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))

    def value(self) -> Any:
        """The unpickled value; a worker keeps the last one it unpickled (one version in use at a time)."""
        found = _UNPICKLED.get(self.digest)
        if found is None:
            _UNPICKLED.clear()
            found = _UNPICKLED[self.digest] = pickle.loads(self.data)
        return found


#: Worker-process memo of the last ``Pickled`` value.
_UNPICKLED: dict[str, Any] = {}


# ----------------------------------------------------------------------------- mapping


def map_ordered(
    pool: Pool, function: Callable[..., Any], items: Iterable[tuple[Any, ...]], ahead: int
) -> Iterator[Any]:
    """``function(*item)`` for every item, on the pool, yielded in item order with at most ``ahead`` tasks
    submitted and not yet yielded.

    Items are drawn lazily, each just before it is submitted, so an item may depend on the results yielded before
    it (the parse draws each chunk's copy of the template tree then). An error in a task is raised here, as the
    task raised it; the tasks still in flight are cancelled.
    """
    iterator = iter(items)
    in_flight: collections.deque[TaskFuture] = collections.deque()
    try:
        while True:
            while len(in_flight) < max(ahead, 1):
                item = next(iterator, None)
                if item is None:
                    break
                in_flight.append(pool.submit(function, *item))
            if not in_flight:
                return
            yield in_flight.popleft().result()
    finally:
        for future in in_flight:
            future.cancel()


__all__ = [
    "DaskPool",
    "InlinePool",
    "Pickled",
    "Pool",
    "ProcessPool",
    "map_ordered",
    "open_pool",
    "worker_count",
]
