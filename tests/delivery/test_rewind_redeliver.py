"""Nothing silently lost on a server without the guard (issue 12, item 4).

A force-push rewinds alex's mailbox from max before alex fetched: max's next
sync notices that messages it delivered are gone, says so, and delivers them
again as a fast-forward on top of the rewritten mailbox.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import git
from tests.sync.conftest import NetOrg, guard_runtime, unguarded  # noqa: F401
from tests.sync import forge  # after the fixtures: they load gitmail in the order it expects

MAILBOX = "refs/heads/gitmail/mail/alex/max"


def server_ids(o: NetOrg) -> list[str]:
    p = git("log", "--reverse", "--format=%(trailers:key=Message-Id,valueonly)", MAILBOX, cwd=o.bare, check=False)
    return [ln.strip().removeprefix("<").removesuffix("@gitmail>") for ln in p.stdout.splitlines() if ln.strip()]


def test_rewind_of_delivered_mail_is_reported_and_redelivered(unguarded: NetOrg) -> None:  # noqa: F811
    o = unguarded
    ids = [json.loads(o.ok("max", "send", "alex", f"m{i}", "--json").out)["id"] for i in range(3)]
    assert server_ids(o) == ids
    # Someone with push access rewinds the mailbox to its first message (no guard to stop it).
    code, out = forge.push(o.clones["max"], "origin/gitmail/mail/alex/max~2", MAILBOX, "--force")
    assert code == 0, out
    assert server_ids(o) == ids[:1]
    r = o.as_("max", "sync")
    assert r.code == 0, r.err
    assert r.err.count("was removed from the org repo by a rewrite of the mailbox; delivered again") == 2, r.err
    assert ids[1][:8] in r.err and ids[2][:8] in r.err
    assert server_ids(o) == ids  # back, in order, a fast-forward of the rewritten tip
    r = json.loads(o.ok("max", "sync", "--json").out)
    assert r["restored"] == [] and r["delivered"] == []  # said once
    # The sent copy is whole, and alex gets all three, verified.
    sent = json.loads(o.ok("max", "list", "--sent", "--json").out)["messages"]
    assert sorted(m["subject"] for m in sent) == ["m0", "m1", "m2"]
    o.ok("alex", "sync")
    got = json.loads(o.ok("alex", "list", "--json").out)["messages"]
    assert sorted(m["subject"] for m in got) == ["m0", "m1", "m2"] and all(m["verified"] for m in got)
    assert json.loads(o.ok("alex", "verify", "--all", "--json").out)["ok"]
    assert json.loads(o.ok("max", "verify", "--all", "--json").out)["ok"]


def test_rewind_json_and_deleted_mailbox(unguarded: NetOrg) -> None:  # noqa: F811
    o = unguarded
    ids = [json.loads(o.ok("max", "send", "alex", f"d{i}", "--json").out)["id"] for i in range(2)]
    code, out = forge.push(o.clones["max"], "", MAILBOX)  # deleted outright
    assert code == 0, out
    r = json.loads(o.ok("max", "sync", "--json").out)
    assert sorted(q["id"] for q in r["restored"]) == sorted(ids)
    assert all(q["kind"] == "restored" and q["mailboxes"] == ["alex"] for q in r["restored"])
    assert sorted(r["delivered"]) == sorted(ids)
    assert server_ids(o) == ids


def test_mailbox_deleted_on_the_server_by_someone_else_is_seen(unguarded: NetOrg) -> None:  # noqa: F811
    """The deletion happens on the server (not by a push from the sender's clone, which moves
    the sender's own remote-tracking ref): the sender's next fetch prunes the tracking ref,
    so the rewind check sees the mailbox gone and delivers the messages again."""
    o = unguarded
    ids = [json.loads(o.ok("max", "send", "alex", f"e{i}", "--json").out)["id"] for i in range(2)]
    git("update-ref", "-d", MAILBOX, cwd=o.bare)
    r = json.loads(o.ok("max", "sync", "--json").out)
    assert sorted(q["id"] for q in r["restored"]) == sorted(ids)
    assert server_ids(o) == ids


def test_rewind_not_redelivered_when_another_clone_of_the_sender_moved_on(unguarded: NetOrg) -> None:  # noqa: F811
    """A mailbox that grew (the sender's other clone) is no rewind: nothing is sent twice."""
    from tests.conftest import run

    o = unguarded
    o.ok("max", "send", "alex", "from the desk")
    laptop = o.root / "max-laptop"
    assert run("init", "--name", "max", "--org", o.url, "--repo", str(laptop)).code == 0
    assert run("send", "alex", "from the laptop", "--repo", str(laptop)).code == 0
    r = json.loads(o.ok("max", "sync", "--json").out)
    assert r["restored"] == [] and r["delivered"] == []
    assert len(server_ids(o)) == 2


def test_rewind_check_loads_nothing_when_nothing_moved(unguarded: NetOrg) -> None:  # noqa: F811
    """The check runs on every sync: with nothing new it opens no repository (no pygit2, no pydantic)."""
    from tests.conftest import heavy_imports

    o = unguarded
    o.ok("max", "send", "alex", "hello")
    o.ok("max", "sync")
    assert heavy_imports("sync", "-q", "--repo", str(o.clones["max"])) == (False, False)


def test_a_send_right_after_a_rewind_puts_the_rewound_mail_back(unguarded: NetOrg) -> None:  # noqa: F811
    """The mailbox is rewound on the server and max sends again before any sync: the push's
    lease on max's stale remote-tracking tip is refused, delivery fetches the rewound tip,
    and the queue it pushes holds the two lost messages and the new one, in order: nothing
    is lost, and the next sync has nothing left to restore."""
    o = unguarded
    ids = [json.loads(o.ok("max", "send", "alex", f"m{i}", "--json").out)["id"] for i in range(3)]
    code, out = forge.push(o.clones["max"], "origin/gitmail/mail/alex/max~2", MAILBOX, "--force")
    assert code == 0, out
    sent = git("rev-parse", "refs/gitmail/sent/alex/max", cwd=o.clones["max"]).stdout.strip()
    git("update-ref", "refs/remotes/origin/gitmail/mail/alex/max", sent, cwd=o.clones["max"])  # stale: as max saw it
    new = json.loads(o.ok("max", "send", "alex", "m3", "--json").out)
    assert new["delivered"] is True, new
    assert server_ids(o) == [*ids, new["id"]]
    r = json.loads(o.ok("max", "sync", "--json").out)
    assert r["restored"] == [] and r["problems"] == [], r
    o.ok("alex", "sync")
    got = json.loads(o.ok("alex", "list", "--json").out)["messages"]
    assert sorted(m["subject"] for m in got) == ["m0", "m1", "m2", "m3"] and all(m["verified"] for m in got)



def test_a_sender_of_many_mailboxes_checks_them_in_turn(unguarded: NetOrg,  # noqa: F811
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """max has delivered to five members; with at most two delivered mailboxes fetched a sync
    (SENT_CHECKS, 128 for real), each sync asks for two, the next two after the last it
    asked for, round and round, so a sync's cost stays bounded however many members max
    writes to. A mailbox deleted on the server is still found, within three syncs, and its
    messages delivered again."""
    from gitmail.core import sync
    from tests.conftest import recorded

    o = unguarded
    for name in ("kim", "lee", "pat"):
        o.join(name)
    o.ok("max", "sync")
    ids = {r: json.loads(o.ok("max", "send", r, f"to {r}", "--plain", "--json").out)["id"]
           for r in ("alex", "kim", "lee", "max", "pat")}
    monkeypatch.setattr(sync, "SENT_CHECKS", 2)
    fetched = recorded(monkeypatch, sync, "fetch", lambda repo, paths=None, meanwhile=None: sorted(
        p for p in (paths or []) if p.startswith("gitmail/mail/") and p.endswith("/max*")))
    git("update-ref", "-d", "refs/heads/gitmail/mail/lee/max", cwd=o.bare)
    restored = []
    for _ in range(3):
        restored += json.loads(o.ok("max", "sync", "--json").out)["restored"]
    # max's own mailbox is fetched whole (mail/max/*), so four are checked in turn, two a sync.
    assert fetched == [["gitmail/mail/alex/max*", "gitmail/mail/kim/max*"],
                       ["gitmail/mail/lee/max*", "gitmail/mail/pat/max*"],
                       ["gitmail/mail/alex/max*", "gitmail/mail/kim/max*"]], fetched
    assert [q["id"] for q in restored] == [ids["lee"]]
    assert git("log", "--format=%s", "refs/heads/gitmail/mail/lee/max", cwd=o.bare).stdout.split("\n")[0] == "to lee"


def test_a_mailbox_replaced_by_another_history_gets_no_mail_on_top(unguarded: NetOrg) -> None:  # noqa: F811
    """No guard: someone replaces alex's mailbox from max with another line (here alex's own
    messages to max). max's clone delivered its lost message again on top of that line and every
    later send said "Sent" there; alex, whose verified copy is the old line, refuses the new one
    for good: none of it was ever read. Now max's clone puts nothing on top of it: the send stays
    queued saying why, alex's sync says the history was rewritten, and once an admin restores
    the ref the queue goes, once."""
    o = unguarded
    o.ok("max", "send", "alex", "m0")
    o.ok("alex", "send", "max", "a0")
    o.ok("alex", "sync")
    o.ok("max", "sync")
    good = git("rev-parse", MAILBOX, cwd=o.bare).stdout.strip()
    other = git("rev-parse", "refs/heads/gitmail/mail/max/alex", cwd=o.bare).stdout.strip()
    git("update-ref", MAILBOX, other, cwd=o.bare)  # the replacement, as a force-push would leave it
    r = o.as_("max", "sync")
    assert r.code == 0 and "delivered again" not in r.err, r
    q = json.loads(o.ok("max", "send", "alex", "after the replacement", "--json").out)
    assert q["queued"] is True and "does not continue the history this clone verified" in q["reason"], q
    assert git("rev-parse", MAILBOX, cwd=o.bare).stdout.strip() == other  # nothing went on top
    s = json.loads(o.ok("alex", "sync", "--json").out)
    assert any("history was rewritten" in p for p in s["problems"]), s
    git("update-ref", MAILBOX, good, cwd=o.bare)  # an admin restores it
    o.ok("max", "sync")
    o.ok("alex", "sync")
    msgs = json.loads(o.ok("alex", "list", "--json").out)["messages"]
    subjects = sorted(m["subject"] for m in msgs)
    assert subjects == ["after the replacement", "m0"], subjects
    assert json.loads(o.ok("alex", "sync", "--json").out)["problems"] == []


def test_a_mailbox_replaced_before_the_sender_ever_synced_gets_no_mail_on_top(unguarded: NetOrg) -> None:  # noqa: F811
    """The same replacement, right after max's first message to alex and before any sync of
    max's verified the mailbox: there was no verified tip to compare with, so max's next message
    went on top of the replacement and said "Sent" (and alex, who had read m0, refused that
    line). The tip max delivered stands for the verified one now."""
    o = unguarded
    o.ok("alex", "send", "max", "a0")
    o.ok("max", "send", "alex", "m0")
    o.ok("alex", "sync")
    assert git("rev-parse", "-q", "--verify", f"refs/gitmail/verified/{MAILBOX[len('refs/heads/'):]}",
               cwd=o.clones["max"], check=False).returncode != 0  # max never verified it
    other = git("rev-parse", "refs/heads/gitmail/mail/max/alex", cwd=o.bare).stdout.strip()
    git("update-ref", MAILBOX, other, cwd=o.bare)
    q = json.loads(o.ok("max", "send", "alex", "STOP: do not run the migration", "--json").out)
    assert q["queued"] is True and "does not continue the history this clone verified or delivered" in q["reason"], q
    assert git("rev-parse", MAILBOX, cwd=o.bare).stdout.strip() == other  # nothing went on top
