"""Issue 10, hole 6 follow-up: a message commit's author is bound to the sender's directory
entry *as it was*, so a member who changes display name or e-mail keeps earlier mail good,
while an identity the member never held is still refused (docs/protocol.md §6)."""

from __future__ import annotations

import json

from gitmail.core import admin, refs
from gitmail.core import directory as dirmod
from gitmail.core.repo import open_repo
from gitmail.core.store import check_message, write_message_commit
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net  # noqa: F401 (fixtures)


def _rename(net: NetOrg, who: str, display: str, email: str) -> None:
    """``who`` changes their own entry (display name and e-mail) with a signed directory commit."""
    r = open_repo(net.clones[who])
    me = dirmod.load(r).members[who]

    def mutate(d: dirmod.Directory) -> dirmod.Directory:
        d.members[who] = me.model_copy(update={"display_name": display, "email": email})
        return d

    admin.change(r, forge.key_of(who), me, mutate, f"{who}: new display name")


def _bad(net: NetOrg, who: str) -> dict[str, str]:
    return {b["oid"]: b["detail"] for b in json.loads(net.as_(who, "verify", "--all", "--json").out)["bad"]}


def test_a_new_display_name_keeps_earlier_mail_good_and_new_mail_carries_it(net: NetOrg) -> None:
    net.ok("alex", "send", "max", "before the change", "--plain")
    before = forge.tip(net.clones["alex"], refs.mail_path("max", "alex"))
    assert before is not None
    # A message written offline under the old identity, delivered after the change (the outbox case).
    old_identity = dirmod.load(open_repo(net.clones["alex"])).members["alex"]
    _rename(net, "alex", "Alexandra Q.", "alexandra@example.org")
    r = open_repo(net.clones["alex"])
    late = write_message_commit(r.pg, forge.message("alex", ["max"], "written before, pushed after"), old_identity,
                                forge.key_of("alex"), before)
    code, out = forge.push(net.clones["alex"], late, "refs/heads/gitmail/mail/max/alex")
    assert code == 0, out  # the guard accepts the old identity: it was alex's
    net.ok("alex", "sync")
    net.ok("alex", "send", "max", "after the change", "--plain")
    net.ok("max", "sync")
    assert _bad(net, "max") == {}
    rows = json.loads(net.ok("max", "list", "--all", "--json").out)["messages"]
    assert sorted(m["status"] for m in rows) == ["good", "good", "good"], rows
    r = open_repo(net.clones["max"])
    new_tip = forge.tip(net.clones["max"], refs.mail_path("max", "alex"))
    assert new_tip is not None
    author = r.pg[new_tip].author
    assert (author.name, author.email) == ("Alexandra Q.", "alexandra@example.org")


def test_an_identity_the_member_never_held_is_malformed_for_client_and_guard(net: NetOrg) -> None:
    net.ok("alex", "send", "max", "first", "--plain")
    _rename(net, "alex", "Alexandra Q.", "alexandra@example.org")
    r = open_repo(net.clones["alex"])
    d = dirmod.load(r)
    never = d.members["alex"].model_copy(update={"display_name": "Max (admin)", "email": "max@gitmail.invalid"})
    parent = forge.tip(net.clones["alex"], refs.mail_path("max", "alex"))
    oid = write_message_commit(r.pg, forge.message("alex", ["max"], "trust me"), never, forge.key_of("alex"), parent)
    _, verdict = check_message(r.pg, oid, "max", "alex", d)
    assert (verdict.status, verdict.detail) == ("malformed", "git author is not alex's directory entry")
    code, out = forge.push(net.clones["alex"], oid, "refs/heads/gitmail/mail/max/alex")
    assert code != 0 and "git author is not alex's directory entry" in out, out
    # Another member's earlier identity does not count either: only the sender's own history.
    maxs = d.members["max"]
    oid2 = write_message_commit(r.pg, forge.message("alex", ["max"], "as max"), maxs, forge.key_of("alex"), parent)
    assert check_message(r.pg, oid2, "max", "alex", d)[1].detail == "git author is not alex's directory entry"
