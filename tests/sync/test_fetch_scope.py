"""#16 item 1: a member fetches only what is theirs (docs/protocol.md §3 "What a member fetches").

Real git throughout: the refs a clone holds after `gitmail sync`, the refspecs `init` writes
for a plain `git fetch`, and the protocol v2 `ref-prefix` lines git sends (GIT_TRACE_PACKET).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import Org, git


def _tracking(clone: Path) -> set[str]:
    out = git("for-each-ref", "--format=%(refname)", "refs/remotes/origin/gitmail/", cwd=clone).stdout
    return {r[len("refs/remotes/origin/"):] for r in out.split()}


def _sync_prefixes(clone: Path, *extra: str) -> tuple[list[str], str]:
    """Run `gitmail sync` with git's packet trace; the ref-prefix lines the client sent and
    the refs the server advertised."""
    trace = clone.parent / "packet-trace"
    trace.unlink(missing_ok=True)
    env = dict(os.environ, GIT_TRACE_PACKET=str(trace))
    p = subprocess.run([sys.executable, "-m", "gitmail", "sync", "--repo", str(clone), *extra], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    text = trace.read_text()
    prefixes = re.findall(r"fetch> ref-prefix (\S+)", text)
    advertised = " ".join(re.findall(r"fetch< [0-9a-f]{40} (\S+)", text))
    return prefixes, advertised


def test_a_member_fetches_their_inbox_groups_broadcast_and_sent_only(org: Org) -> None:
    org.join("sam")
    org.ok("max", "group", "create", "ops", "alex", "max")
    org.ok("sam", "sync")
    org.ok("sam", "send", "max", "between sam and max", "--plain")
    org.ok("max", "send", "alex", "to alex", "--plain")
    org.ok("max", "send", "team:ops", "to ops")
    org.ok("sam", "send", "*", "to everyone")
    org.ok("alex", "sync")
    org.ok("alex", "send", "sam", "alex writes to sam", "--plain")
    org.ok("sam", "send", "sam", "sam's own note to self", "--plain")
    org.ok("alex", "sync")
    held = _tracking(org.clones["alex"])
    assert "gitmail/mail/max/sam" not in held and "gitmail/mail/sam/sam" not in held
    assert {"gitmail/directory", "gitmail/mail/alex/max", "gitmail/mail/team%3Aops/max",
            "gitmail/mail/%2A/sam", "gitmail/mail/sam/alex"} <= held, held
    subjects = {m["subject"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]}
    assert subjects == {"to alex", "to ops", "to everyone"}
    # Protocol v2: the client asks only for its prefixes; no other mailbox is advertised.
    prefixes, advertised = _sync_prefixes(org.clones["alex"])
    assert sorted(prefixes) == sorted(["refs/heads/gitmail/directory", "refs/heads/gitmail/mail/alex/",
                                       "refs/heads/gitmail/mail/%2A/", "refs/heads/gitmail/mail/team%3Aops/",
                                       "refs/heads/gitmail/mail/sam/alex", "refs/heads/gitmail/packed/alex"]), prefixes
    assert "gitmail/mail/max/sam" not in advertised and "gitmail/mail/alex/max" in advertised
    # sync --all: an auditor's full copy.
    prefixes, advertised = _sync_prefixes(org.clones["alex"], "--all")
    assert prefixes == ["refs/heads/gitmail/"] and "gitmail/mail/max/sam" in advertised
    assert "gitmail/mail/max/sam" in _tracking(org.clones["alex"])


def test_plain_git_fetch_uses_the_member_refspecs_and_follows_group_changes(org: Org) -> None:
    alex = org.clones["alex"]
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert [s for s in specs if s.startswith("+refs/heads/gitmail/")] == [
        "+refs/heads/gitmail/directory*:refs/remotes/origin/gitmail/directory*",
        "+refs/heads/gitmail/mail/alex/*:refs/remotes/origin/gitmail/mail/alex/*",
        "+refs/heads/gitmail/mail/%2A/*:refs/remotes/origin/gitmail/mail/%2A/*",
        "+refs/heads/gitmail/packed/alex*:refs/remotes/origin/gitmail/packed/alex*"]
    org.ok("max", "send", "max", "note to self", "--plain")
    org.ok("max", "send", "alex", "hello", "--plain")
    git("fetch", "--quiet", "origin", cwd=alex)
    held = _tracking(alex)
    assert "gitmail/mail/alex/max" in held and "gitmail/mail/max/max" not in held
    # Added to a group: the next sync fetches its mailbox at once and writes its refspec.
    org.ok("max", "group", "create", "dev", "alex", "max")
    org.ok("max", "send", "team:dev", "for dev")
    new = json.loads(org.ok("alex", "sync", "--json").out)["new"]
    assert {m["subject"] for m in new} == {"hello", "for dev"}
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert "+refs/heads/gitmail/mail/team%3Adev/*:refs/remotes/origin/gitmail/mail/team%3Adev/*" in specs
    # Removed again: the refspec goes; the user's own refspecs are never touched.
    git("config", "--add", "remote.origin.fetch", "+refs/heads/main:refs/remotes/origin/main", cwd=alex)
    org.ok("max", "group", "remove", "dev", "alex")
    org.ok("alex", "sync")
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert not any("team%3Adev" in s for s in specs) and "+refs/heads/main:refs/remotes/origin/main" in specs


def test_a_clone_with_the_old_all_mailboxes_refspec_is_narrowed_by_sync(org: Org) -> None:
    alex = org.clones["alex"]
    key = "remote.origin.fetch"
    git("config", "--unset-all", key, cwd=alex)
    git("config", "--add", key, "+refs/heads/*:refs/remotes/origin/*", cwd=alex)
    git("config", "--add", key, "+refs/heads/gitmail/*:refs/remotes/origin/gitmail/*", cwd=alex)
    org.ok("alex", "sync")
    specs = git("config", "--get-all", key, cwd=alex).stdout.split()
    assert specs[0] == "+refs/heads/*:refs/remotes/origin/*"  # the user's line stays
    assert "+refs/heads/gitmail/*:refs/remotes/origin/gitmail/*" not in specs
    assert "+refs/heads/gitmail/mail/alex/*:refs/remotes/origin/gitmail/mail/alex/*" in specs
    prefixes, _ = _sync_prefixes(alex)
    assert "refs/heads/gitmail/" not in prefixes and "refs/heads/gitmail/mail/alex/" in prefixes


def test_a_clone_with_two_identities_fetches_for_both(org: Org) -> None:
    """bob joins in alex's clone (agents sharing a checkout): the clone's refspecs cover both,
    whichever identity syncs, so neither loses the other's mail."""
    from tests.conftest import run

    alex = org.clones["alex"]
    assert run("init", "--name", "bob", "--repo", str(alex)).code == 0
    org.ok("max", "sync")
    org.ok("max", "send", "bob", "for bob", "--plain")
    org.ok("max", "send", "alex", "for alex", "--plain")
    org.ok("alex", "sync", "--as", "alex")
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert "+refs/heads/gitmail/mail/alex/*:refs/remotes/origin/gitmail/mail/alex/*" in specs
    assert "+refs/heads/gitmail/mail/bob/*:refs/remotes/origin/gitmail/mail/bob/*" in specs
    assert {"gitmail/mail/alex/max", "gitmail/mail/bob/max"} <= _tracking(alex)
    got = json.loads(org.ok("alex", "list", "--as", "bob", "--json").out)["messages"]
    assert [m["subject"] for m in got] == ["for bob"]


