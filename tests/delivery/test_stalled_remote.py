"""A remote that takes the connection and then says nothing (a half-dead host, a stuck proxy):
gitmail stops git after gitmail.remoteTimeout seconds without a byte either way, says so in
one line, keeps the mail queued, and delivers it once the host answers again."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gitmail import git
from tests.conftest import Org, read_terminal

STALL = 2


@pytest.fixture
def silent_host() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte:
    ``git://127.0.0.1:PORT/org.git``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # kept open, never answered
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"git://127.0.0.1:{srv.getsockname()[1]}/org.git"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def _gitmail(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GITMAIL_REMOTE_TIMEOUT": str(STALL), "GITMAIL_WARM": "off"}
    return subprocess.run([sys.executable, "-m", "gitmail", *args, "--repo", str(clone)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_a_silent_host_is_given_up_on_and_the_mail_stays_queued(org: Org, silent_host: str) -> None:
    """Before, `send` and `sync` waited for ever (a stuck round also held the clone's delivery
    lock, so every later send waited too). Now each gives up after STALL s of silence."""
    clone = org.clones["alex"]
    real = git.output(["config", "remote.origin.url"], clone)
    git.run(["config", "remote.origin.url", silent_host], clone)
    t = time.monotonic()
    sent = _gitmail(clone, "send", "max", "while the host hangs", "--json")
    took = time.monotonic() - t
    assert sent.returncode == 0, sent.stderr
    out = json.loads(sent.stdout)
    assert (out["delivered"], out["queued"]) == (False, True), out
    assert f"sent and took no data for {STALL} s (git config gitmail.remoteTimeout)" in sent.stdout, sent.stdout
    assert took < 60, took
    synced = _gitmail(clone, "sync")
    assert synced.returncode == 9, synced
    assert synced.stderr.count("\n") == 1 and "cannot reach the org remote" in synced.stderr \
        and "queued mail stays in the outbox" in synced.stderr, synced.stderr
    git.run(["config", "remote.origin.url", real], clone)  # the host answers again
    assert _gitmail(clone, "sync").returncode == 0
    org.ok("max", "sync")
    got = json.loads(org.ok("max", "list", "--json").out)["messages"]
    assert [m["subject"] for m in got] == ["while the host hangs"]


def test_the_stall_timeout_setting() -> None:
    """`gitmail.remoteTimeout` (lower-cased as git prints it), the environment first; 0 or
    nonsense: never stopped, or the default."""
    assert git.stall_timeout({}) == git.STALL_TIMEOUT or os.environ.get("GITMAIL_REMOTE_TIMEOUT")
    assert git.stall_timeout({"gitmail.remotetimeout": "30"}) == 30
    assert git.stall_timeout({"gitmail.remotetimeout": "0"}) is None
    assert git.stall_timeout({"gitmail.remotetimeout": "soon"}) == git.STALL_TIMEOUT


def test_a_slow_but_moving_transfer_is_not_stopped(tmp_path: Path) -> None:
    """Only silence counts: a git that keeps reading and writing runs past the timeout."""
    script = tmp_path / "slow"
    script.write_text("#!/bin/sh\nfor i in 1 2 3 4 5 6; do echo tick; sleep 0.5; done\n")
    script.chmod(0o755)
    t = time.monotonic()
    p = git.run(["-c", f"alias.slow=!{script}", "slow"], tmp_path, check=False, stall=1)
    assert p.returncode == 0 and p.stdout.count(b"tick") == 6 and time.monotonic() - t >= 2.5, p
    q = git.run(["-c", "alias.quiet=!sleep 30", "quiet"], tmp_path, check=False, stall=1)
    assert q.returncode != 0 and git.STALL_WORDS in q.stderr, q


def test_a_remote_on_this_machine_is_never_stopped() -> None:
    """For a path or file:// remote git runs the server's side (receive-pack, the guard's
    pre-receive) as its own children: a slow guard looked like a silent network and was
    killed on every try, its quarantine left behind. Such remotes get no stall timeout."""
    for url in ("/srv/git/org.git", "../org.git", "org.git", "file:///srv/git/org.git", "./a:b"):
        assert git.is_local_url(url) and git.stall_timeout({}, url) is None, url
    for url in ("git://host/org.git", "ssh://host/org.git", "host:org.git", "https://host/org.git",
                "git@host:team/org.git"):
        assert not git.is_local_url(url) and git.stall_timeout({}, url) is not None, url


def test_a_stalled_git_is_asked_to_stop_before_it_is_killed(tmp_path: Path) -> None:
    """SIGTERM first (git removes its locks, ssh gives back a terminal it took for a
    passphrase: SIGKILL left the user's shell without echo), SIGKILL only after the grace."""
    marker = tmp_path / "termed"
    script = tmp_path / "quiet"
    script.write_text(f"#!/bin/sh\ntrap 'echo term > {marker}; exit 143' TERM\nsleep 30 & wait\n")
    script.chmod(0o755)
    q = git.run(["-c", f"alias.quiet=!{script}", "quiet"], tmp_path, check=False, stall=1)
    assert git.STALL_WORDS in q.stderr and marker.read_text() == "term\n", q


def test_a_prompt_on_the_terminal_is_not_a_stall(tmp_path: Path) -> None:
    """ssh asking for a key's passphrase (or to trust a new host key) opens /dev/tty and waits for
    a person: no byte moves meanwhile, and a prompt left for gitmail.remoteTimeout seconds was
    stopped as a stalled network. Run under a real terminal (a pty): a git whose child holds
    /dev/tty open and says nothing for 6 s runs past a 2 s timeout (2 s, not 1: a starved child
    must not look silent before it opens the terminal); the same silence with only its standard
    input on the terminal is still stopped."""
    import pty

    prompt = tmp_path / "prompt"
    prompt.write_text("#!/bin/sh\nexec 3</dev/tty\nsleep 6\necho answered\n")
    prompt.chmod(0o755)
    # Its standard input on the terminal (a wrapper's `exec </dev/tty`) is no prompt: it waited for ever.
    quiet = tmp_path / "quiet"
    quiet.write_text("#!/bin/sh\nexec </dev/tty\nsleep 6\n")
    quiet.chmod(0o755)
    code = ("import sys; from gitmail import git\n"
            f"p = git.run(['-c', 'alias.ask=!{prompt}', 'ask'], {str(tmp_path)!r}, check=False, stall=2)\n"
            f"q = git.run(['-c', 'alias.quiet=!{quiet}', 'quiet'], {str(tmp_path)!r}, check=False, stall=2)\n"
            "print('RESULT', p.returncode, b'answered' in p.stdout, q.returncode != 0 and git.STALL_WORDS in q.stderr)\n")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session with this pty as its controlling terminal
        os.execve(sys.executable, [sys.executable, "-c", code], {**os.environ, "PYTHONPATH": os.getcwd()})
    out = read_terminal(fd)
    os.waitpid(pid, 0)
    os.close(fd)
    assert b"RESULT 0 True True" in out, out
