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

import pytest

from tests.conftest import Org, git
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401


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


@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no guard"])
def test_names_that_extend_a_members_bring_that_member_none_of_their_refs(request: pytest.FixtureRequest,
                                                                          guarded: bool) -> None:
    """alex0 and alexa begin with alex. Fetching alex's packed ref and each mailbox alex
    delivered to as the pattern ``<ref>*`` used to bring theirs too: alex0's whole packed
    inbox, and alexa's mail to max. Now neither ``gitmail sync``, nor a plain ``git fetch``
    with the refspecs gitmail writes, nor ``init`` on a new machine brings any of it; a clone
    holding both alex and alex0 still gets both packed refs. Over a real ``git daemon``
    (protocol v2), with the guard and without."""
    from tests.conftest import run

    org: NetOrg = request.getfixturevalue("net" if guarded else "unguarded")
    org.join("alex0")
    org.join("alexa")
    org.ok("max", "org", "packing=true")
    for who in ("alex0", "alexa", "alex"):
        org.ok(who, "sync")
        org.ok("max", "send", who, f"to {who}", "--plain")
        org.ok(who, "send", "max", f"from {who}", "--plain")
    for who in ("alex0", "alex"):
        org.ok(who, "sync")
        org.ok(who, "pack")
    bare = org.bare
    server = set(git("for-each-ref", "--format=%(refname)", "refs/heads/gitmail/", cwd=bare).stdout.split())
    assert {"refs/heads/gitmail/packed/alex0", "refs/heads/gitmail/packed/alex",
            "refs/heads/gitmail/mail/max/alexa", "refs/heads/gitmail/mail/max/alex0"} <= server, server
    others = {"gitmail/packed/alex0", "gitmail/mail/max/alexa", "gitmail/mail/max/alex0", "gitmail/packed/alexa"}

    alex = org.clones["alex"]
    org.ok("alex", "sync")
    held = _tracking(alex)
    assert {"gitmail/packed/alex", "gitmail/mail/max/alex"} <= held and not held & others, held
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert sorted(s for s in specs if s.startswith("^")) == ["^refs/heads/gitmail/packed/alex0*",
                                                              "^refs/heads/gitmail/packed/alexa*"], specs
    # A clone set up by the previous version (no negative lines, no list of longer names) gets
    # both from its next sync, whose directory did not move.
    git("config", "--unset-all", "remote.origin.fetch", "^\\^", cwd=alex)
    (alex / ".git" / "gitmail" / "longer-names.json").unlink()
    org.ok("alex", "sync")
    assert git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split() == specs
    assert json.loads((alex / ".git" / "gitmail" / "longer-names.json").read_text()) == ["alex0", "alexa"]
    # A plain git fetch with those refspecs, into a clone that has nothing yet.
    plain = org.root / "plain"
    git("init", "--quiet", str(plain))
    git("remote", "add", "origin", org.url, cwd=plain)
    git("config", "--unset-all", "remote.origin.fetch", cwd=plain)
    for spec in specs:
        git("config", "--add", "remote.origin.fetch", spec, cwd=plain)
    git("fetch", "--quiet", "origin", cwd=plain)
    assert "gitmail/packed/alex" in _tracking(plain) and not _tracking(plain) & others

    # alex on a new machine: init fetches the directory first, so even its first fetch is exact.
    laptop = org.root / "alex-laptop"
    assert run("init", "--name", "alex", "--org", org.url, "--repo", str(laptop)).code == 0
    assert run("sync", "--repo", str(laptop)).code == 0
    held = _tracking(laptop)
    assert "gitmail/packed/alex" in held and not held & others, held
    got = json.loads(run("list", "--all", "--json", "--repo", str(laptop)).out)["messages"]
    assert {m["subject"] for m in got} == {"to alex"}

    # One clone, both identities: each one's packed ref comes, alexa's does not.
    assert run("init", "--name", "alex0", "--repo", str(alex)).code == 0
    specs = git("config", "--get-all", "remote.origin.fetch", cwd=alex).stdout.split()
    assert sorted(s for s in specs if s.startswith("^")) == ["^refs/heads/gitmail/packed/alexa*"], specs
    org.ok("alex", "sync", "--as", "alex")
    held = _tracking(alex)
    assert {"gitmail/packed/alex", "gitmail/packed/alex0"} <= held and "gitmail/packed/alexa" not in held, held
    got = json.loads(org.ok("alex", "list", "--all", "--as", "alex0", "--json").out)["messages"]
    assert {m["subject"] for m in got} == {"to alex0"}


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


