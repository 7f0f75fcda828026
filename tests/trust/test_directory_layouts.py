"""docs/protocol.md §8 "Layouts": new orgs are fan-out (layout 2); an org made flat (layout 1)
moves with one admin commit, through the guard, and every member follows without losing
mail or verification; the move is admin-only and never goes back; an auditor with stock git
reads the sharded allowed_signers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import directory as dirmod
from gitmail.core.signing import generate_key

from tests.conftest import git
from tests.core.forge import key_of
from tests.sync.conftest import NetOrg, _net_org
from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit

DIR = "refs/heads/gitmail/directory"


def _tip_tree(bare: Path) -> pygit2.Tree:
    pg = pygit2.Repository(str(bare))
    c = pg[pg.references[DIR].target]
    assert isinstance(c, pygit2.Commit)
    return c.tree


def _paths(tree: pygit2.Tree, prefix: str = "") -> set[str]:
    out = set()
    for e in tree:
        if isinstance(e, pygit2.Tree):
            out |= _paths(e, f"{prefix}{e.name}/")
        else:
            out.add(f"{prefix}{e.name}")
    return out


@pytest.fixture
def flat(tmp_path: Path) -> Iterator[NetOrg]:
    """An org behind git daemon and the guard whose directory was made in layout 1 (before
    layout 2 existed): max (admin, the first commit written by hand as an old gitmail wrote it)
    and alex, who joined with gitmail (so their registration is written in the org's layout 1)."""

    def flat_root(o: NetOrg) -> list[str]:
        key = generate_key(tmp_path / "max-key")
        scratch = tmp_path / "scratch"
        git("clone", "-q", o.url, str(scratch))
        p = push_dir(scratch, write_dir_commit(scratch, [entry("max", key.public_key, role="admin")], key, None))
        assert p.returncode == 0, p.stderr
        return ["--key", str(tmp_path / "max-key")]

    yield from _net_org(tmp_path, True, seed=flat_root)


def test_a_new_org_is_fanned_out(net: NetOrg) -> None:
    tree = _tip_tree(net.bare)
    paths = _paths(tree)
    assert json.loads(net.ok("max", "org", "--json").out)["directory_layout"] == 2
    assert {f"members/{dirmod.shard(n)}/{n}.json" for n in ("max", "alex")} <= paths
    assert {f"allowed_signers/{dirmod.shard(n)}" for n in ("max", "alex")} <= paths
    assert not any(p.count("/") == 1 and p.startswith("members/") for p in paths)


def test_a_flat_org_moves_to_the_fan_out_and_nothing_is_lost(flat: NetOrg, tmp_path: Path) -> None:
    o = flat
    assert {"members/max.json", "members/alex.json", "allowed_signers"} <= _paths(_tip_tree(o.bare))
    o.ok("alex", "send", "max", "before the move")
    # a member may not move the org (policy is an admin's), and nothing is written
    before = str(pygit2.Repository(str(o.bare)).references[DIR].target)
    r = o.as_("alex", "org", "directory_layout=2")
    assert r.code != 0 and "Traceback" not in r.err and "admin" in r.err
    assert str(pygit2.Repository(str(o.bare)).references[DIR].target) == before
    # the admin moves it: one commit, accepted by the guard
    o.ok("max", "org", "directory_layout=2")
    paths = _paths(_tip_tree(o.bare))
    assert {f"members/{dirmod.shard(n)}/{n}.json" for n in ("max", "alex")} <= paths
    assert "members/max.json" not in paths and "allowed_signers" not in paths
    # everyone follows: alex's clone verifies the move, a newcomer joins in layout 2
    o.ok("alex", "sync")
    assert json.loads(o.ok("alex", "org", "--json").out)["directory_layout"] == 2
    o.join("ann")
    assert f"members/{dirmod.shard('ann')}/ann.json" in _paths(_tip_tree(o.bare))
    o.ok("alex", "send", "max", "after the move")
    o.ok("ann", "send", "max", "from a newcomer")
    o.ok("max", "sync")
    got = json.loads(o.ok("max", "list", "--json").out)
    rows = got["messages"] if isinstance(got, dict) else got
    assert sorted(m["subject"] for m in rows) == ["after the move", "before the move", "from a newcomer"]
    assert all(m.get("status", "good") == "good" for m in rows)
    o.ok("alex", "sync")
    members = json.loads(o.ok("alex", "members", "--json").out)
    names = {m["name"] for m in (members["members"] if isinstance(members, dict) else members)}
    assert names >= {"max", "alex", "ann"}
    for who in ("max", "alex"):
        r = o.as_(who, "verify", "--all")
        assert r.code == 0, r.err
    # an auditor with stock git and tar: the shards of allowed_signers make one signers file
    audit = tmp_path / "audit"
    git("clone", "-q", "--mirror", o.url, str(audit))
    arch = subprocess.run(["git", "archive", "refs/heads/gitmail/directory", "allowed_signers"], cwd=audit,
                          capture_output=True, check=True).stdout
    signers = subprocess.run(["tar", "-xO"], input=arch, capture_output=True, check=True).stdout
    (tmp_path / "signers").write_bytes(signers)
    assert signers.count(b'namespaces="git"') == 3
    for who in ("alex", "ann"):
        v = subprocess.run(["git", "-c", f"gpg.ssh.allowedSignersFile={tmp_path / 'signers'}", "verify-commit",
                            f"refs/heads/gitmail/mail/max/{who}"], cwd=audit, capture_output=True, text=True)
        assert v.returncode == 0 and f'Good "git" signature for {who}' in v.stderr, v.stderr


def test_the_layout_never_goes_back(net: NetOrg, tmp_path: Path) -> None:
    """Even the admin, writing the flat tree by hand: the guard refuses, and a clone that
    fetches it without the guard keeps its last good directory."""
    tip, entries = current_entries(net.clones["max"])
    back = write_dir_commit(net.clones["max"], entries, key_of(net, "max"), tip, policy={"directory_layout": 1})
    p = push_dir(net.clones["max"], back)
    assert p.returncode != 0 and "never goes back" in p.stderr
    pg = pygit2.Repository(str(net.clones["max"]))
    L, _ = dirmod.ledger_at(pg, tip)
    after, problems = dirmod.advance(pg, L, back)
    assert after.tip == tip and problems and "never goes back" in problems[0]


def test_old_ledger_files_are_rebuilt(net: NetOrg) -> None:
    """A ledger kept by a gitmail before layout 2 (format 1), before the invisible-character
    rule (format 2), or before it kept the widest body limit (format 3), is not trusted:
    rebuilt from git."""
    from gitmail.core.repo import open_repo

    repo = open_repo(net.clones["alex"])
    want = dirmod.load(repo)
    path = repo.data_dir / dirmod.LEDGER_FILE
    data = json.loads(path.read_bytes())
    assert data["format"] == dirmod.LEDGER_FORMAT == 5
    for old in (1, 2, 3, 4):
        data["format"] = old
        path.write_text(json.dumps(data))
        dirmod._LEDGERS.clear()
        with pytest.raises(ValueError):
            dirmod.Ledger.undump(path.read_bytes())
    assert dirmod.load(repo).members == want.members


# -- property: any shape of a layout 2 tree gets the same verdict from both readers ----------

_SHAPES = st.lists(st.tuples(
    st.sampled_from(["move", "stray_file", "shard_file", "nested", "drop_shard", "shard_as_blob", "odd_shard",
                     "signers_blob", "signers_extra", "signers_drop"]),
    st.integers(0, 255),
    # libgit2 refuses to write tree entries named ".", ".." or ".git" (nor would git accept them)
    st.text(alphabet="abcdefxyz.-_/0123456789", min_size=1, max_size=12).filter(lambda t: not t.startswith("."))),
    min_size=1, max_size=4)


@pytest.fixture(scope="module")
def histories(tmp_path_factory: pytest.TempPathFactory) -> dict[int, object]:
    """Two small directories, one made in layout 1 and one in layout 2: layout -> History."""
    from tests.trust.test_directory_incremental import History, _key

    out: dict[int, object] = {}
    for layout in (1, 2):
        h = History(tmp_path_factory.mktemp("shapes") / f"h{layout}.git")
        h.policy["directory_layout"] = layout
        admin = _key()
        h.members["admin"] = h.entry("admin", admin, role="admin")
        h.keys["admin"] = admin
        h.commit(admin)
        for n in ("max", "ann", "bo"):
            k = _key()
            h.members[n] = h.entry(n, k)
            h.keys[n] = k
            h.commit(k)
        out[layout] = h
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(shapes=_SHAPES, base=st.sampled_from([1, 2]), leftover=st.booleans())
def test_any_fanout_tree_gets_the_reference_verdict(histories: dict[int, object], shapes: list[tuple[str, int, str]],
                                                    base: int, leftover: bool) -> None:
    """Hostile shapes of members/ and allowed_signers/ in a layout 2 commit signed by the admin,
    on a layout 2 directory or as the commit that moves a layout 1 one (then, with
    ``leftover``, one flat file is left behind): the incremental reader (:func:`advance`, from
    the ledger at the good tip, as a sync and the guard do) and the full reader
    (:func:`from_tree`, the reference) agree exactly."""
    from gitmail.core.model import canonical_json

    from tests.trust.test_directory_incremental import History, ref_verify_range

    h = histories[base]
    assert isinstance(h, History)
    pg, good = h.pg, h.tips[-1]
    root = pg.TreeBuilder(pg[good].peel(pygit2.Tree))
    if base == 2:
        members = {str(e.name): pg.TreeBuilder(e.id)
                   for e in pg[good].peel(pygit2.Tree)["members"].peel(pygit2.Tree)}
        signers = pg.TreeBuilder(pg[good].peel(pygit2.Tree)["allowed_signers"].peel(pygit2.Tree))
    else:  # the move, as gitmail writes it: every entry at its layout 2 path, the signers in shards
        members, signers = {}, pg.TreeBuilder()
        for who, data in h.members.items():
            members.setdefault(dirmod.shard(who), pg.TreeBuilder()).insert(
                f"{who}.json", pg.create_blob(canonical_json(data)), pygit2.enums.FileMode.BLOB)
        entries = {who: dirmod.Member.model_validate(data) for who, data in h.members.items()}
        for spath, stext in dirmod.signers_files(entries, 2).items():
            signers.insert(spath.split("/")[1], pg.create_blob(stext), pygit2.enums.FileMode.BLOB)
        root.insert("org.json", pg.create_blob(canonical_json({**h.policy, "directory_layout": 2})),
                    pygit2.enums.FileMode.BLOB)
        root.insert("allowed_signers", signers.write(), pygit2.enums.FileMode.TREE)
    blob = pg.create_blob(b"x")
    extra: dict[str, object] = {}
    for kind, n, text in shapes:
        sh = f"{n:02x}"
        name = sorted(h.members)[n % len(h.members)]
        home = dirmod.shard(name)
        if kind == "move" and home in members and members[home].get(f"{name}.json") is not None:
            e = members[home].get(f"{name}.json")
            members[home].remove(f"{name}.json")
            members.setdefault(sh, pg.TreeBuilder()).insert(f"{name}.json", e.id, pygit2.enums.FileMode.BLOB)
        elif kind == "stray_file" and "/" not in text:
            members.setdefault(sh, pg.TreeBuilder()).insert(text, blob, pygit2.enums.FileMode.BLOB)
        elif kind == "shard_file" and "/" not in text:
            extra[text] = blob  # a file straight in members/
        elif kind == "nested" and "/" not in text:
            inner = pg.TreeBuilder()
            inner.insert("x.json", blob, pygit2.enums.FileMode.BLOB)
            members.setdefault(sh, pg.TreeBuilder()).insert(text, inner.write(), pygit2.enums.FileMode.TREE)
        elif kind == "drop_shard":
            members.pop(sh, None)
        elif kind == "shard_as_blob":
            members.pop(sh, None)
            extra[sh] = blob
        elif kind == "odd_shard" and "/" not in text and home in members and members[home].get(f"{name}.json"):
            e = members[home].get(f"{name}.json")
            members[home].remove(f"{name}.json")
            members.setdefault(text, pg.TreeBuilder()).insert(f"{name}.json", e.id, pygit2.enums.FileMode.BLOB)
        elif kind == "signers_blob":
            signers = pg.TreeBuilder()
            root.insert("allowed_signers", blob, pygit2.enums.FileMode.BLOB)
        elif kind == "signers_extra":
            signers.insert(sh, blob, pygit2.enums.FileMode.BLOB)
        elif kind == "signers_drop" and signers.get(sh) is not None:
            signers.remove(sh)
    mt = pg.TreeBuilder()
    for folder, tb in members.items():
        if len(tb):
            mt.insert(folder, tb.write(), pygit2.enums.FileMode.TREE)
    for f, b in extra.items():
        if mt.get(f) is None:
            mt.insert(f, b, pygit2.enums.FileMode.BLOB)  # type: ignore[arg-type]
    if base == 1 and leftover:  # a flat file the move left where it was
        old = pg[good].peel(pygit2.Tree)["members"].peel(pygit2.Tree)["max.json"]
        if mt.get("max.json") is None:
            mt.insert("max.json", old.id, pygit2.enums.FileMode.BLOB)
    root.insert("members", mt.write(), pygit2.enums.FileMode.TREE)
    if len(signers) and (root.get("allowed_signers") is None or root.get("allowed_signers").filemode
                         == pygit2.enums.FileMode.TREE):
        root.insert("allowed_signers", signers.write(), pygit2.enums.FileMode.TREE)
    from gitmail.core.objects import signed_commit

    sig = pygit2.Signature("x", "x@gitmail.invalid", 1_700_000_100, 0)
    oid = signed_commit(pg, sig, sig, "shapes\n", root.write(), [good], h.keys["admin"].sign)
    want_dir, want = ref_verify_range(pg, good, oid)
    dirmod._LEDGERS.clear()
    L, _ = dirmod.ledger_at(pg, good)
    got_L, got = dirmod.advance(pg, L, oid)
    assert got == want
    assert got_L.tip == want_dir.tip and got_L.members == want_dir.members
