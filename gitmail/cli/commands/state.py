"""``gitmail state push | pull | status``: your read/archive flags on every machine (docs/protocol.md §10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json

if TYPE_CHECKING:
    from gitmail.api.state import StateResult


@click.group("state")
def command() -> None:
    """Share your read/archive flags between your clones, encrypted to your key.

    Opt in for every sync with: git config gitmail.syncState true
    """


def _show(r: "StateResult", as_json: bool, quiet: bool, what: str) -> None:
    from gitmail.api.views import count

    if as_json:
        emit_json(r)
        return
    if quiet:
        return
    lines = [what]
    if r.recorded:
        lines.append(f"  {count(r.recorded, 'local change')} recorded")
    if r.changed:
        lines.append(f"  {count(r.changed, 'message')} updated from your other machines")
    if r.pending:
        lines.append(f"  {count(r.pending, 'flag')} for messages not here yet")
    click.echo("\n".join(lines))


@command.command("pull")
@common
def pull(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Fetch your shared state and apply it to this clone's flags."""
    from gitmail.api import state

    r = state.pull(repo, as_=as_)
    _show(r, as_json, quiet, f"Pulled the shared state of {r.member} ({count_events(r.events)})")


@command.command("push")
@common
def push(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Pull, then publish the merged state (signed, encrypted to your own key)."""
    from gitmail.api import state

    r = state.push(repo, as_=as_)
    if r.replaced and not as_json:
        from gitmail.api.views import clean

        click.echo(f"gitmail: warning: {clean(r.replaced)}", err=True)
    verb = "Published" if r.pushed else "Up to date:"
    _show(r, as_json, quiet, f"{verb} the shared state of {r.member} ({count_events(r.events)})")


@command.command("status")
@common
def status(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """What the last push or pull left, and local changes not yet recorded (nothing is fetched)."""
    from gitmail.api import state

    from gitmail.api.views import count

    r = state.status(repo, as_=as_)
    if as_json or quiet:
        _show(r, as_json, quiet, "")
        return
    click.echo(f"Shared state of {r.member}: {r.ref} at {r.remote[:10] if r.remote else '(none fetched)'}, "
               f"{count_events(r.events)}; {count(r.recorded, 'local change')} not yet recorded; "
               f"sync with every 'gitmail sync': {'on' if r.enabled else 'off (git config gitmail.syncState true)'}")


def count_events(n: int) -> str:
    from gitmail.api.views import count

    return count(n, "event")
