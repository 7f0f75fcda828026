"""Message commits: writing them, reading them back, and checking them.

A message commit (docs/protocol.md, "Message commits") has:

* tree: ``message.json`` (the canonical message blob), plus attachment entries;
* author: the sender (display name and email from the directory), author date =
  message date (whole seconds, +0000);
* message: subject line, blank line, body, blank line, trailers
  (``Message-Id``, ``To`` (one per recipient), ``Thread``, ``In-Reply-To``,
  ``Priority``, ``Type``, ``Request-Id``);
* a ``gpgsig`` header holding an armored SSHSIG (namespace ``git``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Optional

from gitmail.core.model import Member, Message
from gitmail.core.objects import blob_data, signed_commit
from gitmail.core.signing import Signer, signer_of
from gitmail.errors import CorruptMessageError, VerificationError

if TYPE_CHECKING:
    import pygit2

    from gitmail.core.directory import Directory

MESSAGE_FILE = "message.json"

# Verification statuses (docs/protocol.md, "Verification").
GOOD = "good"
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad-signature"
UNKNOWN_SENDER = "unknown-sender"
WRONG_SIGNER = "wrong-signer"
MALFORMED = "malformed"
MISFILED = "misfiled"
RETIRED_KEY = "retired-key"  # signed by a key retired (or revoked) before the message was sent


def author_name(s: str) -> str:
    """A string git accepts in an author name: no angle brackets or line breaks."""
    return " ".join(s.replace("<", "").replace(">", "").split()) or "unknown"


def commit_message(msg: Message) -> str:
    """The commit message text: subject, body, trailers (one paragraph each)."""
    subject = " ".join(msg.subject.split()) or "(no subject)"
    if msg.encrypted is not None:
        subject = "(encrypted message)"
    trailers = [f"Message-Id: <{msg.id}@gitmail>"]
    trailers += [f"To: {' '.join(t.split())}" for t in msg.to]
    if msg.thread:
        trailers.append(f"Thread: <{msg.thread}@gitmail>")
    if msg.in_reply_to:
        trailers.append(f"In-Reply-To: <{msg.in_reply_to}@gitmail>")
    trailers.append(f"Priority: {msg.priority}")
    trailers.append(f"Type: {msg.type}")
    if msg.request_id:
        trailers.append(f"Request-Id: {msg.request_id}")
    parts = [subject]
    body = msg.body.strip("\n") if msg.encrypted is None else ""
    if body and body != subject:
        parts.append(body)
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


def write_message_commit(
    pg: "pygit2.Repository",
    msg: Message,
    author: Member,
    signer: Signer,
    parent: Optional[str],
    extra_tree: Optional[dict[str, tuple[str, int]]] = None,
) -> str:
    """Write blob, tree and signed commit for ``msg`` on top of ``parent``; return the commit oid.

    ``extra_tree`` maps tree paths to ``(blob oid, filemode)`` (attachments).
    The commit is only written to the object database; no ref moves.
    """
    import pygit2

    blob = pg.create_blob(msg.to_blob())
    tb = pg.TreeBuilder()
    tb.insert(MESSAGE_FILE, blob, pygit2.enums.FileMode.BLOB)
    if extra_tree:
        _insert_paths(pg, tb, extra_tree)
    tree = tb.write()
    when = int(datetime.fromisoformat(msg.date.replace("Z", "+00:00")).timestamp())
    name = author_name(author.display_name or author.name)
    a = pygit2.Signature(name, author_name(author.email), when, 0)
    import time

    c = pygit2.Signature(name, author_name(author.email), int(time.time()), 0)
    return signed_commit(pg, a, c, commit_message(msg), tree, [parent] if parent else [], signer.sign)


def _insert_paths(pg: "pygit2.Repository", tb: "pygit2.TreeBuilder", paths: dict[str, tuple[str, int]]) -> None:
    import pygit2

    sub: dict[str, dict[str, tuple[str, int]]] = {}
    for path, (oid, mode) in paths.items():
        head, _, rest = path.partition("/")
        if rest:
            sub.setdefault(head, {})[rest] = (oid, mode)
        else:
            tb.insert(head, pygit2.Oid(hex=oid), mode)
    for name, entries in sub.items():
        child = pg.TreeBuilder()
        _insert_paths(pg, child, entries)
        tb.insert(name, child.write(), pygit2.enums.FileMode.TREE)


def resign(
    pg: "pygit2.Repository", commit: "pygit2.Commit", parent: Optional[str], signer: Signer
) -> str:
    """Re-parent an unpushed message commit onto ``parent`` and sign it again.

    Tree, author, date and message stay the same, so the Message-ID does too.
    """
    return signed_commit(
        pg, commit.author, commit.committer, commit.message, commit.tree_id, [parent] if parent else [], signer.sign
    )


def read_message(pg: "pygit2.Repository", commit: "pygit2.Commit") -> Message:
    """The message blob of a message commit. Raises :class:`CorruptMessageError`."""
    try:
        entry = commit.tree[MESSAGE_FILE]
    except KeyError:
        raise CorruptMessageError(f"commit {str(commit.id)[:10]} has no {MESSAGE_FILE}") from None
    return Message.from_blob(blob_data(pg, entry.id))


@dataclass
class Check:
    """The result of checking one message commit."""

    status: str
    detail: str = ""
    signer: Optional[str] = None  # member name whose key made the signature

    @property
    def good(self) -> bool:
        return self.status == GOOD


def check_message(
    pg: "pygit2.Repository",
    commit: "pygit2.Commit",
    recipient: str,
    sender: str,
    directory: "Directory",
    signer_key: "Optional[str | VerificationError]" = None,
) -> tuple[Optional[Message], Check]:
    """Check a commit found on ``gitmail/mail/<recipient>/<sender>``.

    Good means: signed by a key of the member named in the message's ``from``,
    that member is the ref's sender, the recipient folder is one of ``to``, and
    the Message-ID matches the content. Never raises for a bad commit; the
    returned :class:`Check` says what is wrong. ``signer_key`` is the result of
    :func:`signer_of` when the caller already computed it (e.g. in parallel).
    """
    try:
        msg = read_message(pg, commit)
    except CorruptMessageError as e:
        return None, Check(MALFORMED, str(e))
    if msg.compute_id() != msg.id:
        return msg, Check(MALFORMED, "Message-ID does not match the content")
    try:
        if isinstance(signer_key, VerificationError):
            raise signer_key
        key = signer_key or signer_of(commit)
    except VerificationError as e:
        status = UNSIGNED if str(e) == "unsigned" else BAD_SIGNATURE
        return msg, Check(status, str(e))
    if msg.encrypted is not None:
        from gitmail.core.private import check_ciphertext

        try:
            check_ciphertext(pg, commit, msg)
        except VerificationError as e:
            return msg, Check(MALFORMED, str(e))
    who = directory.member_by_key(key)
    if who is None:
        return msg, Check(UNKNOWN_SENDER, "signed by a key no member holds")
    if who.name != msg.from_ or who.name != sender:
        return msg, Check(WRONG_SIGNER, f"signed by {who.name}, claims to be from {msg.from_}", who.name)
    why = directory.key_problem(pg, key, str(commit.id), recipient, sender)
    if why is not None:
        return msg, Check(RETIRED_KEY, why, who.name)
    if recipient not in msg.to:
        return msg, Check(MISFILED, f"on {recipient}'s mailbox but addressed to {', '.join(msg.to)}", who.name)
    return msg, Check(GOOD, "", who.name)
