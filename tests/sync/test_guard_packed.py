"""The guard's rules for packed mailboxes (docs/protocol.md §3, "Packed mailboxes"), on a real git
daemon: what a member may do with their packed ref and their inbox pair refs, and what a
hostile member tries first.

max (admin) and alex share the org; max writes to alex, so the pair is ``mail/alex/max`` and
its owner (who may pack it) is alex. Every push is a plain ``git push`` of hand-made commits.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import pygit2
import pytest

from gitmail.core import directory as dirmod
from gitmail.core import packed
from gitmail.core.objects import parent_ids, signed_commit
from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer
from gitmail.core.store import author_of
from tests.conftest import git
from tests.sync import forge
from tests.sync.conftest import NetOrg
from tests.sync.test_guard import refused

PAIR = "refs/heads/gitmail/mail/alex/max"
PACKED = "refs/heads/gitmail/packed/alex"


# -- helpers --------------------------------------------------------------------------------


def packing_on(net: NetOrg) -> None:
    """The admin switches packing on (a signed directory commit, pushed); alex sees it."""
    net.ok("max", "org", "packing=true")
    net.ok("alex", "sync")
    assert dirmod.load(open_repo(net.clones["alex"])).policy.packing is True


def mail(net: NetOrg, n: int) -> list[str]:
    """max sends alex ``n`` messages; alex syncs. The pair's commits, oldest first."""
    for i in range(n):
        net.ok("max", "send", "alex", f"note {i}")
    net.ok("alex", "sync")
    return line(net, PAIR)


def remote(net: NetOrg, ref: str) -> Optional[str]:
    """The ref's value on the server (None: no such ref)."""
    out = git("ls-remote", net.url, ref).stdout.split()
    return out[0] if out else None


def line(net: NetOrg, ref: str) -> list[str]:
    """The server's first-parent line of ``ref``, oldest first (read from the bare repo)."""
    return git("rev-list", "--first-parent", "--reverse", ref, cwd=net.bare).stdout.split()


def pack(net: NetOrg, old: Mapping[str, str], new: Mapping[str, str], parent: Optional[str],
         who: str = "alex", signer: Optional[Signer] = None) -> str:
    """A packed commit in ``who``'s clone, going from ``old`` to ``new``, written as ``who``
    and signed by ``signer`` (default: ``who``'s key)."""
    r = open_repo(net.clones[who])
    member = dirmod.load(r).members[who]
    return packed.write_commit(r.pg, old, new, member, signer or forge.key_of(who), parent)


def raw_packed(net: NetOrg, files: Mapping[str, bytes], parents: Sequence[str], who: str = "alex") -> str:
    """A packed-looking commit in ``who``'s clone with any tree and parents, signed by ``who``
    (for the malformed ones; a fixed date, so it never equals one :func:`pack` wrote)."""
    r = open_repo(net.clones[who])
    pg = r.pg
    tb = pg.TreeBuilder()
    for name, data in files.items():
        tb.insert(name, pg.create_blob(data), pygit2.enums.FileMode.BLOB)
    member = dirmod.load(r).members[who]
    name, email = author_of(member)
    sig = pygit2.Signature(name, email, 1_700_000_000, 0)
    return signed_commit(pg, sig, sig, packed.COMMIT_MESSAGE, tb.write(), list(parents), forge.key_of(who).sign)


def push(net: NetOrg, who: str, *specs: str) -> tuple[int, str]:
    """One plain ``git push`` of ``src:dst`` specs from ``who``'s clone (all refs in one push)."""
    p = git("push", "--porcelain", "origin", *specs, cwd=net.clones[who], check=False)
    return p.returncode, p.stdout + p.stderr


def accepted(code: int, out: str) -> None:
    assert code == 0, out
    assert "gitmail guard" not in out, out


@pytest.fixture
def packable(net: NetOrg) -> NetOrg:
    """``net`` with packing on."""
    packing_on(net)
    return net


# -- packing off ------------------------------------------------------------------------------


