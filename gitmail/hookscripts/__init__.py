"""gitmail's hook scripts, and installing them into a repository's hooks folder.

The scripts are templates shipped as package data (``templates/``, the
project's top-level ``hooks/`` folder), read with :mod:`importlib.resources`.
Installing writes a copy whose ``@PYTHON@`` placeholder is the absolute path
of this interpreter (so the hook finds gitmail whatever ``PATH`` git runs it
with). The hooks folder is git's own choice (``git rev-parse --git-path
hooks``), so ``core.hooksPath`` is respected. A hook already there is kept as
``<name>.gitmail-chained``, run by ours, and put back on uninstall.

git-lfs shares two hooks with us (post-checkout, post-merge; its others are
post-commit and pre-push) and ``git lfs install`` refuses a hook it does not
recognise ("Hook already exists"), stopping half-way. It recognises a hook
whose first 1024 bytes, stripped, are exactly its own script (git-lfs
``lfs/hook.go``, ``matchesCurrent``), and then leaves the file as it is. So
where git-lfs is in use (``git-lfs`` on PATH, or its hook already there) our
post-checkout and post-merge begin with git-lfs's exact script, padded with
newlines to 1024 bytes, and go on with ours: git-lfs's part runs first, as it
would alone, and either install order leaves both working. A git-lfs hook
found in place is taken in this way (not chained: it would run twice) and put
back on uninstall.

Used by the git hooks front-end (:mod:`gitmail.hooks`: ``post-merge``,
``post-checkout``) and the server guard (:mod:`gitmail.guard`: ``pre-receive``).
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Optional, Sequence

from gitmail import git
from gitmail.core.files import write_atomic
from gitmail.errors import GitmailError, UsageError

MARKER = "gitmail-hook"  # every script we install carries this word
CHAINED = ".gitmail-chained"
NOTICE_SH = "notice.sh"  # not a hook: the shell notice that post-merge and post-checkout include


# git-lfs's hook script (git-lfs lfs/hook.go, hookBaseContent, v2.13 to v3.x) and the two
# older forms it still upgrades; {cmd} is the hook's name.
LFS_HOOK = (
    "#!/bin/sh\ncommand -v git-lfs >/dev/null 2>&1 || {{ echo >&2 \"\\nThis repository is configured for Git LFS "
    "but 'git-lfs' was not found on your path. If you no longer wish to use Git LFS, remove this hook by deleting "
    "the '{cmd}' file in the hooks directory (set by 'core.hookspath'; usually '.git/hooks').\\n\"; exit 2; }}\n"
    "git lfs {cmd} \"$@\""
)
LFS_HOOK_OLD = (
    "#!/bin/sh\ncommand -v git-lfs >/dev/null 2>&1 || {{ echo >&2 \"\\nThis repository is configured for Git LFS "
    "but 'git-lfs' was not found on your path. If you no longer wish to use Git LFS, remove this hook by deleting "
    "{where}.\\n\"; exit 2; }}\ngit lfs {cmd} \"$@\""
)
LFS_SHARED = ("post-checkout", "post-merge")  # hooks both git-lfs and gitmail install
LFS_PREFIX_BYTES = 1024  # what git-lfs reads of an existing hook to recognise its own


def lfs_hook(name: str) -> str:
    """git-lfs's own script for hook ``name`` (no trailing newline): what the installed
    git-lfs writes (its text changed between versions, and only its own current text is
    left alone by ``git lfs install``), else the current upstream form."""
    return _installed_lfs_hooks().get(name) or LFS_HOOK.format(cmd=name)


_LFS_CACHE: dict[str, str] = {}


def _installed_lfs_hooks() -> dict[str, str]:
    """Hook name -> script, as ``git lfs update`` writes them into a scratch repository."""
    if _LFS_CACHE or shutil.which("git-lfs") is None:
        return _LFS_CACHE
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gitmail-lfs-hooks-") as tmp:
        if git.run(["init", "-q", tmp], check=False).returncode != 0:
            return _LFS_CACHE
        # The scratch repository's own hooks folder, whatever core.hooksPath the user's global
        # config sets: git lfs update wrote its four hooks into that shared folder (and they ran
        # in every repository of the user's from then on).
        hooks = str(Path(tmp) / ".git" / "hooks")
        if git.run(["config", "core.hooksPath", hooks], tmp, check=False).returncode != 0:
            return _LFS_CACHE
        if git.run(["lfs", "update"], tmp, check=False).returncode != 0:
            return _LFS_CACHE
        for name in LFS_SHARED:
            try:
                _LFS_CACHE[name] = (Path(tmp) / ".git" / "hooks" / name).read_text().strip()
            except OSError:
                pass
    return _LFS_CACHE


def _is_lfs_hook(path: Path, name: str) -> bool:
    """True when ``path`` is git-lfs's script for ``name`` (current or an older form it upgrades)."""
    try:
        text = path.read_text(errors="replace")[:LFS_PREFIX_BYTES]
    except OSError:
        return False
    text = "\n".join(line.lstrip(" \t") for line in text.split("\n")).strip()
    forms = {lfs_hook(name), LFS_HOOK.format(cmd=name)} | {LFS_HOOK_OLD.format(cmd=name, where=w)
                                for w in (f"'.git/hooks/{name}'", f".git/hooks/{name}")}
    return text in forms


