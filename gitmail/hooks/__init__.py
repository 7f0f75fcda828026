"""The git hooks front-end: the new-mail notice after ``git pull`` and checkouts.

``gitmail hooks install`` writes ``post-merge`` (after ``git pull``) and
``post-checkout`` (after a checkout or clone) from :mod:`gitmail.hookscripts`;
they print a one-line notice of new mail. The notice is shell first
(``hooks/notice.sh``: git checks the signatures) and this module otherwise.

Run as ``python -c '...main()' notify HOOK [ARGS...]`` (never ``-m``, which
would put the work tree first on ``sys.path``) the module prints the
notice on stdout and always exits 0.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from gitmail import hookscripts
from gitmail.errors import UsageError
from gitmail.hookscripts import Action

if TYPE_CHECKING:
    from gitmail.api import Session
    from gitmail.core.repo import Repo
    from gitmail.core.cache import Row

CLIENT_HOOKS = ("post-merge", "post-checkout")


def install(repo: str | Path, force: bool = False) -> list[Action]:
    """Install the client hooks (``post-merge``, ``post-checkout``) into ``repo``.

    Idempotent. Raises :class:`UsageError` for a foreign hook that cannot be
    chained, if ``gitmail.noticeSubjects`` has a bad value (an error now,
    not a silent hook later), or (unless ``force``) when the hooks folder lies inside the
    work tree: a project's own hooks folder (``core.hooksPath`` as husky and others set it),
    where gitmail's hooks, with this machine's Python path in them, showed as changes, were
    committed with ``git commit -a`` and stopped checkouts of branches that changed them.
    """
    from gitmail.core.repo import open_repo

    notice_subjects(open_repo(repo))
    if not force:
        inside = _in_work_tree(repo, hookscripts.hooks_dir(repo))
        if inside is not None:
            raise UsageError(f"the hooks folder {inside} is inside the work tree (core.hooksPath: the project's own "
                             "hooks, committed with it); gitmail's hooks would be part of the project. "
                             "Use --force to install there anyway")
    return hookscripts.install(repo, CLIENT_HOOKS)


def _in_work_tree(repo: str | Path, d: Path) -> Optional[Path]:
    """``d`` when it lies inside ``repo``'s work tree (and not in its git directory), else None."""
    from gitmail import git

    top = git.work_tree(repo)
    if top is None:
        return None
    here = d.resolve()
    for where, inside in ((git.git_dir(repo), False), (top, True)):
        try:
            here.relative_to(where.resolve())
            return d if inside else None
        except ValueError:
            continue
    return None


def shared_hooks_folder(repo: str | Path) -> Optional[str]:
    """Where ``core.hooksPath`` comes from when it is not ``repo``'s own config (the user's global
    or system config, an include): then the hooks folder is every repository's that reads that
    config, and installing into it installs there too. None for the repository's own."""
    from gitmail import git

    # One git call: the scope (git 2.26+) and the origin of the value git uses, the last one set.
    proc = git.run(["config", "--show-scope", "--show-origin", "--get", "core.hooksPath"], repo, check=False)
    if proc.returncode != 0:
        return None
    scope, origin = (proc.stdout.decode("utf-8", "replace").split("\t") + ["", ""])[:2]
    return None if scope in ("local", "worktree") else origin


def uninstall(repo: str | Path) -> list[Action]:
    """Remove the client hooks and put back the hooks they chained to."""
    return hookscripts.uninstall(repo, CLIENT_HOOKS)


# -- the notice ---------------------------------------------------------------------


def notice(repo: str | Path, as_: Optional[str] = None) -> Optional[str]:
    """The new-mail notice for the member of ``repo``, or None when nothing new arrived.

    Ingests (verifies) whatever moved since the cache was last brought up to
    date and describes the unread inbox messages that ingest added; cheap when
    nothing moved (no pygit2). Messages that fail verification are counted as
    a warning, never shown as mail. Raises :class:`GitmailError` subclasses.
    """
    from gitmail import api
    from gitmail.core import cache

    s = api.session(repo, as_)
    many = _too_many_to_check(s)
    if many is not None:
        return (f"📬 {many} new messages arrived: too many to check during a git command; "
                "run `gitmail sync` to check and list them")
    before = cache.max_rowid(s.db)
    s.refresh()
    # Counted as the rows are read, a page at a time: a first fetch of a big mailbox (a plain
    # git pull of a million messages) never holds them all (issue 16 item 2).
    good = bad = 0
    newest: Optional["Row"] = None
    senders: dict[str, str] = {}  # sender -> date of their newest new message
    noticed = _not_yet_noticed(s)
    for page in cache.new_unread_pages(s.db, before):
        for r in page:
            if not noticed(r):
                continue
            if r.status != "good":
                bad += 1
                continue
            good += 1
            if newest is None or r.date > newest.date:
                newest = r
            if r.date > senders.get(r.sender, ""):
                senders[r.sender] = r.date
    by_newest = sorted(senders, key=lambda k: senders[k], reverse=True)
    lines = [_describe(newest, good, by_newest, notice_subjects(s.repo) == "decrypt")] if newest is not None else []
    if bad:
        from gitmail.api.views import count

        lines.append(f"⚠️  {count(bad, 'new message')} failed verification. Run: gitmail verify")
    return "\n".join(lines) or None


