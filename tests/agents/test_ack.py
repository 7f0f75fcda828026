"""Acknowledgements: --require-ack, `gitmail ack` (idempotent), `gitmail list --awaiting-ack`."""

from __future__ import annotations

import json

from tests.conftest import Org


def _awaiting(org: Org, who: str) -> list[dict]:
    org.ok(who, "sync")
    return json.loads(org.ok(who, "list", "--awaiting-ack", "--json").out)["messages"]


def test_ack_round_trip_and_duplicate(org: Org) -> None:
    m = json.loads(org.ok("max", "send", "alex", "please confirm", "--require-ack", "--json").out)
    org.ok("max", "send", "alex", "no receipt needed")
    waiting = _awaiting(org, "max")
    assert [w["id"] for w in waiting] == [m["id"]]
    assert waiting[0]["pending"] == ["alex"] and waiting[0]["acked_by"] == []
    assert waiting[0]["require_ack"] is True and waiting[0]["waited_seconds"] >= 0
    assert "waiting" in org.ok("max", "list", "--awaiting-ack").out

    org.ok("alex", "sync")
    assert json.loads(org.ok("alex", "list", "--json").out)["messages"][1]["require_ack"] is True
    first = json.loads(org.ok("alex", "ack", m["short_id"], "--json").out)["acks"][0]
    assert first["sent"] is True and first["to"] == "max" and first["acked"] == m["id"]
    again = org.ok("alex", "ack", m["short_id"])
    assert "Already acknowledged" in again.out
    assert json.loads(org.ok("alex", "ack", m["id"], "--json").out)["acks"][0] == {**first, "sent": False, "outcome": None,
                                                                                   "delivered": False}

    assert _awaiting(org, "max") == []
    acks = [x for x in json.loads(org.ok("max", "list", "--json").out)["messages"] if x["type"] == "ack"]
    assert len(acks) == 1 and acks[0]["in_reply_to"] == m["id"] and acks[0]["verified"] is True
    assert acks[0]["from"] == "alex"


def test_broadcast_require_ack_pending_per_member(org: Org) -> None:
    org.join("bob")
    m = json.loads(org.ok("max", "send", "*", "all hands at 3", "--require-ack", "--json").out)
    assert _awaiting(org, "max")[0]["pending"] == ["alex", "bob"]
    org.ok("bob", "sync")
    org.ok("bob", "ack", m["short_id"])
    w = _awaiting(org, "max")[0]
    assert w["pending"] == ["alex"] and w["acked_by"] == ["bob"]


def test_ack_bad_input(org: Org) -> None:
    mine = json.loads(org.ok("max", "send", "alex", "x", "--json").out)
    r = org.as_("max", "ack", mine["short_id"])
    assert r.code == 2 and "only a recipient can acknowledge" in r.err
    r = org.as_("alex", "ack", "0000")
    assert r.code == 4 and "no message '0000'" in r.err
    r = org.as_("alex", "ack", "xyz")
    assert r.code == 2 and "malformed message id" in r.err


def test_duplicate_ack_while_offline_is_not_queued_twice(org: Org) -> None:
    import os

    m = json.loads(org.ok("max", "send", "alex", "confirm", "--require-ack", "--json").out)
    org.ok("alex", "sync")
    os.rename(org.url, org.url + ".away")
    try:
        first = json.loads(org.ok("alex", "ack", m["short_id"], "--json").out)["acks"][0]
        assert first["sent"] is True and first["queued"] is True
        second = json.loads(org.ok("alex", "ack", m["short_id"], "--json").out)["acks"][0]
        assert second["sent"] is False and second["ack_id"] == first["ack_id"]
    finally:
        os.rename(org.url + ".away", org.url)
    org.ok("alex", "sync")
    assert _awaiting(org, "max") == []
    acks = [x for x in json.loads(org.ok("max", "list", "--json").out)["messages"] if x["type"] == "ack"]
    assert len(acks) == 1


def test_one_unknown_id_acks_nothing_and_a_repeated_id_acks_once(org: Org) -> None:
    """``gitmail ack GOOD dead`` refuses (exit 4) before any receipt goes out: an ack that went
    out cannot be taken back, and the exit said nothing was done (it sent GOOD's before).
    The same message named twice is acknowledged once."""
    m = json.loads(org.ok("max", "send", "alex", "confirm", "--require-ack", "--json").out)
    org.ok("alex", "sync")
    before = org.ok("alex", "outbox", "--json").out
    r = org.as_("alex", "ack", m["short_id"], "dead")
    assert r.code == 4 and "no message 'dead'" in r.err and r.out == "", r
    assert org.ok("alex", "outbox", "--json").out == before
    assert _awaiting(org, "max")[0]["pending"] == ["alex"]  # nothing reached max
    both = json.loads(org.ok("alex", "ack", m["short_id"], m["id"], "--json").out)["acks"]
    assert [a["sent"] for a in both] == [True, False] and both[0]["ack_id"] == both[1]["ack_id"], both
    assert _awaiting(org, "max") == []
    acks = [x for x in json.loads(org.ok("max", "list", "--json").out)["messages"] if x["type"] == "ack"]
    assert len(acks) == 1
