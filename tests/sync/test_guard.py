"""The server-side guard (hooks/pre-receive) on a real git daemon: what it refuses, what it lets through."""

from __future__ import annotations

import json
from pathlib import Path

import pygit2
import pytest

from gitmail.core import directory as dirmod
from gitmail.core.repo import open_repo
from tests.conftest import git, run
from tests.sync import forge
from tests.sync.conftest import NetOrg

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def refused(code: int, out: str, *words: str) -> None:
    assert code != 0, out
    assert "remote: gitmail guard: push refused" in out, out
    for w in words:
        assert w in out, out


def test_good_push_with_several_commits_passes(net: NetOrg) -> None:
    net.daemon.stop()
    for i in range(3):
        assert json.loads(net.ok("max", "send", "alex", f"queued {i}", "--json").out)["queued"] is True
    net.daemon.start()
    assert "Delivered" in net.ok("max", "sync").out
    net.ok("alex", "sync")
    assert json.loads(net.ok("alex", "list", "--json").out)["total"] == 3


def test_unsigned_commit_refused(net: NetOrg) -> None:
    oid = forge.unsigned(net.clones["max"], "alex", "max")
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "unsigned")


def test_key_not_in_directory_refused(net: NetOrg, tmp_path: Path) -> None:
    oid = forge.signed(net.clones["max"], "alex", "max", forge.stranger_key(tmp_path))
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "unknown-sender")


def test_sender_not_signer_refused(net: NetOrg) -> None:
    # alex writes into max's outgoing mailbox, claiming to be max, signed with alex's own key.
    oid = forge.signed(net.clones["alex"], "alex", "max", forge.key_of("alex"), claim="max")
    refused(*forge.push(net.clones["alex"], oid, MAILBOX), "wrong-signer")
    # ... or honestly from alex, but on max's ref.
    oid = forge.signed(net.clones["alex"], "alex", "max", forge.key_of("alex"), claim="alex")
    refused(*forge.push(net.clones["alex"], oid, MAILBOX), "wrong-signer")


def test_malformed_message_refused(net: NetOrg) -> None:
    oid = forge.malformed(net.clones["max"], "alex", "max", forge.key_of("max"))
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "malformed")


def test_delete_and_rewrite_refused(net: NetOrg) -> None:
    for i in range(2):
        net.ok("max", "send", "alex", f"m{i}")
    clone = net.clones["max"]
    refused(*forge.push(clone, "", MAILBOX), "deleting a mailbox")
    refused(*forge.push(clone, "origin/gitmail/mail/alex/max~1", MAILBOX, "--force"), "non-fast-forward")
    refused(*forge.push(clone, "", "refs/heads/gitmail/directory"), "deleting the directory")
    # A rewritten tip with the same depth (a sibling of the real tip) is refused too.
    older = git("rev-parse", "origin/gitmail/mail/alex/max~1", cwd=clone).stdout.strip()
    sibling = forge.signed(clone, "alex", "max", forge.key_of("max"), parent=older)
    refused(*forge.push(clone, sibling, MAILBOX, "--force"), "non-fast-forward")
    net.ok("alex", "sync")
    assert json.loads(net.ok("alex", "verify", "--json").out)["ok"] is True


def test_changing_another_members_directory_entry_refused(net: NetOrg) -> None:
    clone = net.clones["alex"]
    r = open_repo(clone)
    d = dirmod.load(r)
    members = dict(d.members)
    members["max"] = members["max"].model_copy(update={"display_name": "Mallory"})
    new = dirmod.Directory(None, members, dict(d.groups), d.policy)
    oid = dirmod.write_commit(r.pg, new, forge.key_of("alex"), d.members["alex"], d.tip, "evil")
    refused(*forge.push(clone, oid, "refs/heads/gitmail/directory"), "may not change other members")