NOTICE_CHECK_MAX = 1000  # new messages a hook checks during the git command that runs it


def _too_many_to_check(s: "Session") -> Optional[int]:
    """The number of new commits on the member's mailboxes when over :data:`NOTICE_CHECK_MAX`,
    else None. Counted with one ``git rev-list`` (the moved tips, not what the cache holds):
    a flood of mail (5,000 messages from a hostile member) made the developer's next ``git
    pull`` verify every one inline, 2.9 s and 100 MB, growing with the flood."""
    from gitmail import git
    from gitmail.core import cache, refs

    if s.repo.remote is None:
        return None
    t = refs.tracking("", s.repo.remote)
    known = cache.indexed_tips(s.db)
    revs = []
    for full, tip in cache.watched_refs(s.repo, s.me).items():
        had = known.get(full[len(t):])
        if not full.startswith(t + refs.MAIL) or had == tip:
            continue
        revs += [tip, "^" + had] if had else [tip]
    if not revs:
        return None
    p = git.run(["rev-list", "--count", "--first-parent", "--stdin"], s.repo.path, check=False,
                input="".join(r + "\n" for r in revs).encode())
    try:
        n = int(p.stdout.decode().strip() or 0)
    except ValueError:
        return None
    return n if n > NOTICE_CHECK_MAX else None


def _not_yet_noticed(s: "Session") -> "Callable[[Row], bool]":
    """Whether a new row is still to be announced: the shell notice announced those up to the
    tips in ``hook-seen`` already. A message that failed verification is always reported, even
    if the shell announced it."""
    from gitmail.core import cache, refs

    try:
        lines = (s.repo.data_dir / "hook-seen").read_text().split("\n")  # LF alone: ref names (git.for_each_ref)
    except OSError:
        return lambda r: True
    seen = {ref: oid for oid, _, ref in (ln.partition(" ") for ln in lines)}
    t = refs.tracking("", s.repo.remote)
    upto: dict[str, int] = {}  # per mailbox, looked up once

    def keep(r: "Row") -> bool:
        if r.path not in upto:
            hit = cache.ordinal_of(s.db, r.path, seen.get(t + r.path, ""))
            upto[r.path] = -1 if hit is None else hit
        return r.ordinal > upto[r.path] or r.status != "good"

    return keep


def _describe(newest: "Row", n: int, senders: list[str], decrypt: bool) -> str:
    """The notice line for ``n`` new verified messages from ``senders`` (newest message first);
    the same text as hooks/notice.sh prints."""
    from gitmail.api.views import SHORT, ago, clean, flat

    subject = flat(newest.subject)  # as the message commit's subject line has it
    subject = clean(subject if len(subject) <= 50 else subject[:48] + "..")  # git's %<(50,trunc)
    enc = bool(newest.encrypted) and not decrypt
    age = ago(newest.date)
    if n == 1:
        short = clean(newest.id[:SHORT])
        if enc:
            return f"📬 1 new encrypted message from {clean(newest.sender)} ({age})  Run: gitmail read {short}"
        return f'📬 1 new message from {clean(newest.sender)} ({age}): "{subject}"  Run: gitmail read {short}'
    names = list(dict.fromkeys(clean(x) for x in senders))
    who = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = f"newest ({age}) encrypted" if enc else f'newest ({age}): "{subject}"'
    return f"📬 {n} new messages from {who}; {what}  Run: gitmail read"


def notice_subjects(repo: "Repo") -> str:
    """``clear`` (default: the notice names an encrypted message's sender, not its subject)
    or ``decrypt`` (decrypt subjects for the notice: gitmail's Python runs, slower).

    From ``$GITMAIL_NOTICE_SUBJECTS``, else git config ``gitmail.noticeSubjects``.
    Raises :class:`UsageError` for any other value.
    """
    value = os.environ.get("GITMAIL_NOTICE_SUBJECTS") or repo.config.get("gitmail.noticesubjects") or "clear"
    if value not in ("clear", "decrypt"):
        raise UsageError(f"gitmail.noticeSubjects must be 'clear' or 'decrypt', not {value!r}")
    return value


def run_notice(argv: Sequence[str]) -> int:
    """Entry point of the client hooks: print the notice on stdout; always 0."""
    hook = argv[0] if argv else ""
    if hook == "post-checkout" and len(argv) >= 4 and argv[3] == "0":
        return 0  # a file checkout, not a branch switch
    if os.environ.get("GITMAIL_HOOKS") == "off":
        return 0
    try:
        text = notice(".")
    except Exception:  # a hook never fails the git command; keep quiet
        if os.environ.get("GITMAIL_DEBUG"):
            raise
        return 0
    if text:
        print(text, flush=True)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["notify"]:
        return run_notice(args[1:])
    print("usage: python -m gitmail.hooks notify HOOK [ARGS...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