def test_packing_off_refuses_packed_ref_and_pair_deletion(net: NetOrg) -> None:
    tips = mail(net, 1)
    oid = pack(net, {}, {"max": tips[-1]}, None)
    refused(*push(net, "alex", f"{oid}:{PACKED}"), "packing is off in this org")
    refused(*push(net, "alex", f":{PAIR}"), "deleting a mailbox is not allowed (messages are never removed)")
    # Both in one push: still refused, and nothing moved.
    refused(*push(net, "alex", f"{oid}:{PACKED}", f":{PAIR}"), "packing is off in this org",
            "deleting a mailbox is not allowed")
    assert remote(net, PACKED) is None and remote(net, PAIR) == tips[-1]


# -- the honest path ------------------------------------------------------------------------------


def test_pack_delete_and_recreate_on_the_entry(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 2)
    p1 = pack(net, {}, {"max": tips[-1]}, None)
    accepted(*push(net, "alex", f"{p1}:{PACKED}"))
    assert remote(net, PACKED) == p1
    accepted(*push(net, "alex", f":{PAIR}"))
    assert remote(net, PAIR) is None
    # max writes again: the pair ref comes back, going on from the packed entry.
    again = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), parent=tips[-1], body="back")
    accepted(*push(net, "max", f"{again}:{PAIR}"))
    assert remote(net, PAIR) == again
    # ... and grows as any mailbox does; alex packs it again (the entry moves forward) and deletes it.
    more = forge.signed(net.clones["max"], "alex", "max", forge.key_of("max"), parent=again, body="more")
    accepted(*push(net, "max", f"{more}:{PAIR}"))
    net.ok("alex", "sync")
    p2 = pack(net, {"max": tips[-1]}, {"max": more}, p1)
    accepted(*push(net, "alex", f"{p2}:{PACKED}", f":{PAIR}"))
    assert remote(net, PACKED) == p2 and remote(net, PAIR) is None


def test_pack_and_delete_in_one_push(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 1)
    oid = pack(net, {}, {"max": tips[-1]}, None)
    accepted(*push(net, "alex", f"{oid}:{PACKED}", f":{PAIR}"))
    assert remote(net, PACKED) == oid and remote(net, PAIR) is None


def test_first_pack_starts_from_an_empty_root(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 1)
    pg = open_repo(net.clones["alex"]).pg
    # A root that names the entry as its (first) parent: the first-parent line would run into
    # the mailbox's messages, which are not packed commits of alex.
    rootless = raw_packed(net, {"mailboxes": packed.render({"max": tips[-1]})}, [tips[-1]])
    refused(*push(net, "alex", f"{rootless}:{PACKED}", f":{PAIR}"), "is not signed by the owner's key")
    # A root that already records entries (no parents): its extra parents are not the entries.
    bare_root = raw_packed(net, {"mailboxes": packed.render({"max": tips[-1]})}, [])
    refused(*push(net, "alex", f"{bare_root}:{PACKED}"), "extra parents are not exactly")
    # What the client writes: an empty root with no parents, then the map on it.
    oid = pack(net, {}, {"max": tips[-1]}, None)
    root = parent_ids(pg, oid)[0]
    assert parent_ids(pg, oid) == [root, tips[-1]] and parent_ids(pg, root) == []
    assert packed.read_map(pg, root) == {}
    accepted(*push(net, "alex", f"{oid}:{PACKED}", f":{PAIR}"))
    assert remote(net, PACKED) == oid and remote(net, PAIR) is None


# -- re-creating a packed pair ---------------------------------------------------------------------


