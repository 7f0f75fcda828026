"""The warm guard (gitmail.guard.daemon) on a real git daemon: the pre-receive hook as a client of a
per-repo guard daemon, and every way it falls back to checking the push itself."""

from __future__ import annotations

import glob
import json
import os
import sys
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

import pytest

from gitmail.guard import daemon as guard_daemon
from tests import conftest
from tests.conftest import git, run
from tests.sync import forge
from tests.sync.conftest import NetOrg
from tests.sync.test_guard import refused

MAILBOX = "refs/heads/gitmail/mail/alex/max"
T = TypeVar("T")


def wait_for(what: Callable[[], Optional[T]], timeout: float = 20.0) -> T:
    return conftest.wait_for(what, timeout)  # this file's default: 20 s


def files(bare: Path) -> tuple[str, str]:
    """The socket and lock file of ``bare``'s daemon (the KEY of its installed hook)."""
    key = guard_daemon.hook_key(bare / "hooks" / "pre-receive")
    assert key
    p = guard_daemon.paths(str(bare), key)
    assert p
    return p


def warm(net: NetOrg) -> dict[str, int]:
    """Make sure the daemon of the org repo is up (a checked push starts it); its status."""
    if guard_daemon.status(net.bare) is None:
        send(net, "warming up")
    return wait_for(lambda: guard_daemon.status(net.bare))


def send(net: NetOrg, body: str) -> None:
    """max sends alex ``body``; it must be delivered (the guard accepted the push)."""
    res = json.loads(net.ok("max", "send", "alex", body, "--json").out)
    assert res["delivered"] is True and res["queued"] is False, res


def guard_lines(out: str) -> list[str]:
    return [ln.rstrip() for ln in out.splitlines() if ln.startswith("remote: gitmail guard:")]


def local_push(clone: Path, bare: Path, src: str, dst: str, **env: str) -> tuple[int, str]:
    """Push straight into ``bare`` (no git daemon): the hook gets this process's environment plus ``env``."""
    p = subprocess.run(["git", "push", "--porcelain", str(bare), f"{src}:{dst}"], cwd=clone, capture_output=True,
                       text=True, env={**os.environ, **env})
    return p.returncode, p.stdout + p.stderr


def test_second_push_is_checked_by_the_daemon_with_the_same_verdict(net: NetOrg) -> None:
    st = warm(net)
    sock, lock = files(net.bare)
    assert os.path.exists(sock) and guard_daemon._locked(lock)
    assert Path(lock).read_text().strip() == str(st["pid"])
    os.kill(st["pid"], 0)  # alive
    send(net, "warm path")
    st2 = guard_daemon.status(net.bare)
    assert st2 and st2["pid"] == st["pid"] and st2["checks"] == st["checks"] + 1
    # A forgery on the warm path is refused by the daemon...
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    code, warm_out = forge.push(net.clones["max"], oid, MAILBOX)
    refused(code, warm_out, "unsigned")
    st3 = guard_daemon.status(net.bare)
    assert st3 and st3["checks"] == st["checks"] + 2
    # ... with the very lines the in-process check prints.
    code, cold_out = local_push(net.clones["max"], net.bare, oid, MAILBOX, GITMAIL_GUARD_DAEMON="off")
    refused(code, cold_out, "unsigned")
    assert guard_lines(warm_out) == guard_lines(cold_out) and len(guard_lines(warm_out)) == 2
    assert guard_daemon.status(net.bare) == st3  # the daemon was not asked
    net.ok("alex", "sync")
    got = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert all(m["verified"] for m in got) and "warm path" in [m["subject"] for m in got]


def test_killed_daemon_with_stale_socket_push_still_checked(net: NetOrg) -> None:
    pid = warm(net)["pid"]
    sock, lock = files(net.bare)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not guard_daemon._locked(lock))
    assert os.path.exists(sock)  # stale: nobody listens
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
    good = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), body="after the crash")
    code, out = forge.push(net.clones["max"], good, MAILBOX)
    assert code == 0, out
    # The hook started a new daemon, which checks the next pushes.
    st = wait_for(lambda: guard_daemon.status(net.bare))
    assert st["pid"] != pid
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
    assert (guard_daemon.status(net.bare) or {}).get("checks") == st["checks"] + 1


