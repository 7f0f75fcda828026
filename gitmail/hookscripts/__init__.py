"""gitmail's hook scripts, and installing them into a repository's hooks folder.

The scripts are templates shipped as package data (``templates/``, the
project's top-level ``hooks/`` folder), read with :mod:`importlib.resources`.
Installing writes a copy whose ``@PYTHON@`` placeholder is the absolute path
of this interpreter (so the hook finds gitmail whatever ``PATH`` git runs it
with). The hooks folder is git's own choice (``git rev-parse --git-path
hooks``), so ``core.hooksPath`` is respected. A hook already there is kept as
``<name>.gitmail-chained``, run by ours, and put back on uninstall.

Used by the git hooks front-end (:mod:`gitmail.hooks`: ``post-merge``,
``post-checkout``) and the server guard (:mod:`gitmail.guard`: ``pre-receive``).
"""

from __future__ import annotations

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
    what: str  # installed | updated | chained | removed | restored | not-ours | absent


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
    try:
        return MARKER in path.read_text(errors="replace")[:2000]
    except OSError:
        return False


def install(repo: str | Path, names: Sequence[str], fill: Optional[Callable[[str], str]] = None,
            other_owner: bool = False) -> list[Action]:
    """Install gitmail's ``names`` hooks into ``repo``'s hooks folder; see the module docstring.

    ``fill``: sets the remaining placeholders of a script (the guard's key).
    Idempotent. Raises :class:`UsageError` if a chained hook is already parked
    next to a foreign hook (refusing to overwrite either).
    """
    d = hooks_dir(repo, other_owner)
    d.mkdir(parents=True, exist_ok=True)
    return [_install_one(d, n, fill) for n in names]


def _install_one(d: Path, name: str, fill: Optional[Callable[[str], str]]) -> Action:
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
    text = template(name)
    write_atomic(target, fill(text) if fill else text, mode=0o755)
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
        target.unlink()
        if chained.exists():
            chained.rename(target)
            out.append(Action(name, target, "restored"))
        else:
            out.append(Action(name, target, "removed"))
    return out