def _lfs_here(d: Path) -> bool:
    """True when git-lfs's own hooks (pre-push, post-commit: not shared with us) are in ``d``."""
    for name in ("pre-push", "post-commit"):
        try:
            if "git lfs " in (d / name).read_text(errors="replace")[:LFS_PREFIX_BYTES]:
                return True
        except OSError:
            pass
    return False


def _with_lfs(name: str, text: str) -> str:
    """``text`` (a ``#!/bin/sh`` hook) behind git-lfs's script padded to 1024 bytes (see above)."""
    head = lfs_hook(name) + "\n"
    body = text.split("\n", 1)[1] if text.startswith("#!/bin/sh\n") else text
    return head + "\n" * (LFS_PREFIX_BYTES - len(head.encode())) + body


def _read(name: str) -> str:
    path = resources.files(__package__) / "templates" / name
    if not path.is_file():
        raise GitmailError(f"hook template {name} is missing from the gitmail package (reinstall gitmail)")
    return path.read_text(encoding="utf-8")


@dataclass
class Action:
    """What (un)installing did to one hook: ``path`` and a short ``what``."""

    hook: str
    path: Path
    what: str  # installed | updated | chained | with-lfs | removed | restored | lfs-kept | not-ours | absent


def repo_dirs(repo: str | Path, other_owner: bool = False) -> tuple[Path, Path]:
    """``(git dir, hooks folder)`` of ``repo``: the hooks folder git uses (honours
    ``core.hooksPath``; bare repos too).

    ``other_owner``: ``repo`` was named explicitly and may belong to another user (a
    server's org repo, for ``gitmail guard install`` run by an admin): git's
    safe.directory check is lifted for that one path, for this one command.
    Raises :class:`NotARepoError` when ``repo`` is not a git repository.
    """
    from gitmail.errors import NotARepoError

    p = Path(repo)
    if not p.is_dir():
        raise NotARepoError(f"not a git repository: {repo} (no such directory)")
    trust = ["-c", f"safe.directory={p.resolve()}"] if other_owner else []
    proc = git.run([*trust, "rev-parse", "--absolute-git-dir", "--git-path", "hooks"], p, check=False)
    if proc.returncode != 0:
        raise NotARepoError(f"not a git repository: {p.resolve()}")
    gd_text, hooks_text = proc.stdout.decode().strip().split("\n", 1)
    gd, hooks = Path(gd_text), Path(hooks_text)
    return gd, hooks if hooks.is_absolute() else (p.resolve() / hooks).resolve()


def hooks_dir(repo: str | Path, other_owner: bool = False) -> Path:
    """The hooks folder of ``repo``; see :func:`repo_dirs`."""
    return repo_dirs(repo, other_owner)[1]


