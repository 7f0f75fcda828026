"""Issue 10, hole 12: an identity that is not a member of the directory is an error everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from gitmail import api
from gitmail.errors import NotInitializedError

from tests.conftest import Org, run


def test_non_member_is_an_error_in_every_command(org: Org) -> None:
    org.ok("max", "send", "*", "hello everyone")  # broadcast: the kind of mail a stranger's view would show
    org.ok("alex", "sync")
    for args in (["list"], ["list", "--all"], ["read", "0000"], ["thread", "0000"], ["sync"], ["send", "max", "hi"],
                 ["verify"], ["log"]):
        r = org.as_("alex", *args, "--as", "nobody")
        assert r.code == NotInitializedError.exit_code, (args, r)
        assert r.err.strip() == "gitmail: 'nobody' is not a member of this org: run 'gitmail init --name NAME'", (args, r)
        assert r.out == "", (args, r)


def test_non_member_claude_hooks_say_so(org: Org) -> None:
    org.ok("max", "send", "*", "hello everyone")
    org.ok("alex", "sync")
    for event in ("session-start", "prompt"):
        r = run("hook", "claude", event, "--repo", str(org.clones["alex"]), "--as", "nobody")
        assert (r.code, r.out) == (3, "") and "'nobody' is not a member" in r.err


def test_non_member_library_calls_raise(org: Org) -> None:
    from gitmail.errors import NotAMemberError

    with pytest.raises(NotAMemberError):
        api.session(org.clones["alex"], "nobody")
    with pytest.raises(NotAMemberError):
        api.mailbox(org.clones["alex"], as_="nobody")
    assert api.session(org.clones["alex"], "alex").me == "alex"  # members are unaffected


def test_whoami_shows_where_data_would_live_but_a_non_member_is_an_error(org: Org) -> None:
    r = org.as_("alex", "whoami", "--as", "nobody", "--json")
    assert r.code == NotInitializedError.exit_code, r
    assert r.err.strip() == "gitmail: 'nobody' is not a member of this org: run 'gitmail init --name NAME'", r
    import json

    d = json.loads(r.out)
    assert (d["name"], d["registered"], d["role"]) == ("nobody", False, None)
    assert org.ok("alex", "whoami", "--json").code == 0  # a member is unaffected


def test_a_repository_without_an_org_has_no_members_policy_or_groups(tmp_path: Path) -> None:
    """``members``, ``org``, ``group list`` (and their library calls) in a plain git repository:
    they printed nothing, the default policy (as if an org had it) and "No groups.", exit 0,
    and wrote ``.git/gitmail/`` into the user's repository. Now one line, exit 3, nothing written."""
    import subprocess

    plain = tmp_path / "plain"
    subprocess.run(["git", "init", "-q", str(plain)], check=True)
    for args in (["members"], ["members", "--json"], ["org"], ["org", "--json"], ["group", "list"]):
        r = run(*args, "--repo", str(plain))
        assert (r.code, r.out) == (NotInitializedError.exit_code, ""), (args, r)
        assert r.err == f"gitmail: no gitmail org here: {plain} holds no gitmail directory; run 'gitmail init " \
                        "--name NAME --org URL' (or pass --repo)\n", (args, r)
    for call in (api.members, api.org_policy, api.group_list, api.org_fingerprint):
        with pytest.raises(NotInitializedError):
            call(plain)
    assert not (plain / ".git" / "gitmail").exists()


def test_the_org_repo_itself_and_a_clone_still_show_their_org(org: Org) -> None:
    """The check looks for a directory fetched or verified, and the org repo's own branch."""
    assert [m.name for m in api.members(org.clones["alex"])] == ["alex", "max"]
    assert [m.name for m in api.members(org.url)] == ["alex", "max"]
    assert api.org_policy(org.url)["schema_version"] == 1


