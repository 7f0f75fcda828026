"""Forked worker processes: when gitmail may fork them, and an ordered, bounded map over them.

Work that is pure CPU per item (parsing archive entries, composing and
encrypting imported messages, checking signatures) is spread over one forked
worker per core. Forking (not spawning) lets the workers inherit what the
parent has already loaded and verified (the directory, the signing key, the
session) instead of loading it again; it is safe only while the parent runs
no other thread (:func:`can_fork`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, TypeVar

from gitmail.errors import WorkerError

if TYPE_CHECKING:
    import concurrent.futures
    import multiprocessing.process

T = TypeVar("T")
R = TypeVar("R")

WATCH = 0.5  # seconds between checks, while waiting for a result, that every worker still lives
_WORKERS: "dict[int, list[multiprocessing.process.BaseProcess]]" = {}  # id(pool) -> its worker processes
_stuck = False
DIED = "a worker process ended unexpectedly (killed, or out of memory?)"


def stuck() -> bool:
    """True once a pool in this process was left with work in flight: its block ended in an
    error or Ctrl-C, or one of its workers died in a way the pool did not notice (see
    :func:`_result`). The interpreter's exit joins CPython's pool thread, which waits for the
    tasks the workers hold (for ever, for a dead worker's half-written result): the console
    script ends with ``os._exit`` instead (:func:`gitmail.cli.launch.finish`), and the workers,
    killed with their parent, do not finish work whose results nobody reads."""
    return _stuck


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """True when a pool of forked workers is worth starting here: more than one core, and
    :func:`alone`."""
    return cores() > 1 and alone()


def alone() -> bool:
    """No other thread runs in this process, so forking is safe: ``fork`` copies only the
    calling thread, and a lock another thread held (the MCP server runs threads) would stay
    locked in the child for good."""
    return threading.active_count() == 1


@contextlib.contextmanager
def pool(workers: Optional[int] = None) -> "Iterator[concurrent.futures.ProcessPoolExecutor]":
    """A pool of ``workers`` (default :func:`cores`) forked processes, for :func:`ordered_map`
    and :func:`map_now`. The caller sets what the workers need in module globals *before*
    this call. The workers ignore SIGINT: Ctrl-C reaches the whole process group, and only
    the parent answers it (one line, exit 130); a worker would print a traceback. On the way
    out, work not started is dropped and the workers end after the task they are on (waited
    for when the block ended normally, not after an error). When
    the parent is killed (SIGKILL, the OOM killer) the workers are killed too (on Linux):
    otherwise they would wait on the pool's queue for ever, each holding a copy of the
    parent's memory.

    A ``concurrent.futures`` pool, not ``multiprocessing.Pool``: when a worker dies (killed,
    out of memory) its results fail with :class:`WorkerError` instead of never arriving.
    """
    import multiprocessing
    import signal
    from concurrent.futures import ProcessPoolExecutor

    before = {c.pid for c in multiprocessing.active_children()}
    ex = ProcessPoolExecutor(workers or cores(), mp_context=multiprocessing.get_context("fork"),
                             initializer=_worker_start, initargs=(os.getpid(),))
    try:
        # Fork every worker now, with SIGINT blocked: a Ctrl-C during the fork stays pending
        # (here it is delivered when the block is lifted; a worker discards it when it
        # ignores SIGINT) instead of interrupting a child before it ignores it, which
        # printed "Exception ignored in: <function _after_fork ...>" and a traceback.
        was = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            ex.submit(int)  # with fork, the first task starts every worker
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, was)
        procs = _WORKERS[id(ex)] = [c for c in multiprocessing.active_children() if c.pid not in before]
        yield ex
    except BaseException:
        _abandon(ex)  # an error or Ctrl-C: do not wait for them
        raise
    finally:
        _WORKERS.pop(id(ex), None)
    # Done: the workers are idle; wait for them to exit, so that none outlives its parent
    # even for a moment and their CPU time is counted in this process's (getrusage). Unless
    # one died (its WorkerError was caught inside the block): then the pool's thread may
    # never end (see _result), and waiting for it would wait for ever.
    if _one_died(procs):
        _abandon(ex)
        return
    ex.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (as it was after). For work that
    allocates objects by the hundred thousand and makes no cycles worth collecting meanwhile
    (composing a batch of messages, indexing checked ones): every collection it would trigger
    walks an ever larger heap again (a tenth of an import's CPU; about 10% of the indexing
    process's CPU in a first sync of 30,000 messages). The caller collects what it must (the
    ingest: the youngest generation once per batch)."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _abandon(ex: "concurrent.futures.ProcessPoolExecutor") -> None:
    """Shut ``ex`` down without waiting for its workers, here or at the interpreter's exit
    (:func:`stuck`)."""
    global _stuck
    ex.shutdown(wait=False, cancel_futures=True)
    _stuck = True


def _worker_start(parent: int) -> None:
    """A worker's set-up: SIGINT ignored, then unblocked; killed when ``parent`` dies."""
    import signal

    import gc

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with_parent(parent)
    # What the worker inherited (the directory, the modules) lives as long as it does: out of
    # the garbage collector's scans, which then visit only what the work allocates, and out of
    # its writes to those objects' headers, which would copy the parent's pages.
    gc.freeze()


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGKILL when the parent ends (Linux ``prctl(PR_SET_PDEATHSIG)``,
    prctl(2)); nothing elsewhere. A parent that died before the request: exit at once."""
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def _one_died(procs: "list[multiprocessing.process.BaseProcess]") -> bool:
    """Whether one of ``procs`` (a pool's workers) is dead: then its pool may be stuck, and
    :func:`pool` abandons it on the way out, whether the block ended normally or not."""
    return any(not w.is_alive() for w in procs)


def _result(p: "concurrent.futures.ProcessPoolExecutor", f: "concurrent.futures.Future[R]") -> R:
    """``f.result()``, raising :class:`WorkerError` as soon as a worker of ``p`` is dead.

    A worker killed in the middle of writing its result to the pool's pipe leaves half a
    message there: CPython's pool thread (3.11) then waits for the rest for ever, never
    marks the pool broken, and ``f.result()`` never returns. So the wait is cut into
    :data:`WATCH` slices, checking between them that every worker still lives."""
    import concurrent.futures

    procs = _WORKERS.get(id(p), [])
    while True:
        try:
            return f.result(timeout=WATCH)
        except concurrent.futures.TimeoutError:
            if _one_died(procs):
                raise WorkerError(DIED) from None


@contextlib.contextmanager
def _dead_worker_is_an_error() -> Iterator[None]:
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield
    except BrokenProcessPool:
        raise WorkerError(DIED) from None


def ordered_map(
    p: "concurrent.futures.ProcessPoolExecutor", fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``fn(item)`` for each of ``items`` on the workers of ``p``, yielded in the items' order.

    Lazy: at most ``window`` items (twice the workers keeps every worker busy) are in
    flight, so a long input is read only as fast as the workers keep up and memory stays
    bounded. ``items`` is read in the calling thread (an error reading it is raised here);
    an exception raised by ``fn`` is raised when its result is reached; a worker that
    dies raises :class:`WorkerError`.
    """
    limit = max(1, window)
    pending: "deque[concurrent.futures.Future[R]]" = deque()
    with _dead_worker_is_an_error():
        for item in items:
            pending.append(p.submit(fn, item))
            if len(pending) >= limit:
                yield _result(p, pending.popleft())
        while pending:
            yield _result(p, pending.popleft())


def map_now(p: "concurrent.futures.ProcessPoolExecutor", fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """Like :func:`ordered_map`, but every item is handed to the workers now (they work while
    the caller does something else); the results are read, in order, from the iterator."""
    with _dead_worker_is_an_error():
        futures = [p.submit(fn, item) for item in items]

    def results() -> Iterator[R]:
        with _dead_worker_is_an_error():
            for f in futures:
                yield _result(p, f)

    return results()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily."""
    part: list[T] = []
    for x in items:
        part.append(x)
        if len(part) == size:
            yield part
            part = []
    if part:
        yield part
