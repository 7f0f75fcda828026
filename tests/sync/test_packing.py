"""Packed mailboxes end to end (docs/protocol.md §3, "Packed mailboxes"; issue 16 item 1).

A member packs their inbox: one signed commit on ``gitmail/packed/<me>`` records each
pair's tip, and the pair refs go from the org repo, so the server's refs grow with
members, not pairs. Nothing is lost or shown twice, senders continue the recorded
chains, auditors still verify everything, and a forged packed ref or a pair re-created
off its recorded tip is reported, never trusted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401
from tests.sync import forge  # after the fixtures: they load gitmail in the order it expects

from gitmail.core import packed, refs
from gitmail.core.repo import open_repo


def server_refs(o: NetOrg) -> list[str]:
    out = git("for-each-ref", "--format=%(refname)", "refs/heads/gitmail/", cwd=o.bare).stdout.split()
    return [r for r in out if r != "refs/heads/gitmail/directory"]


def inbox(o: NetOrg, name: str) -> dict[str, bool]:
    rows = json.loads(o.ok(name, "list", "--json").out)["messages"]
    return {m["subject"]: m["verified"] for m in rows}


def packing_org(o: NetOrg) -> NetOrg:
    o.join("sam")
    o.ok("max", "org", "packing=true")
    for name in ("max", "alex", "sam"):
        o.ok(name, "sync")
    o.ok("max", "send", "alex", "from max 1", "--plain")
    o.ok("sam", "send", "alex", "from sam 1", "--plain")
    o.ok("max", "send", "sam", "max to sam", "--plain")
    return o


@pytest.fixture(params=["guard", "no guard"])
def porg(request: pytest.FixtureRequest, tmp_path: Path) -> NetOrg:
    o = request.getfixturevalue("net" if request.param == "guard" else "unguarded")
    return packing_org(o)


def test_pack_keeps_every_message_and_senders_continue_the_chain(porg: NetOrg) -> None:
    o = porg
    o.ok("alex", "sync")
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True}
    r = json.loads(o.ok("alex", "pack", "--json").out)
    assert r["packed"] == ["max", "sam"] and r["kept"] == [] and r["ref"] == "refs/heads/gitmail/packed/alex"
    # The org repo now holds alex's packed ref instead of one ref per sender.
    assert server_refs(o) == ["refs/heads/gitmail/mail/sam/max", "refs/heads/gitmail/packed/alex"]
    assert git("rev-parse", "refs/heads/gitmail/packed/alex", cwd=o.bare).stdout.strip() == r["commit"]
    # Every message still shows, verified, after another sync and in a plain verify.
    o.ok("alex", "sync")
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True}
    assert json.loads(o.ok("alex", "verify", "--json").out)["ok"]
    # The senders write again: their chains go on from the recorded tips (a fast-forward).
    entry = entries(o, "alex")
    o.ok("max", "sync")
    o.ok("max", "send", "alex", "from max 2", "--plain")
    first_parent = git("rev-parse", "refs/heads/gitmail/mail/alex/max^", cwd=o.bare).stdout.strip()
    assert first_parent == entry["max"]
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert [m["subject"] for m in res["new"]] == ["from max 2"] and res["problems"] == []
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True, "from max 2": True}
    # The senders' sent views are whole; nothing was queued again or restored.
    sent = json.loads(o.ok("max", "sync", "--json").out)
    assert sent["restored"] == [] and sent["delivered"] == [] and sent["problems"] == []
    subjects = {m["subject"] for m in json.loads(o.ok("max", "list", "--sent", "--json").out)["messages"]}
    assert subjects == {"from max 1", "from max 2", "max to sam"}
    # Packing again records the moved tip; an auditor's copy verifies every message of the org.
    r2 = json.loads(o.ok("alex", "pack", "--json").out)
    assert r2["packed"] == ["max"]
    o.ok("max", "sync", "--all")
    v = json.loads(o.ok("max", "verify", "--all", "--json").out)
    assert v["ok"] and v["messages"] == 4 and v["problems"] == [], v


def test_a_key_rotated_after_packing_keeps_the_packed_mail_good(porg: NetOrg) -> None:
    """max retires a key after alex packed max's pair: the pair has no ref on the org repo, so
    its retired tip comes from max's own record of what it delivered, and every message
    signed by the old key stays good for a fresh check of the whole org."""
    o = porg
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    o.ok("max", "sync")
    o.ok("max", "key", "rotate")
    o.ok("max", "send", "alex", "after the rotation", "--plain")
    for name in ("alex", "sam"):
        o.ok(name, "sync", "--all")
        v = json.loads(o.ok(name, "verify", "--all", "--json").out)
        assert v["ok"] and v["messages"] == 4 and v["good"] == 4, v
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True, "after the rotation": True}


def test_a_sender_whose_tracking_ref_a_plain_prune_took_continues_its_chain(porg: NetOrg) -> None:
    """After alex packs, a plain ``git fetch --prune`` in max's clone drops the remote-tracking
    ref of the packed pair; max's next send still continues from what max delivered."""
    o = porg
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    mx = o.clones["max"]
    git("fetch", "--prune", "origin", "+refs/heads/gitmail/mail/*:refs/remotes/origin/gitmail/mail/*", cwd=mx)
    assert forge.tip(mx, "gitmail/mail/alex/max") is None
    delivered = open_repo(mx).ref_target("refs/gitmail/sent/alex/max")
    o.ok("max", "send", "alex", "after the prune", "--plain")
    assert git("rev-parse", "refs/heads/gitmail/mail/alex/max^", cwd=o.bare).stdout.strip() == delivered
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert [m["subject"] for m in res["new"]] == ["after the prune"] and res["problems"] == []


