"""Addresses, signatures, message ids and state ranges."""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gitmail.core import address, signing, state
from gitmail.core.model import Message
from gitmail.errors import AddressError, VerificationError
from tests.conftest import git


@pytest.mark.parametrize("name", ["max", "Max", "Mac CLI 小克", "system:cron", "a.b", "夏哥", "x-y_z", "ä" * 10])
def test_ref_form_roundtrip_and_valid(name: str, tmp_path: Path) -> None:
    n = address.normalize(name)
    r = address.to_ref(n)
    assert address.from_ref(r) == n
    assert set(r) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-%ABCDEF")
    assert git("check-ref-format", f"refs/heads/gitmail/mail/{r}/{r}", check=False).returncode == 0


def test_ref_form_is_case_safe_and_injective() -> None:
    assert address.to_ref("Max") != address.to_ref("max")
    assert address.to_ref("Max").lower() != address.to_ref("max")
    assert address.to_ref("%41") != address.to_ref("A")
    assert address.to_ref("*") == "%2A" and address.to_ref("team:ops") == "team%3Aops"


def test_nfc_normalisation() -> None:
    assert address.normalize("e\u0301") == "\u00e9"


@pytest.mark.parametrize("bad", ["", "a\nb", "\x7f", "a/b", "..", "*", "team:x", " a", "-rf", "\u202e"])
def test_bad_names(bad: str) -> None:
    with pytest.raises(AddressError):
        address.normalize(bad)


def test_from_ref_rejects_garbage() -> None:
    for bad in ["%zz", "A", "%", "é"]:
        with pytest.raises(AddressError):
            address.from_ref(bad)


def test_signature_matches_git_and_ssh_keygen(tmp_path: Path) -> None:
    """Our in-process signature is byte-identical to `git commit-tree -S` and verifies with stock git."""
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    signer = signing.load_key(key)
    repo = tmp_path / "r"
    git("init", "-q", str(repo))
    env_cfg = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}.pub", "-c", "user.name=T", "-c", "user.email=t@x"]
    env = {"GIT_AUTHOR_DATE": "1700000000 +0000", "GIT_COMMITTER_DATE": "1700000000 +0000"}
    import os

    tree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    git("-C", str(repo), "hash-object", "-t", "tree", "-w", "--stdin", "/dev/null")
    p = subprocess.run(["git", *env_cfg, "commit-tree", "-S", "-m", "hi", tree], cwd=repo, capture_output=True,
                       text=True, env={**os.environ, **env}, check=True)
    theirs = git("cat-file", "commit", p.stdout.strip(), cwd=repo).stdout.encode()
    import pygit2

    pg = pygit2.Repository(str(repo))
    sig = pygit2.Signature("T", "t@x", 1700000000, 0)
    from typing import cast

    text = cast(str, pg.create_commit_string(sig, sig, "hi\n", pygit2.Oid(hex=tree), []))
    ours_oid = pg.create_commit_with_signature(text, signer.sign(text.encode()), "gpgsig")
    assert str(ours_oid) == p.stdout.strip()  # ed25519 is deterministic: same bytes, same oid
    assert pg[ours_oid].read_raw() == theirs
    (tmp_path / "signers").write_text(f'"T" namespaces="git" {signer.public_key}\n')
    v = git("-c", f"gpg.ssh.allowedSignersFile={tmp_path / 'signers'}", "verify-commit", str(ours_oid), cwd=repo)
    assert 'Good "git" signature for T' in v.stderr
    from gitmail.core.objects import commit

    signature, payload = commit(pg, ours_oid).gpg_signature
    assert signing.verify(signature, payload) == signer.public_key
    with pytest.raises(VerificationError):
        signing.verify(signature, payload + b"x")
    with pytest.raises(VerificationError):
        signing.verify(signature, payload, namespace=b"file")


