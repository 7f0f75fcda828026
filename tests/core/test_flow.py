"""The core user flow: send, list, read, mark, archive, reply, thread, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Org, git


def test_send_list_read_archive(org: Org) -> None:
    r = org.ok("max", "send", "alex", "Domain research is done. Pick your top 3?", "--json")
    sent = json.loads(r.out)
    assert sent["to"] == ["alex"] and sent["delivered"] is True
    org.ok("alex", "sync")
    listing = json.loads(org.ok("alex", "list", "--json").out)
    assert listing["unread"] == 1 and listing["total"] == 1
    m = listing["messages"][0]
    assert m["from"] == "max" and m["read"] is False and m["verified"] is True
    assert m["id"] == sent["id"] and m["subject"].startswith("Domain research")

    text = org.ok("alex", "read").out
    assert "From: max" in text and "Pick your top 3?" in text
    assert json.loads(org.ok("alex", "list", "--json").out)["unread"] == 0

    org.ok("alex", "archive", m["short_id"])
    assert json.loads(org.ok("alex", "list", "--json").out)["messages"] == []
    archived = json.loads(org.ok("alex", "list", "--archived", "--json").out)["messages"]
    assert [x["id"] for x in archived] == [m["id"]]
    org.ok("alex", "archive", "--undo", m["id"][:6])
    assert len(json.loads(org.ok("alex", "list", "--json").out)["messages"]) == 1


def test_mark_unread_and_read_order(org: Org) -> None:
    org.ok("max", "send", "alex", "low thing", "--priority", "low")
    org.ok("max", "send", "alex", "first normal")
    org.ok("max", "send", "alex", "fire!", "--priority", "urgent")
    org.ok("max", "send", "alex", "second normal")
    org.ok("alex", "sync")
    items = json.loads(org.ok("alex", "read", "--json").out)["messages"]
    assert [i["subject"] for i in items] == ["fire!", "first normal", "second normal", "low thing"]
    target = items[1]["short_id"]
    org.ok("alex", "mark", target, "--unread")
    unread = json.loads(org.ok("alex", "list", "--unread", "--json").out)
    assert unread["unread"] == 1 and unread["messages"][0]["short_id"] == target
    org.ok("alex", "mark", target, "--read")
    assert json.loads(org.ok("alex", "list", "--unread", "--json").out)["messages"] == []


def test_reply_and_thread(org: Org) -> None:
    first = json.loads(org.ok("max", "send", "alex", "question one", "--subject", "Plan", "--json").out)
    org.ok("alex", "sync")
    rep = json.loads(org.ok("alex", "reply", first["short_id"], "answer one", "--json").out)
    assert rep["to"] == ["max"] and rep["in_reply_to"] == first["id"] and rep["thread"] == first["id"]
    org.ok("max", "sync")
    again = json.loads(org.ok("max", "reply", rep["short_id"], "thanks", "--json").out)
    assert again["thread"] == first["id"]
    org.ok("alex", "sync")
    th = json.loads(org.ok("alex", "thread", first["short_id"], "--json").out)
    assert th["thread"] == first["id"]
    assert [m["id"] for m in th["messages"]] == [first["id"], rep["id"], again["id"]]
    subjects = {m["subject"] for m in th["messages"]}
    assert subjects == {"Plan", "Re: Plan"}


def test_multiple_recipients_and_stdin(org: Org) -> None:
    org.join("bob")
    r = json.loads(org.ok("max", "send", "alex", "bob", "-", "--subject", "hi both", "--json", stdin="from stdin\n").out)
    assert r["to"] == ["alex", "bob"]
    for who in ("alex", "bob"):
        org.ok(who, "sync")
        items = json.loads(org.ok(who, "read", "--json").out)["messages"]
        assert len(items) == 1 and items[0]["body"] == "from stdin\n" and items[0]["id"] == r["id"]


def test_plain_git_log_verifies(org: Org) -> None:
    org.ok("max", "send", "alex", "signed hello", "--subject", "hello alex", "--plain")
    clone = org.clones["alex"]
    org.ok("alex", "sync")
    p = git("log", "--show-signature", "-1", "origin/gitmail/mail/alex/max", cwd=clone)
    assert 'Good "git" signature for max with ED25519 key' in p.stdout + p.stderr
    assert "hello alex" in p.stdout and "Message-Id: <" in p.stdout and "To: alex" in p.stdout
    v = git("verify-commit", "origin/gitmail/mail/alex/max", cwd=clone)
    assert 'Good "git" signature for max' in v.stderr
    dv = git("verify-commit", "origin/gitmail/directory", cwd=clone)
    assert 'Good "git" signature for alex' in dv.stderr  # alex registered last


def test_unicode_member_names(org: Org) -> None:
    org.join("Mac CLI 小克")
    r = json.loads(org.ok("max", "send", "Mac CLI 小克", "你好", "--json").out)
    assert r["to"] == ["Mac CLI 小克"]
    org.ok("Mac CLI 小克", "sync")
    got = json.loads(org.ok("Mac CLI 小克", "list", "--json").out)
    assert got["messages"][0]["from"] == "max"
    refs = git("for-each-ref", "--format=%(refname)", cwd=org.clones["max"]).stdout
    assert "refs/remotes/origin/gitmail/mail/%4Dac%20%43%4C%49%20%E5%B0%8F%E5%85%8B/max" in refs
    p = git("log", "--show-signature", "-1", "origin/gitmail/directory", cwd=org.clones["max"])
    assert 'Good "git" signature for Mac CLI 小克' in p.stdout + p.stderr


def test_verify_summary_and_whoami(org: Org) -> None:
    for i in range(3):
        org.ok("max", "send", "alex", f"m{i}")
    org.ok("alex", "sync")
    rep = json.loads(org.ok("alex", "verify", "--json").out)
    assert rep["ok"] is True and rep["messages"] == 3 and rep["good"] == 3
    w = json.loads(org.ok("alex", "whoami", "--json").out)
    assert w["name"] == "alex" and w["role"] == "member" and w["remote"] == "origin"
    assert w["key"].endswith("keys/alex") and w["allowed_signers"].endswith("allowed_signers")
    ms = json.loads(org.ok("alex", "members", "--json").out)["members"]
    assert [(m["name"], m["role"]) for m in ms] == [("alex", "member"), ("max", "admin")]


def test_state_is_local_and_never_pushed(org: Org) -> None:
    org.ok("max", "send", "alex", "x")
    org.ok("alex", "sync")
    org.ok("alex", "read")
    clone = org.clones["alex"]
    state = git("cat-file", "-p", "refs/gitmail/state/alex", cwd=clone).stdout
    assert '"read":[[1,1]]' in state
    git("gc", "--quiet", "--prune=now", cwd=clone)
    assert json.loads(org.ok("alex", "list", "--json").out)["unread"] == 0
    # A mirror-free plain push of everything in refs/heads does not carry state.
    remote_refs = git("ls-remote", org.url, cwd=clone).stdout
    assert "refs/gitmail/" not in remote_refs
    # Deleting the cache rebuilds it from refs, state included.
    import shutil

    shutil.rmtree(clone / ".git" / "gitmail" / "cache")
    assert json.loads(org.ok("alex", "list", "--json").out)["unread"] == 0


def test_multiple_identities_in_one_clone(org: Org) -> None:
    clone = org.clones["max"]
    from tests.conftest import run

    r = run("init", "--name", "agent-1", "--agent", "--repo", str(clone))
    assert r.code == 0, r.err
    org.ok("alex", "send", "agent-1", "task for the agent")
    r = run("sync", "--repo", str(clone), "--as", "agent-1")
    assert r.code == 0, r.err
    got = json.loads(run("list", "--repo", str(clone), "--as", "agent-1", "--json").out)
    assert got["unread"] == 1
    mine = json.loads(org.ok("max", "list", "--json").out)
    assert mine["total"] == 0


def test_unread_notice_on_stderr(org: Org, monkeypatch: "pytest.MonkeyPatch") -> None:
    org.ok("max", "send", "alex", "ping", "--priority", "urgent")
    org.ok("alex", "sync")
    monkeypatch.setenv("GITMAIL_NOTICE", "always")
    r = org.ok("alex", "members")
    assert "📬 1 unread message (1 urgent). Run: gitmail read" in r.err
    assert "📬" not in org.ok("alex", "members", "--json").err
    assert "📬" not in org.ok("alex", "members", "--quiet").err
    monkeypatch.setenv("GITMAIL_NOTICE", "auto")  # stderr is not a terminal here
    assert "📬" not in org.ok("alex", "members").err
    monkeypatch.setenv("GITMAIL_NOTICE", "always")
    org.ok("alex", "read")
    assert "📬" not in org.ok("alex", "members").err


def test_multi_recipient_refs_move_together(org: Org) -> None:
    """One transaction for every recipient ref: a conflict on one leaves all untouched."""
    from gitmail.core.repo import open_repo
    from gitmail.errors import GitError

    org.join("bob")
    repo = open_repo(org.clones["max"])
    a = git("rev-parse", "refs/remotes/origin/gitmail/directory", cwd=org.clones["max"]).stdout.strip()
    try:
        repo.update_refs([("refs/gitmail/test/one", a, None), ("refs/gitmail/test/two", a, "f" * 40)])
        raise AssertionError("expected a conflict")
    except GitError:
        pass
    assert git("for-each-ref", "refs/gitmail/test/", cwd=org.clones["max"]).stdout == ""
    repo.update_refs([("refs/gitmail/test/one", a, None), ("refs/gitmail/test/two", a, None)])
    assert len(git("for-each-ref", "refs/gitmail/test/", cwd=org.clones["max"]).stdout.splitlines()) == 2


def test_working_in_the_org_repo_itself(tmp_path: "Path") -> None:
    """A repository with no org remote is the org: mail is read and written in place."""
    from tests.conftest import run

    repo = tmp_path / "solo"
    git("init", "-q", str(repo))
    for who in ("a", "b"):
        assert run("init", "--name", who, "--repo", str(repo)).code == 0
    r = run("send", "b", "hello b", "--as", "a", "--repo", str(repo), "--json")
    assert r.code == 0 and json.loads(r.out)["delivered"] is True
    got = json.loads(run("read", "--as", "b", "--repo", str(repo), "--json").out)["messages"]
    assert [m["body"] for m in got] == ["hello b"] and got[0]["verified"]
    assert "refs/heads/gitmail/mail/b/a" in git("for-each-ref", cwd=repo).stdout


def test_flags_survive_new_mail_and_follow_the_state_ref(org: Org) -> None:
    org.ok("max", "send", "alex", "one")
    org.ok("alex", "sync")
    org.ok("alex", "read")
    org.ok("max", "send", "alex", "two")
    org.ok("alex", "sync")
    got = {m["subject"]: m["read"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]}
    assert got == {"one": True, "two": False}
    git("update-ref", "-d", "refs/gitmail/state/alex", cwd=org.clones["alex"])  # by hand, outside gitmail
    got = {m["subject"]: m["read"] for m in json.loads(org.ok("alex", "list", "--json").out)["messages"]}
    assert got == {"one": False, "two": False}
