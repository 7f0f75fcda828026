"""Publishing a change to the org's directory (docs/protocol.md, "Directory").

A change is a signed commit on ``refs/heads/gitmail/directory``, checked
against the directory rules before it is written, pushed as a fast-forward,
and retried on the new tip when another member's change won the race.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from gitmail.core import directory, problems, refs, sync
from gitmail.core.directory import Directory
from gitmail.core.model import Member
from gitmail.core.signing import Signer
from gitmail.errors import DirectoryError, VerificationError

if TYPE_CHECKING:
    from gitmail.core.repo import Repo


def change(
    repo: "Repo",
    signer: Signer,
    actor: Member,
    mutate: Callable[[Directory], Directory],
    subject: str,
) -> Directory:
    """Apply ``mutate`` to the current directory as a signed commit and publish it.

    With a remote, pushes ``refs/heads/gitmail/directory``; a lost race is
    retried on the new tip (fetch, verify, re-apply). Raises
    :class:`DirectoryError` when the rules refuse the change, :class:`VerificationError`
    (naming the problem) when the org's directory tip does not verify.
    """
    for _attempt in range(10):
        current = directory.load(repo)
        org_tip = repo.ref_target(refs.tracking(refs.DIRECTORY, repo.remote)) if repo.remote else None
        if org_tip is not None and org_tip != current.tip:
            # The org's directory does not verify past current.tip: a change built there could
            # never be a fast-forward of it (retrying would only say "concurrent changes").
            why = "; ".join(problems.load(repo).get("directory", [])) or "it does not verify"
            raise VerificationError(f"the org's directory cannot be changed: {why}")
        new = mutate(Directory(current.tip, dict(current.members), dict(current.groups), current.policy))
        new = Directory(None, new.members, new.groups, new.policy)
        directory.check_change(current if current.tip else None, new, signer.public_key,
                               directory.key_history(repo.pg, current.tip))
        oid = directory.write_commit(repo.pg, new, signer, actor, current.tip, subject)
        if repo.remote is None:
            with repo.lock():
                repo.set_ref(refs.head(refs.DIRECTORY), oid, current.tip, subject)
            return directory.load(repo)
        if sync.push_oid(repo, oid, refs.head(refs.DIRECTORY), current.tip):
            return directory.load(repo)
        sync.fetch(repo, [refs.exact_pattern(refs.DIRECTORY)])
    raise DirectoryError("could not update the directory: too many concurrent changes")
