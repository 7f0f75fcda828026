"""gitmail in a linked worktree (``git worktree add``) of a member's clone: one data folder, one
lock and one allowed-signers file for the whole repository, in the git directory the worktrees
share (``--git-common-dir``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import Org, git, run


def _ok(where: Path, *args: str) -> str:
    r = run(*args, "--repo", str(where))
    assert r.code == 0, (args, r.err)
    return r.out


def _worktree(org: Org, who: str) -> Path:
    clone = org.clones[who]
    wt = clone.parent / f"{clone.name}-wt"
    git("worktree", "add", "-q", "--detach", str(wt), "refs/remotes/origin/gitmail/directory", cwd=clone)
    return wt


def test_a_worktree_uses_the_clones_own_data(org: Org) -> None:
    """The data folder was the worktree's own git directory (.git/worktrees/<name>/gitmail): a
    second cache and lock, and `init` there pointed the shared config's allowed-signers file
    into it, so after `git worktree remove` every signature check in the clone failed."""
    clone = org.clones["alex"]
    wt = _worktree(org, "alex")
    sent = json.loads(_ok(wt, "send", "max", "from the worktree", "--json"))
    assert sent["delivered"], sent
    assert (clone / ".git" / "gitmail").is_dir()
    assert not any((clone / ".git" / "worktrees").glob("*/gitmail"))
    signers = git("config", "gpg.ssh.allowedSignersFile", cwd=wt).stdout.strip()
    assert Path(signers).parent == (clone / ".git" / "gitmail").resolve(), signers
    listed = json.loads(_ok(wt, "list", "--sent", "--json"))["messages"]
    assert [m["subject"] for m in listed] == ["from the worktree"]
    git("worktree", "remove", "--force", str(wt), cwd=clone)
    org.ok("max", "sync")
    tip = git("rev-parse", "refs/remotes/origin/gitmail/mail/max/alex", cwd=org.clones["max"]).stdout.strip()
    git("fetch", "-q", "origin", cwd=clone)
    v = git("verify-commit", tip, cwd=clone, check=False)
    assert v.returncode == 0 and 'Good "git" signature for alex' in v.stderr, v.stderr


def test_sends_from_two_worktrees_at_once_wait_for_each_other(org: Org) -> None:
    """The delivery lock lived in each worktree's git directory while the outbox refs are the
    repository's: concurrent sends from two worktrees failed with "ref ... moved while
    updating it". One lock now: every send exits 0 and every message lands once."""
    clone = org.clones["alex"]
    wt = _worktree(org, "alex")
    env = {**os.environ, "GITMAIL_WARM": "off"}
    procs = [subprocess.Popen([sys.executable, "-m", "gitmail", "send", "max", f"message {i}", "--repo", str(where)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, where in enumerate([clone, wt] * 4)]
    results = [(p.wait(), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(code == 0 for code, _ in results), results
    org.ok("max", "sync")
    got = sorted(m["subject"] for m in json.loads(org.ok("max", "list", "--json", "--limit", "100").out)["messages"])
    assert got == sorted(f"message {i}" for i in range(8)), got
