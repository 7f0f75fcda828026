"""``gitmail deinit``: take gitmail out of this clone (what ``init`` and later commands put there)."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean


@click.command("deinit")
@click.option("--force", is_flag=True, help="Also when mail is still queued for delivery (it is dropped).")
@common
def command(force: bool, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Take gitmail out of this clone: its hooks, settings, refspecs, local refs and data.

    Hooks in a hooks folder shared through your global core.hooksPath stay (other
    repositories run them).

    Your other settings, remotes, branches and refs stay as they are, and so do your
    registration in the org, your keys and the mail on the org repo; the last line
    says how to come back (gitmail init --name NAME, with --org URL when the remote
    went). Refused while mail is queued for delivery (run 'gitmail sync' first),
    unless --force.
    """
    from gitmail import api, hooks

    res = api.deinit(repo, force=force)  # refused while mail is queued: nothing changed then
    shared = hooks.shared_hooks_folder(res.repo)
    if shared is None:  # the hooks gitmail installed, the ones they chained to put back
        res.removed[:0] = [f"the {a.hook} hook ({a.what})" for a in hooks.uninstall(res.repo)
                           if a.what not in ("absent", "not-ours")]
    else:  # core.hooksPath from the user's global config: other repositories run those hooks too
        res.kept.insert(0, f"the hooks in the hooks folder shared through {shared} (other repositories run "
                           "them: 'gitmail hooks uninstall' removes them for all)")
    if as_json:
        emit_json(res.model())
    elif not quiet:
        if not res.removed:
            click.echo(f"Nothing of gitmail's in {clean(str(res.repo))}.")
            return
        click.echo(f"Took gitmail out of {clean(str(res.repo))}:")
        for line in res.removed:
            click.echo(f"  removed {clean(line)}")
        for line in res.kept:
            click.echo(f"  kept {clean(line)}")
