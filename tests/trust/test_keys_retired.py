"""Issue 10, hole 4: a retired key stops being valid for new messages at the directory commit that
retired it (docs/protocol.md §8), rotating back to a retired key is refused, and ``gitmail key revoke``
flags every message a compromised key signs, for the client and the guard."""

from __future__ import annotations

import json
from typing import Any

from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer

from tests.conftest import Org
from tests.core.forge import key_of, make_message, push_commit, tip, write_signed
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, push_dir, write_dir_commit


def _bad(org: Org, who: str) -> list[dict[str, Any]]:
    return list(json.loads(org.as_(who, "verify", "--json").out)["bad"])


def _rotate_and_forge(o: Org) -> tuple[Signer, str]:
    """alex mails max, rotates; a thief holding alex's old key then forges a new message."""
    old = key_of(o, "alex")
    o.ok("alex", "send", "max", "before the rotation")
    o.ok("max", "sync")
    o.ok("alex", "key", "rotate")
    forged = write_signed(o.clones["alex"], make_message("alex", "max", "send the payroll file to eve"), "alex", old,
                          tip(o.clones["alex"], "max", "alex"))
    return old, forged


def test_message_signed_with_retired_key_after_rotation_is_flagged(unguarded: NetOrg) -> None:
    o = unguarded
    _, forged = _rotate_and_forge(o)
    push_commit(o.clones["alex"], "max", "alex", forged)
    o.ok("max", "sync")
    bad = _bad(o, "max")
    assert [(b["oid"], b["status"]) for b in bad] == [(forged, "retired-key")]
    assert "retired before this message was sent" in bad[0]["detail"]
    listing = o.ok("max", "list", "--json").out
    assert "before the rotation" in listing  # the old message stays good


def test_message_signed_with_retired_key_after_rotation_refused_by_guard(net: NetOrg) -> None:
    _, forged = _rotate_and_forge(net)
    from tests.conftest import git
    from gitmail.core import refs

    p = git("push", "origin", f"{forged}:refs/heads/{refs.mail_path('max', 'alex')}", cwd=net.clones["alex"], check=False)
    assert p.returncode != 0 and "retired-key" in p.stderr


def test_new_key_still_works_after_rotation(net: NetOrg) -> None:
    net.ok("alex", "key", "rotate")
    net.ok("alex", "send", "max", "with the new key")
    net.ok("max", "sync")
    assert _bad(net, "max") == []


def test_rotating_back_to_a_retired_key_is_refused(unguarded: NetOrg) -> None:
    o = unguarded
    k1 = key_of(o, "alex")
    o.ok("alex", "key", "rotate")
    k2 = key_of(o, "alex")
    t, entries = current_entries(o.clones["alex"])
    for e in entries:
        if e["name"] == "alex":
            e["signing_key"], e["previous_keys"] = k1.public_key, [k2.public_key]
            e["retired"] = {k2.public_key: {}}
            e["encryption_key"] = k1.public_key
    back = write_dir_commit(o.clones["alex"], entries, k2, t)
    assert push_dir(o.clones["alex"], back).returncode == 0
    r = o.as_("max", "sync")
    assert f"directory commit {back[:10]} rejected" in r.err and "rotate back to a retired key" in r.err
    assert open_repo(o.clones["max"]).ref_target("refs/gitmail/verified/directory") == t


def test_rotating_back_refused_by_guard(net: NetOrg) -> None:
    k1 = key_of(net, "alex")
    net.ok("alex", "key", "rotate")
    k2 = key_of(net, "alex")
    t, entries = current_entries(net.clones["alex"])
    for e in entries:
        if e["name"] == "alex":
            e["signing_key"], e["previous_keys"], e["retired"] = k1.public_key, [k2.public_key], {k2.public_key: {}}
    p = push_dir(net.clones["alex"], write_dir_commit(net.clones["alex"], entries, k2, t))
    assert p.returncode != 0 and "rotate back to a retired key" in p.stderr


def test_revoke_flags_every_message_of_the_key(net: NetOrg) -> None:
    old = key_of(net, "alex")
    net.ok("alex", "send", "max", "signed with the key that leaks")
    net.ok("max", "sync")
    assert _bad(net, "max") == []
    r = net.as_("alex", "key", "revoke")
    assert r.code == 2 and "no retired key" in r.err  # the current key cannot be revoked: rotate first
    net.ok("alex", "key", "rotate")
    out = json.loads(net.ok("alex", "key", "revoke", "--json").out)
    assert out["revoked_key"] == old.public_key
    net.ok("max", "sync")
    bad = _bad(net, "max")
    assert [b["status"] for b in bad] == ["retired-key"] and "revoked key" in bad[0]["detail"]
    shown = json.loads(net.ok("max", "list", "--json").out)  # the cached verdict is updated too
    assert not any("leaks" in json.dumps(m) and m.get("status") == "good" for m in shown.get("messages", shown))
    signers = (open_repo(net.clones["max"]).data_dir / "allowed_signers").read_text()
    assert old.public_key not in signers and key_of(net, "alex").public_key in signers
    r = net.as_("alex", "key", "revoke", old.public_key)
    assert r.code == 2 and "already revoked" in r.err
