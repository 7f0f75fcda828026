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
