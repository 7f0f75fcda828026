"""A hung guard daemon (issue 12, item 10): a daemon stopped with SIGSTOP still has its socket
take connections, so the hook used to wait REPLY_TIMEOUT (30 s) on every push. The daemon now
greets each connection at once; without the greeting within ACK_TIMEOUT the hook checks the push
itself. A real git daemon, the real guard, a really stopped process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from gitmail.guard import daemon as guard_daemon
from tests.sync import forge
from tests.sync.conftest import NetOrg, _net_org, guard_runtime  # noqa: F401  (autouse: the guard's sockets)
from tests.sync.test_guard import refused
from tests.sync.test_guard_daemon import MAILBOX, local_push, send, warm

QUICK = 5.0  # seconds: a push with a hung daemon on an idle machine (ACK_TIMEOUT + one in-process check)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[NetOrg]:
    yield from _net_org(tmp_path, guard=True)


def _cold_push_seconds(net: NetOrg) -> float:
    """How long a push takes when the hook checks it in its own process (the daemon not asked):
    on a loaded machine this alone can take seconds, so the bound below allows for it."""
    clone = net.clones["max"]
    oid = forge.unsigned(clone, "alex", "max")
    t = time.monotonic()
    code, out = local_push(clone, net.bare, oid, MAILBOX, GITMAIL_GUARD_DAEMON="off")
    refused(code, out, "unsigned")
    return time.monotonic() - t


def test_guard_hung_daemon_push_is_checked_quickly(net: NetOrg) -> None:
    st = warm(net)
    pid = st["pid"]
    cold = _cold_push_seconds(net)
    bound = max(QUICK, cold + 3.5)  # the greeting's 1.5 s and a margin; far below the 30 s reply timeout
    os.kill(pid, signal.SIGSTOP)
    try:
        clone = net.clones["max"]
        oid = forge.unsigned(clone, "alex", "max")
        t = time.monotonic()
        code, out = forge.push(clone, oid, MAILBOX)
        took = time.monotonic() - t
        refused(code, out, "unsigned")  # checked, in the hook's own process
        assert took < bound, f"a refused push took {took:.1f} s with the daemon stopped (cold check: {cold:.1f} s)"
        good = forge.signed(clone, "alex", "max", forge.key_of("max"), body="while the daemon is stopped")
        t = time.monotonic()
        code, out = forge.push(clone, good, MAILBOX)
        took = time.monotonic() - t
        assert code == 0, out
        assert took < bound, f"an accepted push took {took:.1f} s with the daemon stopped (cold check: {cold:.1f} s)"
    finally:
        os.kill(pid, signal.SIGCONT)
    # Resumed, the same daemon serves again (it checked nothing while stopped).
    after = guard_daemon.status(net.bare)
    assert after and after["pid"] == pid and after["checks"] == st["checks"]  # the cold push skipped it too
    send(net, "the daemon is back")
    back = guard_daemon.status(net.bare)
    assert back and back["checks"] == st["checks"] + 1


def test_guard_hung_daemon_status_and_stop_do_not_wait(net: NetOrg) -> None:
    pid = warm(net)["pid"]
    sock, _ = guard_daemon.paths(str(net.bare), guard_daemon.hook_key(net.bare / "hooks" / "pre-receive") or "") or ("", "")
    os.kill(pid, signal.SIGSTOP)
    try:
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            guard_daemon.request(sock, [b"ping", b"", b"", b"", b"", b""], timeout=30)
        # Well under the request's own 30 s: the ack timeout ended it (slack for a loaded machine).
        assert time.monotonic() - t < guard_daemon.ACK_TIMEOUT + 5
    finally:
        os.kill(pid, signal.SIGCONT)




SLOW_START = """
import os, time
if b"serve" in open("/proc/self/cmdline", "rb").read().split(b"\\0"):  # a guard daemon, not the hook's check
    while not os.path.exists(os.environ["GO_FILE"]):  # held here, before its lock, until the test says go
        time.sleep(0.01)
"""


def _daemons_of(bare: Path) -> list[int]:
    """Pids of the guard daemons started for ``bare`` (their command line says so from exec on)."""
    gd = os.fsencode(os.path.realpath(bare))
    out = []
    for d in Path("/proc").iterdir():
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and gd in argv:
            out.append(int(d.name))
    return out


def test_guard_hung_start_only_one_daemon_while_one_starts(tmp_path: Path) -> None:
    """Two pushes while the daemon the first one started is still starting up: only one daemon
    is ever started (the hook hands its lock to it). Before, the second push started another,
    which could take over once the first was stopped (the flaky test_guard_stop).

    Deterministic: the hook's Popen returns once the daemon's exec is done, so both pushes'
    daemons are visible in /proc when the pushes return, and each waits for GO_FILE before
    it even tries the lock."""
    from tests.sync.test_guard_daemon import plain_repos

    bare, src = plain_repos(tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    go = tmp_path / "go"
    env = {"PYTHONPATH": str(site), "GO_FILE": str(go)}
    try:
        for _ in range(2):  # the hook itself runs isolated (-IS): only the daemons it starts wait
            refused(*local_push(src, bare, "HEAD", "refs/heads/gitmail/x", **env), "not a gitmail ref")
        started = _daemons_of(bare)
        go.touch()
        assert len(started) == 1, f"daemons started: {started}"
        st = None
        deadline = time.monotonic() + 60
        while st is None and time.monotonic() < deadline:  # the daemon's own answer, once it serves
            st = guard_daemon.status(bare)
        assert st and st["pid"] == started[0]
    finally:
        go.touch()
        guard_daemon.stop(bare)