def test_sync_packs_once_the_inbox_has_enough_refs(porg: NetOrg, monkeypatch: pytest.MonkeyPatch) -> None:
    o = porg
    monkeypatch.setenv("GITMAIL_PACK_AFTER", "3")
    assert json.loads(o.ok("alex", "sync", "--json").out)["packed"] is None  # two refs: not yet
    monkeypatch.setenv("GITMAIL_PACK_AFTER", "2")
    r = json.loads(o.ok("alex", "sync", "--json").out)
    assert r["packed"]["packed"] == ["max", "sam"], r
    assert not any(x.startswith("refs/heads/gitmail/mail/alex/") for x in server_refs(o))
    monkeypatch.setenv("GITMAIL_PACK_AFTER", "many")
    bad = o.as_("alex", "sync")
    assert bad.code == 0 and "gitmail.packAfter must be a whole number" in bad.err  # a warning: the mail went through


def test_packing_is_off_unless_the_org_turns_it_on_and_then_stays_on(net: NetOrg) -> None:  # noqa: F811
    o = net
    r = o.as_("alex", "pack")
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "packing is off" in r.err
    o.ok("max", "org", "packing=true")
    back = o.as_("max", "org", "packing=false")
    assert back.code != 0 and "packing, once on, stays on" in back.err and "Traceback" not in back.err


def test_a_pair_recreated_off_its_packed_tip_is_reported_and_the_packed_mail_stays(unguarded: NetOrg) -> None:  # noqa: F811
    """No guard: max (a member turned bad) re-creates alex's pair as a new chain that drops the
    packed messages. alex's client reads up to the packed tip and says so."""
    o = packing_org(unguarded)
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    fork = forge.signed(o.clones["max"], "alex", "max", forge.key_of("max"), parent=None, body="a new root")
    code, out = forge.push(o.clones["max"], fork, "refs/heads/gitmail/mail/alex/max")
    assert code == 0, out
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert any("does not continue from its packed tip" in p for p in res["problems"]), res
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True}


def test_a_forged_packed_ref_is_refused_by_the_reader(unguarded: NetOrg) -> None:  # noqa: F811
    """No guard: max writes a packed commit for alex (signed by max's key) that records a bogus
    tip for sam's pair and pushes it, then deletes the pair. alex's client refuses the packed
    line (not alex's signature) and keeps reading its verified copy."""
    o = packing_org(unguarded)
    o.ok("alex", "sync")
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True}
    mx = open_repo(o.clones["max"])
    bogus = forge.signed(o.clones["max"], "max", "max", forge.key_of("max"), parent=None, body="bogus")
    from gitmail.core import directory as dirmod

    d = dirmod.load(mx)
    oid = packed.write_commit(mx.pg, {}, {"sam": bogus}, d.members["max"], forge.key_of("max"), None)
    code, out = forge.push(o.clones["max"], oid, "refs/heads/gitmail/packed/alex")
    assert code == 0, out
    code, out = forge.push(o.clones["max"], "", "refs/heads/gitmail/mail/alex/sam")
    assert code == 0, out
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert any("gitmail/packed/alex" in p and "not signed by the owner's key" in p for p in res["problems"]), res
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True}
    assert open_repo(o.clones["alex"]).ref_target(refs.verified(refs.packed_path("alex"))) is None


