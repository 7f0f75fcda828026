"""Hosts without server hooks (GitHub, GitLab): protecting the gitmail refs with the host's own
rules, simulated with git's built-in equivalents (docs/hosting.md), and what clients still catch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git
from tests.sync import forge
from tests.sync.conftest import NetOrg

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def _protect(o: NetOrg) -> None:
    """What a ruleset "block force pushes" + "restrict deletions" on refs/heads/gitmail/** does,
    with git's own settings (they apply to every ref of this repo, like a ruleset matching all)."""
    git("config", "receive.denyNonFastForwards", "true", cwd=o.bare)
    git("config", "receive.denyDeletes", "true", cwd=o.bare)


def test_protected_refs_refuse_rewind_and_deletion_without_the_guard(unguarded: NetOrg) -> None:
    o = unguarded
    _protect(o)
    o.ok("max", "send", "alex", "first")
    o.ok("max", "send", "alex", "second")
    clone = o.clones["max"]
    git("fetch", "origin", cwd=clone)
    first = git("rev-parse", "origin/gitmail/mail/alex/max~1", cwd=clone).stdout.strip()
    code, out = forge.push(clone, first, MAILBOX, "--force")
    assert code != 0 and "non-fast-forward" in out
    code, out = forge.push(clone, "", MAILBOX)
    assert code != 0 and "deletion" in out
    o.ok("alex", "sync")
    assert len(json.loads(o.ok("alex", "list", "--json").out)["messages"]) == 2


def test_without_the_guard_clients_still_flag_forgeries(unguarded: NetOrg, tmp_path: Path) -> None:
    """Branch protection does not check signatures: a member can still push a forged message on
    their own mailbox ref, and every client flags it (nothing is shown as genuine)."""
    o = unguarded
    _protect(o)
    clone = o.clones["max"]
    git("fetch", "origin", cwd=clone)
    oid = forge.signed(clone, "alex", "max", forge.stranger_key(tmp_path))
    code, _ = forge.push(clone, oid, MAILBOX)
    assert code == 0  # the host accepts it: only the guard would refuse
    o.ok("alex", "sync")
    rows = json.loads(o.ok("alex", "list", "--json").out)["messages"]
    assert [(r["verified"], r["status"]) for r in rows] == [(False, "unknown-sender")]


def test_packing_on_a_host_that_refuses_deletions_says_so_once(unguarded: NetOrg,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/hosting.md's settings and packing: `gitmail pack` failed with git's 'denying ref
    deletion' and every later sync warned 'inbox not packed' for ever. Now pack says why in one
    line (exit 10), nothing is lost, and syncs leave packing alone for a day."""
    o = unguarded
    _protect(o)
    o.ok("max", "org", "packing=true")
    o.ok("max", "send", "alex", "m1")
    o.ok("alex", "sync")
    r = o.as_("alex", "pack")
    assert r.code == 10 and "it refuses ref deletions (receive.denyDeletes" in r.err and r.err.count("\n") == 1, r
    heads = git("for-each-ref", "--format=%(refname)", "refs/heads/gitmail/", cwd=o.bare).stdout.split()
    assert "refs/heads/gitmail/mail/alex/max" in heads and "refs/heads/gitmail/packed/alex" in heads
    monkeypatch.setenv("GITMAIL_PACK_AFTER", "1")
    o.ok("max", "send", "alex", "m2")
    s = o.as_("alex", "sync")
    assert s.code == 0 and "not packed" not in s.err, s
    assert sorted(m["subject"] for m in json.loads(o.ok("alex", "list", "--json").out)["messages"]) == ["m1", "m2"]
    assert json.loads(o.ok("alex", "verify", "--all", "--json").out)["ok"]
