"""Transport through the system ``git`` binary: fetch, push, and the outbox.

Sending writes message commits onto ``refs/gitmail/outbox/<r>/<s>`` (on top of
the remote-tracking tip) and then tries to push each outbox ref to
``refs/heads/gitmail/mail/<r>/<s>``. A push that lands deletes the outbox ref;
an unreachable remote leaves it queued for the next ``gitmail sync``; a lost
race (another process of the same sender pushed first) fetches, re-parents the
queued commits onto the new tip (re-signing them, same Message-IDs), drops any
already delivered, and pushes again (docs/protocol.md, "Delivery").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from gitmail import git
from gitmail.core import refs
from gitmail.core.signing import Signer
from gitmail.errors import GitError, PushRejectedError, RemoteUnreachableError

if TYPE_CHECKING:
    from gitmail.core.repo import Repo

MAX_RETRIES = 30
# Push summaries that mean "the remote moved under us": fetch, re-parent, retry.
# "failed to update ref" / "cannot lock ref" come from a race lost on the server
# after its pre-receive hook ran (both pushes passed the guard, one won the ref).
_BEHIND = ("non-fast-forward", "fetch first", "stale info", "failed to update ref", "failed to lock",
           "cannot lock ref", "incorrect old value")


def fetch(repo: "Repo", paths: Optional[list[str]] = None) -> None:
    """Fetch the org's gitmail refs into remote-tracking refs (all, or just ``paths``).

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached.
    """
    remote = repo.remote
    assert remote
    if paths:
        specs = [f"+{refs.head(p)}:{refs.tracking(p, remote)}" for p in paths]
    else:
        specs = [refs.FETCH_REFSPEC.format(remote=remote)]
    try:
        git.run(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", remote, *specs], repo.path, remote=True)
    except RemoteUnreachableError as e:
        e.message = unreachable_message(repo, e)
        raise


def unreachable_message(repo: "Repo", e: "GitError") -> str:
    """One line: which remote could not be reached, git's reason, and that nothing is lost."""
    url = repo.config.get(f"remote.{repo.remote}.url", "")
    lines = [ln.strip() for ln in e.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    reason = next((ln for ln in lines if _git_unreachable(ln)), lines[-1] if lines else "no answer")
    reason = reason.removeprefix("fatal: ").removeprefix("error: ")
    return f"cannot reach the org remote {repo.remote!r} ({url}): {reason}; queued mail stays in the outbox"


def _git_unreachable(line: str) -> bool:
    return bool(git.UNREACHABLE.search(line.encode("utf-8", "replace")))


@dataclass
class PushResult:
    ok: set[str] = field(default_factory=set)  # destination refs that landed (or were up to date)
    behind: set[str] = field(default_factory=set)  # rejected as non-fast-forward
    refused: dict[str, str] = field(default_factory=dict)  # refused by the server (hook): reason


def push(repo: "Repo", specs: list[tuple[str, str]]) -> PushResult:
    """Push ``(src, dst)`` pairs in one ``git push --porcelain`` (never forced).

    Raises :class:`RemoteUnreachableError` when the remote cannot be reached.
    """
    remote = repo.remote
    assert remote
    args = ["push", "--porcelain", remote, *[f"{s}:{d}" for s, d in specs]]
    proc = git.run(args, repo.path, check=False)
    res = PushResult()
    remote_lines = [
        line[len("remote: ") :].strip()
        for line in proc.stderr.decode("utf-8", "replace").splitlines()
        if line.startswith("remote: ") and line[len("remote: ") :].strip()
    ]
    seen = False
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or len(parts[0]) != 1:
            continue
        seen = True
        flag, spec, summary = parts[0], parts[1], parts[2]
        dst = spec.rsplit(":", 1)[-1]
        if flag in " *=+":
            res.ok.add(dst)
        elif any(b in summary for b in _BEHIND):
            res.behind.add(dst)
        else:
            reason = "; ".join(remote_lines) or summary
            res.refused[dst] = reason
    if not seen and proc.returncode != 0:
        cmd = ["git", *args]
        if git.UNREACHABLE.search(proc.stderr):
            err = RemoteUnreachableError(cmd, proc.returncode, proc.stdout, proc.stderr)
            err.message = unreachable_message(repo, err)
            raise err
        raise GitError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return res


def push_oid(repo: "Repo", oid: str, dst: str, expected: Optional[str]) -> bool:
    """Push commit ``oid`` to ``dst``; True if it landed, False if the remote had moved.

    On success the remote-tracking ref is moved to ``oid``. Raises
    :class:`PushRejectedError` when the server refuses the update.
    """
    res = push(repo, [(oid, dst)])
    if dst in res.refused:
        raise PushRejectedError(f"the org repo refused the update of {dst}: {res.refused[dst]}")
    if dst in res.ok:
        path = dst[len(refs.HEADS) :]
        with repo.lock():
            repo.set_ref(refs.tracking(path, repo.remote), oid, repo.ref_target(refs.tracking(path, repo.remote)))
        return True
    return False


@dataclass
class Delivery:
    delivered: list[str] = field(default_factory=list)  # mailbox paths whose outbox landed
    queued: list[str] = field(default_factory=list)  # still in the outbox (remote unreachable)
    refused: dict[str, str] = field(default_factory=dict)


def outbox_paths(repo: "Repo", sender: Optional[str] = None) -> dict[str, str]:
    """Mailbox path -> outbox tip for every queued outbox ref (of ``sender``, or all)."""
    from gitmail.core.address import to_ref

    pattern = refs.OUTBOX + ("*/" + to_ref(sender) if sender else "*/*")
    found = git.for_each_ref(repo.path, [pattern])
    return {refs.MAIL + name[len(refs.OUTBOX) :]: oid for name, oid in found.items()}


def deliver(
    repo: "Repo", signer: Optional[Signer], sender: Optional[str] = None, pending: Optional[dict[str, str]] = None
) -> Delivery:
    """Push every queued outbox ref (of ``sender``, or all); see the module docstring.

    ``signer`` re-signs commits that must be re-parented after a lost race; with
    no signer such refs stay queued. ``pending``: :func:`outbox_paths` when the
    caller has just listed it (it is consumed). Never raises for an unreachable remote.
    """
    out = Delivery()
    pending = outbox_paths(repo, sender) if pending is None else pending
    if not pending or repo.remote is None:
        return out
    from gitmail.core import attachments
    for _attempt in range(MAX_RETRIES):
        specs = [(refs.outbox(p), refs.head(p)) for p in pending]
        try:
            # LFS content goes up before the commits that point at it; an unreachable
            # LFS store raises RemoteUnreachableError and leaves the outbox queued.
            attachments.before_push(repo, pending)
            res = push(repo, specs)
        except RemoteUnreachableError:
            out.queued = sorted(pending)
            return out
        behind = []
        with repo.lock():
            for p, tip in list(pending.items()):
                dst = refs.head(p)
                if dst in res.ok:
                    track = refs.tracking(p, repo.remote)
                    repo.set_ref(track, tip, repo.ref_target(track), "gitmail: delivered")
                    if repo.ref_target(refs.outbox(p)) == tip:
                        repo.delete_ref(refs.outbox(p))
                    out.delivered.append(p)
                    del pending[p]
                elif dst in res.refused:
                    out.refused[p] = res.refused[dst]
                    del pending[p]
                else:
                    behind.append(p)
        if not behind:
            return out
        try:
            fetch(repo, behind)
        except RemoteUnreachableError:
            out.queued = sorted(pending)
            return out
        with repo.lock():
            for p in behind:
                new_tip = _rebase_outbox(repo, p, signer)
                if new_tip is None:
                    out.delivered.append(p)
                    pending.pop(p, None)
                else:
                    pending[p] = new_tip
        if not pending:
            return out
    out.queued = sorted(pending)
    return out


def _rebase_outbox(repo: "Repo", path: str, signer: Optional[Signer]) -> Optional[str]:
    """Re-parent the queued commits of ``path`` onto the fetched tip.

    Returns the new outbox tip, or None when everything queued had already
    landed (the outbox ref is then deleted). Caller holds the lock.
    """
    import pygit2

    from gitmail.core.objects import commit, first_parent
    from gitmail.core.store import chain as chain_of
    from gitmail.core.store import load_commit, read_message, resign
    from gitmail.errors import CorruptMessageError

    pg = repo.pg
    obref = refs.outbox(path)
    ob_tip = repo.ref_target(obref)
    tip = repo.ref_target(refs.tracking(path, repo.remote))
    if ob_tip is None:
        return None
    base = str(pg.merge_base(ob_tip, tip)) if tip else None
    chain = []
    c: Optional[pygit2.Commit] = commit(pg, ob_tip)
    while c is not None and str(c.id) != base:
        chain.append(c)
        c = first_parent(pg, c)
    landed = set()
    for oid in (chain_of(pg, tip, base)[0] if tip else []):
        t = load_commit(pg, oid)
        try:  # a hostile commit someone else pushed here delivers nothing of ours
            landed.add(read_message(pg, t).id) if not isinstance(t, str) else None
        except CorruptMessageError:
            pass
    todo = [c for c in reversed(chain) if read_message(pg, c).id not in landed]
    if not todo:
        repo.delete_ref(obref)
        return None
    if signer is None:
        return ob_tip
    parent = tip
    for c in todo:
        parent = resign(pg, c, parent, signer)
    assert parent
    repo.set_ref(obref, parent, ob_tip, "gitmail: re-parented queued messages")
    return parent
