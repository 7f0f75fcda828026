"""Forked worker processes: when gitmail may fork them, and an ordered, bounded map over them.

Work that is pure CPU per item (parsing archive entries, composing and
encrypting imported messages, checking signatures) is spread over one forked
worker per core. Forking (not spawning) lets the workers inherit what the
parent has already loaded and verified (the directory, the signing key, the
session) instead of loading it again; it is safe only while the parent runs
no other thread (:func:`can_fork`).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, TypeVar

if TYPE_CHECKING:
    import multiprocessing.pool

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """True when a pool of forked workers may be started here: more than one core, and no
    other thread running. ``fork`` copies only the calling thread, so a lock another thread
    held (the MCP server runs threads) would stay locked in the child for good."""
    return cores() > 1 and threading.active_count() == 1


def pool(workers: Optional[int] = None) -> "multiprocessing.pool.Pool":
    """A pool of ``workers`` (default :func:`cores`) forked processes. The caller sets what the
    workers need in module globals *before* this call, and terminates the pool when done
    (use it as a context manager: ``with pool() as p: ...``). The workers ignore SIGINT:
    Ctrl-C reaches the whole process group, and only the parent answers it (one line, exit
    130), terminating the pool on its way out; a worker would print a traceback."""
    import multiprocessing

    return multiprocessing.get_context("fork").Pool(workers or cores(), initializer=_ignore_interrupts)


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def ordered_map(
    p: "multiprocessing.pool.Pool", fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``fn(item)`` for each of ``items`` on the workers of ``p``, yielded in the items' order.

    At most ``window`` items (twice the workers keeps every worker busy) are in flight, so a long input
    is read only as fast as the workers keep up and memory stays bounded. ``items`` is read
    in the calling thread (an error reading it is raised here, not in a pool thread); an
    exception raised by ``fn`` is raised when its result is reached.
    """
    limit = max(1, window)
    pending: deque["multiprocessing.pool.AsyncResult[R]"] = deque()
    for item in items:
        pending.append(p.apply_async(fn, (item,)))
        if len(pending) >= limit:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


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
