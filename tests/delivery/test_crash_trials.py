"""Crash consistency (issue 12): ``kill -9`` at random points of send, sync and mark/archive, through a
real ``git daemon`` with the guard. Every trial: nothing lost, nothing delivered twice, state parseable.

TRIALS per operation (30 in CI; ``GITMAIL_CRASH_TRIALS`` for more). The delays are drawn from a
seeded generator so a failure can be replayed; they cover the whole life of each command (start-up,
signing, the ref transaction, the push, the cache and state writes).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import git
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401 - fixtures

GITMAIL = str(Path(sys.executable).parent / "gitmail")
TRIALS = int(os.environ.get("GITMAIL_CRASH_TRIALS", "30"))


def _killed(args: list[str], clone: Path, delay: float) -> None:
    """Start ``gitmail ARGS`` in ``clone`` and SIGKILL it after ``delay`` seconds (or let it end first)."""
    proc = subprocess.Popen([GITMAIL, *args, "--repo", str(clone)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _delays(seed: int, top: float) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.uniform(0.0, top) for _ in range(TRIALS)]


def _server_ids(o: NetOrg, ref: str = "refs/heads/gitmail/mail/alex/max") -> list[str]:
    """The Message-IDs (hex) on the server's copy of ``ref`` (trailer form ``<ID@gitmail>``)."""
    p = git("log", "--format=%(trailers:key=Message-Id,valueonly)", ref, cwd=o.bare, check=False)
    return [ln.strip().strip("<>").split("@")[0] for ln in p.stdout.splitlines() if ln.strip()]


def _queued_ids(o: NetOrg, who: str) -> set[str]:
    r = o.ok(who, "outbox", "--json")
    return {q["id"] for q in json.loads(r.out)["queued"]}


def _listing(o: NetOrg, who: str) -> list[dict[str, object]]:
    r = o.ok(who, "list", "--json", "--all", "--limit", "1000")
    messages: list[dict[str, object]] = json.loads(r.out)["messages"]
    return messages


def _verified(o: NetOrg, who: str) -> None:
    r = o.as_(who, "verify", "--all", "--json")
    rep = json.loads(r.out)
    assert r.code == 0 and rep["ok"], rep


def test_send_killed_at_random_points_loses_and_doubles_nothing(net: NetOrg) -> None:
    clone = net.clones["max"]
    queued_seen: set[str] = set()
    for i, delay in enumerate(_delays(1, 1.2)):
        _killed(["send", "alex", f"crash-send-{i}", "--plain"], clone, delay)
        queued_seen |= _queued_ids(net, "max")  # a message that reached the outbox must arrive
    net.ok("max", "sync")
    assert _queued_ids(net, "max") == set()
    on_server = _server_ids(net)
    assert len(on_server) == len(set(on_server)), "a message was delivered twice"
    assert queued_seen <= set(on_server), "a queued message was lost"
    net.ok("alex", "sync")
    rows = _listing(net, "alex")
    assert sorted(str(r["id"]) for r in rows) == sorted(on_server)
    assert {str(r["subject"]) for r in rows} <= {f"crash-send-{i}" for i in range(TRIALS)}
    _verified(net, "alex")
    _verified(net, "max")


def test_sync_killed_at_random_points_loses_and_doubles_nothing(net: NetOrg) -> None:
    reader = net.clones["alex"]
    sent = []
    for i, delay in enumerate(_delays(2, 1.0)):
        r = net.ok("max", "send", "alex", f"crash-sync-{i}", "--plain", "--json")
        sent.append(json.loads(r.out)["id"])
        _killed(["sync"], reader, delay)
        _listing(net, "alex")  # whatever the kill left behind, the mailbox reads
    net.ok("alex", "sync")
    rows = _listing(net, "alex")
    ids = [str(r["id"]) for r in rows]
    assert sorted(ids) == sorted(sent), "a message was lost or shown twice"
    assert all(r["verified"] for r in rows)
    _verified(net, "alex")


def test_mark_and_archive_killed_at_random_points_keep_state_parseable(net: NetOrg) -> None:
    for i in range(6):
        net.ok("max", "send", "alex", f"crash-state-{i}", "--plain")
    net.ok("alex", "sync")
    ids = [str(r["id"]) for r in _listing(net, "alex")]
    reader = net.clones["alex"]
    rnd = random.Random(3)
    for delay in _delays(3, 0.9):
        mid = rnd.choice(ids)[:8]
        verb = rnd.choice([["mark", mid, "--read"], ["mark", mid, "--unread"], ["archive", mid],
                           ["archive", mid, "--undo"]])
        _killed(verb, reader, delay)
        rows = _listing(net, "alex")  # the state ref and the cache always parse
        assert sorted(str(r["id"]) for r in rows) == sorted(ids), "a message vanished from the mailbox"
        state = git("cat-file", "-p", "refs/gitmail/state/alex", cwd=reader, check=False)
        if state.returncode == 0:
            json.loads(state.stdout)
    # After the crashes, flags still work and a rebuilt cache agrees with the state ref.
    net.ok("alex", "mark", ids[0][:8], "--read")
    before = {str(r["id"]): (r["read"], r["archived"]) for r in _listing(net, "alex")}
    for f in (reader / ".git" / "gitmail" / "cache").glob("*"):
        f.unlink()
    after = {str(r["id"]): (r["read"], r["archived"]) for r in _listing(net, "alex")}
    assert after == before and after[ids[0]][0] is True
    _verified(net, "alex")
