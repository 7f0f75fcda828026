"""``gitmail hook claude ...``: Claude Code hooks (SessionStart, UserPromptSubmit) and their install.

The two hook commands never block: any error (outside a repo, no identity, a
broken cache) prints nothing and exits 0, except an identity that is not a
member of the org (one line on stderr, exit 3, which Claude Code shows
without blocking the prompt). Unknown options are ignored for the same reason.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json

_LENIENT = {"ignore_unknown_options": True, "allow_extra_args": True}


@click.group("hook")
def command() -> None:
    """Hooks for agent tools (Claude Code)."""


@command.group("claude")
def claude() -> None:
    """Claude Code hooks: gitmail hook claude install, then Claude is told about new mail."""


def _never_fail(produce: Callable[[], Optional[str]]) -> None:
    """Print what ``produce`` returns; swallow every error (exit 0, nothing printed)."""
    from gitmail.errors import NotAMemberError

    try:
        out = produce()
    except NotAMemberError as e:
        # A non-member identity is a configuration error, not "no mail": say so
        # (exit 3 is a non-blocking hook error for Claude Code; only 2 blocks).
        click.echo(f"gitmail: {e}", err=True)
        raise SystemExit(e.exit_code) from None
    except Exception:
        if os.environ.get("GITMAIL_DEBUG"):
            raise
        return
    if out:
        click.echo(out)


@claude.command("session-start", context_settings=_LENIENT)
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use.")
@click.option("--as", "as_", metavar="NAME", envvar="GITMAIL_USER", help="Act as this member.")
@click.option("--sync", "sync_", is_flag=True, help="Fetch new mail first (waits for the network).")
@click.option("--background-sync", is_flag=True, help="Start a detached 'gitmail sync' (at most once a minute).")
def session_start(repo: Optional[str], as_: Optional[str], sync_: bool, background_sync: bool) -> None:
    """SessionStart hook: every unread message, as JSON context (nothing if there is none)."""

    def produce() -> Optional[str]:
        from gitmail.claude import hooks

        return hooks.session_start(repo, as_=as_, sync=sync_, background_sync=background_sync)

    _never_fail(produce)


@claude.command("prompt", context_settings=_LENIENT)
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use.")
@click.option("--as", "as_", metavar="NAME", envvar="GITMAIL_USER", help="Act as this member.")
@click.option("--background-sync", is_flag=True, help="Start a detached 'gitmail sync' (at most once a minute).")
def prompt(repo: Optional[str], as_: Optional[str], background_sync: bool) -> None:
    """UserPromptSubmit hook: only messages not reported before (nothing if none)."""

    def produce() -> Optional[str]:
        from gitmail.claude import hooks

        return hooks.prompt(repo, as_=as_, background_sync=background_sync)

    _never_fail(produce)


@claude.command("install")
@click.option("--scope", type=click.Choice(["project", "local", "user"]), default="project", show_default=True,
              help="project: .claude/settings.json; local: .claude/settings.local.json; user: ~/.claude/settings.json.")
@click.option("--command", "command_", metavar="PATH",
              help="The gitmail program the hooks run [default: the absolute path of this one].")
@common
def install(scope: str, command_: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool,
            quiet: bool) -> None:
    """Add the SessionStart and UserPromptSubmit hooks to Claude Code's settings (keeps what is there)."""
    from gitmail.claude import hooks

    res = hooks.install(repo, scope=scope, as_=as_, command=command_)
    if as_json:
        from gitmail.api.results import ClaudeHooksInstalled

        emit_json(ClaudeHooksInstalled(settings=str(res.path), changed=res.changed, hooks=res.commands))
    elif not quiet:
        if res.changed:
            click.echo(f"Installed gitmail hooks in {res.path} (running {res.commands[hooks.SESSION_START].split(' hook ')[0]})")
        else:
            click.echo(f"gitmail hooks already installed in {res.path}")