def test_message_id_is_content_derived_and_keeps_unknown_fields() -> None:
    m = Message.model_validate({"from": "a", "to": ["b"], "date": "2026-01-01T00:00:00.000000Z", "body": "x",
                                "x_future": {"k": 1}})
    m.id = m.compute_id()
    again = Message.from_blob(m.to_blob())
    assert again.id == m.id == again.compute_id()
    assert again.model_extra == {"x_future": {"k": 1}}
    changed = again.model_copy(update={"body": "y"})
    assert changed.compute_id() != m.id


def test_state_ranges() -> None:
    r = state.add([], [5, 1, 2, 3, 9])
    assert r == [(1, 3), (5, 5), (9, 9)]
    assert state.add(r, [4]) == [(1, 5), (9, 9)]
    assert state.remove([(1, 10)], [1, 5, 10]) == [(2, 4), (6, 9)]
    assert state.expand([(2, 4)]) == {2, 3, 4}
    assert state.normalize_ranges(range(1, 100001)) == [(1, 100000)]


def test_canonical_json_matches_the_standard_library() -> None:
    import json

    from gitmail.core.model import canonical_json

    for obj in [{"b": 1, "a": [1.5, None, True, "é小\u2028\x01\"\\"], "c": {"z": {}, "y": []}},
                {"big": 2**70}, {"neg": -(2**63)}, {"f": 1e-7}]:
        want = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert canonical_json(obj) == want


def test_message_id_with_floats_in_free_form_fields() -> None:
    import hashlib
    import json

    m = Message.model_validate({"from": "a", "to": ["b"], "date": "2026-01-01T00:00:00.000000Z", "type": "task_update",
                                "payload": {"task_id": "t", "status": "blocked", "progress": 1e-07},
                                "attachments": [{"name": "x", "size": 1, "oid": "0" * 64, "ratio": 0.5}],
                                "x_score": 2.5})
    want = json.dumps(m.content_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert m.compute_id() == hashlib.sha256(want).hexdigest()
    assert b"1e-07" in m.seal()



_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=3), kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_float_finder_agrees_with_the_plain_recursive_walk(obj: object) -> None:
    """model._has_float (iterative, exact types first, for speed) finds a float exactly where a
    plain recursive walk does: it decides which JSON writer makes a Message-ID's bytes."""
    from gitmail.core.model import _has_float

    def walk(o: object) -> bool:
        if isinstance(o, float):
            return True
        if isinstance(o, dict):
            return any(walk(v) for v in o.values())
        if isinstance(o, list):
            return any(walk(v) for v in o)
        return False

    assert _has_float(obj) == walk(obj)


class _F(float):
    pass


def test_float_finder_sees_float_subclasses() -> None:
    from gitmail.core.model import _has_float

    assert _has_float({"a": [1, {"b": _F(0.5)}]}) and not _has_float({"a": [1, {"b": True}], "c": None})


@settings(max_examples=300, deadline=None)
@given(st.datetimes(timezones=st.timezones()))
def test_date_form_is_the_strftime_form(d: datetime) -> None:
    """format_date (isoformat, for speed) writes exactly the strftime form of §4."""
    from datetime import timezone

    from gitmail.core.model import format_date

    assert format_date(d) == d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_git_error_names_git_s_own_bug_line_over_its_generic_last_line() -> None:
    """git 2.39 with http.postBuffer=1024 over protocol v2 says "BUG: remote-curl.c:1495: The
    entire rpc->buf should be larger than LARGE_PACKET_MAX", then ends with "fatal: expected
    flush after ref listing": the one line gitmail showed pointed nowhere (helper's run)."""
    from gitmail.errors import GitError

    stderr = (b"BUG: remote-curl.c:1495: The entire rpc->buf should be larger than LARGE_PACKET_MAX\n"
              b"error: git-remote-http died of signal 6\nfatal: expected flush after ref listing\n")
    e = GitError(["git", "fetch", "--quiet"], 128, b"", stderr)
    assert e.message == ("git fetch --quiet failed: BUG: remote-curl.c:1495: The entire rpc->buf should be "
                         "larger than LARGE_PACKET_MAX")
    assert GitError(["git", "fetch"], 1, b"", b"fatal: no\n").message == "git fetch failed: fatal: no"
