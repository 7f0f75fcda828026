"""``gitmail guard install|uninstall|stop BARE_REPO``: the server-side pre-receive guard."""

from __future__ import annotations

import click

from gitmail.cli.commands.hooks import _report
from gitmail.cli.render import emit_json


@click.group("guard")
def command() -> None:
    """Install or remove the pre-receive guard of a bare org repo (docs/sync.md)."""


@command.command("install")
@click.argument("bare_repo", type=click.Path(file_okay=False))
@click.option("--no-daemon", is_flag=True,
              help="Check every push in a process of its own (no warm guard daemon; slower).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def install(bare_repo: str, no_daemon: bool, as_json: bool, quiet: bool) -> None:
    """Install the guard as BARE_REPO's pre-receive hook (an existing one is chained after it).

    Re-installing stops the daemon the previous hook started: the new hook starts its own.
    """
    from gitmail import guard

    actions = guard.install(bare_repo, daemon=not no_daemon)
    warning = guard.check_runnable(bare_repo)
    if warning and not as_json:
        click.echo(f"gitmail: warning: {warning}", err=True)
    _report(actions, as_json, quiet, warning=warning, guard_install=True)


@command.command("uninstall")
@click.argument("bare_repo", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def uninstall(bare_repo: str, as_json: bool, quiet: bool) -> None:
    """Remove the guard from BARE_REPO (restoring a pre-receive hook it chained to) and stop its daemon."""
    from gitmail import guard

    _report(guard.uninstall(bare_repo), as_json, quiet)


@command.command("stop")
@click.argument("bare_repo", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def stop(bare_repo: str, as_json: bool, quiet: bool) -> None:
    """Stop the warm guard daemon of BARE_REPO (the next push starts a new one)."""
    from gitmail.guard import daemon

    pid = daemon.stop(bare_repo)
    if as_json:
        from gitmail.api.results import GuardStopped

        emit_json(GuardStopped(stopped=pid is not None, pid=pid))
    elif not quiet:
        click.echo(f"guard daemon stopped (pid {pid})" if pid is not None else "no guard daemon was running")
