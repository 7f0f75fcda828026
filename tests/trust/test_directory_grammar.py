"""Issue 10, hole 1: every directory entry field is checked on read (client and guard) against one
grammar, and the allowed-signers file is written so that ssh-keygen reads each principal literally."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitmail.core import directory as dirmod
from gitmail.core.address import normalize
from gitmail.core.model import Member
from gitmail.core.objects import signed_commit
from gitmail.core.repo import open_repo
from gitmail.core.signing import Signer, check_stored_key, generate_key, public_key_line
from gitmail.errors import AddressError, DirectoryError, GitmailError, VerificationError

from tests.conftest import git
from tests.core.forge import stranger_key
from tests.sync.conftest import NetOrg
from tests.trust.dirforge import current_entries, entry, push_dir, write_dir_commit


def _code_commit(clone: Path, signer: Signer) -> str:
    """A signed commit on no branch in ``clone`` (any code commit a member might check with stock git)."""
    pg = pygit2.Repository(str(clone))
    tb = pg.TreeBuilder()
    tb.insert("f", pg.create_blob(b"code\n"), pygit2.enums.FileMode.BLOB)
    sig = pygit2.Signature("someone", "someone@example.invalid", 1_700_000_000, 0)
    return signed_commit(pg, sig, sig, "code\n", tb.write(), [], signer.sign)


def _newline_attack(o: NetOrg, tmp: Path) -> tuple[str, Signer]:
    """An outsider registers 'mallory' whose previous_keys smuggle a line for alex (issue 10, hole 1)."""
    outsider = stranger_key(tmp)
    decoy = public_key_line(bytes(range(32)))
    tip, entries = current_entries(o.clones["alex"])
    evil = entry("mallory", outsider.public_key,
                 previous_keys=[f'{decoy}\n"alex" namespaces="git" {outsider.public_key}'])
    return write_dir_commit(o.clones["alex"], [*entries, evil], outsider, tip), outsider


def test_newline_in_previous_keys_rejected_by_client(unguarded: NetOrg, tmp_path: Path) -> None:
    o = unguarded
    oid, outsider = _newline_attack(o, tmp_path)
    assert push_dir(o.clones["alex"], oid).returncode == 0  # no guard: the server takes it
    r = o.as_("max", "sync")
    assert r.code == 0 and f"directory commit {oid[:10]} rejected" in r.err
    repo = open_repo(o.clones["max"])
    assert repo.ref_target("refs/gitmail/verified/directory") != oid
    signers = (repo.data_dir / "allowed_signers").read_text()
    assert outsider.public_key not in signers and "mallory" not in signers
    assert "mallory" not in o.ok("max", "members", "--json").out
    v = git("verify-commit", _code_commit(o.clones["max"], outsider), cwd=o.clones["max"], check=False)
    assert v.returncode != 0 and "signature for" not in v.stderr  # git: "No principal matched"
    assert o.as_("max", "verify").code == 7  # the problem is reported until resolved


def test_newline_in_previous_keys_refused_by_guard(net: NetOrg, tmp_path: Path) -> None:
    oid, _ = _newline_attack(net, tmp_path)
    p = push_dir(net.clones["alex"], oid)
    assert p.returncode != 0 and "gitmail guard" in p.stderr and "malformed directory" in p.stderr


@pytest.mark.parametrize("name", ["eve,max", "!bob", "b*b", "b?b", 'say "hi"', "a\nb", "a\u202eb", " pad"])
def test_pattern_names_refused_at_registration_and_on_read(name: str, tmp_path: Path) -> None:
    with pytest.raises(AddressError):
        normalize(name)
    key = public_key_line(bytes(32))
    m = Member(name=name, email="x@gitmail.invalid", signing_key=key)
    with pytest.raises(DirectoryError):
        dirmod.validate_member(m)
    with pytest.raises(AddressError):
        dirmod.Directory(None, {name: m}).allowed_signers()


_KEY = public_key_line(bytes(range(1, 33)))
HOSTILE_FIELDS: list[tuple[str, Any]] = [
    ("signing_key", _KEY + " comment"),
    ("signing_key", _KEY + "\n"),
    ("signing_key", "ssh-rsa " + _KEY.split()[1]),
    ("signing_key", "ssh-ed25519  " + _KEY.split()[1]),
    ("previous_keys", [_KEY + '\n"max" namespaces="git" ' + _KEY]),
    ("previous_keys", [public_key_line(bytes(range(2, 34)))] * 2),
    ("encryption_key", "age1notakey"),
    ("display_name", "Max\x1b[2K"),
    ("display_name", "x" * 201),
    ("display_name", "a\u202eb"),
    ("email", "max"),
    ("email", "max @x"),
    ("email", "a@b@c"),
    ("email", "m<x>@y"),
    ("email", "m\n@y"),
    ("retired", {public_key_line(bytes(range(3, 35))): {}}),
]


@pytest.mark.parametrize("field,value", HOSTILE_FIELDS)
def test_hostile_fields_refused_on_read(field: str, value: Any, tmp_path: Path) -> None:
    """One grammar for every field: a directory commit holding the entry does not parse (client and guard share from_tree)."""
    repo = tmp_path / "r"
    git("init", "-q", str(repo))
    k = generate_key(tmp_path / "k")
    e = entry("max", k.public_key, role="admin")
    e[field] = value
    oid = write_dir_commit(repo, [e], k, None)
    pg = pygit2.Repository(str(repo))
    c = pg[oid]
    assert isinstance(c, pygit2.Commit)
    with pytest.raises(VerificationError, match="malformed directory"):
        dirmod.from_tree(pg, c)
    d, problems = dirmod.verify_range(pg, None, oid)
    assert d.tip is None and problems and "rejected" in problems[0]


# -- property: what stock git concludes from gitmail's allowed-signers file ------------

NAME_CHARS = list('"!*?,@# \n\tabcz-_.') + ["山", "田", "\u0301", "\u05d0", "\u05d1", "\u202e", "é", "\u00a0", "ё"]
NAMES = st.one_of(st.text(alphabet=st.sampled_from(NAME_CHARS), min_size=1, max_size=10), st.text(min_size=1, max_size=10))


@pytest.fixture
def rig(tmp_path: Path) -> dict[str, Any]:
    """A repo with three code commits, signed by the member's key, a second member's key and an outsider's."""
    repo = tmp_path / "rig"
    git("init", "-q", str(repo))
    keys = {n: generate_key(tmp_path / n) for n in ("member", "other", "outsider")}
    return {"repo": repo, "keys": keys, "commits": {n: _code_commit(repo, k) for n, k in keys.items()},
            "file": tmp_path / "allowed_signers"}


