"""``gitmail hooks install|uninstall``: the client hooks (new-mail notice after pull/checkout)."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.render import emit_json

_SAID = {
    "installed": "installed",
    "updated": "updated",
    "chained": "installed (your previous hook runs first, kept as {name}.gitmail-chained)",
    "with-lfs": "installed (git-lfs's {name} hook runs first, at the head of gitmail's)",
    "removed": "removed",
    "restored": "removed (your previous hook is back)",
    "lfs-kept": "removed (git-lfs's {name} hook stays: this repository uses git-lfs)",
    "not-ours": "left alone (not gitmail's)",
    "absent": "not installed",
}


def _report(actions: list, as_json: bool, quiet: bool, *, warning: Optional[str] = None,
            guard_install: bool = False) -> None:
    """Say what (un)installing did; ``guard_install``: the JSON carries ``warning`` too (``GuardInstalled``)."""
    if as_json:
        from gitmail.api.results import GuardInstalled, HookAction, HooksReport

        hooks = [HookAction(hook=a.hook, path=str(a.path), action=a.what) for a in actions]
        emit_json(GuardInstalled(hooks=hooks, warning=warning) if guard_install else HooksReport(hooks=hooks))
        return
    if not quiet:
        for a in actions:
            click.echo(f"{a.hook}: {_SAID[a.what].format(name=a.hook)} ({a.path})")


@click.group("hooks")
def command() -> None:
    """Install or remove the client hooks that announce new mail after git pull / checkout."""


@command.command("install")
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone [default: current directory].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
@click.option("--force", is_flag=True, help="Install even into a hooks folder inside the work tree (the project's own).")
def install(repo: Optional[str], as_json: bool, quiet: bool, force: bool) -> None:
    """Install post-merge and post-checkout hooks (honours core.hooksPath; chains to existing hooks)."""
    from gitmail import hooks
    from gitmail.api.views import clean

    actions = hooks.install(repo or ".", force=force)
    shared = hooks.shared_hooks_folder(repo or ".")
    if shared is not None:  # said on stderr, --json or not: the user's other repositories run these too
        click.echo(f"gitmail: warning: core.hooksPath comes from {clean(shared)}: its hooks folder is shared by "
                   "every repository that reads that config, and they run these hooks too", err=True)
    _report(actions, as_json, quiet)


@command.command("uninstall")
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone [default: current directory].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def uninstall(repo: Optional[str], as_json: bool, quiet: bool) -> None:
    """Remove gitmail's client hooks and restore the hooks they chained to."""
    from gitmail import hooks

    _report(hooks.uninstall(repo or "."), as_json, quiet)