@pytest.mark.parametrize("data", [
    b"sam 0123456789012345678901234567890123456789",  # no final newline
    b"sam 0123456789012345678901234567890123456789\nmax 0123456789012345678901234567890123456789\n",  # order
    b"%2A 0123456789012345678901234567890123456789\n",  # broadcast is no sender
    b"team%3Aops 0123456789012345678901234567890123456789\n",  # nor a group
    b"%61lex 0123456789012345678901234567890123456789\n",  # not canonical
    b"sam 0123456789012345678901234567890123456789\nsam 1123456789012345678901234567890123456789\n",  # twice
    b"sam 0123456789ABCDEF012345678901234567890123\n",  # upper-case hex
    b"sam  0123456789012345678901234567890123456789\n",  # two spaces
    b"sam 0123456789012345678901234567890123456789\r\n",
    b"sa\x1bm 0123456789012345678901234567890123456789\n",  # an escape sequence
])
def test_a_malformed_map_is_refused(data: bytes) -> None:
    with pytest.raises(packed.PackedError):
        packed.parse(data)


from hypothesis import given, settings, strategies as st  # noqa: E402

from gitmail.core.address import normalize  # noqa: E402
from gitmail.errors import GitmailError  # noqa: E402


def _name(raw: str) -> str:
    try:
        return normalize(raw)
    except GitmailError:
        return "fallback"


names = st.one_of(st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True),
                  st.text(min_size=1, max_size=12).map(_name))
oids = st.binary(min_size=20, max_size=20).map(bytes.hex)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, oids, max_size=20))
def test_render_then_parse_is_the_identity(entries: dict[str, str]) -> None:
    entries = {k: v for k, v in entries.items() if k != "*" and not k.startswith("team:")}
    assert packed.parse(packed.render(entries)) == entries


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | st.lists(st.tuples(names, oids), max_size=5).map(
    lambda rows: b"".join(f"{k} {v}\n".encode() for k, v in rows)))
def test_any_bytes_parse_to_the_one_canonical_map_or_a_clear_refusal(data: bytes) -> None:
    try:
        entries = packed.parse(data)
    except packed.PackedError as e:
        assert str(e).startswith("mailboxes ")
        return
    assert packed.render(entries) == data  # one map, one spelling


@pytest.mark.parametrize("packing", [False, True])
def test_an_inbox_mailbox_deleted_on_the_server_is_reported_once_and_kept(unguarded: NetOrg, packing: bool) -> None:  # noqa: F811
    """No guard: someone deletes alex's mailbox from max on the server (no packed entry records
    it). alex's sync says so once, and the messages stay, verified."""
    o = packing_org(unguarded) if packing else unguarded
    o.ok("max", "send", "alex", "kept", "--plain")
    o.ok("alex", "sync")
    git("update-ref", "-d", "refs/heads/gitmail/mail/alex/max", cwd=o.bare)
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert res["problems"] == ["gitmail/mail/alex/max: deleted on the org repo (and not packed); kept the verified copy"]
    assert json.loads(o.ok("alex", "sync", "--json").out)["problems"] == []  # said once
    assert inbox(o, "alex")["kept"] is True