def test_recreate_off_the_entry_refused(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 2)
    p1 = pack(net, {}, {"max": tips[-1]}, None)
    accepted(*push(net, "alex", f"{p1}:{PACKED}", f":{PAIR}"))
    clone, key = net.clones["max"], forge.key_of("max")
    # A new root chain, as if the pair had never been written: it would hide the packed messages.
    root = forge.signed(clone, "alex", "max", key, parent=None, body="fresh start")
    refused(*push(net, "max", f"{root}:{PAIR}"), "non-fast-forward", f"packed at {tips[-1][:10]}")
    on_root = forge.signed(clone, "alex", "max", key, parent=root, body="fresh start 2")
    refused(*push(net, "max", f"{on_root}:{PAIR}"), "non-fast-forward")
    # A sibling of the packed tip (off its parent): refused too.
    sibling = forge.signed(clone, "alex", "max", key, parent=tips[0], body="sideways")
    refused(*push(net, "max", f"{sibling}:{PAIR}"), "non-fast-forward")
    assert remote(net, PAIR) is None
    # A commit on the entry that is not a good message is still checked.
    bad = forge.signed(clone, "alex", "max", forge.key_of("alex"), parent=tips[-1], claim="max")
    refused(*push(net, "max", f"{bad}:{PAIR}"), "wrong-signer")
    assert remote(net, PAIR) is None


# -- deleting a pair ------------------------------------------------------------------------------


def test_delete_without_an_entry_refused(packable: NetOrg) -> None:
    net = packable
    mail(net, 1)
    refused(*push(net, "alex", f":{PAIR}"), "has no entry for 'max'")
    # A packed ref that records another pair does not cover this one.
    alex_to_alex = forge.signed(net.clones["alex"], "alex", "alex", forge.key_of("alex"), parent=None, body="self")
    accepted(*push(net, "alex", f"{alex_to_alex}:refs/heads/gitmail/mail/alex/alex"))
    oid = pack(net, {}, {"alex": alex_to_alex}, None)
    accepted(*push(net, "alex", f"{oid}:{PACKED}"))
    refused(*push(net, "alex", f":{PAIR}"), "has no entry for 'max'")
    assert remote(net, PAIR) is not None


def test_delete_with_a_stale_entry_refused(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 2)
    # The entry is below the tip (new mail came after alex packed): the last message would be lost.
    oid = pack(net, {}, {"max": tips[0]}, None)
    accepted(*push(net, "alex", f"{oid}:{PACKED}"))
    refused(*push(net, "alex", f":{PAIR}"), "is not the mailbox's tip")
    assert remote(net, PAIR) == tips[-1]
    # Moving the entry in the same push as the deletion makes it good.
    p2 = pack(net, {"max": tips[0]}, {"max": tips[-1]}, oid)
    accepted(*push(net, "alex", f"{p2}:{PACKED}", f":{PAIR}"))
    assert remote(net, PAIR) is None


def test_delete_broadcast_or_group_mailbox_refused(packable: NetOrg) -> None:
    net = packable
    net.ok("max", "group", "create", "ops", "alex", "max")
    net.ok("max", "send", "*", "to everyone")
    net.ok("max", "send", "team:ops", "to the team")
    for ref in ("refs/heads/gitmail/mail/%2A/max", "refs/heads/gitmail/mail/team%3Aops/max"):
        assert remote(net, ref) is not None, ref
        refused(*push(net, "max", f":{ref}"), "deleting a broadcast or group mailbox is not allowed")
        assert remote(net, ref) is not None, ref


# -- hostile packed commits ------------------------------------------------------------------------


def test_packed_ref_of_someone_else_refused(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 1)
    # max packs alex's inbox with max's key (to then delete alex's mail).
    forged = pack(net, {}, {"max": tips[-1]}, None, who="max")
    refused(*push(net, "max", f"{forged}:{PACKED}", f":{PAIR}"), "not signed by the owner's key")
    # alex's name and author, max's signature.
    forged = pack(net, {}, {"max": tips[-1]}, None, signer=forge.key_of("max"))
    refused(*push(net, "alex", f"{forged}:{PACKED}"), "not signed by the owner's key")
    # alex writes max's packed ref with alex's key.
    own = pack(net, {}, {"max": tips[-1]}, None)
    refused(*push(net, "alex", f"{own}:refs/heads/gitmail/packed/max"), "not signed by the owner's key")
    # Names that are not a member's canonical packed ref.
    for bad in ("refs/heads/gitmail/packed/ALEX", "refs/heads/gitmail/packed/nobody",
                "refs/heads/gitmail/packed/alex/x", "refs/heads/gitmail/packed/%2A"):
        refused(*push(net, "alex", f"{own}:{bad}"), "not a valid packed ref name")
    assert remote(net, PACKED) is None and remote(net, PAIR) == tips[-1]


