"""Read state on every machine of a member (issue #14 item 3; docs/protocol.md §10, "Shared state").

Two clones of alex talk to a real ``git daemon`` with the guard; the shared ref is
``refs/heads/gitmail/state/alex``, encrypted to alex's key and signed by it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from tests.conftest import Result, git, run
from tests.sync.conftest import NetOrg, guard_runtime, net, unguarded  # noqa: F401 - fixtures

if TYPE_CHECKING:
    import pytest

    from gitmail.core.model import Member
    from gitmail.core.signing import Signer

REF = "refs/heads/gitmail/state/alex"


def second(o: NetOrg, name: str) -> Path:
    """Another clone of ``name`` (the same key: the member's second machine)."""
    clone = o.root / f"{name}-2"
    r = run("init", "--name", name, "--org", o.url, "--repo", str(clone))
    assert r.code == 0, r.err
    return clone


def at(clone: Path, *args: str) -> Result:
    r = run(*args, "--repo", str(clone))
    assert r.code == 0, f"{args}: exit {r.code}: {r.err}"
    return r


def flags(clone: Path) -> dict[str, tuple[bool, bool]]:
    """Subject -> (read, archived) of every inbox message."""
    rows = json.loads(at(clone, "list", "--all", "--json").out)["messages"]
    return {r["subject"]: (r["read"], r["archived"]) for r in rows}


def ids(clone: Path) -> dict[str, str]:
    rows = json.loads(at(clone, "list", "--all", "--json").out)["messages"]
    return {r["subject"]: r["id"] for r in rows}


def three(o: NetOrg) -> tuple[Path, Path, dict[str, str]]:
    for n in ("one", "two", "three"):
        o.ok("max", "send", "alex", f"body {n}", "--subject", n)
    a1, a2 = o.clones["alex"], second(o, "alex")
    at(a1, "sync")
    at(a2, "sync")
    return a1, a2, ids(a1)


def test_two_machines_end_with_the_union(net: NetOrg) -> None:
    a1, a2, m = three(net)
    at(a1, "mark", m["one"], "--read")
    at(a1, "archive", m["two"])
    at(a2, "mark", m["three"], "--read")
    r = json.loads(at(a1, "state", "push", "--json").out)
    assert r["pushed"] and r["recorded"] == 2 and r["events"] == 2
    r = json.loads(at(a2, "state", "push", "--json").out)
    assert r["pushed"] and r["events"] == 3 and r["changed"] == 2
    r = json.loads(at(a1, "state", "pull", "--json").out)
    assert not r["pushed"] and r["changed"] == 1 and r["events"] == 3
    want = {"one": (True, False), "two": (False, True), "three": (True, False)}
    assert flags(a1) == want and flags(a2) == want
    tip = git("rev-parse", REF, cwd=net.bare).stdout.strip()
    assert r["remote"] == tip
    # Nothing changed: no new commit.
    assert not json.loads(at(a1, "state", "push", "--json").out)["pushed"]
    assert git("rev-parse", REF, cwd=net.bare).stdout.strip() == tip
    # A flag on a message a2 does not have yet waits in the log and applies once it arrives.
    net.ok("max", "send", "alex", "body four", "--subject", "four")
    at(a1, "sync")
    at(a1, "read", ids(a1)["four"])
    at(a1, "state", "push")
    assert json.loads(at(a2, "state", "pull", "--json").out)["pending"] == 1
    at(a2, "sync")
    assert flags(a2)["four"] == (False, False)
    r = json.loads(at(a2, "state", "pull", "--json").out)
    assert (r["pending"], r["changed"], flags(a2)["four"]) == (0, 1, (True, False))


def test_unread_later_on_the_other_machine_wins(net: NetOrg) -> None:
    """The documented rule: per message and flag the event with the greater clock wins; a change
    made after seeing the other machine's has a greater clock."""
    a1, a2, m = three(net)
    at(a1, "mark", m["one"], "--read")
    at(a1, "state", "push")
    at(a2, "state", "pull")
    assert flags(a2)["one"] == (True, False)
    at(a2, "mark", m["one"], "--unread")
    at(a2, "state", "push")
    at(a1, "state", "pull")
    assert flags(a1)["one"] == (False, False) and flags(a2)["one"] == (False, False)


def test_a_round_trip_between_rounds_is_not_lost(net: NetOrg) -> None:
    """a2 reads 'two' and marks it unread again before it ever saw a1's read: its unread is later."""
    a1, a2, m = three(net)
    at(a2, "state", "pull")  # a2 shares its state from now on (journals every change)
    at(a1, "mark", m["two"], "--read")
    at(a1, "state", "push")
    at(a2, "mark", m["two"], "--read")
    at(a2, "mark", m["two"], "--unread")
    at(a2, "state", "push")
    at(a1, "state", "pull")
    assert flags(a1)["two"] == (False, False) and flags(a2)["two"] == (False, False)


def test_sync_state_true_syncs_on_every_sync(net: NetOrg) -> None:
    a1, a2, m = three(net)
    for c in (a1, a2):
        git("config", "gitmail.syncState", "true", cwd=c)
    at(a1, "archive", m["three"])
    out = json.loads(at(a1, "sync", "--json").out)
    assert out["state"]["pushed"] and out["problems"] == []
    out = json.loads(at(a2, "sync", "--json").out)
    assert out["state"]["changed"] == 1
    assert flags(a2)["three"] == (False, True)
    # Off (the default): sync leaves the shared state alone.
    git("config", "gitmail.syncState", "false", cwd=a1)
    assert json.loads(at(a1, "sync", "--json").out)["state"] is None


# -- nobody else can read it or write it ----------------------------------------------------------


def _signer(clone: Path, name: str) -> "Signer":
    from gitmail.core.repo import open_repo
    from gitmail.core.signing import load_key

    return load_key(open_repo(clone).key_path(name))


def _member(clone: Path, name: str) -> "Member":
    from gitmail.core import directory
    from gitmail.core.repo import open_repo

    return directory.load(open_repo(clone)).members[name]


def _forge(clone: Path, cipher: bytes, author: str, signer: "Optional[Signer]", parent: Optional[str]) -> str:
    """A state commit in ``clone`` holding ``cipher``, signed by ``signer`` (None: unsigned)."""
    import pygit2

    from gitmail.core import statesync
    from gitmail.core.repo import open_repo

    pg = open_repo(clone).pg
    if signer is not None:
        return statesync.write_commit(pg, cipher, _member(clone, author), signer, parent)
    tb = pg.TreeBuilder()
    tb.insert(statesync.STATE_FILE, pg.create_blob(cipher), pygit2.enums.FileMode.BLOB)
    who = pygit2.Signature(author, "x@example.org", 1_700_000_000, 0)
    return str(pg.create_commit(None, who, who, "gitmail state\n", tb.write(), [pygit2.Oid(hex=parent)] if parent else []))


def _push(clone: Path, oid: str, ref: str = REF) -> subprocess.CompletedProcess[str]:
    return git("push", "origin", f"{oid}:{ref}", cwd=clone, check=False)


def test_another_member_can_neither_read_nor_write_it(net: NetOrg) -> None:
    from gitmail.core import crypto, statesync
    from gitmail.core.repo import open_repo
    from gitmail.errors import NotARecipientError

    a1, _a2, m = three(net)
    at(a1, "mark", m["one"], "--read")
    at(a1, "state", "push")
    mx = net.clones["max"]
    r = at(mx, "sync", "--json")
    assert json.loads(r.out)["problems"] == []
    # max's own sync does not even fetch alex's state ref (§3 "What a member fetches") ...
    assert "state/alex" not in git("for-each-ref", "refs/remotes/", cwd=mx).stdout
    r = at(mx, "sync", "--all", "--json")
    assert json.loads(r.out)["problems"] == []
    # ... an auditor's full copy (sync --all) brings it along: ciphertext only ...
    cipher = git_bytes(mx, f"origin/gitmail/state/alex:{statesync.STATE_FILE}")
    assert cipher.startswith(b"age-encryption.org/v1\n") and m["one"].encode() not in cipher
    # ... which max's key cannot open, and which max's client never touches.
    import pytest

    with pytest.raises(NotARecipientError):
        from gitmail.core import private

        crypto.open_(cipher, private.identities(open_repo(mx), "max"), ["alex"])
    assert json.loads(at(mx, "state", "status", "--json").out)["events"] == 0
    assert git("for-each-ref", "refs/gitmail/", cwd=mx).stdout.count("state-log/alex") == 0

    tip = git("rev-parse", REF, cwd=net.bare).stdout.strip()
    sealed = statesync.encode({}, "alex", _member(mx, "alex").encryption_key or "")
    # max signs a state for alex (sealed to alex): refused, not the owner's key.
    forged = _forge(mx, sealed, "max", _signer(mx, "max"), tip)
    p = _push(mx, forged)
    assert p.returncode != 0 and "not signed by the owner's key" in p.stderr, p.stderr
    # unsigned: refused.
    p = _push(mx, _forge(mx, sealed, "alex", None, tip))
    assert p.returncode != 0 and "unsigned" in p.stderr, p.stderr
    # deleting alex's state: refused.
    p = git("push", "origin", f":{REF}", cwd=mx, check=False)
    assert p.returncode != 0 and "deleting a member's state is not allowed" in p.stderr, p.stderr
    # alex's own key, but sealed to max (a client bug would leak it): refused.
    leaky = statesync.encode({}, "alex", _member(a1, "max").encryption_key or "")
    p = _push(a1, _forge(a1, leaky, "alex", _signer(a1, "alex"), tip))
    assert p.returncode != 0 and "not the owner's encryption key" in p.stderr, p.stderr
    # a rewrite (a root commit replacing the line): refused.
    p = git("push", "--force", "origin", f"{_forge(a1, sealed, 'alex', _signer(a1, 'alex'), None)}:{REF}",
            cwd=a1, check=False)
    assert p.returncode != 0 and "non-fast-forward" in p.stderr, p.stderr
    # a state ref for nobody: refused.
    p = _push(a1, _forge(a1, sealed, "alex", _signer(a1, "alex"), None), "refs/heads/gitmail/state/nobody")
    assert p.returncode != 0 and "not the state ref of a member" in p.stderr, p.stderr
    assert git("rev-parse", REF, cwd=net.bare).stdout.strip() == tip


def git_bytes(clone: Path, rev: str) -> bytes:
    return subprocess.run(["git", "cat-file", "blob", rev], cwd=clone, capture_output=True, check=True).stdout


# -- hostile content on the ref (a host without the guard) -------------------------------------------


def _sealed_to_alex(clone: Path, plain: bytes) -> bytes:
    from gitmail.core import crypto

    return crypto.seal(plain, [_member(clone, "alex").encryption_key or ""])


def test_hostile_state_is_one_line_and_leaves_local_flags_alone(unguarded: NetOrg,
                                                                monkeypatch: "pytest.MonkeyPatch") -> None:
    import pygit2

    from gitmail.core import statesync
    from gitmail.core.repo import open_repo

    o = unguarded
    a1, _a2, m = three(o)
    at(a1, "mark", m["one"], "--read")
    at(a1, "state", "push")
    mx = o.clones["max"]
    alex = _signer(a1, "alex")
    valid = statesync.plain({}, "alex")
    two_files = _forge(a1, _sealed_to_alex(a1, valid), "alex", alex, None)
    pg = open_repo(a1).pg
    c = pg[two_files]
    tb = pg.TreeBuilder(c.tree)
    tb.insert("extra", pg.create_blob(b"x"), pygit2.enums.FileMode.BLOB)
    from gitmail.core.objects import signed_commit

    two_files = signed_commit(pg, c.author, c.committer, "gitmail state\n", tb.write(), [], alex.sign)
    entry = next(iter(c.tree))  # state.age, named twice: not git's form (git show finds the first)
    twice = pg.odb.write(pygit2.enums.ObjectType.TREE, (b"100644 " + (entry.raw_name or b"") + b"\0" + entry.id.raw) * 2)
    named_twice = signed_commit(pg, c.author, c.committer, "gitmail state\n", twice, [], alex.sign)
    cases = {
        "unsigned": (_forge(mx, b"garbage", "alex", None, None), mx),
        "not signed by the owner's key": (_forge(mx, _sealed_to_alex(mx, valid), "max", _signer(mx, "max"), None), mx),
        "exactly one file": (two_files, a1),
        "'state.age' twice": (named_twice, a1),
        "cannot be decrypted": (_forge(a1, b"garbage, not age", "alex", alex, None), a1),
        "not JSON": (_forge(a1, _sealed_to_alex(a1, b"\xff\xfe garbage"), "alex", alex, None), a1),
        "nested deeper": (_forge(a1, _sealed_to_alex(a1, b"[" * 200_000 + b"]" * 200_000), "alex", alex, None), a1),
        "not alex's state": (_forge(a1, _sealed_to_alex(a1, statesync.plain({}, "max")), "alex", alex, None), a1),
        "event 0 is malformed": (_forge(a1, _sealed_to_alex(
            a1, b'{"events":[{"clock":-1,"flag":"read","id":"00","machine":"x","value":true}],'
                b'"member":"alex","schema_version":1}'), "alex", alex, None), a1),
        "over 4096 bytes": (_forge(a1, _sealed_to_alex(a1, valid + b" " * 8000), "alex", alex, None), a1),
    }
    before = git("rev-parse", "refs/gitmail/state/alex", cwd=a1).stdout
    healed = {cases[w][0] for w in ("unsigned", "not signed by the owner's key", "exactly one file", "'state.age' twice",
                                    "over 4096 bytes")}
    for why, (oid, where) in cases.items():
        if why.startswith("over"):  # a huge state: the bound made small, not 64 MiB written
            monkeypatch.setattr(statesync, "MAX_BYTES", 4096)
        p = git("push", "--force", "origin", f"{oid}:{REF}", cwd=where, check=False)
        assert p.returncode == 0, p.stderr
        r = run("state", "pull", "--repo", str(a1))
        assert r.code == 7, (why, r)
        assert r.err.count("\n") == 1 and r.err.startswith("gitmail: ") and why in r.err, (why, r.err)
        assert "Traceback" not in r.err
        r = run("state", "push", "--json", "--repo", str(a1))
        if oid in healed:
            # No state commit of alex's at all: the push writes alex's log on top of it (it read
            # nothing from it), saying so; every later round works again without an admin.
            assert r.code == 0 and why in json.loads(r.out)["replaced"], (why, r)
            assert run("state", "pull", "--repo", str(a1)).code == 0
        else:  # alex's own commit, unreadable here: refused as before, nothing replaced
            assert r.code == 7 and why in r.err and "Traceback" not in r.err, (why, r)
            assert git("rev-parse", "refs/gitmail/state/alex", cwd=a1).stdout == before
        assert flags(a1)["one"] == (True, False)
    # syncState: with junk it cannot replace (alex's own, unreadable here) a sync still goes
    # through and says why the state did not.
    monkeypatch.setattr(statesync, "MAX_BYTES", 64 * 1024 * 1024)
    assert git("push", "--force", "origin", f"{cases['cannot be decrypted'][0]}:{REF}", cwd=a1,
               check=False).returncode == 0
    git("config", "gitmail.syncState", "true", cwd=a1)
    out = json.loads(at(a1, "sync", "--json").out)
    assert out["state"] is None and any("shared read state not synced" in p for p in out["problems"])
    # An admin deletes the junk: the next push writes the state again from the clone's merged log.
    monkeypatch.setattr(statesync, "MAX_BYTES", 64 * 1024 * 1024)
    git("update-ref", "-d", REF, cwd=o.bare)
    assert json.loads(at(a1, "state", "push", "--json").out)["events"] == 1
    at(_a2, "state", "pull")
    assert flags(_a2)["one"] == (True, False)


def test_junk_on_top_of_the_state_hides_no_other_machine_s_events(unguarded: NetOrg) -> None:
    """Where no guard runs, another member pushes a junk commit on top of alex's genuine state
    tip. a1's next push replaces it, and keeps what the commits under it hold: a2's change (which
    a1 never saw) is not dropped until a2 pushes again; a new machine finds both. Junk on junk,
    and a junk merge whose second parent is the genuine tip, likewise."""
    o = unguarded
    a1, a2, m = three(o)
    at(a1, "mark", m["one"], "--read")
    at(a1, "state", "push")
    at(a2, "mark", m["three"], "--read")
    at(a2, "state", "push")  # the org's tip now holds both; a1's own log only "one"
    mx = o.clones["max"]
    git("fetch", "-q", "origin", f"{REF}:refs/x/alex-state", cwd=mx)
    genuine = git("rev-parse", "refs/x/alex-state", cwd=mx).stdout.strip()
    junk = _forge(mx, b"garbage", "alex", None, genuine)
    junk = _forge(mx, b"more garbage", "alex", None, junk)
    assert git("push", "--force", "origin", f"{junk}:{REF}", cwd=mx, check=False).returncode == 0
    r = json.loads(at(a1, "state", "push", "--json").out)
    assert r["pushed"] and "unsigned" in r["replaced"] and r["events"] == 2, r
    a3 = o.root / "alex-3"
    assert run("init", "--name", "alex", "--org", o.url, "--repo", str(a3)).code == 0
    at(a3, "sync")
    at(a3, "state", "pull")
    assert flags(a3) == {"one": (True, False), "two": (False, False), "three": (True, False)}
    # A junk merge: the genuine tip as its second parent, junk as its first.
    import pygit2

    from gitmail.core.repo import open_repo

    git("fetch", "-q", "origin", f"+{REF}:refs/x/alex-state", cwd=mx)
    genuine = git("rev-parse", "refs/x/alex-state", cwd=mx).stdout.strip()
    at(a2, "mark", m["two"], "--read")
    at(a2, "state", "push")  # a2's change: on the org only
    git("fetch", "-q", "origin", f"+{REF}:refs/x/alex-state", cwd=mx)
    newest = git("rev-parse", "refs/x/alex-state", cwd=mx).stdout.strip()
    pg = open_repo(mx).pg
    c = pg.get(_forge(mx, b"junk", "alex", None, None))
    assert isinstance(c, pygit2.Commit)
    merge = pg.create_commit(None, c.author, c.committer, "junk\n", c.tree_id,
                             [pygit2.Oid(hex=_forge(mx, b"junk 2", "alex", None, genuine)), pygit2.Oid(hex=newest)])
    assert git("push", "--force", "origin", f"{merge}:{REF}", cwd=mx, check=False).returncode == 0
    r = json.loads(at(a1, "state", "push", "--json").out)
    assert r["pushed"] and r["replaced"] and r["events"] == 3, r
    at(a3, "state", "pull")
    assert flags(a3)["two"] == (True, False)
    # A junk commit libgit2 refuses (no ">" in its author line) and git stores: its parent as git reads it.
    from tests.conftest import write_literal

    at(a2, "archive", m["one"])
    at(a2, "state", "push")
    git("fetch", "-q", "origin", f"+{REF}:refs/x/alex-state", cwd=mx)
    newest = git("rev-parse", "refs/x/alex-state", cwd=mx).stdout.strip()
    tree = git("rev-parse", f"{newest}^{{tree}}", cwd=mx).stdout.strip()
    raw = f"tree {tree}\nparent {newest}\nauthor a <a@x 1 +0000\ncommitter a <a@x> 1 +0000\n\njunk\n"
    broken = write_literal(mx, "commit", raw.encode())
    assert git("push", "--force", "origin", f"{broken}:{REF}", cwd=mx, check=False).returncode == 0
    r = json.loads(at(a1, "state", "push", "--json").out)
    assert r["pushed"] and "cannot be parsed" in r["replaced"] and r["events"] == 4, r
    at(a3, "state", "pull")
    assert flags(a3)["one"] == (True, True)


def test_the_walk_under_junk_is_bounded_whatever_the_junk(tmp_path: Path, monkeypatch: "pytest.MonkeyPatch") -> None:
    """A hostile sweep: 254 junk commits each naming 100,000 parents under a junk tip made the walk
    queue 25 million ids (2.6 GB, 30 s from a 9 MB pack). Now at most WALK_MAX commits are ever
    queued and a commit over WALK_COMMIT_MAX bytes is not read: junk naming 1,000 parents each
    (48 KB, read) and 2,000 (96 KB, not read) costs a few hundred small reads."""
    import pygit2

    from gitmail.core import objects

    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    sig = pygit2.Signature("x", "x@x", 1, 0)
    tree = pg.TreeBuilder().write()
    xs = [pg.create_commit(None, sig, sig, f"x{i}\n", tree, []) for i in range(2000)]
    small = [pg.create_commit(None, sig, sig, f"s{i}\n", tree, xs[:1000]) for i in range(150)]
    large = [pg.create_commit(None, sig, sig, f"l{i}\n", tree, xs) for i in range(150)]
    top = str(pg.create_commit(None, sig, sig, "junk\n", tree, small + large))
    calls = {"problem": 0, "parents": 0}
    problem, parents = statesync.commit_problem, objects.parent_ids

    def counted_problem(*a: object, **k: object) -> object:
        calls["problem"] += 1
        return problem(*a, **k)  # type: ignore[arg-type]

    def counted_parents(*a: object, **k: object) -> object:
        calls["parents"] += 1
        return parents(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(statesync, "commit_problem", counted_problem)
    monkeypatch.setattr(objects, "parent_ids", counted_parents)

    class Owner:
        name = "alex"

        def all_keys(self) -> list[str]:
            return []

    assert statesync._under(pg, top, Owner(), []) == {}  # type: ignore[arg-type]
    # The tip's first 255 parents are queued (WALK_MAX with the tip): the 150 small ones are read,
    # the 105 large ones not; the queue is full, so none of the small ones' 1,000 parents is added.
    assert calls == {"problem": 150, "parents": 151}, calls


# -- the merge and the parser, as properties -------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from gitmail.core import statesync  # noqa: E402
from gitmail.core.model import MailboxState, State  # noqa: E402

_ids = st.sampled_from([c * 64 for c in "0123abcd"])
_machines = st.sampled_from(["0" * 16, "1" * 16, "f" * 16])
_events = st.builds(statesync.Event, _ids, st.sampled_from(statesync.FLAGS), st.booleans(),
                    st.integers(1, 6), _machines)
_logs = st.lists(_events, max_size=12).map(lambda es: statesync.merge(*({e.key: e} for e in es)))
FAST = settings(max_examples=150, deadline=None)


@FAST
@given(_logs, _logs, _logs)
def test_merge_is_commutative_associative_idempotent(a: statesync.Log, b: statesync.Log, c: statesync.Log) -> None:
    m = statesync.merge
    assert m(a, b) == m(b, a)
    assert m(m(a, b), c) == m(a, m(b, c))
    assert m(a, a) == a and m(a, {}) == a
    # Nothing is lost: every event of either side is in the union or beaten there by a later one.
    for k, e in [*a.items(), *b.items()]:
        assert statesync.order(m(a, b)[k]) >= statesync.order(e)


def test_the_later_event_wins_then_the_greater_machine() -> None:
    mid = "a" * 64
    read = statesync.Event(mid, "read", True, 5, "0" * 16)
    unread_later = statesync.Event(mid, "read", False, 6, "0" * 16)
    unread_same_clock = statesync.Event(mid, "read", False, 5, "f" * 16)
    assert statesync.merge({read.key: read}, {read.key: unread_later})[read.key] == unread_later
    assert statesync.merge({read.key: unread_same_clock}, {read.key: read})[read.key] == unread_same_clock
    assert statesync.next_clock({read.key: read}, now_ms=1) == 6
    assert statesync.next_clock({read.key: read}, now_ms=10**12) == 10**12


@FAST
@given(_logs)
def test_the_log_survives_its_encoding(log: statesync.Log) -> None:
    data = statesync.plain(log, "alex")
    assert statesync.parse(data, "alex") == log
    assert statesync.parse(data + b" " * 100, "alex") == log  # the padding


@FAST
@given(st.binary(max_size=300) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20).map(lambda v: json.dumps(v).encode()))
def test_the_parser_refuses_anything_else_with_one_error(data: bytes) -> None:
    try:
        log = statesync.parse(data, "alex")
    except statesync.StateError as e:
        assert "\n" not in e.message
    else:  # what it accepts is a log: it encodes and parses back to itself
        assert statesync.parse(statesync.plain(log, "alex"), "alex") == log


@FAST
@given(st.lists(st.tuples(st.sampled_from(["gitmail/mail/alex/max", "gitmail/mail/%2A/max"]), st.integers(1, 6)),
                max_size=8, unique=True),
       st.sets(st.integers(0, 20), max_size=8), st.sets(st.integers(0, 20), max_size=8))
def test_record_then_apply_gives_back_the_local_flags(positions: list[tuple[str, int]], read_at: set[int],
                                                      base_at: set[int]) -> None:
    """Applying the events recorded from a local state to its base yields the local state (per message)."""
    ids = {p: _ID[i % len(_ID)] for i, p in enumerate(positions)}
    copies: dict[str, list[tuple[str, int]]] = {}
    for p, mid in ids.items():
        copies.setdefault(mid, []).append(p)
    # Flags set per message (all its copies alike), as gitmail sets them.
    local_ids = {mid for k, mid in enumerate(sorted(set(ids.values()))) if k in read_at}
    base_ids = {mid for k, mid in enumerate(sorted(set(ids.values()))) if k in base_at}

    def state(on: set[str]) -> State:
        out = State()
        for (path, o), mid in ids.items():
            if mid in on:
                out.mailboxes.setdefault(path, MailboxState()).read.append((o, o))
        for mb in out.mailboxes.values():
            mb.read = statesync.normalize_ranges(o for a, _ in mb.read for o in [a])
        return out

    events = statesync.record(state(local_ids), state(base_ids), ids, 7, "0" * 16)
    assert {mid for (mid, _), e in events.items()} == local_ids ^ base_ids
    assert statesync.same_flags(statesync.apply(state(base_ids), events, copies), state(local_ids))


_ID = [c * 64 for c in "0123456789"]


def test_a_clone_whose_key_was_rotated_elsewhere_is_told_so(net: NetOrg, tmp_path: Path) -> None:
    """alex rotates the key on one machine and pushes the shared state, sealed to the new key.
    The other machine's pull said "encrypted for alex; you are not a recipient", as if alex
    were a stranger; it says what send says: a retired key (exit 5)."""
    from tests.conftest import run

    other = tmp_path / "alex-other"
    home = tmp_path / "other-home"
    import os
    import shutil

    shutil.copytree(os.environ["GITMAIL_HOME"], home)  # the other machine's copy of the old key
    env_home = os.environ["GITMAIL_HOME"]
    os.environ["GITMAIL_HOME"] = str(home)
    try:
        assert run("init", "--name", "alex", "--org", net.url, "--repo", str(other)).code == 0
    finally:
        os.environ["GITMAIL_HOME"] = env_home
    net.ok("max", "send", "alex", "hello")
    net.ok("alex", "sync")
    [row] = json.loads(net.ok("alex", "list", "--json").out)["messages"]
    net.ok("alex", "archive", row["short_id"])
    net.ok("alex", "key", "rotate")
    net.ok("alex", "state", "push")
    os.environ["GITMAIL_HOME"] = str(home)
    try:
        run("sync", "--repo", str(other))
        after = run("state", "pull", "--repo", str(other))
    finally:
        os.environ["GITMAIL_HOME"] = env_home
    assert after.code == 5 and "is a retired key of alex (rotated on another machine)" in after.err, after
    assert after.err.count("\n") == 1


def test_a_state_sealed_to_a_key_this_machine_lacks_says_so() -> None:
    """The state blob itself, sealed to a key of the member's that this machine does not hold."""
    import pytest
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gitmail.core import crypto
    from gitmail.errors import StateError

    def key() -> tuple[str, object]:
        k = Ed25519PrivateKey.generate()
        line = k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        import pyrage

        return line, pyrage.ssh.Identity.from_buffer(k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))

    (new_line, _), (_, old_identity) = key(), key()
    cipher = statesync.encode({}, "alex", new_line)
    with pytest.raises(StateError, match="sealed to a key of alex's this machine does not hold"):
        statesync.decode(cipher, "alex", [old_identity])
    assert crypto.header_problem(cipher, 1) is None


def test_a_squatted_longer_ref_is_reported_as_such(unguarded: NetOrg) -> None:
    """Without the guard another member pushed any commit to ``gitmail/state/alex/x``: git
    then cannot create ``gitmail/state/alex`` ("... exists; cannot create"), and the round
    took that for a lost race, retried ten times and said the ref "kept moving" (reported
    by a hostile sweep). The push is refused, in one line naming what git said."""
    o = unguarded
    a1, _a2, m = three(o)
    mx = o.clones["max"]
    head = git("rev-parse", "refs/remotes/origin/gitmail/directory", cwd=mx).stdout.strip()  # any commit
    assert git("push", "-q", "origin", f"{head}:refs/heads/gitmail/state/alex/x", cwd=mx).returncode == 0
    at(a1, "mark", m["one"], "--read")
    r = run("state", "push", "--repo", str(a1))
    assert r.code != 0 and r.err.count("\n") == 1, r
    assert "kept moving" not in r.err and "exists" in r.err, r
