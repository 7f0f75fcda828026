"""Writing a message in the user's editor, as ``git commit`` does (issue 14 item 6).

git chooses the editor (``git var GIT_EDITOR``: $GIT_EDITOR, core.editor, $VISUAL,
$EDITOR, then git's default; an error on a dumb terminal with none set), runs it the
way git runs it (through ``sh``, so ``code --wait`` works), and cleans the text with
``git stripspace --strip-comments`` (lines starting with ``#`` dropped, trailing
blanks and surplus blank lines removed): the same rules as a commit message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gitmail import git
from gitmail.cli.terminal import need_terminal
from gitmail.errors import GitError, UsageError

COMMENT = "#"  # comment lines of the template; stripspace is told the same character


def can_edit() -> bool:
    """Whether an editor can be opened: stdin is a terminal (a pipe or a script gets the usage error).

    Raises :class:`gitmail.cli.terminal.RerunHere` in a warm child (the command then runs in
    the client's process, which owns the terminal)."""
    try:
        tty = sys.stdin.isatty()
    except (AttributeError, ValueError):  # no stdin at all, or closed
        return False
    if tty:
        need_terminal()
    return tty


def template(*lines: str) -> str:
    """An empty first line for the text, then ``lines`` as comment lines."""
    return "\n" + "".join(f"{COMMENT} {ln}".rstrip() + "\n" for ln in lines)


def edit(repo: Path, data_dir: Path, text: str, name: str = "SEND_EDITMSG") -> str:
    """Open the user's editor on ``text`` in ``data_dir/name`` (mode 0600) and return what
    was written, comment lines stripped (``""`` when nothing is left). The file is removed
    afterwards: it may hold the clear text of an encrypted message.

    Raises :class:`UsageError` when git names no editor (a dumb terminal with none set)
    or the editor exits non-zero; :class:`gitmail.cli.terminal.RerunHere` in a warm child
    that is not in the terminal's foreground.
    """
    need_terminal()
    try:
        editor = git.output(["var", "GIT_EDITOR"], repo)
    except GitError as e:
        why = (e.stderr or b"").decode("utf-8", "replace").strip().removeprefix("fatal: ")
        raise UsageError(f"no editor to write the message in ({why or 'git var GIT_EDITOR failed'}); "
                         "give the message as an argument, or set GIT_EDITOR or core.editor") from None
    path = data_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # As git runs an editor: through the shell, the file as its last argument.
        rc = subprocess.run(["sh", "-c", f'{editor} "$@"', editor, str(path)]).returncode
        if rc != 0:
            raise UsageError(f"the editor '{editor}' exited with status {rc}; nothing sent")
        written = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    cleaned = git.run(["-c", f"core.commentChar={COMMENT}", "stripspace", "--strip-comments"], repo, input=written)
    return cleaned.stdout.decode("utf-8", "replace")