def test_no_daemon_install_never_starts_one(net: NetOrg, guard_runtime: Path) -> None:
    warm(net)
    r = run("guard", "install", "--no-daemon", str(net.bare))
    assert r.code == 0, r.err
    assert 'DAEMON = "off"' in (net.bare / "hooks" / "pre-receive").read_text()
    assert not glob.glob(str(guard_runtime / "*" / "*.sock"))  # re-installing stopped the old daemon
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
    send(net, "checked in-process")
    time.sleep(0.5)
    assert not glob.glob(str(guard_runtime / "*" / "*.sock")) and guard_daemon.status(net.bare) is None


def test_daemon_off_by_environment(tmp_path: Path, guard_runtime: Path) -> None:
    bare, src = plain_repos(tmp_path)
    code, out = local_push(src, bare, "HEAD", "refs/heads/gitmail/whatever", GITMAIL_GUARD_DAEMON="off")
    refused(code, out, "not a gitmail ref")
    code, out = local_push(src, bare, "HEAD", "refs/heads/main", GITMAIL_GUARD_DAEMON="off")
    assert code == 0, out
    time.sleep(0.5)
    assert not glob.glob(str(guard_runtime / "*" / "*.sock"))


def test_guard_stop(net: NetOrg) -> None:
    """Deterministic: only one daemon is ever started per repo at a time (the hook hands its lock
    to the daemon it starts), so none can take over after the stop; and the test waits for the
    daemon's exit itself (its lock released), not for a fixed time."""
    pid = warm(net)["pid"]
    _, lock = files(net.bare)
    r = run("guard", "stop", str(net.bare))
    assert r.code == 0 and r.out == f"guard daemon stopped (pid {pid})\n", (r.code, r.out, r.err)
    wait_for(lambda: not guard_daemon._locked(lock), timeout=60)
    assert guard_daemon.status(net.bare) is None
    r = run("guard", "stop", str(net.bare), "--json")
    assert r.code == 0 and json.loads(r.out) == {"stopped": False, "pid": None}
    # The next push still works, and starts a new one.
    send(net, "after stop")
    assert wait_for(lambda: guard_daemon.status(net.bare))["pid"] != pid


def test_guard_stop_not_a_repo(tmp_path: Path) -> None:
    r = run("guard", "stop", str(tmp_path / "nope"))
    assert r.code == 3 and r.err.startswith("gitmail: not a git repository") and r.err.count("\n") == 1


def plain_repos(tmp_path: Path) -> tuple[Path, Path]:
    """A bare repo with the guard installed, and a repo with one commit to push into it."""
    bare = tmp_path / "plain.git"
    git("init", "--quiet", "--bare", str(bare))
    assert run("guard", "install", str(bare)).code == 0
    src = tmp_path / "src"
    git("init", "--quiet", str(src))
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "--allow-empty", "-m", "x", cwd=src)
    return bare, src


def test_idle_daemon_exits(tmp_path: Path) -> None:
    """Deterministic: the daemon is started here (as the hook would) so that the test waits on
    its very exit; started by a push, on a loaded machine it could go idle and exit before the
    push even returned."""
    bare, src = plain_repos(tmp_path)
    key = guard_daemon.hook_key(bare / "hooks" / "pre-receive")
    assert key
    sock, lock = files(bare)
    boot = "import sys; del sys.path[0]; from gitmail.guard import cli; sys.exit(cli())"
    proc = subprocess.Popen([sys.executable, "-c", boot, "serve", "--git-dir", str(bare), "--key", key], cwd="/",
                            env={**os.environ, "GITMAIL_GUARD_IDLE": "1"})
    try:
        st = wait_for(lambda: guard_daemon.status(bare), timeout=60)  # serving (a ping is a request: idle from now)
        assert st["pid"] == proc.pid
        t = time.monotonic()
        assert proc.wait(timeout=30) == 0  # its exit, the event itself
        assert time.monotonic() - t < 10
        assert not os.path.exists(sock) and not guard_daemon._locked(lock)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    code, out = local_push(src, bare, "HEAD", "refs/heads/gitmail/x")
    refused(code, out, "not a gitmail ref")
    assert run("guard", "uninstall", str(bare)).code == 0


