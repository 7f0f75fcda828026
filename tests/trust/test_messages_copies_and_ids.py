"""Copies, duplicates and the Message-ID (issue 10, holes 7 and 8), on a real git daemon."""

from __future__ import annotations

import json

import pytest

from gitmail.core import refs
from gitmail.core.address import from_ref, to_ref
from gitmail.core.repo import open_repo
from gitmail.core.store import resign
from gitmail.errors import AddressError
from tests.sync import forge
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401 (fixtures)
from tests.trust.test_hostile_messages import Ctx, build_ctx, message_dict

MAILBOX = "refs/heads/gitmail/mail/alex/max"


# -- hole 7: only the canonical form of a ref counts ---------------------------------------


@pytest.mark.parametrize("component", ["%61lice", "%4dax", "%6D%61%78", "ali%63e", "%2a", "%E5%b0%8F"])
def test_from_ref_refuses_every_non_canonical_component(component: str) -> None:
    with pytest.raises(AddressError, match="canonical"):
        from_ref(component)


@pytest.mark.parametrize("name", ["max", "Max", "Mac CLI 小克", "*", "team:ops", " ", "a%b"])
def test_from_ref_round_trips_exactly(name: str) -> None:
    assert from_ref(to_ref(name)) == name and to_ref(from_ref(to_ref(name))) == to_ref(name)


@pytest.mark.parametrize("path", ["gitmail/mail/alex/%20", "gitmail/mail/alex/%6Dax", "gitmail/mail/%61lex/max",
                                  "gitmail/mail/alex/max/x", "gitmail/mail/alex/%2Dx"])
def test_split_mail_path_refuses_what_is_not_a_canonical_mailbox(path: str) -> None:
    with pytest.raises(AddressError):
        refs.split_mail_path(path)


def _listed(net: NetOrg, who: str = "alex") -> list[dict]:
    return json.loads(net.ok(who, "list", "--all", "-n", "100", "--json").out)["messages"]


@pytest.mark.parametrize("sep", ["\u2028", "\u2029", "\u0085"], ids=["U+2028", "U+2029", "U+0085"])
def test_a_ref_with_a_unicode_line_break_never_stands_in_for_a_mailbox(unguarded: NetOrg, sep: str) -> None:
    """git allows these characters in a ref name and Python's ``splitlines`` breaks at them.
    gitmail read ``for-each-ref`` that way, so a ref ``mail/alex/max<sep>zz`` pushed by anyone
    (no guard) gave its tip to ``mail/alex/max``: alex's mail from max froze behind a false
    "history was rewritten". Now the ref is read whole and reported as no mailbox."""
    from gitmail import git as gitmod

    net = unguarded
    net.ok("max", "send", "alex", "first")
    net.ok("alex", "sync")
    clone = net.clones["max"]
    junk = forge.signed(clone, "alex", "max", forge.key_of("max"), parent=None, body="junk")
    assert forge.push(clone, junk, f"refs/heads/gitmail/mail/alex/max{sep}zz")[0] == 0
    net.ok("max", "send", "alex", "second")
    r = net.as_("alex", "sync")
    assert r.code == 0, r.err
    assert "rewritten" not in r.err and "not a valid mailbox ref name" in r.err, r.err
    assert sorted(m["subject"] for m in _listed(net)) == ["first", "second"]
    found = gitmod.for_each_ref(net.clones["alex"], ["refs/remotes/origin/gitmail/mail/alex/"])
    assert set(found) == {"refs/remotes/origin/gitmail/mail/alex/max", f"refs/remotes/origin/gitmail/mail/alex/max{sep}zz"}
    assert found[f"refs/remotes/origin/gitmail/mail/alex/max{sep}zz"] == junk


@pytest.mark.parametrize("copy_ref", ["refs/heads/gitmail/mail/alex/%6Dax", "refs/heads/gitmail/mail/alex/%20",
                                      "refs/heads/gitmail/mail/alex/alex"])
