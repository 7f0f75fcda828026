"""Git hooks: installing gitmail's hook scripts, and the new-mail notice they print.

Client side (``gitmail hooks install``): ``post-merge`` (after ``git pull``)
and ``post-checkout`` (after a checkout or clone) print a one-line notice of
new mail. Server side (``gitmail guard install BARE_REPO``): ``pre-receive``
runs :mod:`gitmail.guard`.

The scripts live in the top-level ``hooks/`` folder; installing writes a copy
whose ``@PYTHON@`` placeholder is the absolute path of this interpreter (so
the hook finds gitmail whatever ``PATH`` git runs it with). The hooks folder
is git's own choice (``git rev-parse --git-path hooks``), so ``core.hooksPath``
is respected. A hook already there is kept as ``<name>.gitmail-chained``, run
by ours, and put back on uninstall.

Run as ``python -c '...main()' notify HOOK [ARGS...]`` (never ``-m``, which
would put the work tree first on ``sys.path``) the module prints the
notice on stdout and always exits 0.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from gitmail import git
from gitmail.errors import GitmailError, UsageError

if TYPE_CHECKING:
    from gitmail.api import Session
    from gitmail.core.directory import Directory
    from gitmail.core.repo import Repo

CLIENT_HOOKS = ("post-merge", "post-checkout")
SERVER_HOOKS = ("pre-receive",)
MARKER = "gitmail-hook"  # every script we install carries this word
CHAINED = ".gitmail-chained"
NOTICE_SH = "notice.sh"  # not a hook: the shell notice that post-merge and post-checkout include
INBOX_REFS = "inbox-refs"  # in .git/gitmail: what the shell notice watches
def _templates() -> Path:
    """The hook scripts: the source tree's hooks/ (editable installs), else the copy a
    wheel installs under ``<prefix>/share/gitmail/hooks``."""
    import sys

    here = Path(__file__).resolve().parent.parent / "hooks"
    return here if here.is_dir() else Path(sys.prefix) / "share" / "gitmail" / "hooks"


TEMPLATES = _templates()


@dataclass
class Action:
    """What (un)installing did to one hook: ``path`` and a short ``what``."""

    hook: str
    path: Path
    what: str  # installed | updated | chained | removed | restored | not-ours | absent


def hooks_dir(repo: str | Path) -> Path:
    """The hooks folder git uses for ``repo`` (honours ``core.hooksPath``; bare repos too).

    Raises :class:`NotARepoError` when ``repo`` is not a git repository.
    """
    gd = git.git_dir(repo)
    out = git.output(["rev-parse", "--git-path", "hooks"], gd)
    p = Path(out)
    return p if p.is_absolute() else (gd / p).resolve()


def template(name: str) -> str:
    """The script ``hooks/<name>`` with ``@PYTHON@`` (and a python3 shebang) set to this interpreter."""
    path = TEMPLATES / name
    if not path.is_file():
        raise GitmailError(f"hook template {path} is missing (is gitmail installed from its source tree?)")
    text = path.read_text().replace("@PYTHON@", sys.executable)
    if "@NOTICE@" in text:  # the shell notice (hooks/notice.sh) goes inline: a hook is one file
        text = text.replace("@NOTICE@", (TEMPLATES / NOTICE_SH).read_text().rstrip("\n"))
    if text.startswith("#!/usr/bin/env python3\n"):
        text = f"#!{sys.executable}\n" + text.split("\n", 1)[1]
    return text


def is_ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(errors="replace")[:2000]
    except OSError:
        return False


def install(repo: str | Path, names: Sequence[str] = CLIENT_HOOKS, daemon: bool = True) -> list[Action]:
    """Install gitmail's ``names`` hooks into ``repo``'s hooks folder; see the module docstring.

    ``daemon`` false writes a ``pre-receive`` that never uses the warm guard
    daemon (:mod:`gitmail.guard_daemon`). Idempotent. Raises :class:`UsageError`
    if a chained hook is already parked next to a foreign hook (refusing to
    overwrite either), or if ``gitmail.noticeSubjects`` has a bad value.
    """
    d = hooks_dir(repo)
    if any(n in CLIENT_HOOKS for n in names):
        from gitmail.core.repo import open_repo

        notice_subjects(open_repo(repo))  # a bad setting is an error now, not a silent hook later
    d.mkdir(parents=True, exist_ok=True)
    return [_install_one(d, n, daemon) for n in names]


def _install_one(d: Path, name: str, daemon: bool = True) -> Action:
    target, chained = d / name, d / (name + CHAINED)
    what = "installed"
    if target.exists() or target.is_symlink():
        if is_ours(target):
            what = "updated"
        elif chained.exists():
            raise UsageError(f"{target} is not gitmail's and {chained.name} exists already; move one of them away")
        else:
            target.rename(chained)
            what = "chained"
    tmp = d / f".{name}.gitmail-tmp"
    text = template(name)
    if "@GUARD_KEY@" in text:
        from gitmail.guard_daemon import fill_hook

        text = fill_hook(text, daemon)
    tmp.write_text(text)
    tmp.chmod(0o755)
    tmp.replace(target)
    return Action(name, target, what)


def uninstall(repo: str | Path, names: Sequence[str] = CLIENT_HOOKS) -> list[Action]:
    """Remove gitmail's hooks and put back the hooks they chained to."""
    d = hooks_dir(repo)
    out = []
    for name in names:
        target, chained = d / name, d / (name + CHAINED)
        if not target.exists():
            out.append(Action(name, target, "absent"))
            continue
        if not is_ours(target):
            out.append(Action(name, target, "not-ours"))
            continue
        target.unlink()
        if chained.exists():
            chained.rename(target)
            out.append(Action(name, target, "restored"))
        else:
            out.append(Action(name, target, "removed"))
    return out


