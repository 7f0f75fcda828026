"""``gitmail`` / ``git-mail`` command line: a thin layer over :mod:`gitmail.api`.

``main(argv) -> int`` maps every :class:`GitmailError` to its exit code with a
one-line ``gitmail: ...`` message on stderr. Commands live one per module in
:mod:`gitmail.cli.commands` and are imported only when run, so that cheap
commands (``list``, the hooks) start fast.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import Any, Callable, Optional, Sequence

import click

from gitmail.errors import GitmailError

# command name -> module in gitmail.cli.commands
COMMANDS = {
    "init": "init",
    "send": "send",
    "list": "list_",
    "read": "read",
    "mark": "mark",
    "archive": "archive",
    "reply": "reply",
    "thread": "thread",
    "members": "members",
    "whoami": "whoami",
    "verify": "verify",
    "log": "log",
    "sync": "sync",
    "attachments": "attachments",
    "mcp": "mcp",
    "hook": "hook",
    "group": "group",
    "respond": "respond",
    "ack": "ack",
    "guard": "guard",
    "hooks": "hooks",
    "show": "show",
    "org": "org",
    "key": "key",
    "outbox": "outbox",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        command: click.Command = importlib.import_module(f"gitmail.cli.commands.{mod}").command
        return command


# Commands that show the mailbox themselves, or whose output must stay clean.
NO_NOTICE = {"list", "read", "init", "sync", "mcp", "hook", "hooks", "guard", "whoami"}


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command takes: --repo, --as, --json, --quiet; then the unread notice."""

    inner = f

    @functools.wraps(inner)
    def wrapper(**kw: Any) -> Any:
        result = inner(**kw)
        name = click.get_current_context().command.name
        if name not in NO_NOTICE:
            notice(kw.get("repo"), kw.get("as_"), bool(kw.get("as_json")), bool(kw.get("quiet")))
        return result

    f = wrapper
    f = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Machine-readable output (docs/json.md).")(f)
    f = click.option("--as", "as_", metavar="NAME", envvar="GITMAIL_USER", help="Act as this member [env GITMAIL_USER; git config gitmail.user].")(f)
    f = click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use [env GITMAIL_REPO; default: current directory].")(f)
    return f


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gitmail")
def cli() -> None:
    """gitmail: a mailbox that lives in git.

    Each message is a signed commit on its recipient's branch in the org repo.
    """


def notice(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """One line on stderr about unread mail (terminal only; not with --json/--quiet)."""
    forced = os.environ.get("GITMAIL_NOTICE", "auto")
    if as_json or quiet or forced == "never" or (forced != "always" and not sys.stderr.isatty()):
        return
    try:
        from gitmail import api

        unread, urgent = api.unread_count(repo, as_=as_)
    except GitmailError:
        return
    if unread:
        extra = f" ({urgent} urgent)" if urgent else ""
        plural = "message" if unread == 1 else "messages"
        click.echo(f"📬 {unread} unread {plural}{extra}. Run: gitmail read", err=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit status instead of exiting."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="gitmail", standalone_mode=False)
        return 0
    except GitmailError as e:
        click.echo(f"gitmail: {e.message}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except SystemExit as e:  # a command chose its own exit status
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except click.exceptions.Abort:
        click.echo("gitmail: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: still one line, full traceback on request
        if os.environ.get("GITMAIL_DEBUG"):
            raise
        click.echo(f"gitmail: internal error: {type(e).__name__}: {e} (set GITMAIL_DEBUG=1 for a traceback)", err=True)
        return 70


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