def test_bad_ref_names_refused_other_refs_pass(net: NetOrg) -> None:
    clone = net.clones["max"]
    good = forge.signed(clone, "alex", "max", forge.key_of("max"))
    refused(*forge.push(clone, good, "refs/heads/gitmail/whatever"), "not a gitmail ref")
    refused(*forge.push(clone, good, "refs/heads/gitmail/mail/alex"), "not a valid mailbox name")
    refused(*forge.push(clone, good, "refs/heads/gitmail/mail/alex/max/x"), "not a valid mailbox name")
    refused(*forge.push(clone, good, "refs/heads/gitmail/mail/nobody/max"), "not in the directory")
    refused(*forge.push(clone, good, "refs/heads/gitmail/mail/ALEX/max"), "not a valid mailbox name")
    code, out = forge.push(clone, good, "refs/heads/not-mail")
    assert code == 0, out
    code, out = forge.push(clone, good, MAILBOX)
    assert code == 0, out


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"], ids=["U+2028", "U+2029", "U+0085"])
def test_a_ref_name_with_a_unicode_line_break_is_judged_whole(net: NetOrg, sep: str) -> None:
    """git takes these characters in a ref name; Python's ``splitlines`` breaks lines at them.
    The guard used to read ``mail/alex/max<sep>zz`` as ``mail/alex/max`` and let a genuine
    message create the junk ref. It reads git's lines at LF alone now, and refuses the name."""
    clone = net.clones["max"]
    good = forge.signed(clone, "alex", "max", forge.key_of("max"), parent=None)
    junk = f"{MAILBOX}{sep}zz"
    refused(*forge.push(clone, good, junk), "not a valid mailbox name")
    assert git("for-each-ref", "--format=%(refname)", "refs/heads/gitmail/mail/", cwd=net.bare).stdout == ""


def test_update_lines_git_would_not_write_refuse_the_push() -> None:
    """What the guard cannot read, it does not let through (it used to skip such a line)."""
    from gitmail.guard.check import parse_updates, verdict

    def never() -> pygit2.Repository:
        raise AssertionError("a malformed line is refused before the repository is opened")

    z, a = "0" * 40, "a" * 40
    for text in (f"{z} {a}\n", f"{z} {a} refs/heads/gitmail/mail/alex/max extra\n", f"{z} {a[:39]} refs/heads/x\n",
                 f"{z} {a} refs/heads/x\r\n", "junk\n"):
        code, out = verdict(parse_updates(text), never)
        assert code == 1 and "an update line git would not write" in out, (text, out)
    assert parse_updates("") == [] and verdict([], never) == (0, "")


def test_attachment_pointer_over_limit_refused(net: NetOrg) -> None:
    """An LFS pointer counts the size it names: a pointer past the limit is refused, whether its
    entry declares that size (over the limit) or one byte (the pointer is not what the entry
    declares: malformed); a pointer within the limit that its entry declares goes."""
    from tests.delivery.test_bounds_attachments import _craft

    clone = net.clones["max"]
    limit = dirmod.load(open_repo(clone)).policy.attachment_limit
    for size, declared, ok in ((limit + 1, limit + 1, False), (limit + 1, 1, False), (1000, 1000, True)):
        pointer = open_repo(clone).pg[forge.lfs_pointer(clone, size)].read_raw()
        entry = {"name": "big.bin", "size": declared, "oid": "ab" * 32, "storage": "lfs",
                 "path": "attachments/1-big.bin"}
        _, code, out = _craft(net, "max", "alex", [entry], {"attachments/1-big.bin": pointer})
        if ok:
            assert code == 0, out
        elif declared == size:
            refused(code, out, "attachment big.bin is", f"limit is {limit}")
        else:
            refused(code, out, "attachments/1-big.bin is not the LFS pointer its entry declares")