# -- names that extend another's (refs.longer_names, refs.exclusions) -----------------------------


def _git_selects(ref: str, specs: list[str]) -> bool:
    """git's choice for one advertised ref (builtin/fetch.c, refspec.c): it matches a positive
    pattern (a ``*`` at the end matches any rest, the empty one included) and no negative one."""
    def matches(src: str) -> bool:
        return ref.startswith(src[:-1]) if src.endswith("*") else ref == src

    pos = [s[1:].partition(":")[0] for s in specs if s.startswith("+")]
    neg = [s[1:] for s in specs if s.startswith("^")]
    return any(matches(p) for p in pos) and not any(matches(n) for n in neg)


_SHORT = st.text(alphabet="ab1é", min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(names=st.lists(_SHORT, min_size=1, max_size=8, unique=True), data=st.data())
def test_single_ref_patterns_bring_exactly_their_refs_whatever_the_names(names: list[str], data: st.DataObject) -> None:
    """Any names (many beginning others), any identities in one clone, any mailboxes they
    delivered to: the refspecs select exactly the refs asked for, never a longer name's and
    never fewer."""
    from gitmail.core import refs
    from gitmail.core.address import normalize, to_ref

    names = sorted({normalize(n) for n in names})
    mine = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    sent = data.draw(st.lists(st.tuples(st.sampled_from(names), st.sampled_from(mine)), max_size=4, unique=True))
    paths: list[str] = []
    for me in mine:
        paths += refs.member_paths(me, [])
    paths += [refs.exact_pattern(refs.mail_path(r, s)) for r, s in sent]
    specs = [refs.refspec(p, "origin") for p in paths]
    specs += refs.exclusions(paths, refs.longer_names(to_ref(n) for n in names))
    every = [refs.head(refs.packed_path(n)) for n in names]
    every += [refs.head(refs.mail_path(r, s)) for r in names for s in names]
    every.append(refs.head(refs.DIRECTORY))
    want = {refs.head(refs.DIRECTORY)} | {refs.head(refs.packed_path(m)) for m in mine}
    want |= {refs.head(refs.mail_path(m, s)) for m in mine for s in names}
    want |= {refs.head(refs.mail_path(r, s)) for r, s in sent}
    assert {r for r in every if _git_selects(r, specs)} == want


@settings(max_examples=200, deadline=None)
@given(names=st.lists(st.text(alphabet="ab1%", min_size=1, max_size=6), max_size=12))
def test_longer_names_are_exactly_those_extending_another(names: list[str]) -> None:
    from gitmail.core import refs

    have = set(names)
    assert refs.longer_names(names) == sorted(x for x in have if any(y != x and x.startswith(y) for y in have))


def test_a_chain_of_hostile_names_costs_one_entry_per_name_and_few_exclusions() -> None:
    """x, xx, ... 100 x's, in 100 chains: 10,000 names whose prefix pairs number half a million.
    What a clone keeps grows with the names, and a pattern gets at most one line per byte."""
    from gitmail.core import refs

    names = [c * k for c in "abcdefghijklmnopqrstuvwxyz0123456789" for k in range(1, 101)]
    names += [f"q{i}" for i in range(6400)]
    longer = refs.longer_names(names)
    # Every chain link but the first (36 x 99), and every q-name (each extends the chain's q).
    assert len(longer) == 36 * 99 + 6400
    got = refs.exclusions(["gitmail/packed/a*", "gitmail/packed/q1*"], longer)
    assert got == ["^refs/heads/gitmail/packed/aa*", "^refs/heads/gitmail/packed/q10*",
                   "^refs/heads/gitmail/packed/q11*", "^refs/heads/gitmail/packed/q12*",
                   "^refs/heads/gitmail/packed/q13*", "^refs/heads/gitmail/packed/q14*",
                   "^refs/heads/gitmail/packed/q15*", "^refs/heads/gitmail/packed/q16*",
                   "^refs/heads/gitmail/packed/q17*", "^refs/heads/gitmail/packed/q18*",
                   "^refs/heads/gitmail/packed/q19*"]


def test_a_fetch_of_thousands_of_single_refs_with_their_exclusions_goes_through(org: Org) -> None:
    """A hostile member registers a name for every byte that can follow max's (max0, maxa, max-,
    max%...): every mailbox max delivered to then fetches with 39 negative refspecs. 3,000 of
    them (about 5 MB of refspecs, past the command line's limit) still make one fetch, which
    brings the mailbox that exists and nothing else."""
    from gitmail.core import refs, refspecs, sync
    from gitmail.core.address import _SAFE
    from gitmail.core.repo import open_repo

    org.ok("max", "send", "alex", "one", "--plain")
    repo = open_repo(org.clones["max"])
    longer = sorted([f"max{chr(b)}" for b in _SAFE] + ["max%2E"])
    (repo.data_dir / "longer-names.json").write_text(json.dumps(longer))
    assert refspecs.longer_names(repo) == longer
    paths = [refs.exact_pattern(refs.mail_path(f"r{i}", "max")) for i in range(3000)]
    paths.append(refs.exact_pattern(refs.mail_path("alex", "max")))
    specs = refspecs.fetch_refspecs(repo, paths)
    assert len(specs) == 3001 * 40 and sum(len(s) + 1 for s in specs) > 4_000_000
    git("update-ref", "-d", "refs/remotes/origin/gitmail/mail/alex/max", cwd=org.clones["max"])
    sync.fetch(repo, paths)
    assert {p for p in _tracking(org.clones["max"]) if p.startswith("gitmail/mail/")} == {"gitmail/mail/alex/max"}


def test_the_fetch_scope_vector_holds_for_the_code_and_for_git(tmp_path: Path) -> None:
    """docs/protocol.md §3 "What a member fetches": the test vector's refs, selected by the
    refspecs gitmail computes, once by git's rule as written here and once by git itself."""
    from gitmail.core import refs

    spec = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text("utf-8")
    (body,) = re.findall(r"^```text test-vector fetch-scope\n(.*?)^```$", spec, re.S | re.M)
    lines = body.splitlines()
    names = lines[0].removeprefix("names: ").split()
    paths = lines[1].removeprefix("fetch: ").split()
    marks = {ln[2:]: ln[0] == "+" for ln in lines[2:]}
    specs = [refs.refspec(p, "origin") for p in paths] + refs.exclusions(paths, refs.longer_names(names))
    assert {r for r in marks if _git_selects(refs.head(r), specs)} == {r for r, want in marks.items() if want}

    server = tmp_path / "server.git"
    git("init", "--quiet", "--bare", str(server))
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=server, input="x", capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = subprocess.run(["git", "mktree"], cwd=server, input=f"100644 blob {blob}\tf\n", capture_output=True,
                          text=True, check=True).stdout.strip()
    tip = git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit-tree", tree, "-m", "x",
              cwd=server).stdout.strip()
    subprocess.run(["git", "update-ref", "--stdin"], cwd=server, check=True, text=True,
                   input="".join(f"create {refs.head(r)} {tip}\n" for r in marks))
    clone = tmp_path / "clone"
    git("init", "--quiet", str(clone))
    git("remote", "add", "origin", str(server), cwd=clone)
    subprocess.run(["git", "fetch", "--quiet", "--no-tags", "--stdin", "origin"], cwd=clone, check=True, text=True,
                   input="".join(s + "\n" for s in specs))
    assert _tracking(clone) == {r for r, want in marks.items() if want}