def test_writing_to_a_packed_pair_sends_only_the_new_message(porg: NetOrg, tmp_path: Path) -> None:
    """The server holds the packed pair's history, but advertises no ref for it: the sender's
    push first negotiates what the server has, instead of sending the whole history again."""
    o = porg
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join(json.dumps({"to": "alex", "body": f"note {i}"}) + "\n" for i in range(60)))
    o.ok("max", "send", "--batch", str(batch), "--plain")
    o.ok("alex", "sync")
    assert json.loads(o.ok("alex", "list", "--json").out)["total"] == 62
    o.ok("alex", "pack")
    o.ok("max", "sync")

    def in_pack() -> int:
        counts = dict(line.split(": ") for line in git("count-objects", "-v", cwd=o.bare).stdout.splitlines())
        return int(counts["in-pack"]) + int(counts["count"])

    before = in_pack()
    o.ok("max", "send", "alex", "one more", "--plain")
    assert in_pack() - before <= 5, (before, in_pack())  # a commit, a tree, message.json; not 180 again
    assert json.loads(o.ok("alex", "sync", "--json").out)["new"][0]["subject"] == "one more"


def test_a_senders_quiet_sync_after_packing_loads_nothing(porg: NetOrg) -> None:
    """Finding the pair packed costs one directory read, once per delivered tip: the sender's
    next sync with nothing new opens no repository and loads no pydantic, as before packing."""
    from tests.conftest import heavy_imports

    o = porg
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    o.ok("max", "sync")
    o.ok("max", "sync")
    assert heavy_imports("sync", "-q", "--repo", str(o.clones["max"])) == (False, False)


def entries(o: NetOrg, owner: str) -> dict[str, str]:
    """The map on ``owner``'s packed ref on the server."""
    return packed.parse(git("show", f"refs/heads/gitmail/packed/{owner}:mailboxes", cwd=o.bare).stdout.encode())


def laptop_then_pack(net: NetOrg) -> NetOrg:
    """A packing org where max's second clone (the laptop) delivered to alex after max's desk
    did, and alex then packed the pair: the desk has not seen the packed tip."""
    from tests.conftest import run

    o = packing_org(net)
    laptop = o.root / "max-laptop"
    assert run("init", "--name", "max", "--org", o.url, "--repo", str(laptop)).code == 0
    assert run("send", "alex", "from the laptop", "--plain", "--repo", str(laptop)).code == 0
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    return o


@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no guard"])
def test_a_second_clone_of_the_sender_continues_from_the_packed_tip(request: pytest.FixtureRequest,
                                                                     guarded: bool) -> None:
    """max's laptop delivers more to alex than max's desk has seen, then alex packs the pair.
    Before re-creating the pair ref, the desk reads alex's packed commit alone, finds an entry
    it does not know, checks alex's packed line, takes the recorded tip (it continues the
    desk's), re-parents its message onto it and delivers it: nothing forks, nothing is lost or
    sent twice. The same with no guard on the server, where nothing would refuse a fork."""
    o = laptop_then_pack(request.getfixturevalue("net" if guarded else "unguarded"))
    entry = entries(o, "alex")["max"]
    r = json.loads(o.ok("max", "send", "alex", "from the desk", "--plain", "--json").out)
    assert r["delivered"] is True, r
    assert git("rev-parse", "refs/heads/gitmail/mail/alex/max^", cwd=o.bare).stdout.strip() == entry
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert [m["subject"] for m in res["new"]] == ["from the desk"] and res["problems"] == []
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True, "from the laptop": True, "from the desk": True}
    assert json.loads(o.ok("max", "outbox", "--undelivered", "--json").out)["undelivered"] == []
    desk = o.clones["max"] / ".git"
    assert not (desk / "shallow").exists() and list((desk / "gitmail").glob("peek-*")) == []


@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no guard"])
def test_a_new_clone_of_the_sender_continues_a_pair_packed_before_it_existed(request: pytest.FixtureRequest,
                                                                            guarded: bool) -> None:
    """max delivered to alex from the desk, alex packed the pair, then max starts a new clone
    (a new machine) and writes to alex: that clone never delivered there and sees no ref for
    the pair, so its message would start a new chain. It reads alex's packed entry first and
    continues it: delivered, shown, nothing forked, with or without a guard."""
    from tests.conftest import run

    o = packing_org(request.getfixturevalue("net" if guarded else "unguarded"))
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    entry = entries(o, "alex")["max"]
    laptop = o.root / "max-new-laptop"
    assert run("init", "--name", "max", "--org", o.url, "--repo", str(laptop)).code == 0
    r = run("send", "alex", "from the new laptop", "--plain", "--json", "--repo", str(laptop))
    assert r.code == 0 and json.loads(r.out)["delivered"] is True, r.out
    assert git("rev-parse", "refs/heads/gitmail/mail/alex/max^", cwd=o.bare).stdout.strip() == entry
    res = json.loads(o.ok("alex", "sync", "--json").out)
    assert [m["subject"] for m in res["new"]] == ["from the new laptop"] and res["problems"] == []
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True, "from the new laptop": True}


