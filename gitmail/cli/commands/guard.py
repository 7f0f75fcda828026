"""``gitmail guard install|uninstall BARE_REPO``: the server-side pre-receive guard."""

from __future__ import annotations

import click

from gitmail.cli.commands.hooks import _report


@click.group("guard")
def command() -> None:
    """Install or remove the pre-receive guard of a bare org repo (docs/sync.md)."""


@command.command("install")
@click.argument("bare_repo", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def install(bare_repo: str, as_json: bool, quiet: bool) -> None:
    """Install the guard as BARE_REPO's pre-receive hook (an existing one is chained after it)."""
    from gitmail import hooks

    _report(hooks.install(bare_repo, hooks.SERVER_HOOKS), as_json, quiet)


@command.command("uninstall")
@click.argument("bare_repo", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def uninstall(bare_repo: str, as_json: bool, quiet: bool) -> None:
    """Remove the guard from BARE_REPO (restoring a pre-receive hook it chained to)."""
    from gitmail import hooks

    _report(hooks.uninstall(bare_repo, hooks.SERVER_HOOKS), as_json, quiet)
