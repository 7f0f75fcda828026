"""Concurrent senders (issue 12): 8 processes in one clone, and 8 clones, through ``git daemon`` with the
guard and through a file remote. Exact outcomes: every send says delivered and exits 0, and the
org repo holds each message exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import Org, git
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401 - fixtures

GITMAIL = str(Path(sys.executable).parent / "gitmail")
PROCS, EACH = 8, 5


def _sends(o: Org, clones: list[Path]) -> list[dict[str, object]]:
    """PROCS processes, each EACH CLI sends to alex in turn from its clone; every outcome."""

    def worker(k: int) -> list[dict[str, object]]:
        out = []
        for i in range(EACH):
            r = subprocess.run([GITMAIL, "send", "alex", f"w{k} m{i}", "--plain", "--json", "--repo",
                                str(clones[k])], capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, (k, i, r.stderr)
            out.append(json.loads(r.stdout))
        return out

    with ThreadPoolExecutor(PROCS) as pool:
        return [x for part in pool.map(worker, range(PROCS)) for x in part]


def _server_ids(bare: Path) -> list[str]:
    out = git("log", "--format=%(trailers:key=Message-Id,valueonly)", "--remotes", "--branches=gitmail/mail/alex/*",
              cwd=bare, check=False).stdout
    return [ln.strip().strip("<>").split("@")[0] for ln in out.splitlines() if ln.strip()]


def _check(o: Org, bare: Path, results: list[dict[str, object]]) -> None:
    assert len(results) == PROCS * EACH
    assert {(r["outcome"], r["delivered"], r["queued"]) for r in results} == {("delivered", True, False)}
    ids = _server_ids(bare)
    assert sorted(ids) == sorted(str(r["id"]) for r in results), "lost or doubled on the org repo"
    o.ok("alex", "sync")
    listing = json.loads(o.ok("alex", "list", "--json", "--limit", "1000").out)["messages"]
    assert len(listing) == PROCS * EACH and all(m["verified"] for m in listing)


@pytest.mark.parametrize("layout", ["one clone", "8 clones"])
def test_concurrent_senders_through_git_daemon_with_the_guard(net: NetOrg, layout: str) -> None:
    clones = ([net.clones["max"]] * PROCS if layout == "one clone"
              else [net.join(f"agent{k}") for k in range(PROCS)])
    if layout == "8 clones":
        net.ok("alex", "sync")
    _check(net, net.bare, _sends(net, clones))


@pytest.mark.parametrize("layout", ["one clone", "8 clones"])
def test_concurrent_senders_through_a_file_remote(org: Org, layout: str) -> None:
    clones = ([org.clones["max"]] * PROCS if layout == "one clone"
              else [org.join(f"agent{k}") for k in range(PROCS)])
    _check(org, Path(org.url), _sends(org, clones))


# -- one delivery round at a time per clone (issue 15) ----------------------------------------------


def _hold_delivery(clone: Path) -> int:
    import fcntl
    import os

    (clone / ".git" / "gitmail").mkdir(exist_ok=True)
    fd = os.open(clone / ".git" / "gitmail" / "deliver.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _queued_tip(clone: Path, timeout: float = 120.0) -> str:
    """The outbox ref the background send wrote (waiting for it to appear)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = git("for-each-ref", "--format=%(refname)", "refs/gitmail/outbox/", cwd=clone).stdout.split()
        if out:
            return out[0]
        time.sleep(0.05)
    raise AssertionError("the send wrote nothing to the outbox")


def test_a_send_waits_for_the_delivery_round_of_another_process_of_its_clone(org: Org) -> None:
    import os
    import time

    clone = org.clones["max"]
    fd = _hold_delivery(clone)
    p = subprocess.Popen([GITMAIL, "send", "alex", "after you", "--plain", "--json", "--repo", str(clone)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _queued_tip(clone)
        end = time.monotonic() + 5
        while time.monotonic() < end and p.poll() is None:
            time.sleep(0.05)
        assert p.poll() is None, "the send pushed while another delivery round of its clone was running"
        assert _server_ids(Path(org.url)) == []
    finally:
        os.close(fd)  # the other round ends
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    r = json.loads(out)
    assert r["outcome"] == "delivered" and _server_ids(Path(org.url)) == [r["id"]]


def test_a_waiting_send_takes_the_unreachable_verdict_of_the_round_before(org: Org) -> None:
    import os
    import time

    from gitmail.core import refs
    from gitmail.core.model import format_date, utcnow

    clone = org.clones["max"]
    git("remote", "set-url", "origin", str(org.root / "gone.git"), cwd=clone)
    fd = _hold_delivery(clone)
    p = subprocess.Popen([GITMAIL, "send", "alex", "is anyone there", "--plain", "--json", "--repo", str(clone)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ref = _queued_tip(clone)
        mid = git("log", "-1", "--format=%(trailers:key=Message-Id,valueonly)", ref, cwd=clone).stdout
        mid = mid.strip().strip("<>").split("@")[0]
        time.sleep(2)  # the waiting round started before the verdict below
        now = format_date(utcnow())
        (clone / ".git" / "gitmail" / "outbox.json").write_text(json.dumps({
            f"{refs.mail_path('alex', 'max')}\t{mid}": {"kind": "remote-unreachable", "detail": "no answer (test)",
                                                        "since": now, "tried": now}}))
    finally:
        os.close(fd)
    out, err = p.communicate(timeout=300)
    r = json.loads(out)
    assert (r["outcome"], r["reason"]) == ("queued", "no answer (test)"), err