def test_a_copy_pushed_elsewhere_never_hides_the_genuine_message(unguarded: NetOrg, copy_ref: str) -> None:
    """max's genuine message, and a copy of the same commit on another ref (indexed first: it sorts first)."""
    net = unguarded
    sent = json.loads(net.ok("max", "send", "alex", "the real one", "--json").out)
    clone = net.clones["max"]
    genuine = forge.tip(clone, refs.mail_path("alex", "max"))
    assert genuine is not None
    assert forge.push(clone, genuine, copy_ref)[0] == 0
    r = net.as_("alex", "sync")
    assert r.code == 0, r.err
    listed = _listed(net)
    assert [(m["id"], m["status"], m["mailbox"]) for m in listed] == [(sent["id"], "good", "gitmail/mail/alex/max")]
    if "%" in copy_ref:  # not a mailbox at all: ignored, and reported
        assert "not a valid mailbox ref name" in r.err, r.err


def test_two_commits_with_one_message_id_in_one_push_show_once(unguarded: NetOrg) -> None:
    net = unguarded
    clone = net.clones["max"]
    net.ok("max", "send", "alex", "only once")
    first = forge.tip(clone, refs.mail_path("alex", "max"))
    assert first is not None
    r = open_repo(clone)
    again = resign(r.pg, r.pg[first], first, forge.key_of("max"))  # type: ignore[arg-type]
    # The tracking ref already holds `first`; push `again` on top (same Message-ID, another commit).
    assert forge.push(clone, again, MAILBOX)[0] == 0
    net.ok("alex", "sync")
    listed = _listed(net)
    assert [m["subject"] for m in listed] == ["only once"] and listed[0]["status"] == "good"


def test_guard_refuses_non_canonical_mailbox_refs(net: NetOrg) -> None:
    clone = net.clones["max"]
    net.ok("max", "send", "alex", "hi")
    tip = forge.tip(clone, refs.mail_path("alex", "max"))
    assert tip is not None
    for ref in ("refs/heads/gitmail/mail/alex/%6Dax", "refs/heads/gitmail/mail/%61lex/max",
                "refs/heads/gitmail/mail/alex/%20"):
        code, out = forge.push(clone, tip, ref)
        assert code != 0 and "push refused" in out and "not a valid mailbox name" in out, out


# -- hole 8: the Message-ID is over the stored bytes --------------------------------------


def _push_dict(net: NetOrg, d: dict) -> str:
    clone = net.clones["max"]
    ctx: Ctx = build_ctx(clone, forge.tip(clone, refs.mail_path("alex", "max")))
    oid = ctx.commit_dict(d)
    code, out = forge.push(clone, oid, MAILBOX)
    assert code == 0, out
    return oid


@pytest.mark.parametrize("drop", ["require_ack", "attachments", "payload", "request_id", "encrypted", "summary"])
def test_a_message_without_an_optional_key_is_good_on_client_and_guard(net: NetOrg, drop: str) -> None:
    d = message_dict("max", ["alex"], body=f"no {drop}")
    del d[drop]
    from tests.trust.test_hostile_messages import _with_id

    _push_dict(net, _with_id(d))  # the guard takes it
    net.ok("alex", "sync")
    assert [(m["subject"], m["status"]) for m in _listed(net)] == [(f"no {drop}", "good")]


def test_unknown_fields_are_covered_by_the_message_id(unguarded: NetOrg) -> None:
    from tests.trust.test_hostile_messages import _with_id

    d = _with_id({**message_dict("max", ["alex"], body="from the future"), "x_later": {"a": [1, 2.5, None]}})
    good = _push_dict(unguarded, d)
    forged = _push_dict(unguarded, {**d, "x_later": "changed"})  # same id, other content
    unguarded.ok("alex", "sync")
    assert [(m["commit"], m["status"]) for m in _listed(unguarded)] == [(good, "good")]
    bad = json.loads(unguarded.as_("alex", "verify", "--json").out)["bad"]
    assert [(b["oid"], b["status"], b["detail"]) for b in bad] == [
        (forged, "malformed", "Message-ID does not match the content")]


