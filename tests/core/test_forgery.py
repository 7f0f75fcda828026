"""Forged, unsigned, altered and rewritten mail is flagged, never shown as genuine."""

from __future__ import annotations

import json
from pathlib import Path

import pygit2

from gitmail.core.objects import blob_data, commit

from tests.conftest import Org, git
from tests.core.forge import (
    key_of, make_message, push_commit, stranger_key, tip, write_signed, write_unsigned,
)


def _alex_view(org: Org) -> list[dict]:
    org.ok("alex", "sync")
    return json.loads(org.ok("alex", "list", "--json").out)["messages"]


def test_unsigned_message_is_flagged(org: Org) -> None:
    clone = org.clones["max"]
    oid = write_unsigned(clone, make_message("max", "alex", "pay me"), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", oid)
    (m,) = _alex_view(org)
    assert m["verified"] is False and m["status"] == "unsigned"
    text = org.ok("alex", "list").out
    assert "UNSIGNED? claims max" in text
    r = org.as_("alex", "verify")
    assert r.code == 7 and "unsigned" in r.out


def test_signed_by_another_member_is_wrong_signer(org: Org, tmp_path: Path) -> None:
    org.join("bob")
    clone = org.clones["bob"]
    forged = make_message("max", "alex", "from max, honest")
    oid = write_signed(clone, forged, "max", key_of(org, "bob"), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", oid)
    (m,) = _alex_view(org)
    assert m["status"] == "wrong-signer" and m["verified"] is False
    read = org.as_("alex", "read", m["short_id"])
    assert "FORGED? claims max" in read.out and "NOT shown as genuine" in read.out


def test_signed_by_stranger_is_unknown_sender(org: Org, tmp_path: Path) -> None:
    clone = org.clones["max"]
    oid = write_signed(clone, make_message("max", "alex"), "max", stranger_key(tmp_path), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", oid)
    (m,) = _alex_view(org)
    assert m["status"] == "unknown-sender"


def test_altered_message_fails_signature(org: Org) -> None:
    org.ok("max", "send", "alex", "the price is 100")
    clone = org.clones["max"]
    good = tip(clone, "alex", "max")
    assert good
    pg = pygit2.Repository(str(clone))
    c = commit(pg, good)
    sig, payload = c.gpg_signature
    blob = blob_data(pg, c.tree["message.json"].id).replace(b"100", b"900")
    tb = pg.TreeBuilder()
    tb.insert("message.json", pg.create_blob(blob), pygit2.enums.FileMode.BLOB)
    text = payload.decode().replace(str(c.tree_id), str(tb.write()))
    forged = pg.create_commit_with_signature(text, sig.decode().rstrip("\n"), "gpgsig")
    push_commit(clone, "alex", "max", str(forged), force=True)
    # The force-push is itself a rewrite: alex had not fetched yet, so alex sees
    # only the altered commit, whose signature no longer matches.
    (m,) = _alex_view(org)
    assert m["status"] in ("bad-signature", "malformed") and m["verified"] is False


def test_misfiled_message(org: Org) -> None:
    org.join("bob")
    clone = org.clones["max"]
    msg = make_message("max", "bob", "for bob only")  # addressed to bob, pushed to alex's mailbox
    oid = write_signed(clone, msg, "max", key_of(org, "max"), tip(clone, "alex", "max"))
    push_commit(clone, "alex", "max", oid)
    (m,) = _alex_view(org)
    assert m["status"] == "misfiled"


def test_corrupt_blob_in_history(org: Org) -> None:
    clone = org.clones["max"]
    oid = write_signed(clone, make_message("max", "alex"), "max", key_of(org, "max"),
                       tip(clone, "alex", "max"), blob=b"{not json")
    push_commit(clone, "alex", "max", oid)
    org.ok("max", "send", "alex", "a good one after it")
    msgs = _alex_view(org)
    assert sorted(m["status"] for m in msgs) == ["good", "malformed"]
    bad = next(m for m in msgs if m["status"] == "malformed")
    r = org.as_("alex", "read", bad["id"][:12])
    assert r.code == 7 and r.err.startswith("gitmail: ") and "corrupt" in r.err and "Traceback" not in r.err
    v = json.loads(org.as_("alex", "verify", "--json").out)
    assert v["ok"] is False and v["good"] == 1 and [b["status"] for b in v["bad"]] == ["malformed"]


def test_rewritten_mailbox_is_rejected_and_mail_kept(org: Org) -> None:
    org.ok("max", "send", "alex", "original one")
    org.ok("max", "send", "alex", "original two")
    assert len(_alex_view(org)) == 2
    clone = org.clones["max"]
    # Someone with push access rewrites alex/max to a fresh signed history.
    oid = write_signed(clone, make_message("max", "alex", "replacement"), "max", key_of(org, "max"), None)
    push_commit(clone, "alex", "max", oid, force=True)
    r = org.as_("alex", "sync")
    assert r.code == 0 and "rewritten" in r.err
    msgs = json.loads(org.ok("alex", "list", "--json").out)["messages"]
    assert sorted(m["subject"] for m in msgs) == ["original one", "original two"]
    v = org.as_("alex", "verify")
    assert v.code == 7 and "rewritten" in v.out
    # The old commits stay reachable locally, so gc cannot take them.
    git("gc", "-q", "--prune=now", cwd=org.clones["alex"])
    assert len(json.loads(org.ok("alex", "read", "--json", "--no-mark").out)["messages"]) == 2


def test_directory_rewrite_by_non_admin_rejected(org: Org) -> None:
    """alex tries to replace max's key in the directory with plain git: clients refuse it."""
    from gitmail.core import directory as dirmod
    from gitmail.core.repo import open_repo

    repo = open_repo(org.clones["alex"])
    d = dirmod.load(repo)
    alex_key = key_of(org, "alex")
    evil = dirmod.Directory(None, dict(d.members), dict(d.groups), d.policy)
    # A fresh key alex holds (alex's own key in max's entry is refused earlier: one key, one member).
    from gitmail.core.signing import public_key_line

    fresh = public_key_line(bytes(range(32)))
    evil.members["max"] = evil.members["max"].model_copy(update={"signing_key": fresh, "previous_keys": [
        evil.members["max"].signing_key]})
    evil = dirmod.Directory(None, evil.members, evil.groups, evil.policy)
    oid = dirmod.write_commit(repo.pg, evil, alex_key, d.members["alex"], d.tip, "take over max")
    git("push", "-q", "origin", f"{oid}:refs/heads/gitmail/directory", cwd=org.clones["alex"])
    s = org.as_("max", "sync")
    assert "may not change other members" in s.err
    r = org.as_("max", "verify")
    assert r.code == 7 and "may not change other members" in r.out
    ms = {m["name"]: m for m in json.loads(org.ok("max", "members", "--json").out)["members"]}
    assert ms["max"]["signing_key"] == key_of(org, "max").public_key
