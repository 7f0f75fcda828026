"""Encrypted messages (docs/protocol.md, "Encryption").

An encrypted message keeps in clear what auditing and routing need (sender,
recipients, date, priority, type, request_id, Message-ID, thread ids, a
bucketed size) and moves subject, summary, body, payload and attachment names
and types into ``message.age``: the canonical JSON of :class:`Sealed`, padded
with spaces to a size bucket, encrypted with age to every recipient and the
sender. Attachments are encrypted one by one before they are stored (LFS or
blob), so the pointer's oid is the ciphertext's. The commit's signature covers
the tree, hence the ciphertext: tampering fails verification before anything
is decrypted.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gitmail.core import crypto
from gitmail.core.address import BROADCAST
from gitmail.core.model import Envelope, Message, Sealed, SealedAttachment, canonical_json
from gitmail.errors import UsageError, VerificationError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.directory import Directory
    from gitmail.core.repo import Repo

CIPHER_FILE = "message.age"


def readers(d: "Directory", sender: str, recipients: Sequence[str]) -> list[str]:
    """Every member who must be able to read: the recipients (groups and ``*``
    expanded) and the sender, sorted."""
    return sorted(d.expand(recipients) | {sender})


def decide(d: "Directory", sender: str, recipients: Sequence[str], want: Optional[bool]) -> bool:
    """Whether to encrypt, from the org policy and ``--encrypt`` (True) / ``--plain`` (False).

    ``required``: always (``--plain`` is an error); ``default``: when every
    reader has published a key, except broadcasts, unless ``--plain``;
    ``off``: only with ``--encrypt``. ``--encrypt`` with a reader who has no
    key is an error. Raises :class:`UsageError`.
    """
    policy = d.policy.encryption
    names = readers(d, sender, recipients)
    missing = [n for n in names if not (d.members.get(n) and d.members[n].encryption_key)]
    if want is False:
        if policy == "required":
            raise UsageError("the org requires encryption: --plain is not allowed")
        return False
    if want or policy == "required":
        if missing:
            raise UsageError(f"cannot encrypt: no encryption key published by {', '.join(missing)}")
        return True
    if policy == "off" or BROADCAST in recipients:
        return False
    return not missing


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * (crypto.bucket(len(data)) - len(data))


def seal_message(msg: Message, d: "Directory", sealed_atts: list[SealedAttachment]) -> tuple[Message, bytes]:
    """The clear message (secret fields emptied, envelope set) and the ``message.age`` bytes.

    ``msg.attachments`` must already describe the stored ciphertext. The
    returned message has its Message-ID set.
    """
    names = readers(d, msg.from_, msg.to)
    keys = [d.members[n].encryption_key or "" for n in names]
    inner = Sealed(from_=msg.from_, to=msg.to, subject=msg.subject, summary=msg.summary, body=msg.body,
                   payload=msg.payload, attachments=sealed_atts)
    plain = canonical_json(inner.model_dump(by_alias=True, mode="json"))
    cipher = crypto.seal(_pad(plain, b" "), keys)
    env = Envelope(sha256=hashlib.sha256(cipher).hexdigest(), recipients=names, size=crypto.bucket(len(plain)))
    clear = msg.model_copy(update={
        "subject": "", "summary": "", "body": "", "payload": None,
        "encrypted": env.model_dump(mode="json"),
    })
    clear.id = clear.compute_id()
    return clear, cipher


def envelope(msg: Message) -> Envelope:
    """The envelope of an encrypted message. Raises :class:`VerificationError` if malformed."""
    try:
        return Envelope.model_validate(msg.encrypted)
    except ValueError:
        raise VerificationError("malformed encryption envelope") from None


def check_ciphertext(pg: "pygit2.Repository", commit: "pygit2.Commit", msg: Message,
                     directory: "Optional[Directory]" = None) -> bytes:
    """The ciphertext blob of an encrypted message commit, checked against the envelope
    (docs/protocol.md §9, "Verification before decryption"). With ``directory``, every
    reader the envelope lists must be a name a member holds or held: the age header's
    bound grows with the readers, so made-up names (12,000 of them: 35 s of each reader's
    sync for one message, through the guard too) bought a header an age decryptor spends
    minutes on. Raises :class:`VerificationError`."""
    from gitmail.core.objects import blob_data

    env = envelope(msg)
    if directory is not None:
        unknown = [r for r in env.recipients if not directory.held(r)]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise VerificationError(f"encrypted.recipients: {unknown[0][:100]!r}{more} is no member's name, "
                                    "nor was it")
    try:
        data = blob_data(pg, commit.tree[env.path].id)
    except (KeyError, TypeError):
        raise VerificationError(f"encrypted message without its {env.path}") from None
    if hashlib.sha256(data).hexdigest() != env.sha256:
        raise VerificationError("the ciphertext does not match the signed envelope")
    problem = crypto.header_problem(data, len(env.recipients))
    if problem is not None:
        raise VerificationError(f"{env.path}: {problem}")
    return data


def open_message(pg: "pygit2.Repository", commit: "pygit2.Commit", msg: Message,
                 identities: Sequence[object], body_limit: int,
                 me: Optional[str] = None) -> tuple[Message, list[SealedAttachment]]:
    """Decrypt ``msg``: a copy with subject, summary, body and payload restored, and the
    sealed attachment entries (names, types, plaintext hashes). ``body_limit``: in bytes,
    the reader's, as for a clear message (``Directory.read_body_limit``; docs/protocol.md §9:
    the sealed fields follow the rules of clear ones).

    Raises :class:`crypto.NotARecipientError`, :class:`crypto.DecryptionError`
    (damaged; not canonical JSON within §4's bounds; longer than the envelope's ``size``),
    or :class:`VerificationError` when the sealed content contradicts the clear message
    (recipients or sender altered, attachments swapped) or breaks a rule.
    """
    from gitmail.errors import CorruptMessageError

    env = envelope(msg)
    plain = crypto.open_(check_ciphertext(pg, commit, msg), identities, env.recipients, me)
    content = plain.rstrip(b" ")  # the padding (canonical JSON ends in "}")
    if len(content) > env.size:
        raise crypto.DecryptionError(f"the decrypted content is {len(content)} bytes; the envelope says at most "
                                     f"{env.size}")
    try:
        inner = Sealed.from_plaintext(content)
    except (ValueError, CorruptMessageError) as e:
        why = str(e).removeprefix("corrupt message blob: ").splitlines()[0] if str(e) else type(e).__name__
        raise crypto.DecryptionError(f"the decrypted content is not a gitmail message ({why})") from None
    if inner.to != msg.to or inner.from_ != msg.from_:
        raise VerificationError("the encrypted recipients or sender differ from the clear ones (altered)")
    if [a.cipher_oid for a in inner.attachments] != [a.oid for a in msg.attachments]:
        raise VerificationError("an attachment does not belong to this message (swapped)")
    from gitmail.core.rules import sealed_problem

    opened = opened_from(msg, inner)
    problem = sealed_problem(opened, inner.attachments, body_limit)
    if problem:  # docs/protocol.md §9: the sealed fields follow the same rules as clear ones
        raise VerificationError(f"the encrypted content breaks the rules: {problem}")
    return opened, inner.attachments


def opened_from(msg: Message, inner: Sealed) -> Message:
    """``msg`` with the secret fields of its (already checked) sealed content restored."""
    return msg.model_copy(update={"subject": inner.subject, "summary": inner.summary, "body": inner.body,
                                  "payload": inner.payload})


def plaintext_json(opened: Message, sealed: list[SealedAttachment]) -> str:
    """The decrypted content as the cache keeps it (see :class:`Opener`)."""
    inner = Sealed(from_=opened.from_, to=opened.to, subject=opened.subject, summary=opened.summary,
                   body=opened.body, payload=opened.payload, attachments=sealed)
    return canonical_json(inner.model_dump(by_alias=True, mode="json")).decode("utf-8")


class Opener:
    """Decrypts messages for one member, loading their keys once; never raises."""

    def __init__(self, repo: "Repo", member: str, body_limit: int) -> None:
        self.repo, self.member, self.body_limit = repo, member, body_limit
        self._ids: Optional[list[object]] = None
        self._plain: Optional[bool] = None
        self.key_error: Optional[str] = None

    def ids(self) -> list[object]:
        if self._ids is None:
            try:
                self._ids = identities(self.repo, self.member)
            except Exception as e:  # a missing or locked key: listings show "(encrypted)"
                self.key_error = str(e)
                self._ids = []
        return self._ids

    def open(self, pg: "pygit2.Repository", commit: "pygit2.Commit", msg: Message) -> Optional[tuple[Message, list[SealedAttachment]]]:
        """The decrypted message and its sealed attachment entries, or None when it cannot be opened here."""
        if msg.encrypted is None or self.member not in envelope(msg).recipients or not self.ids():
            return None
        try:
            return open_message(pg, commit, msg, self.ids(), self.body_limit, self.member)
        except (crypto.NotARecipientError, crypto.DecryptionError, VerificationError):
            return None

    @property
    def keeps_plaintext(self) -> bool:
        """Whether the cache may keep decrypted bodies: only when the member's key has no
        passphrase, so that whoever can read the cache could read the key and decrypt anyway."""
        if self._plain is None:
            self._plain = bool(self.ids()) and not crypto.is_protected(self.repo.key_path(self.member))
        return self._plain


def identities(repo: "Repo", member: str) -> list[object]:
    """The member's age identities: the current key and every retired key this clone keeps.

    Raises :class:`KeyError_` when the current key cannot be loaded.
    """
    from gitmail import git

    paths = [repo.key_path(member)]
    paths += [Path(p) for p in git.config_get_all(repo.path, f"gitmail.{member}.oldkey")]
    out: list[object] = []
    for i, p in enumerate(paths):
        try:
            out.append(crypto.identity(p))
        except Exception:
            if i == 0:
                raise
    return out