def test_bad_packed_commits_refused(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 2)
    alex_self = forge.signed(net.clones["alex"], "alex", "alex", forge.key_of("alex"), parent=None, body="self")
    accepted(*push(net, "alex", f"{alex_self}:refs/heads/gitmail/mail/alex/alex"))
    p1 = pack(net, {}, {"max": tips[-1]}, None)
    accepted(*push(net, "alex", f"{p1}:{PACKED}"))

    # Drops an entry.
    dropped = pack(net, {"max": tips[-1]}, {}, p1)
    refused(*push(net, "alex", f"{dropped}:{PACKED}"), "drops the entry of 'max'")
    # Moves an entry backwards (its first parent).
    back = pack(net, {"max": tips[-1]}, {"max": tips[0]}, p1)
    refused(*push(net, "alex", f"{back}:{PACKED}"), "moves the entry of 'max' backwards")
    # Extra parents that are not the changed entries: a stray one, a missing one, an unchanged one.
    two = {"alex": alex_self, "max": tips[-1]}
    stray = raw_packed(net, {"mailboxes": packed.render(two)}, [p1, alex_self, tips[0]])
    refused(*push(net, "alex", f"{stray}:{PACKED}"), "extra parents are not exactly")
    missing = raw_packed(net, {"mailboxes": packed.render(two)}, [p1])
    refused(*push(net, "alex", f"{missing}:{PACKED}"), "extra parents are not exactly")
    unchanged = raw_packed(net, {"mailboxes": packed.render({"max": tips[-1]})}, [p1, tips[-1]])
    refused(*push(net, "alex", f"{unchanged}:{PACKED}"), "extra parents are not exactly")
    # Malformed mailboxes files, and trees that are not one mailboxes file.
    bad_maps = {
        b"max " + tips[-1].encode() + b"\nalex " + alex_self.encode() + b"\n": "out of order",
        b"max " + tips[-1].encode(): "does not end with a newline",
        b"max " + tips[-1].encode() + b"\nmax " + tips[-1].encode() + b"\n": "repeats a sender",
        b"max\t" + tips[-1].encode() + b"\n": "is not '<sender> <commit id>'",
        b"%2A " + tips[-1].encode() + b"\n": "canonical form",
        b"MAX " + tips[-1].encode() + b"\n": "canonical form",
    }
    for data, why in bad_maps.items():
        oid = raw_packed(net, {"mailboxes": data}, [p1])
        refused(*push(net, "alex", f"{oid}:{PACKED}"), why)
    two_files = raw_packed(net, {"mailboxes": packed.render({"max": tips[-1]}), "x": b"y"}, [p1])
    refused(*push(net, "alex", f"{two_files}:{PACKED}"), "exactly one file")
    # A tree far larger than one entry (here 48 MB of entries, packed small): refused unread,
    # from its header; and one naming the map twice (not git's form: git show finds the first).
    pg = open_repo(net.clones["alex"]).pg
    blob = pg.create_blob(packed.render({"max": tips[-1]}))
    entries = b"".join(b"100644 " + b"f" * 40 + b"%08d" % i + b"\0" + blob.raw for i in range(800_000))
    c = pg[two_files]
    for tree, why in ((pg.odb.write(pygit2.enums.ObjectType.TREE, entries), "exactly one file"),
                      (pg.odb.write(pygit2.enums.ObjectType.TREE, (b"100644 mailboxes\0" + blob.raw) * 2),
                       "'mailboxes' twice")):
        forged = signed_commit(pg, c.author, c.committer, packed.COMMIT_MESSAGE, tree, [p1], forge.key_of("alex").sign)
        refused(*push(net, "alex", f"{forged}:{PACKED}"), why)
        with pytest.raises(packed.PackedError, match=why):
            packed.read_map(pg, forged)
    # Deleting the packed ref.
    refused(*push(net, "alex", f":{PACKED}"), "deleting a member's packed mailboxes is not allowed")
    # Non-fast-forwards, forced: a new empty root (forgetting every entry), the line's own root
    # (rewound), and a sibling of p1 with the same map.
    rewritten = raw_packed(net, {"mailboxes": b""}, [])
    refused(*push(net, "alex", f"+{rewritten}:{PACKED}"), "not a fast-forward")
    root = parent_ids(open_repo(net.clones["alex"]).pg, p1)[0]
    refused(*push(net, "alex", f"+{root}:{PACKED}"), "not a fast-forward")
    sibling = raw_packed(net, {"mailboxes": packed.render({"max": tips[-1]})}, [rewritten, tips[-1]])
    refused(*push(net, "alex", f"+{sibling}:{PACKED}"), "not a fast-forward")
    assert remote(net, PACKED) == p1
    # ... and a good advance still passes.
    p2 = pack(net, {"max": tips[-1]}, two, p1)
    accepted(*push(net, "alex", f"{p2}:{PACKED}"))
    assert remote(net, PACKED) == p2


