"""The message test vectors of docs/protocol.md §6, checked byte for byte.

The vectors are fenced blocks whose info string is ``vector NAME``. The writer
must reproduce them from the fixed keys and dates below (the age ciphertext of
the encrypted vector is random by design, so the writer is given the one in the
spec), and the reader must accept them as good.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pygit2

from gitmail.core.directory import Directory
from gitmail.core.model import Envelope, Member, Message
from gitmail.core.signing import Signer
from gitmail.core.store import check_message, write_message_commit

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
DATE = "2026-01-02T03:04:05.678901Z"
COMMITTED = 1767323045  # 2026-01-02T03:04:05Z
_BLOCK = re.compile(r"^```vector ([a-z0-9.-]+)\n(.*?)^```$", re.S | re.M)


def vectors() -> dict[str, bytes]:
    """name -> bytes of every ``vector`` block in the spec (the block's text; ``.b64`` blocks decoded)."""
    out = {}
    for name, body in _BLOCK.findall(SPEC.read_text(encoding="utf-8")):
        out[name] = base64.b64decode("".join(body.split())) if name.endswith(".b64") else body.encode("utf-8")
    return out


def signer(seed: int) -> Signer:
    """The ed25519 key whose 32-byte seed is ``seed`` repeated (``0x01`` for alice, ``0x02`` for bob)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return Signer(public_key=pub, sign_raw=key.sign)


def directory() -> Directory:
    alice, bob = signer(1), signer(2)
    return Directory(members={
        "alice": Member(name="alice", display_name="Alice", email="alice@example.org", signing_key=alice.public_key,
                        encryption_key=alice.public_key, role="admin"),
        "bob": Member(name="bob", email="bob@example.org", signing_key=bob.public_key,
                      encryption_key=bob.public_key),
    })


def clear_message() -> Message:
    return Message(**{"from": "alice"}, to=["bob"], date=DATE, subject="Deploy window",
                   summary="Friday 18:00 UTC", body="Deploy window: Friday 18:00 UTC.\nRollback owner: bob.",
                   priority="high")


def _raw(pg: pygit2.Repository, oid: str) -> bytes:
    return bytes(pg.read(oid)[1])


def write_clear(pg: pygit2.Repository) -> tuple[bytes, str]:
    d = directory()
    msg = clear_message()
    blob = msg.seal()
    oid = write_message_commit(pg, msg, d.members["alice"], signer(1), None, committed=COMMITTED)
    return blob, oid


def write_encrypted(pg: pygit2.Repository, cipher: bytes) -> tuple[bytes, str]:
    """The encrypted vector's commit, from the spec's ciphertext (what ``private.seal_message`` does, minus age)."""
    import hashlib

    from gitmail.core import crypto, private

    d = directory()
    msg = clear_message()
    env = Envelope(sha256=hashlib.sha256(cipher).hexdigest(), recipients=private.readers(d, "alice", msg.to),
                   size=crypto.bucket(len(sealed_plaintext(msg))))
    clear = msg.model_copy(update={"subject": "", "summary": "", "body": "", "payload": None,
                                   "encrypted": env.model_dump(mode="json")})
    blob = clear.seal()
    extra = {private.CIPHER_FILE: (str(pg.create_blob(cipher)), 0o100644)}
    oid = write_message_commit(pg, clear, d.members["alice"], signer(1), None, extra, committed=COMMITTED)
    return blob, oid


def sealed_plaintext(msg: Message) -> bytes:
    from gitmail.core.model import Sealed, canonical_json

    inner = Sealed(from_=msg.from_, to=msg.to, subject=msg.subject, summary=msg.summary, body=msg.body,
                   payload=msg.payload, attachments=[])
    return canonical_json(inner.model_dump(by_alias=True, mode="json"))


def test_the_writer_reproduces_the_clear_vector_and_the_reader_accepts_it(tmp_path: Path) -> None:
    v = vectors()
    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    blob, oid = write_clear(pg)
    assert blob == v["clear-message.json"].rstrip(b"\n")
    assert _raw(pg, oid) == v["clear-commit"]
    assert oid == v["clear-commit-id"].decode().strip()
    _, check = check_message(pg, oid, "bob", "alice", directory())
    assert check.good, check


def test_the_writer_reproduces_the_encrypted_vector_and_the_reader_accepts_it(tmp_path: Path) -> None:
    from gitmail.core import crypto

    v = vectors()
    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    blob, oid = write_encrypted(pg, v["encrypted-message.age.b64"])
    assert blob == v["encrypted-message.json"].rstrip(b"\n")
    assert _raw(pg, oid) == v["encrypted-commit"]
    _, check = check_message(pg, oid, "bob", "alice", directory())
    assert check.good, check
    # bob's key opens it: the padded canonical Sealed JSON of the clear message.
    import pyrage

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    plain = pyrage.decrypt(v["encrypted-message.age.b64"], [pyrage.ssh.Identity.from_buffer(pem)])
    inner = sealed_plaintext(clear_message())
    assert plain == inner + b" " * (crypto.bucket(len(inner)) - len(inner))


def test_a_changed_byte_in_a_vector_is_not_good(tmp_path: Path) -> None:
    """The reader really reads the vector: one flipped byte of the commit makes it bad."""
    v = vectors()
    pg = pygit2.init_repository(str(tmp_path / "r"), bare=True)
    write_clear(pg)
    bent = v["clear-commit"].replace(b"Priority: high", b"Priority: low ")
    oid = str(pg.write(pygit2.enums.ObjectType.COMMIT, bent))
    _, check = check_message(pg, oid, "bob", "alice", directory())
    assert not check.good


def print_vectors() -> None:  # pragma: no cover - run by hand to (re)write the spec's blocks
    """``python -c 'from tests.trust.test_vectors_messages import print_vectors; print_vectors()'``"""
    import tempfile

    from gitmail.core import crypto, private

    with tempfile.TemporaryDirectory() as t:
        pg = pygit2.init_repository(t, bare=True)
        blob, oid = write_clear(pg)
        print("clear-message.json\n" + blob.decode())
        print("clear-commit\n" + _raw(pg, oid).decode(), end="")
        print("clear-commit-id\n" + oid)
        d = directory()
        msg = clear_message()
        inner = sealed_plaintext(msg)
        keys = [d.members[n].encryption_key or "" for n in private.readers(d, "alice", msg.to)]
        cipher = crypto.seal(inner + b" " * (crypto.bucket(len(inner)) - len(inner)), keys)
        blob, oid = write_encrypted(pg, cipher)
        print("encrypted-message.age.b64\n" + base64.encodebytes(cipher).decode(), end="")
        print("encrypted-message.json\n" + blob.decode())
        print("encrypted-commit\n" + _raw(pg, oid).decode(), end="")
