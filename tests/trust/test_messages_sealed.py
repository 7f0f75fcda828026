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
        private.open_message(pg, pg[oid], stored, [_bob()])  # type: ignore[arg-type]