def test_a_removed_members_name_is_not_given_to_a_newcomer(tmp_path: Path) -> None:
    """An admin removes alex (a hand-written commit: the CLI has no remove) and leaves the
    group that lists alex as it was. Anyone could then `init --name alex`: listed in team:ops,
    sealed its mail, and shown as the sender of alex's earlier mail. A newcomer may not take
    a name a member held now; the guard refuses it, and so does every reader."""
    import json as _json

    from gitmail.core.signing import generate_key
    from tests.core.forge import key_of
    from tests.sync.conftest import _net_org
    from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit

    for guarded in (True, False):
        root = tmp_path / ("guarded" if guarded else "open")
        root.mkdir()
        gen = _net_org(root, guard=guarded)
        o = next(gen)
        try:
            o.ok("max", "group", "create", "ops", "alex")
            tip, entries = current_entries(o.clones["max"])
            gone = write_dir_commit(o.clones["max"], [e for e in entries if e["name"] != "alex"], key_of(o, "max"), tip)
            assert push_dir(o.clones["max"], gone).returncode == 0
            o.ok("max", "sync")
            thief = generate_key(root / "thief")
            tip, entries = current_entries(o.clones["max"])
            grab = write_dir_commit(o.clones["max"], [*entries, entry("alex", thief.public_key)], thief, tip)
            p = push_dir(o.clones["max"], grab)
            if guarded:
                assert p.returncode != 0 and "was a member's; only an admin may give it again" in p.stderr, p.stderr
            else:
                assert p.returncode == 0
                r = o.as_("max", "sync")
                assert "was a member's; only an admin may give it again" in r.err, r.err
                names = {m["name"] for m in _json.loads(o.ok("max", "members", "--json").out)["members"]}
                assert "alex" not in names
        finally:
            next(gen, None)


def test_mail_of_a_removed_member_is_judged_again(tmp_path: Path) -> None:
    """After an admin removed alex, max's `verify --all` said unknown-sender for alex's earlier
    mail, while `verify` and `list` kept the verdict the cache recorded (good). The cache
    now checks a sender's mail again when their keys leave the directory."""
    import json as _json

    from tests.core.forge import key_of
    from tests.sync.conftest import _net_org
    from tests.trust.dirforge import current_entries, push_dir, write_dir_commit

    gen = _net_org(tmp_path, guard=False)
    o = next(gen)
    try:
        o.ok("alex", "send", "max", "before I leave")
        o.ok("max", "sync")
        assert [m["status"] for m in _json.loads(o.ok("max", "list", "--json").out)["messages"]] == ["good"]
        tip, entries = current_entries(o.clones["max"])
        gone = write_dir_commit(o.clones["max"], [e for e in entries if e["name"] != "alex"], key_of(o, "max"), tip)
        assert push_dir(o.clones["max"], gone).returncode == 0
        o.as_("max", "sync")
        listed = [m["status"] for m in _json.loads(o.ok("max", "list", "--json").out)["messages"]]
        full = _json.loads(o.as_("max", "verify", "--all", "--json").out)
        assert listed == ["unknown-sender"] and [b["status"] for b in full["bad"]] == listed, (listed, full)
    finally:
        next(gen, None)


def test_a_look_alike_of_a_removed_members_name_is_refused(tmp_path: Path) -> None:
    """After an admin removed alex, `aIex` (capital i) registered: the look-alike rule compared
    only with the members there are now, so the newcomer's mail read like the departed
    member's. Names members held are compared too."""
    from gitmail.core.signing import generate_key
    from tests.core.forge import key_of
    from tests.sync.conftest import _net_org
    from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit

    gen = _net_org(tmp_path, guard=True)
    o = next(gen)
    try:
        tip, entries = current_entries(o.clones["max"])
        gone = write_dir_commit(o.clones["max"], [e for e in entries if e["name"] != "alex"], key_of(o, "max"), tip)
        assert push_dir(o.clones["max"], gone).returncode == 0
        thief = generate_key(tmp_path / "thief")
        tip, entries = current_entries(o.clones["max"])
        p = push_dir(o.clones["max"], write_dir_commit(o.clones["max"], [*entries, entry("aIex", thief.public_key)],
                                                       thief, tip))
        assert p.returncode != 0 and "looks like 'alex', a former member's name" in p.stderr, p.stderr
    finally:
        next(gen, None)
