"""Issue 10, hole 12: an identity that is not a member of the directory is an error everywhere."""

from __future__ import annotations

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