def test_unsafe_socket_directory_is_not_used(net: NetOrg, guard_runtime: Path) -> None:
    checks = warm(net)["checks"]
    d = guard_runtime / f"gitmail-guard-{os.getuid()}"
    for unsafe in ("group-readable", "symlink"):
        if unsafe == "group-readable":
            d.chmod(0o750)
        else:
            d.rename(guard_runtime / "real")
            d.symlink_to(guard_runtime / "real")
        try:
            assert guard_daemon.paths(str(net.bare), "k") is None
            oid = forge.unsigned(net.clones["max"], "alex", "max")
            refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
            send(net, f"with a {unsafe} socket directory")
        finally:
            if unsafe == "group-readable":
                d.chmod(0o700)
            else:
                d.unlink()
                (guard_runtime / "real").rename(d)
        st = guard_daemon.status(net.bare)
        assert st and st["checks"] == checks  # the daemon was never asked


def test_chained_hook_runs_on_the_warm_path(net: NetOrg) -> None:
    chained = net.bare / "hooks" / "pre-receive.gitmail-chained"
    chained.write_text('#!/bin/sh\nwhile read old new ref; do echo "site hook saw $ref" >&2;'
                       ' case "$ref" in */alex/max) [ -e "$0.deny" ] && { echo "site policy says no" >&2; exit 1; };;'
                       ' esac; done\nexit 0\n')
    chained.chmod(0o755)
    Path(str(chained) + ".deny").touch()
    checks = warm(net)["checks"]
    good = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), body="site says no")
    code, out = forge.push(net.clones["max"], good, MAILBOX)
    assert code != 0 and "site policy says no" in out and "push refused" not in out, out
    # A push the guard refuses never reaches the chained hook.
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    code, out = forge.push(net.clones["max"], oid, MAILBOX)
    refused(code, out, "unsigned")
    assert "site hook saw" not in out
    Path(str(chained) + ".deny").unlink()
    code, out = forge.push(net.clones["max"], good, MAILBOX)
    assert code == 0 and f"site hook saw {MAILBOX}" in out, out
    st = guard_daemon.status(net.bare)
    assert st and st["checks"] == checks + 3  # all three were checked by the daemon


def test_daemon_declines_what_is_not_its_repo(net: NetOrg, tmp_path: Path) -> None:
    warm(net)
    sock, _ = files(net.bare)
    gd = os.fsencode(os.path.realpath(net.bare))
    data = f"{'0' * 40} {'1' * 40} {MAILBOX}\n".encode()

    def ask(git_dir: bytes, quarantine: bytes = b"", alternates: bytes = b"") -> tuple[int, str]:
        return guard_daemon.request(sock, [b"check", git_dir, quarantine, quarantine, alternates, data])

    other = tmp_path / "other.git"
    git("init", "--quiet", "--bare", str(other))
    code, text = ask(os.fsencode(other))
    assert code == guard_daemon.DECLINE and "serves" in text
    outside = tmp_path / "objects-elsewhere"
    outside.mkdir()
    code, text = ask(gd, os.fsencode(outside))
    assert code == guard_daemon.DECLINE and "not inside" in text
    code, text = ask(gd, b"", os.fsencode(outside))
    assert code == guard_daemon.DECLINE and "alternate" in text
    # A missing object is the daemon's doubt, not a verdict: declined too (the hook then checks itself).
    code, text = ask(gd)
    assert code == guard_daemon.DECLINE
    with pytest.raises((OSError, ValueError)):
        import socket

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(sock)
            s.sendall(b"garbage\n")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(100):
                got += chunk
            assert got == guard_daemon.MAGIC  # the greeting, and no verdict
            raise ValueError("no answer")
    assert guard_daemon.status(net.bare)  # still serving



