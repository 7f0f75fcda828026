"""The fields inside encrypted mail follow the rules of clear ones (issue 10, hole 9; docs/protocol.md §9)."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from gitmail.core import private
from gitmail.core.model import Message
from gitmail.core.store import check_message, write_message_commit
from gitmail.errors import VerificationError
from tests.trust.test_vectors_messages import COMMITTED, DATE, directory, signer


def _bob() -> object:
    import pyrage
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    return pyrage.ssh.Identity.from_buffer(pem)


@pytest.mark.parametrize("over, why", [
    ({"subject": "s" * 201}, "subject over 200"),
    ({"summary": "s" * 121}, "summary over 120"),
    ({"type": "task_assign", "payload": {"title": "no task id"}}, "payload for task_assign"),
    ({"payload": {"x": 1}}, "text message has a payload"),
])
def test_sealed_fields_that_break_the_rules_are_refused_when_opened(tmp_path: Path, over: dict, why: str) -> None:
    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    d = directory()
    msg = Message(**{"from": "alice"}, to=["bob"], date=DATE, subject="ok", summary="ok", body="ok")
    msg = msg.model_copy(update=over)  # the writer's own checks bypassed, as a hostile writer would
    clear, cipher = private.seal_message(msg, d, [])
    extra = {private.CIPHER_FILE: (str(pg.create_blob(cipher)), 0o100644)}
    oid = write_message_commit(pg, clear, d.members["alice"], signer(1), None, extra, committed=COMMITTED)
    stored, check = check_message(pg, oid, "bob", "alice", d)
    assert check.good and stored is not None  # the clear part is fine
    with pytest.raises(VerificationError, match=why):
        private.open_message(pg, pg[oid], stored, [_bob()], d.policy.body_limit)  # type: ignore[arg-type]


def _sealed_commit(tmp_path: Path, plain: bytes, size: int,
                   type_: str = "text") -> tuple[pygit2.Repository, str, "Message", int]:
    """A message from alice to bob whose ``message.age`` seals ``plain`` (bytes written as given,
    as a hostile writer would) to both, with an envelope saying ``size``: the clear part is
    good. ``(repository, commit id, the stored clear message, the org's body limit)``."""
    import hashlib

    from gitmail.core import crypto
    from gitmail.core.model import Envelope

    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    d = directory()
    cipher = crypto.seal(plain, [d.members[n].encryption_key or "" for n in ("alice", "bob")])
    env = Envelope(sha256=hashlib.sha256(cipher).hexdigest(), recipients=["alice", "bob"], size=size)
    clear = Message(**{"from": "alice"}, to=["bob"], date=DATE, type=type_, encrypted=env.model_dump(mode="json"))
    clear.id = clear.compute_id()
    extra = {private.CIPHER_FILE: (str(pg.create_blob(cipher)), 0o100644)}
    oid = write_message_commit(pg, clear, d.members["alice"], signer(1), None, extra, committed=COMMITTED)
    stored, check = check_message(pg, oid, "bob", "alice", d)
    assert check.good and stored is not None, check  # only what is sealed breaks a rule
    return pg, oid, stored, d.policy.body_limit


def _plain(**fields: object) -> bytes:
    from gitmail.core.model import canonical_json

    base: dict[str, object] = {"schema_version": 1, "from": "alice", "to": ["bob"], "subject": "s", "summary": "s",
                               "body": "b", "payload": None, "attachments": []}
    return canonical_json({**base, **fields})


def test_a_sealed_body_over_the_org_s_limit_is_refused(tmp_path: Path) -> None:
    """A clear body over body_limit is malformed; a sealed one was shown whole (a hostile writer
    skips its own check): 200,000 bytes under a limit of 65,536."""
    limit = directory().policy.body_limit
    plain = _plain(body="B" * (limit + 1))
    from gitmail.core import crypto

    pg, oid, stored, body_limit = _sealed_commit(tmp_path, plain, crypto.bucket(len(plain)))
    with pytest.raises(VerificationError, match=f"body over the org's limit of {body_limit} bytes"):
        private.open_message(pg, pg[oid], stored, [_bob()], body_limit)  # type: ignore[arg-type]


def test_sealed_content_longer_than_its_envelope_says_is_refused(tmp_path: Path) -> None:
    """docs/protocol.md §9: the envelope's size bounds the sealed content. 5,000 bytes sealed
    under an envelope saying 1,024 were decrypted and shown."""
    from gitmail.core.crypto import DecryptionError

    pg, oid, stored, body_limit = _sealed_commit(tmp_path, _plain(body="B" * 5000), 1024)
    with pytest.raises(DecryptionError, match="is 5[0-9]{3} bytes; the envelope says at most 1024"):
        private.open_message(pg, pg[oid], stored, [_bob()], body_limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload, why", [
    (b'{"n":NaN}', "not a gitmail message"),
    (b'{"n":' + b"[" * 40 + b"]" * 40 + b"}", "nested deeper than 32"),
    (b'{"n":99999999999999999999999999}', "not a gitmail message"),
    (b'{"b":1,"a":2}', "canonical form"),
])
def test_sealed_json_is_held_to_the_bounds_of_message_json(tmp_path: Path, payload: bytes, why: str) -> None:
    """The sealed content was parsed by pydantic alone: NaN, 40 levels and a 27-digit integer in
    an open type's payload were shown as good; message.json refuses each (§4)."""
    from gitmail.core.crypto import DecryptionError, bucket

    plain = _plain(payload=None).replace(b'"payload":null', b'"payload":' + payload)
    pg, oid, stored, body_limit = _sealed_commit(tmp_path, plain, bucket(len(plain)), "x-probe")
    with pytest.raises(DecryptionError, match=why):
        private.open_message(pg, pg[oid], stored, [_bob()], body_limit)  # type: ignore[arg-type]