def test_a_sender_alone_reads_the_packed_commit_and_not_the_recipients_inbox(unguarded: NetOrg) -> None:  # noqa: F811
    """The common case, one clone per sender: the entry is the tip the sender delivered, so
    re-creating the pair reads alex's packed commit alone (one small shallow fetch into a
    throwaway repository), never alex's packed ref with everyone else's mail to alex."""
    o = packing_org(unguarded)
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    sams = entries(o, "alex")["sam"]
    left = o.clones["max"] / ".git" / "gitmail" / "peek-killed"  # as a killed process leaves it
    (left / "objects").mkdir(parents=True)
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    r = json.loads(o.ok("max", "send", "alex", "after the pack", "--plain", "--json").out)
    assert r["delivered"] is True, r
    desk = open_repo(o.clones["max"])
    assert sams not in desk.pg  # sam's message to alex never came to max's clone
    assert desk.ref_target(refs.tracking(refs.packed_path("alex"), desk.remote)) is None
    assert not (desk.git_dir / "shallow").exists() and list((desk.git_dir / "gitmail").glob("peek-*")) == []
    assert [m["subject"] for m in json.loads(o.ok("alex", "sync", "--json").out)["new"]] == ["after the pack"]


def test_a_packed_commit_forged_by_another_member_moves_no_senders_tip(unguarded: NetOrg) -> None:  # noqa: F811
    """No guard: sam replaces alex's packed ref with a commit signed by sam's key that records
    a bogus entry for max. max's next message is not re-parented onto anything: the commit
    is not alex's word (its signature), so max continues its own delivered tip."""
    o = packing_org(unguarded)
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    sent = entries(o, "alex")["max"]
    bogus = forge.signed(o.clones["sam"], "sam", "sam", forge.key_of("sam"), parent=None, body="bogus")
    sm = open_repo(o.clones["sam"])
    from gitmail.core import directory as dirmod

    oid = packed.write_commit(sm.pg, {}, {"max": bogus, "sam": entries(o, "alex")["sam"]},
                              dirmod.load(sm).members["sam"], forge.key_of("sam"), None)
    code, out = forge.push(o.clones["sam"], oid, "refs/heads/gitmail/packed/alex", "--force")
    assert code == 0, out
    r = json.loads(o.ok("max", "send", "alex", "after the forgery", "--plain", "--json").out)
    assert r["delivered"] is True, r
    assert git("rev-parse", "refs/heads/gitmail/mail/alex/max^", cwd=o.bare).stdout.strip() == sent


def test_a_key_rotated_on_a_clone_that_missed_a_packed_delivery_keeps_that_mail_good(net: NetOrg) -> None:  # noqa: F811
    """max's laptop delivered more to alex than the desk saw; alex packed the pair (no ref on
    the org repo). The desk retires max's key: it reads alex's packed ref, so the retired
    key's tip for the pair covers the laptop's message, and a full check stays good."""
    o = laptop_then_pack(net)
    o.ok("max", "key", "rotate")
    retired = json.loads(git("show", "refs/heads/gitmail/directory:" + _entry_file(o, "max"), cwd=o.bare).stdout)
    entry = entries(o, "alex")["max"]
    assert entry in [t for tips in retired["retired"].values() for t in tips.values()], retired["retired"]
    o.ok("sam", "sync", "--all")
    v = json.loads(o.ok("sam", "verify", "--all", "--json").out)
    assert v["ok"] and v["good"] == v["messages"] == 4, v


def _entry_file(o: NetOrg, name: str) -> str:
    files = git("ls-tree", "-r", "--name-only", "refs/heads/gitmail/directory", "members/", cwd=o.bare).stdout.split()
    return next(f for f in files if f.endswith("/" + name + ".json") or f == f"members/{name}.json")


