"""gitmail.core.workers: forked pools whose workers never answer Ctrl-C themselves."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest

from gitmail.core import workers
from gitmail.errors import WorkerError


def _mask(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(field)


SIGINT_BIT = 1 << (signal.SIGINT - 1)


def _pid(_: int) -> int:
    return os.getpid()


def test_workers_ignore_sigint_from_birth_and_the_parent_gets_ctrl_c_back() -> None:
    """Workers are forked with SIGINT blocked (a Ctrl-C during the fork cannot interrupt a
    child before it ignores it: that printed "Exception ignored in: _after_fork" and a
    traceback, once in a full suite run), then ignore it and lift the block; the parent's
    mask is as it was. (The race itself is not reproduced here: this checks the state the
    fix leaves, whose two halves, a parent left blocking Ctrl-C or a worker left blocking
    it, would each be a bug.)"""
    assert workers.can_fork(), "this test needs two cores and no other thread"
    before = _mask(os.getpid(), "SigBlk")
    with workers.pool(2) as p:
        pids = set(workers.map_now(p, _pid, range(8)))
        assert _mask(os.getpid(), "SigBlk") == before and not before & SIGINT_BIT
        for pid in pids:
            assert _mask(pid, "SigIgn") & SIGINT_BIT, pid
            assert not _mask(pid, "SigBlk") & SIGINT_BIT, pid
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def _die(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def test_a_dead_worker_is_an_error_not_a_wait() -> None:
    with workers.pool(2) as p:
        with pytest.raises(WorkerError, match="worker process ended unexpectedly"):
            list(workers.ordered_map(p, _die, range(8), 4))


def test_ordered_map_keeps_order_and_bounds_what_is_in_flight() -> None:
    read: list[int] = []

    def items() -> Iterator[int]:
        for i in range(50):
            read.append(i)
            yield i

    with workers.pool(2) as p:
        out = []
        for x in workers.ordered_map(p, _pid_or_value, items(), 3):
            out.append(x)
            assert len(read) - len(out) <= 3  # never more than the window ahead
    assert out == list(range(50))


def test_the_workers_of_a_killed_parent_end_with_it(tmp_path: Path) -> None:
    """A parent killed mid-map (SIGKILL, the OOM killer): its workers end too. They used to
    wait on the pool's queue for ever (found as two orphaned workers of a killed sync, each
    holding a copy of its memory)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal, time\n"
        "from gitmail.core import workers\n"
        "def slow(x):\n"
        "    time.sleep(0.2)\n"
        "    return os.getpid()\n"
        "with workers.pool(2) as p:\n"
        "    pids = set()\n"
        "    for pid in workers.ordered_map(p, slow, range(1000), 4):\n"
        "        pids.add(pid)\n"
        "        if len(pids) == 2:\n"
        "            print(*pids, flush=True)\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r
    pids = [int(x) for x in r.stdout.split()]
    assert len(pids) == 2 and os.getpid() not in pids
    deadline = time.monotonic() + 30
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _running(p)]
    assert not alive, f"workers still running after their parent was killed: {alive}"


def _burn(_: int) -> int:
    import time

    end = time.process_time() + 0.2
    while time.process_time() < end:
        pass
    return os.getpid()


def test_a_pool_that_ends_normally_waits_for_its_workers() -> None:
    """After a pool's block ends normally its workers have exited and been reaped (none
    outlives the command, and their CPU time shows in the parent's getrusage: the benches
    counted it out when the parent did not wait)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with workers.pool(2) as p:
        pids = set(workers.map_now(p, _burn, range(4)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert pids and not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) >= 0.7


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _pid_or_value(x: int) -> int:
    return x


KILLED_WRITING = r"""
import os, random, signal, sys, threading, time
from gitmail.core import workers
from gitmail.errors import WorkerError

def big(i):
    return b"x" * (8 << 20)  # a result written in many pieces: a kill can land mid-write

random.seed(int(sys.argv[1]))
t = time.monotonic()
with workers.pool(2) as p:
    pids = [w.pid for w in workers._WORKERS[id(p)]]
    threading.Timer(random.random() * 0.4, os.kill, (pids[0], signal.SIGKILL)).start()
    try:
        for _ in workers.ordered_map(p, big, range(200), 4):
            pass
        print("finished")
    except WorkerError as e:
        print("WorkerError", round(time.monotonic() - t, 1))
sys.stdout.flush()
os._exit(0)  # what the console script does when workers.stuck(): a pool thread may wait for ever
"""


def test_a_worker_killed_while_writing_its_result_is_an_error_not_a_wait(tmp_path: Path) -> None:
    """CPython's pool waits for ever for the rest of a result whose writer was killed half-way
    (it never marks itself broken). gitmail watches its workers while it waits: the map
    raises WorkerError within seconds. Several kill times, each in a fresh process (the
    script exits with os._exit: the stuck pool thread would hold up a normal exit)."""
    import subprocess
    import sys

    script = tmp_path / "k.py"
    script.write_text(KILLED_WRITING)
    for seed in range(6):
        r = subprocess.run([sys.executable, str(script), str(seed)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.startswith("WorkerError"), (seed, r.stdout, r.stderr[-2000:])
        assert float(r.stdout.split()[1]) < 20, r.stdout


ABANDONED = r"""
import sys, time
from gitmail.cli import launch
from gitmail.core import workers

def slow(i):
    time.sleep(60)
    return i

try:
    with workers.pool(2) as p:
        print(*[w.pid for w in workers._WORKERS[id(p)]], flush=True)
        futures = [p.submit(slow, i) for i in range(4)]
        time.sleep(0.5)  # each worker holds a task
        raise KeyboardInterrupt
except KeyboardInterrupt:
    print("interrupted", flush=True)
sys.exit(launch.finish(130))
"""


def test_a_pool_left_by_ctrl_c_does_not_hold_up_the_exit(tmp_path: Path) -> None:
    """Ctrl-C inside a pool's block: the command ends at once with its status, not when the
    workers have finished the tasks they hold (CPython's exit joins the pool's thread, which
    waits for them: a CI run once waited over 60 s after "gitmail: interrupted"). The
    workers end with it."""
    import subprocess
    import sys
    import time

    script = tmp_path / "a.py"
    script.write_text(ABANDONED)
    t = time.monotonic()
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=45)
    took = time.monotonic() - t
    assert r.returncode == 130 and r.stdout.splitlines()[1:] == ["interrupted"], (r.stdout, r.stderr[-2000:])
    assert took < 15, took
    pids = [int(x) for x in r.stdout.split()[:2]]
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in pids):
        assert time.monotonic() < deadline, pids
        time.sleep(0.05)