def test_hook_client_agrees_with_the_guard(tmp_path: Path) -> None:
    """The stdlib-only hook copies a few facts of gitmail; they must not drift."""
    from gitmail import hookscripts
    from gitmail.core import refs

    text = hookscripts.template("pre-receive")
    assert f'SHARED = b"{refs.HEADS + refs.SHARED}"' in text
    assert 'MAGIC = b"' + guard_daemon.MAGIC.decode().replace("\n", "\\n") + '"' in text
    assert f"REPLY_TIMEOUT = {guard_daemon.REPLY_TIMEOUT!r}" in text and f"SOCK_MAX = {guard_daemon.SOCK_MAX}" in text
    assert f"ACK_TIMEOUT = {guard_daemon.ACK_TIMEOUT!r}" in text
    assert hookscripts.MARKER in text and text.startswith(f"#!{sys.executable} -IS\n")


@pytest.mark.parametrize("reply", ["nothing", "garbage", "truncated", "declined", "bad-status"])
def test_misbehaving_daemon_push_still_checked(net: NetOrg, reply: str) -> None:
    """Whatever answers on the socket, short of a well-formed verdict, the hook checks the push itself."""
    import fcntl
    import socket
    import threading

    warm(net)
    sock, lock = files(net.bare)
    assert run("guard", "stop", str(net.bare)).code == 0
    answers = {
        "nothing": b"",
        "garbage": b"HTTP/1.0 200 OK\r\n\r\n",
        "truncated": guard_daemon.encode([b"0", b"accepted"])[:-3],
        "declined": guard_daemon.encode([b"2", b"not mine"]),
        "bad-status": guard_daemon.encode([b"00", b""]),
    }
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # no real daemon can start while the impostor listens
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(sock)
    srv.listen(8)
    asked: list[int] = []

    def impostor() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                while conn.recv(65536):
                    pass
                asked.append(1)
                conn.sendall(answers[reply])

    t = threading.Thread(target=impostor, daemon=True)
    t.start()
    try:
        oid = forge.unsigned(net.clones["max"], "alex", "max")
        refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
        send(net, f"despite a daemon answering {reply}")
        assert len(asked) == 2
    finally:
        srv.close()
        os.unlink(sock)
        os.close(fd)


def test_upgraded_gitmail_retires_the_old_daemon(net: NetOrg) -> None:
    """After gitmail's code changes (an upgrade), the old daemon checks nothing more and exits."""
    import gitmail.core.refs as code

    pid = warm(net)["pid"]
    src = Path(code.__file__)
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # as a reinstall would
    try:
        send(net, "checked although the daemon is stale")  # declined by the daemon, checked by the hook
        # Gone means its lock is free: between removing its socket and releasing its lock, a push
        # finds no daemon to ask and none to start (the lock is still held), and is checked in-process.
        _, lock = files(net.bare)
        wait_for(lambda: not guard_daemon._locked(lock))
        oid = forge.unsigned(net.clones["max"], "alex", "max")
        refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")
        new = wait_for(lambda: guard_daemon.status(net.bare))
        assert new["pid"] != pid
    finally:
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_guard_keeps_the_ledger_of_the_directory_it_accepted(net: NetOrg) -> None:
    """Through the real guard (git daemon, warm daemon): after registrations the org repo holds
    the verified ledger of its directory tip, so a guard that starts cold verifies only what
    the next directory push adds (tests/trust/test_directory_incremental.py counts that)."""
    from gitmail.core.directory import LEDGER_FILE, Ledger

    net.join("bo")
    tip = git("rev-parse", "refs/heads/gitmail/directory", cwd=net.bare).stdout.strip()
    kept = Ledger.undump((net.bare / "gitmail" / LEDGER_FILE).read_bytes())
    assert kept.tip == tip and "bo" in kept.members