def template(name: str) -> str:
    """The script ``hooks/<name>`` with ``@PYTHON@`` (and a python3 shebang) set to this interpreter."""
    text = _read(name).replace("@PYTHON@", sys.executable)
    if "@NOTICE@" in text:  # the shell notice (hooks/notice.sh) goes inline: a hook is one file
        text = text.replace("@NOTICE@", _read(NOTICE_SH).rstrip("\n"))
    if text.startswith("#!/usr/bin/env python3\n"):
        text = f"#!{sys.executable}\n" + text.split("\n", 1)[1]
    return text


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a script gitmail wrote: a line beginning ``# gitmail-hook: `` (the second
    line of each template, or the first after git-lfs's padded head), not the word anywhere (a
    user's hook saying "runs after our gitmail-hook setup" was overwritten, then deleted)."""
    try:
        return _OURS.search(path.read_text(errors="replace")[:2000]) is not None
    except OSError:
        return False


_OURS = re.compile(rf"^# {MARKER}: ", re.M)


def install(repo: str | Path, names: Sequence[str], fill: Optional[Callable[[str], str]] = None,
            other_owner: bool = False) -> list[Action]:
    """Install gitmail's ``names`` hooks into ``repo``'s hooks folder; see the module docstring.

    ``fill``: sets the remaining placeholders of a script (the guard's key).
    Idempotent. Raises :class:`UsageError` if a chained hook is already parked
    next to a foreign hook (refusing to overwrite either).
    """
    d = hooks_dir(repo, other_owner)
    d.mkdir(parents=True, exist_ok=True)
    lfs = shutil.which("git-lfs") is not None and _uses_lfs(Path(repo), d)
    return [_install_one(d, n, fill, lfs) for n in names]


def _uses_lfs(repo: Path, d: Path) -> bool:
    """Whether Git LFS is set up for this repository: git-lfs's own hooks are in ``d``, its
    filter is configured (``filter.lfs.process``: what ``git lfs install`` writes, globally by
    default), or the top of the work tree has a ``.gitattributes`` naming the lfs filter.
    Only then do gitmail's post-checkout and post-merge start with git-lfs's part (so that a
    later ``git lfs install`` finds its own hooks): where git-lfs was merely on the PATH, a
    git without it (an IDE's, or after git-lfs was removed) failed every checkout of a
    repository that never used LFS ("configured for Git LFS but 'git-lfs' was not found")."""
    if _lfs_here(d):
        return True
    from gitmail import git

    if git.run(["config", "--includes", "--get", "filter.lfs.process"], repo, check=False).stdout.strip():
        return True
    top = git.work_tree(repo)
    try:
        return top is not None and "filter=lfs" in (top / ".gitattributes").read_text(errors="replace")
    except OSError:
        return False


def _install_one(d: Path, name: str, fill: Optional[Callable[[str], str]], uses_lfs: bool = False) -> Action:
    target, chained = d / name, d / (name + CHAINED)
    what = "installed"
    lfs = name in LFS_SHARED and uses_lfs
    if target.exists() or target.is_symlink():
        if is_ours(target):
            what = "updated"
            lfs = lfs or (name in LFS_SHARED and _is_lfs_hook(target, name))
        elif name in LFS_SHARED and _is_lfs_hook(target, name):
            lfs, what = True, "with-lfs"  # git-lfs's part is the head of ours: not chained (it would run twice)
        elif chained.exists():
            raise UsageError(f"{target} is not gitmail's and {chained.name} exists already; move one of them away")
        else:
            target.rename(chained)
            what = "chained"
    text = template(name)
    text = fill(text) if fill else text
    write_atomic(target, _with_lfs(name, text) if lfs else text, mode=0o755)
    return Action(name, target, what)


def uninstall(repo: str | Path, names: Sequence[str], other_owner: bool = False) -> list[Action]:
    """Remove gitmail's hooks and put back the hooks they chained to."""
    d = hooks_dir(repo, other_owner)
    out = []
    for name in names:
        target, chained = d / name, d / (name + CHAINED)
        if not target.exists():
            out.append(Action(name, target, "absent"))
            continue
        if not is_ours(target):
            out.append(Action(name, target, "not-ours"))
            continue
        if not chained.exists() and name in LFS_SHARED and _is_lfs_hook(target, name) and _lfs_here(d):
            write_atomic(target, lfs_hook(name) + "\n", mode=0o755)  # git-lfs's part stays
            out.append(Action(name, target, "lfs-kept"))
            continue
        target.unlink()
        if chained.exists():
            chained.rename(target)
            out.append(Action(name, target, "restored"))
        else:
            out.append(Action(name, target, "removed"))
    return out