def test_directory_change_and_mail_in_one_push(net: NetOrg, tmp_path: Path) -> None:
    """A newcomer registers and sends in the same push: mail is checked against the new directory."""
    clone = net.clones["max"]
    r = open_repo(clone)
    d = dirmod.load(r)
    carol_key = forge.stranger_key(tmp_path)
    from gitmail.core.model import Member

    carol = Member(name="carol", display_name="carol", email="carol@gitmail.invalid", signing_key=carol_key.public_key,
                   role="member", kind="human")
    new = dirmod.Directory(None, {**d.members, "carol": carol}, dict(d.groups), d.policy)
    dir_oid = dirmod.write_commit(r.pg, new, carol_key, carol, d.tip, "Register carol")
    from gitmail.core.store import write_message_commit

    mail_oid = write_message_commit(r.pg, forge.message("carol", ["max"], "hi, new here"), carol, carol_key, None)
    p = git("push", "origin", f"{dir_oid}:refs/heads/gitmail/directory", f"{mail_oid}:refs/heads/gitmail/mail/max/carol",
            cwd=clone, check=False)
    assert p.returncode == 0, p.stderr
    net.ok("max", "sync")
    got = json.loads(net.ok("max", "list", "--json").out)["messages"]
    assert [(m["from"], m["verified"]) for m in got] == [("carol", True)]


def test_guard_install_chains_and_uninstall_restores(tmp_path: Path) -> None:
    bare = tmp_path / "org.git"
    git("init", "--quiet", "--bare", str(bare))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho site hook ran >&2\nexit 0\n")
    hook.chmod(0o755)
    r = run("guard", "install", str(bare))
    assert r.code == 0 and "previous hook" in r.out, r.err
    text = hook.read_text()
    import sys

    assert text.startswith(f"#!{sys.executable} -IS\n") and "gitmail.guard" in text
    assert (bare / "hooks" / "pre-receive.gitmail-chained").exists()
    assert run("guard", "install", str(bare)).code == 0  # idempotent: updates, keeps the chained hook
    assert "site hook ran" in (bare / "hooks" / "pre-receive.gitmail-chained").read_text()
    # The chained hook runs on a push that passes the guard.
    src = tmp_path / "src"
    git("init", "--quiet", str(src))
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "--allow-empty", "-m", "x", cwd=src)
    p = git("push", str(bare), "HEAD:refs/heads/main", cwd=src, check=False)
    assert p.returncode == 0 and "site hook ran" in p.stderr, p.stderr
    r = run("guard", "uninstall", str(bare))
    assert r.code == 0 and "previous hook is back" in r.out
    assert "site hook ran" in hook.read_text() and not (bare / "hooks" / "pre-receive.gitmail-chained").exists()


def test_guard_install_not_a_repo(tmp_path: Path) -> None:
    r = run("guard", "install", str(tmp_path / "nope"))
    assert r.code == 3 and r.err.startswith("gitmail: not a git repository") and "\n" == r.err[-1]
    assert r.err.count("\n") == 1


def test_guard_install_goes_only_into_a_bare_repository(tmp_path: Path) -> None:
    """A clone, a folder inside one (git finds the clone around it) or a clone's ``.git``:
    the install wrote a pre-receive there and said it was done, while the org stayed unguarded
    (a clone's hook runs only when someone pushes into that clone). Now one line, exit 2, no
    hook written; a bare repository still takes it."""
    clone = tmp_path / "clone"
    git("init", "--quiet", str(clone))
    (clone / "sub").mkdir()
    for target in (clone, clone / "sub", clone / ".git"):
        r = run("guard", "install", str(target))
        assert r.code == 2 and r.out == "" and r.err.count("\n") == 1, (target, r)
        assert f"{target.resolve()} is not a bare repository" in r.err, r.err
        assert not (clone / ".git" / "hooks" / "pre-receive").exists()
    bare = tmp_path / "org.git"
    git("init", "--quiet", "--bare", str(bare))
    assert run("guard", "install", str(bare)).code == 0 and (bare / "hooks" / "pre-receive").exists()


