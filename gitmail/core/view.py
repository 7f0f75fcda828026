"""The member's view: which mailbox refs hold a member's inbox and sent mail (docs/protocol.md, "Refs").

One home for the rule, used by the cache (what to index), the audit
(``gitmail verify``) and the git hooks' shell notice (``.git/gitmail/inbox-refs``):

* inbox: ``mail/<member>/*``; ``mail/*/<sender>`` broadcast (``%2A``) and the
  member's groups (``team:NAME``), except the member's own messages there;
* sent: ``mail/*/<member>`` (every mailbox the member writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Collection

from gitmail.core import refs
from gitmail.core.address import BROADCAST, GROUP_PREFIX, to_ref
from gitmail.errors import GitmailError

if TYPE_CHECKING:
    from pathlib import Path

    from gitmail.core.directory import Directory
    from gitmail.core.repo import Repo

INBOX_REFS = "inbox-refs"  # in .git/gitmail: what the shell notice watches
# Its ``format`` line: a new version of the file's lines gets a new number, so a file written by
# another version of gitmail for the same directory tip is written again (see write_inbox_refs).
INBOX_REFS_FORMAT = 2


def mail_patterns(tracking: str, member: str) -> list[str]:
    """``for-each-ref`` patterns under ``tracking`` (e.g. ``refs/remotes/origin/``) that can hold
    the member's mail: their inbox, their sent mail, broadcast and every group (membership
    changes with the directory; :func:`role` decides)."""
    me = to_ref(member)
    return [
        f"{tracking}{refs.MAIL}{me}/*",
        f"{tracking}{refs.MAIL}{to_ref(BROADCAST)}/*",
        f"{tracking}{refs.MAIL}{to_ref(GROUP_PREFIX)}*/*",
        f"{tracking}{refs.MAIL}*/{me}",
    ]


def role(member: str, groups: Collection[str], recipient: str, sender: str) -> tuple[bool, bool]:
    """``(inbox, sent)`` for the mailbox ``mail/<recipient>/<sender>`` in ``member``'s view.

    ``groups``: the groups the member belongs to (``team:NAME``), from the verified directory.
    """
    shared = recipient == BROADCAST or recipient in groups
    inbox = recipient == member or (shared and sender != member)
    return inbox, sender == member


def write_inbox_refs(repo: "Repo", member: str, directory: "Directory") -> None:
    """Write ``.git/gitmail/inbox-refs``: which refs the shell notice watches (docs/sync.md).

    Lines ``<key> <value>``: ``format`` (:data:`INBOX_REFS_FORMAT`), ``member`` (the
    name), ``self`` (its ref-safe form), ``directory`` (the remote-tracking directory
    ref), ``verified`` (the verified directory tip this was written for: the notice
    defers to gitmail when it differs), ``inbox <prefix> <address>`` (a ref prefix whose mail is
    for the member, its own included, and the address its ``To`` must name) and
    ``shared <prefix> <address>`` (broadcast and the member's groups: mail from
    the member itself is not inbox there), the same rule as :func:`role`;
    ``limit <bytes>`` (the org's ``body_limit``) and, for each member whose name
    is its own ref-safe form (``[a-z0-9_-]``, the only senders the notice checks
    itself), a tab-separated line ``sender``, name, the SHA256 fingerprint of the
    current signing key, and the commit author name and email
    (:func:`gitmail.core.store.author_of`): what the notice compares a message
    commit with (docs/sync.md, "The notice").
    Written only for the clone's default identity (the one the hooks notify), and only when
    its first lines (up to ``limit``) differ from the file's: the rest follows from them.
    Best effort: an unwritable file only disables the shell notice.
    """
    from gitmail.core.files import write_atomic
    from gitmail.core.signing import fingerprint
    from gitmail.core.store import author_of

    try:
        if repo.identity(None) != member:
            return
    except GitmailError:
        return
    t = refs.tracking("", repo.remote)
    lines = [f"format {INBOX_REFS_FORMAT}", f"member {member}", f"self {to_ref(member)}",
             f"directory {t}{refs.DIRECTORY}", f"verified {directory.tip or ''}",
             f"inbox {t}{refs.MAIL}{to_ref(member)}/ {member}",
             f"shared {t}{refs.MAIL}{to_ref(BROADCAST)}/ {BROADCAST}"]
    lines += [f"shared {t}{refs.MAIL}{to_ref(g)}/ {g}" for g in directory.groups_of(member)]
    lines.append(f"limit {directory.policy.body_limit}")
    path = repo.data_dir / INBOX_REFS
    if directory.tip and _written_for(path, "\n".join(lines) + "\n"):
        # The sender lines are the members' at this verified tip: already written (a sync at
        # 10,000 members spent 0.16 s recomputing them; issue 16, steady state).
        return
    for name in sorted(directory.members):
        m = directory.members[name]
        if to_ref(name) == name:  # author_of never holds a tab or a line break
            lines.append("\t".join(["sender", name, fingerprint(m.signing_key), *author_of(m)]))
    try:
        write_atomic(path, "\n".join(lines) + "\n", only_if_changed=True)
    except OSError:
        pass


def _written_for(path: "Path", head: str) -> bool:
    """Whether the file at ``path`` is :func:`write_inbox_refs`'s for these first lines (format,
    member, remote, verified directory tip, ...): then its sender lines, a function of that
    directory alone, are too."""
    try:
        with open(path, "rb") as f:
            data = f.read(len(head.encode("utf-8")) + 7)
    except OSError:
        return False
    b = head.encode("utf-8")
    return data.startswith(b) and data[len(b):] in (b"", b"sender\t")
