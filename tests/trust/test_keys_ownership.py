"""Issue 10, hole 3: a key belongs to at most one member, ever (current, retired or revoked keys,
across the directory's whole history), for the client and the guard."""

from __future__ import annotations


from gitmail.core.repo import open_repo
from gitmail.errors import DirectoryError

from tests.conftest import Org
from tests.core.forge import key_of
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit


def _key_path(org: Org, name: str) -> str:
    return str(open_repo(org.clones[name]).key_path(name))


def test_rotating_to_another_members_key_is_refused(org: Org) -> None:
    r = org.as_("alex", "key", "rotate", "--key", _key_path(org, "max"))
    assert r.code == DirectoryError.exit_code and "belongs to one member" in r.err
    org.ok("max", "send", "alex", "still mine")
    assert "still mine" in org.ok("alex", "sync").out or "1 new" in org.ok("alex", "list").out


def test_rotating_to_another_members_retired_key_is_refused(org: Org) -> None:
    old_max = _key_path(org, "max")
    org.ok("max", "key", "rotate")
    org.ok("alex", "sync")
    r = org.as_("alex", "key", "rotate", "--key", old_max)
    assert r.code == DirectoryError.exit_code and "belongs to one member" in r.err


def _remove_then_reuse(o: NetOrg) -> tuple[str, str]:
    """max (admin) removes alex; then someone registers 'newbie' with alex's (former) key."""
    alex = key_of(o, "alex")
    tip, entries = current_entries(o.clones["max"])
    without = [e for e in entries if e["name"] != "alex"]
    removal = write_dir_commit(o.clones["max"], without, key_of(o, "max"), tip)
    reuse = write_dir_commit(o.clones["max"], [*without, entry("newbie", alex.public_key)], alex, removal)
    return removal, reuse


def test_former_members_key_cannot_be_registered_again_client(unguarded: NetOrg) -> None:
    removal, reuse = _remove_then_reuse(unguarded)
    assert push_dir(unguarded.clones["max"], reuse).returncode == 0
    r = unguarded.as_("max", "sync")
    assert f"directory commit {reuse[:10]} rejected" in r.err and "was) a key of 'alex'" in r.err
    assert open_repo(unguarded.clones["max"]).ref_target("refs/gitmail/verified/directory") == removal


def test_former_members_key_cannot_be_registered_again_guard(net: NetOrg) -> None:
    _, reuse = _remove_then_reuse(net)
    p = push_dir(net.clones["max"], reuse)
    assert p.returncode != 0 and "gitmail guard" in p.stderr and "was) a key of 'alex'" in p.stderr


def test_claiming_another_members_key_as_previous_refused_by_guard(net: NetOrg) -> None:
    tip, entries = current_entries(net.clones["alex"])
    mx = next(e for e in entries if e["name"] == "max")
    for e in entries:
        if e["name"] == "alex":
            e["previous_keys"] = [mx["signing_key"]]
    oid = write_dir_commit(net.clones["alex"], entries, key_of(net, "alex"), tip)
    p = push_dir(net.clones["alex"], oid)
    assert p.returncode != 0 and "gitmail guard" in p.stderr and "also a key of" in p.stderr