def test_after_a_registration_the_guard_checks_pushes_against_its_kept_ledger(net: NetOrg) -> None:
    """A newcomer registers (the directory moves past the guard, which keeps the ledger of
    the tip it verified); the next pushes are checked against that directory, from the warm
    guard and from a cold one that reads the kept ledger: a message forged in the newcomer's
    name is refused, the newcomer's own message goes through."""
    from gitmail.guard import daemon as guard_daemon

    net.join("cy")
    net.ok("max", "sync")
    kept = dirmod.Ledger.undump((net.bare / "gitmail" / dirmod.LEDGER_FILE).read_bytes())
    head = git("rev-parse", "refs/heads/gitmail/directory", cwd=net.bare).stdout.strip()
    assert kept.tip == head and "cy" in kept.members
    for cold in (False, True):
        if cold:
            guard_daemon.stop(net.bare)  # the next push starts a guard with nothing in memory
        # max writes on cy's outgoing mailbox to alex, claiming to be cy, signed with max's key
        git("fetch", "-q", "origin", "+refs/heads/gitmail/mail/alex/*:refs/remotes/origin/gitmail/mail/alex/*",
            cwd=net.clones["max"])
        oid = forge.signed(net.clones["max"], "alex", "cy", forge.key_of("max"), claim="cy")
        refused(*forge.push(net.clones["max"], oid, "refs/heads/gitmail/mail/alex/cy"), "wrong-signer")
        net.ok("cy", "send", "alex", f"from cy ({'cold' if cold else 'warm'} guard)")
    net.ok("alex", "sync")
    got = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert sorted(m["subject"] for m in got) == ["from cy (cold guard)", "from cy (warm guard)"]


def test_a_response_to_a_request_never_sent_to_its_sender_is_refused(net: NetOrg) -> None:
    """docs/protocol.md §5 at the guard: bob copies the request_id of alex's plan request to
    max from its clear trailer, sends himself a request with it and pushes alex a genuinely
    signed "approved" with plain git (his client would refuse it). Refused, and so is one that
    names bob among its recipients; max's own answer goes through, and so does sam's answer
    to a request alex sent him before sam packed his inbox (the request is below the packed
    entry, not on a ref)."""
    from tests.agents.test_protocol import forge_response

    net.join("bob")
    net.join("sam")
    net.ok("max", "org", "packing=true")
    for name in ("alex", "bob", "sam"):
        net.ok(name, "sync")
    plan = json.loads(net.ok("alex", "send", "max", "my plan", "--type", "plan_approval_request",
                             "--payload", '{"plan": "x"}', "--json").out)
    rid = plan["request_id"]
    net.ok("bob", "send", "bob", "x", "--type", "plan_approval_request", "--request-id", rid,
           "--payload", '{"plan": "y"}')
    before = git("for-each-ref", cwd=net.bare).stdout
    code, out = forge_response(net, "bob", ["alex"], "approved", rid)
    refused(code, out, "a plan_approval_response answers a plan_approval_request that one of its recipients "
                       f"sent to bob; none with request_id '{rid}' is on mail/bob/<recipient> for 'alex'")
    code, out = forge_response(net, "bob", ["alex", "bob"], "approved", rid)
    refused(code, out, "none with request_id", "for 'alex'")
    assert git("for-each-ref", cwd=net.bare).stdout == before
    net.ok("max", "sync")
    net.ok("max", "respond", plan["short_id"], "--approve")
    asked = json.loads(net.ok("alex", "send", "sam", "go?", "--type", "plan_approval_request",
                              "--payload", '{"plan": "z"}', "--json").out)
    net.ok("sam", "sync")
    assert json.loads(net.ok("sam", "pack", "--json").out)["packed"] == ["alex"]
    assert "refs/heads/gitmail/mail/sam/alex" not in git("for-each-ref", cwd=net.bare).stdout
    net.ok("sam", "respond", asked["short_id"], "--approve")
    net.ok("alex", "sync")
    rows = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert sorted((m["from"], m["answers_request"]) for m in rows) == [("max", True), ("sam", True)]


def test_clear_mail_is_refused_when_the_org_requires_encryption(net: NetOrg) -> None:
    """encryption=required: max's client encrypts, but a hostile max signs a clear message with
    the library and pushes it with plain git. The guard took it (alex read it as good mail in
    clear); it refuses it now. Encrypted mail still goes."""
    from gitmail import api
    from gitmail.core import refs as refmod
    from gitmail.core import sync
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    net.ok("max", "org", "encryption=required")
    net.ok("alex", "sync")
    s = api.session(net.clones["max"])
    msg = Message(**{"from": "max"}, to=["alex"], date=format_date(utcnow()), subject="CLEAR", body="in clear")
    msg.id = msg.compute_id()
    sync.fetch(s.repo)
    path = refmod.mail_path("alex", "max")
    oid = write_message_commit(s.repo.pg, msg, s.member, s.signer, s.repo.ref_target(refmod.tracking(path, s.repo.remote)))
    refused(*forge.push(net.clones["max"], oid, MAILBOX), "the org requires encryption (encryption=required)")
    sent = json.loads(net.ok("max", "send", "alex", "sealed", "--json").out)
    assert sent["encrypted"] is True and sent["delivered"] is True, sent