def _verify(rig: dict[str, Any], who: str) -> subprocess.CompletedProcess[str]:
    return git("-c", f"gpg.ssh.allowedSignersFile={rig['file']}", "verify-commit", rig["commits"][who],
               cwd=rig["repo"], check=False)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES)
def test_stock_git_says_good_for_exactly_the_signer(rig: dict[str, Any], name: str) -> None:
    keys = rig["keys"]
    try:
        n = normalize(name)
    except AddressError:
        # refused at registration, and refused on read
        m = Member(name=name, email="x@gitmail.invalid", signing_key=keys["member"].public_key)
        with pytest.raises(DirectoryError):
            dirmod.validate_member(m)
        return
    other = "zed" if n != "zed" else "zoe"
    d = dirmod.Directory(None, {
        n: Member(name=n, email="m@gitmail.invalid", signing_key=keys["member"].public_key),
        other: Member(name=other, email="o@gitmail.invalid", signing_key=keys["other"].public_key),
    })
    dirmod.validate(d)
    rig["file"].write_text(d.allowed_signers(), encoding="utf-8")
    mine = _verify(rig, "member")
    assert mine.returncode == 0, (n, mine.stderr)
    assert f'Good "git" signature for {n} with' in mine.stderr
    theirs = _verify(rig, "other")
    assert theirs.returncode == 0 and f'Good "git" signature for {other} with' in theirs.stderr
    assert f"for {n} with" not in theirs.stderr
    assert _verify(rig, "outsider").returncode != 0


@settings(max_examples=60, deadline=None)
@given(prefix=st.sampled_from(["", " ", "\n", "ssh-ed25519 ", "x"]), suffix=st.text(max_size=8))
def test_hostile_key_text_is_refused_or_exactly_canonical(prefix: str, suffix: str) -> None:
    text = prefix + _KEY + suffix
    try:
        k = check_stored_key(text)
    except GitmailError:
        with pytest.raises(DirectoryError):
            dirmod.validate_member(Member(name="max", email="m@x", signing_key=text))
        return
    assert k == _KEY and len(k.split(" ")) == 2 and "\n" not in k


@pytest.mark.parametrize("name", ["小" * 23, "A" * 67, "é" * 34])
def test_names_whose_ref_safe_form_is_too_long_are_refused(name: str, tmp_path: Path) -> None:
    """Within 100 bytes, but the ref-safe form is over 200 characters: the name registered, then
    every send crashed ('File name too long' on refs/gitmail/outbox/.../<name>.lock) and so did
    init without --key (its key file). Refused at registration and on read now; the longest
    names that fit still go through the whole chain (tests below use such names)."""
    from gitmail.core.address import MAX_REF_NAME, to_ref

    assert len(name.encode()) <= 100 and len(to_ref(name)) > MAX_REF_NAME
    with pytest.raises(AddressError, match="too long for a ref"):
        normalize(name)
    m = Member(name=name, email="x@gitmail.invalid", signing_key=public_key_line(bytes(32)))
    with pytest.raises(DirectoryError):
        dirmod.validate_member(m)
    fits = name[:-1]  # one character less fits, for each of these names
    assert len(to_ref(fits)) <= MAX_REF_NAME and normalize(fits) == fits


def test_the_longest_names_that_fit_send_and_receive(tmp_path: Path) -> None:
    """A member named with 22 CJK characters (a 198-character ref-safe form) and one of 66
    capitals: init, a message each way, verified."""
    import json

    from tests.conftest import run

    org = tmp_path / "org.git"
    a, b = "小" * 22, "A" * 66
    for i, who in enumerate(("max", a, b)):
        r = run("init", "--name", who, "--org", str(org), "--repo", str(tmp_path / f"c{i}"))
        assert r.code == 0, r.err
    assert run("sync", "--repo", str(tmp_path / "c0")).code == 0
    for i, (src, dst) in enumerate(((1, b), (2, a))):
        r = run("send", dst, f"hello from {i}", "--repo", str(tmp_path / f"c{src}"))
        assert r.code == 0, r.err
    for i, who in ((1, a), (2, b)):
        assert run("sync", "--repo", str(tmp_path / f"c{i}")).code == 0
        rows = json.loads(run("list", "--json", "--repo", str(tmp_path / f"c{i}")).out)["messages"]
        assert [m["verified"] for m in rows] == [True], (who, rows)