# -- the refspec parser (core/refs.refspec_path, core/refspecs.group_paths) -------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_NAMES = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(member=_NAMES, groups=st.lists(_NAMES, max_size=4), remote=st.sampled_from(["origin", "gitmail", "o-1"]))
def test_member_refspecs_round_trip_and_name_only_their_groups(member: str, groups: list[str], remote: str) -> None:
    """Whatever the (ref-safe encoded) names, every refspec gitmail writes parses back to its path,
    and the groups read back from the config are exactly the member's."""
    from gitmail.core import refs, refspecs
    from gitmail.core.address import GROUP_PREFIX, normalize
    from gitmail.errors import AddressError

    try:
        me = normalize(member)
        gs = sorted({GROUP_PREFIX + normalize(g) for g in groups})
    except AddressError:
        return
    paths = refs.member_paths(me, gs)
    for p in paths:
        assert refs.refspec_path(refs.refspec(p, remote), remote) == p
    assert refspecs.group_paths(paths) == gs


@settings(max_examples=300, deadline=None)
@given(spec=st.text(max_size=80), remote=st.sampled_from(["origin", "gitmail"]))
def test_a_foreign_or_garbled_config_line_is_never_taken_for_ours(spec: str, remote: str) -> None:
    """A line gitmail did not write (the user's, or garbage) parses to None, or to a path whose
    refspec is exactly that line: gitmail never rewrites or drops anything else."""
    from gitmail.core import refs, refspecs

    p = refs.refspec_path(spec, remote)
    assert p is None or refs.refspec(p, remote) == spec
    refspecs.group_paths([spec])  # never raises on any text