# -- a copy claiming a genuine message's id never speaks for it in a view -----------------------


def _claiming_copy(net: NetOrg, genuine_id: str, rcpt: str, claimed_from: str, subject: str, body: str) -> None:
    """max files on ``mail/<rcpt>/max`` a message claiming ``genuine_id`` and ``claimed_from``
    (malformed: its id is not over its content), signed with his own key, pushed with plain git."""
    clone = net.clones["max"]
    path = refs.mail_path(rcpt, "max")
    ctx = build_ctx(clone, forge.tip(clone, path))
    d = message_dict(claimed_from, [rcpt], body=body, subject=subject)
    d["id"] = genuine_id
    code, out = forge.push(clone, ctx.commit_dict(d), refs.head(path))
    assert code == 0, out


def test_search_shows_a_row_only_with_its_own_text(unguarded: NetOrg) -> None:
    """bob's genuine message to alex, and max's copy claiming its Message-ID and sender with
    other words. The search index joined entries to rows by Message-ID, so `search wire`
    returned bob's verified message with max's words as its snippet. An entry now belongs to
    the row it was made from; the copy, hidden as a duplicate, is not a hit."""
    net = unguarded
    net.join("bob")
    net.ok("bob", "sync")
    sent = json.loads(net.ok("bob", "send", "alex", "the real plan: ship friday", "--subject", "plan", "--json").out)
    net.ok("alex", "sync")
    net.ok("alex", "search", "friday")  # the index exists: sync keeps it current from now on
    _claiming_copy(net, sent["id"], "alex", "bob", "bob says: wire 5000 USD to max", "wire it today")
    net.ok("alex", "sync")
    hits = json.loads(net.ok("alex", "search", "wire", "--json").out)["messages"]
    assert [(h["id"], h["status"]) for h in hits if h["status"] == "good"] == [], hits
    real = json.loads(net.ok("alex", "search", "friday", "--json").out)["messages"]
    assert [(h["id"], h["status"]) for h in real] == [(sent["id"], "good")], real
    assert all("wire" not in json.dumps(h) for h in real), real


def test_thread_and_read_show_the_good_copy_of_a_message(unguarded: NetOrg) -> None:
    """max files copies claiming bob's message before alex syncs: on the broadcast mailbox
    (indexed before mail/alex/bob) and in bob's own inbox. `thread` picked a copy per
    Message-ID with a bare GROUP BY (SQLite's first: the forgery), and bob's `read` put an
    inbox copy before his own sent one. Each view now shows the good copy."""
    net = unguarded
    net.join("bob")
    net.ok("bob", "sync")
    sent = json.loads(net.ok("bob", "send", "alex", "the real plan: ship friday", "--subject", "plan", "--json").out)
    _claiming_copy(net, sent["id"], "*", "bob", "plan", "FAKE: plan cancelled")
    _claiming_copy(net, sent["id"], "bob", "alex", "plan", "FAKE: plan cancelled")
    net.ok("alex", "sync")
    net.ok("bob", "sync")
    for who in ("alex", "bob"):
        thread = json.loads(net.ok(who, "thread", sent["id"][:12], "--json").out)["messages"]
        assert [(m["id"], m["status"], m["mailbox"]) for m in thread] == \
            [(sent["id"], "good", "gitmail/mail/alex/bob")], (who, thread)
        shown = json.loads(net.ok(who, "read", sent["id"][:12], "--json").out)["messages"]
        assert [(m["status"], m["body"], m["mailbox"]) for m in shown] == \
            [("good", "the real plan: ship friday", "gitmail/mail/alex/bob")], (who, shown)
    listed = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    assert [(m["id"], m["status"]) for m in listed] == [(sent["id"], "good")], listed