def test_reading_a_packed_commit_alone_leaves_the_clone_as_it_was(unguarded: NetOrg, tmp_path: Path) -> None:  # noqa: F811
    """``peeked`` on a clone whose path holds a quote, a backslash and a space (its config is
    included by path): the packed commit and its map are read, a ref the server lacks gives
    None, and the clone gains no object, ref, shallow file or leftover directory."""
    import shutil

    from gitmail.core import directory as dirmod
    from gitmail.core import sync

    o = packing_org(unguarded)
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    odd = tmp_path / 'we"ird \\ clone'
    shutil.copytree(o.clones["max"], odd, symlinks=True)
    r = open_repo(odd)
    before_refs = git("for-each-ref", cwd=odd).stdout
    before_objects = git("count-objects", "-v", cwd=odd).stdout
    with sync.peeked(r, refs.packed_path("alex")) as got:
        assert got is not None
        pg, oid = got
        assert oid == git("rev-parse", "refs/heads/gitmail/packed/alex", cwd=o.bare).stdout.strip()
        assert packed.tip_problem(pg, oid, ["ssh-ed25519 AAAA"])[0] == f"commit {oid[:10]} is not signed by the owner's key"
        assert packed.tip_problem(pg, oid, dirmod.load(r).members["alex"].all_keys()) == (None, entries(o, "alex"))
    with sync.peeked(r, refs.packed_path("nobody")) as got:
        assert got is None
    assert git("for-each-ref", cwd=odd).stdout == before_refs
    assert git("count-objects", "-v", cwd=odd).stdout == before_objects
    assert not (odd / ".git" / "shallow").exists() and list((odd / ".git" / "gitmail").glob("peek-*")) == []


def test_a_rewound_packed_ref_is_said_on_every_sync_and_by_verify(unguarded: NetOrg) -> None:  # noqa: F811
    """No guard: someone sets alex's packed ref back to its first commit. alex's sync said so
    once, then nothing, and ``gitmail verify`` said "0 history problems". Now every sync and
    verify say it while it stands; the packed mail stays."""
    o = packing_org(unguarded)
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    o.ok("max", "send", "alex", "after packing", "--plain")
    o.ok("alex", "sync")
    o.ok("alex", "pack")
    root = git("rev-list", "--max-parents=0", "refs/heads/gitmail/packed/alex", cwd=o.bare).stdout.split()[0]
    git("update-ref", "refs/heads/gitmail/packed/alex", root, cwd=o.bare)
    want = "gitmail/packed/alex: the packed ref was rewritten (not a fast-forward); kept the verified copy"
    for _ in range(2):
        assert want in json.loads(o.ok("alex", "sync", "--json").out)["problems"]
    r = o.as_("alex", "verify", "--json")
    assert r.code == 7 and want in json.loads(r.out)["problems"], r
    assert inbox(o, "alex") == {"from max 1": True, "from sam 1": True, "after packing": True}


def test_mail_sent_just_before_its_recipient_packed_stays_in_the_sent_view(porg: NetOrg) -> None:
    """max sends sam a message and does not sync; sam packs his inbox (max's pair goes from
    the org repo). max's sent view lacked the message until max next wrote to sam: it was
    read only from the pair's ref, which is gone. Now it is read from what max's clone
    delivered (refs/gitmail/sent/sam/max), verified as any sent mail."""
    o = porg
    o.ok("max", "send", "sam", "just before the pack", "--plain")
    o.ok("sam", "sync")
    assert "max" in json.loads(o.ok("sam", "pack", "--json").out)["packed"]
    assert "refs/heads/gitmail/mail/sam/max" not in server_refs(o)
    res = json.loads(o.ok("max", "sync", "--json").out)
    assert res["problems"] == [] and res["restored"] == [], res
    sent = {m["subject"]: m["verified"] for m in json.loads(o.ok("max", "list", "--sent", "--json").out)["messages"]}
    assert sent == {"from max 1": True, "max to sam": True, "just before the pack": True}, sent
    assert json.loads(o.ok("max", "verify", "--json").out)["ok"]
    o.ok("max", "send", "sam", "after the pack", "--plain")
    subjects = {m["subject"] for m in json.loads(o.ok("max", "list", "--sent", "--json").out)["messages"]}
    assert subjects == {"from max 1", "max to sam", "just before the pack", "after the pack"}