def test_names_libgit2_would_trim_are_written_as_the_directory_has_them(net: NetOrg) -> None:
    """A display name "'Bob'", an email ending in ';' and a member named 'build:' are within the
    grammar (docs/protocol.md §2, §8), but the commit's author went through pygit2.Signature,
    which trims ' " , : ; \\ from both ends: every message of theirs was refused by the guard
    ("git author is not bob's directory entry") and would be malformed to every reader. Now
    each goes, first time and re-parented onto mail that landed meanwhile (store.resign)."""
    net.join("bob", "--display-name", "'Bob'")
    net.join("eve", "--email", "eve@example.org;")
    net.join("build:")
    for who in ("bob", "eve", "build:"):
        net.ok(who, "sync")
        sent = json.loads(net.ok(who, "send", "max", f"hi from {who}", "--plain", "--json").out)
        assert sent["delivered"] is True, sent
    net.daemon.stop()
    queued = json.loads(net.ok("bob", "send", "max", "queued while offline", "--plain", "--json").out)
    assert queued["queued"] is True
    net.daemon.start()
    net.ok("eve", "send", "max", "landed first", "--plain")
    assert json.loads(net.ok("bob", "sync", "--json").out)["delivered"] != []
    net.ok("max", "sync")
    rows = json.loads(net.ok("max", "list", "--json").out)["messages"]
    assert sorted((m["from"], m["verified"]) for m in rows) == sorted(
        [("bob", True), ("eve", True), ("build:", True), ("bob", True), ("eve", True)]), rows
    assert json.loads(net.ok("max", "verify", "--all", "--json").out)["ok"]


def test_lowering_body_limit_applies_to_what_is_sent_after_it(net: NetOrg) -> None:
    """docs/protocol.md §13: an admin lowers body_limit from 64 KiB to 1,000 bytes. Readers held
    every message to the limit of the day they read it: alex's 5,000-byte message, which the
    guard took, became malformed for `verify --all` and could no longer be read. Now readers apply the widest limit of the directory's history; the
    guard and the writer apply the new one to what is sent after it."""
    body = "x" * 5000
    sent = json.loads(net.ok("alex", "send", "max", body, "--subject", "release notes", "--plain", "--json").out)
    net.ok("max", "sync")
    net.ok("max", "org", "body_limit=1000")
    net.ok("max", "sync")
    late = json.loads(net.ok("max", "verify", "--all", "--json").out)
    assert late["ok"] and late["bad"] == [], late
    read = json.loads(net.ok("max", "read", sent["short_id"], "--json").out)["messages"][0]
    assert read["status"] == "good" and read["body"] == body, read
    net.ok("alex", "sync")
    refused_now = net.as_("alex", "send", "max", body, "--plain")
    assert refused_now.code == 2 and "the limit is 1000" in refused_now.err, refused_now.err
    # A hostile writer skipping that check: the guard applies the new limit.
    from gitmail import api
    from gitmail.core import refs as refmod
    from gitmail.core import sync
    from gitmail.core.model import Message, format_date, utcnow
    from gitmail.core.store import write_message_commit

    s = api.session(net.clones["alex"])
    msg = Message(**{"from": "alex"}, to=["max"], date=format_date(utcnow()), subject="big", body=body)
    msg.id = msg.compute_id()
    sync.fetch(s.repo)
    path = refmod.mail_path("max", "alex")
    oid = write_message_commit(s.repo.pg, msg, s.member, s.signer, s.repo.ref_target(refmod.tracking(path, s.repo.remote)))
    refused(*forge.push(net.clones["alex"], oid, "refs/heads/gitmail/mail/max/alex"),
            "body over the org's limit of 1000 bytes")