# -- the notice ---------------------------------------------------------------------


def notice(repo: str | Path, as_: Optional[str] = None) -> Optional[str]:
    """The new-mail notice for the member of ``repo``, or None when nothing new arrived.

    Ingests (verifies) whatever moved since the cache was last brought up to
    date and describes the unread inbox messages that ingest added; cheap when
    nothing moved (no pygit2). Messages that fail verification are counted as
    a warning, never shown as mail. Raises :class:`GitmailError` subclasses.
    """
    from gitmail import api

    s = api.session(repo, as_)
    before = s.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM msg").fetchone()[0]
    s.refresh()
    rows = s.db.execute(
        "SELECT path, ordinal, sender, date, subject, id, status, encrypted FROM msg WHERE rowid > ? AND inbox=1"
        " AND dup=0 AND read=0 AND archived=0 ORDER BY date DESC",
        (before,),
    ).fetchall()
    rows = _not_yet_noticed(s, rows)
    good = [r for r in rows if r["status"] == "good"]
    bad = len(rows) - len(good)
    lines = [_describe(good, notice_subjects(s.repo) == "decrypt")] if good else []
    if bad:
        lines.append(f"⚠️  {bad} new message(s) failed verification. Run: gitmail verify")
    return "\n".join(lines) or None


def _not_yet_noticed(s: "Session", rows: list) -> list:
    """Drop the rows the shell notice announced already (up to the tips in ``hook-seen``)."""
    from gitmail.core import refs

    try:
        lines = (s.repo.data_dir / "hook-seen").read_text().splitlines()
    except OSError:
        return rows
    seen = {ref: oid for oid, _, ref in (ln.partition(" ") for ln in lines)}
    t = refs.tracking("", s.repo.remote)
    upto: dict[str, int] = {}
    for path in {r["path"] for r in rows}:
        hit = s.db.execute("SELECT ordinal FROM msg WHERE path=? AND oid=?", (path, seen.get(t + path, ""))).fetchone()
        upto[path] = hit[0] if hit else -1
    # A message that failed verification is always reported, even if the shell announced it.
    return [r for r in rows if r["ordinal"] > upto[r["path"]] or r["status"] != "good"]


def _describe(rows: list, decrypt: bool) -> str:
    """The notice line; the same text as hooks/notice.sh prints (rows: sqlite3.Row, newest first)."""
    from gitmail.cli.render import SHORT, ago

    newest = rows[0]
    subject = "".join(ch for ch in " ".join(newest["subject"].split()) if ch.isprintable())
    subject = subject if len(subject) <= 50 else subject[:48] + ".."  # git's %<(50,trunc)
    enc = bool(newest["encrypted"]) and not decrypt
    age = ago(newest["date"])
    if len(rows) == 1:
        short = newest["id"][:SHORT]
        if enc:
            return f"📬 1 new encrypted message from {newest['sender']} ({age})  Run: gitmail read {short}"
        return f'📬 1 new message from {newest["sender"]} ({age}): "{subject}"  Run: gitmail read {short}'
    senders = list(dict.fromkeys(r["sender"] for r in rows))
    who = ", ".join(senders[:3]) + (f" and {len(senders) - 3} more" if len(senders) > 3 else "")
    what = f"newest ({age}) encrypted" if enc else f'newest ({age}): "{subject}"'
    return f"📬 {len(rows)} new messages from {who}; {what}  Run: gitmail read"


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


def write_inbox_refs(repo: "Repo", member: str, directory: "Directory") -> None:
    """Write ``.git/gitmail/inbox-refs``: which refs the shell notice watches (docs/sync.md).

    Lines ``<key> <value>``: ``member`` (the name), ``self`` (its ref-safe form),
    ``directory`` (the remote-tracking directory ref), ``verified`` (the
    verified directory tip this was written for: the notice defers to gitmail
    when it differs), ``inbox <prefix> <address>`` (a ref prefix whose mail is
    for the member, its own included, and the address its ``To`` must name) and
    ``shared <prefix> <address>`` (broadcast and the member's groups: mail from
    the member itself is not inbox there).
    Written only for the clone's default identity (the one the hooks notify).
    Best effort: an unwritable file only disables the shell notice.
    """
    from gitmail.core import refs
    from gitmail.core.address import BROADCAST, to_ref

    try:
        if repo.identity(None) != member:
            return
    except GitmailError:
        return
    t = refs.tracking("", repo.remote)
    lines = [f"member {member}", f"self {to_ref(member)}", f"directory {t}{refs.DIRECTORY}",
             f"verified {directory.tip or ''}", f"inbox {t}{refs.MAIL}{to_ref(member)}/ {member}",
             f"shared {t}{refs.MAIL}{to_ref(BROADCAST)}/ {BROADCAST}"]
    lines += [f"shared {t}{refs.MAIL}{to_ref(g)}/ {g}" for g in directory.groups_of(member)]
    text = "\n".join(lines) + "\n"
    path = repo.data_dir / INBOX_REFS
    try:
        if not path.is_file() or path.read_text() != text:
            tmp = path.with_name(INBOX_REFS + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)
    except OSError:
        pass


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