def test_entry_off_the_pair_line_refused(packable: NetOrg) -> None:
    net = packable
    tips = mail(net, 2)
    clone, key = net.clones["alex"], forge.key_of("max")
    # A sibling of the tip, signed by max but never pushed to the pair: not on its line.
    sibling = forge.signed(clone, "alex", "max", key, parent=tips[0], body="sideways")
    oid = pack(net, {}, {"max": sibling}, None)
    refused(*push(net, "alex", f"{oid}:{PACKED}"), "the entry of 'max'", "is not on the line of " + PAIR)
    # With the deletion in the same push (no pair ref after it) the deletion is what is refused:
    # the entry is not the tip the ref has.
    refused(*push(net, "alex", f"{oid}:{PACKED}", f":{PAIR}"), "is not the mailbox's tip")
    # An entry above the tip (a message not on the server) is refused too ...
    ahead = forge.signed(clone, "alex", "max", key, parent=tips[-1], body="ahead")
    oid = pack(net, {}, {"max": ahead}, None)
    refused(*push(net, "alex", f"{oid}:{PACKED}"), "is not on the line of " + PAIR)
    # ... unless the same push moves the pair ref to it.
    accepted(*push(net, "alex", f"{oid}:{PACKED}", f"{ahead}:{PAIR}"))
    assert remote(net, PACKED) == oid and remote(net, PAIR) == ahead
    # A pair ref that moves off the entry in a later push: an ordinary non-fast-forward.
    below = forge.signed(clone, "alex", "max", key, parent=tips[-1], body="other")
    refused(*push(net, "alex", f"+{below}:{PAIR}"), "non-fast-forward")


def test_an_entry_for_a_pair_with_no_ref_is_refused(packable: NetOrg) -> None:
    """Once the pair is packed away (no ref), alex moves its entry onto a commit the guard never
    checked as a message (claimed as max's, signed by alex): refused, whatever it descends
    from; only a mailbox ref's tip can be recorded."""
    net = packable
    tips = mail(net, 1)
    first = pack(net, {}, {"max": tips[-1]}, None)
    accepted(*push(net, "alex", f"{first}:{PACKED}", f":{PAIR}"))
    assert remote(net, PAIR) is None
    unchecked = forge.signed(net.clones["alex"], "alex", "max", forge.key_of("alex"), parent=tips[-1], body="never checked")
    oid = pack(net, {"max": tips[-1]}, {"max": unchecked}, first)
    refused(*push(net, "alex", f"{oid}:{PACKED}"), "names a mailbox with no ref on the org repo")
    assert remote(net, PACKED) == first
    # A new sender's entry with no ref at all: the same.
    made_up = forge.signed(net.clones["alex"], "alex", "alex", forge.key_of("alex"), parent=None, body="self")
    oid = pack(net, {"max": tips[-1]}, {"max": tips[-1], "alex": made_up}, first)
    refused(*push(net, "alex", f"{oid}:{PACKED}"), "names a mailbox with no ref on the org repo")
