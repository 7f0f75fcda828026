"""Groups (admin-only), broadcast and group delivery: once per member, sender excluded, content stored once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Org, git


def _inbox(org: Org, who: str) -> list[dict]:
    org.ok(who, "sync")
    return json.loads(org.ok(who, "list", "--json").out)["messages"]


def _org_refs(org: Org) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(objectname) %(refname)", "refs/heads/gitmail/mail/", cwd=org.url).stdout
    return {line.split(" ", 1)[1]: line.split(" ", 1)[0] for line in out.splitlines()}


def _objects_bytes(repo: str) -> int:
    return sum(p.stat().st_size for p in (Path(repo) / "objects").rglob("*") if p.is_file())


def test_group_admin_only_and_crud(org: Org) -> None:
    org.join("bob")
    r = org.ok("max", "group", "create", "backend", "alex", "bob", "--json")
    assert json.loads(r.out) == {"name": "backend", "address": "team:backend", "members": ["alex", "bob"],
                                  "former": []}
    denied = org.as_("alex", "group", "create", "rogue", "alex")
    assert denied.code == 6 and "only an admin" in denied.err and "\n" not in denied.err.strip()
    assert org.as_("alex", "group", "add", "backend", "alex").code == 6
    dup = org.as_("max", "group", "create", "team:backend", "max")
    assert dup.code == 2 and "already exists" in dup.err
    unknown = org.as_("max", "group", "create", "ghosts", "nobody")
    assert unknown.code == 4 and "unknown member 'nobody'" in unknown.err
    assert json.loads(org.ok("max", "group", "add", "backend", "max", "--json").out)["members"] == ["alex", "bob", "max"]
    assert json.loads(org.ok("max", "group", "remove", "backend", "bob", "--json").out)["members"] == ["alex", "max"]
    notin = org.as_("max", "group", "remove", "backend", "bob")
    assert notin.code == 2 and "not a member of team:backend" in notin.err
    org.ok("alex", "sync")
    assert json.loads(org.ok("alex", "group", "list", "--json").out)["groups"] == [
        {"name": "backend", "address": "team:backend", "members": ["alex", "max"], "former": []}]
    org.ok("max", "group", "delete", "backend")
    gone = org.as_("max", "send", "team:backend", "hello?")
    assert gone.code == 4 and "unknown group 'team:backend'" in gone.err


def test_group_message_once_per_member_sender_excluded(org: Org) -> None:
    org.join("bob")
    org.join("carol")
    org.ok("max", "group", "create", "backend", "alex", "bob", "max")
    for who in ("alex", "bob", "carol"):
        org.ok(who, "sync")
    before = _org_refs(org)
    sent = json.loads(org.ok("alex", "send", "team:backend", "deploy at 5", "--json").out)
    assert sent["to"] == ["team:backend"]
    after = _org_refs(org)
    new = {k: v for k, v in after.items() if before.get(k) != v}
    assert list(new) == ["refs/heads/gitmail/mail/team%3Abackend/alex"]  # one ref, one commit
    assert git("rev-list", "--count", list(new.values())[0], cwd=org.url).stdout.strip() == "1"
    for who in ("bob", "max"):
        got = [m for m in _inbox(org, who) if m["id"] == sent["id"]]
        assert len(got) == 1 and got[0]["from"] == "alex" and got[0]["verified"] is True
    assert all(m["id"] != sent["id"] for m in _inbox(org, "carol"))
    assert all(m["id"] != sent["id"] for m in _inbox(org, "alex"))  # the sender's inbox stays clean
    sent_view = json.loads(org.ok("alex", "list", "--sent", "--json").out)["messages"]
    assert [m["id"] for m in sent_view] == [sent["id"]]


def test_member_added_later_sees_group_mail(org: Org) -> None:
    org.join("bob")
    org.ok("max", "group", "create", "ops", "alex")
    sent = json.loads(org.ok("max", "send", "team:ops", "runbook updated", "--json").out)
    assert [m["id"] for m in _inbox(org, "bob")] == []
    org.ok("max", "group", "add", "ops", "bob")
    assert [m["id"] for m in _inbox(org, "bob")] == [sent["id"]]


def test_broadcast_once_each_and_storage_does_not_fan_out(org: Org) -> None:
    for n in ("bob", "carol", "dave", "erin"):
        org.join(n)
    for who in org.clones:
        org.ok(who, "sync")
    body = "x" * 4000  # big enough that content dominates the commit's size
    b0 = _objects_bytes(org.url)
    direct = json.loads(org.ok("max", "send", "alex", body, "--subject", "direct", "--json").out)
    b1 = _objects_bytes(org.url)
    bc = json.loads(org.ok("max", "send", "*", body, "--subject", "all", "--json").out)
    b2 = _objects_bytes(org.url)
    assert bc["to"] == ["*"] and direct["to"] == ["alex"]
    assert (b2 - b1) < 1.5 * (b1 - b0), (b1 - b0, b2 - b1)
    for who in ("alex", "bob", "carol", "dave", "erin"):
        assert [m["id"] for m in _inbox(org, who)].count(bc["id"]) == 1
    assert bc["id"] not in [m["id"] for m in _inbox(org, "max")]


def test_broadcast_of_protocol_message_refused_nothing_written(org: Org) -> None:
    org.ok("max", "group", "create", "all", "alex", "max")
    before = _org_refs(org)
    for to in ("*", "team:all"):
        r = org.as_("max", "send", to, "stop", "--type", "shutdown_request", "--payload", '{"reason": "done"}')
        assert r.code == 2 and "cannot be broadcast" in r.err, r.err
    r = org.as_("max", "send", "team:nope", "hi")
    assert r.code == 4 and "unknown group" in r.err
    r = org.as_("max", "send", "nobody", "hi")
    assert r.code == 4 and "unknown member 'nobody'" in r.err
    assert _org_refs(org) == before
    assert git("for-each-ref", "refs/gitmail/outbox/", cwd=org.clones["max"]).stdout == ""


def test_a_removed_member_a_group_still_lists_is_never_addressed(org: Org, tmp_path: Path) -> None:
    """An admin removes bob from the directory with plain git; team:dev still lists him. Encrypted
    mail to the group was refused ("no encryption key published by bob"), and a receipt asked of
    the group waited on bob for ever. A group reaches the members it lists that the directory
    holds now; `group list` says which names are no member's any more."""
    org.join("bob")
    org.ok("max", "group", "create", "dev", "alex", "bob", "max")
    org.ok("max", "sync")
    # The admin's removal, with stock git: the entry and its signers line go, signed with max's key.
    adm = tmp_path / "adm"
    git("clone", "-q", "--no-checkout", org.url, str(adm))
    git("checkout", "-q", "origin/gitmail/directory", cwd=adm)
    gone = [str(p.relative_to(adm)) for p in adm.rglob("*") if p.is_file() and ".git" not in p.parts
            and (p.name == "bob.json" or (p.parent.name == "allowed_signers" and '"bob"' in p.read_text()))]
    assert any(g.endswith("bob.json") for g in gone), gone
    git("rm", "-q", *gone, cwd=adm)
    key = git("config", "gitmail.max.key", cwd=org.clones["max"]).stdout.strip()
    git("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "-c", "user.name=max",
        "-c", "user.email=max@gitmail.invalid", "commit", "-q", "-S", "-m", "remove bob", cwd=adm)
    p = git("push", "origin", "HEAD:refs/heads/gitmail/directory", cwd=adm, check=False)
    assert p.returncode == 0, p.stderr
    org.ok("alex", "sync")
    assert "bob" not in org.ok("alex", "members").out
    groups = json.loads(org.ok("alex", "group", "list", "--json").out)["groups"]
    assert groups == [{"name": "dev", "address": "team:dev", "members": ["alex", "bob", "max"], "former": ["bob"]}]
    assert org.ok("alex", "group", "list").out.split() == ["team:dev", "alex,", "max", "(no", "longer", "members:",
                                                          "bob)"]
    r = org.as_("alex", "send", "team:dev", "sealed to the group", "--encrypt", "--json")
    assert r.code == 0, r.err
    org.ok("alex", "send", "team:dev", "receipt please", "--require-ack")
    waiting = json.loads(org.ok("alex", "list", "--awaiting-ack", "--json").out)["messages"]
    assert [m["pending"] for m in waiting] == [["max"]], waiting
    org.ok("max", "sync")
    sealed = [m for m in json.loads(org.ok("max", "list", "--json").out)["messages"]
              if m["subject"] == "sealed to the group"]
    assert len(sealed) == 1 and sealed[0]["verified"] and sealed[0]["encrypted"], sealed
    assert json.loads(org.ok("max", "read", sealed[0]["short_id"], "--json").out)["messages"][0]["body"] == \
        "sealed to the group"
