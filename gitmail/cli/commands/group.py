"""``gitmail group``: groups addressed as ``team:NAME`` (admin only to change)."""

from __future__ import annotations

from typing import Any, Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean


def _current(repo: Optional[str]) -> set[str]:
    """The names the directory's members hold now."""
    from gitmail import api

    return {m.name for m in api.members(repo)}


def _names(g: Any, current: set[str]) -> str:
    """The group's members, then the names it lists that no member holds any more
    (:meth:`GroupInfo.of <gitmail.api.results.GroupInfo.of>` tells them apart)."""
    from gitmail.api.results import GroupInfo

    info = GroupInfo.of(g, current)
    now = ", ".join(clean(n) for n in info.members if n not in info.former) or "(no members)"
    return now + (f" (no longer members: {', '.join(clean(n) for n in info.former)})" if info.former else "")


def _show(g: Any, verb: str, repo: Optional[str], as_json: bool, quiet: bool) -> None:
    if as_json:
        from gitmail.api.results import GroupInfo

        emit_json(GroupInfo.of(g, _current(repo)))
    elif not quiet:
        click.echo(f"{verb} team:{clean(g.name)}: {_names(g, _current(repo))}")


@click.group("group")
def command() -> None:
    """Manage groups (send to a group with: gitmail send team:NAME ...)."""


@command.command("create")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@common
def create(name: str, members: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool,
           quiet: bool) -> None:
    """Create group NAME with MEMBERS (admins only)."""
    from gitmail import api

    _show(api.group_create(repo, name, list(members), as_=as_), "Created", repo, as_json, quiet)


@command.command("add")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@common
def add(name: str, members: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool,
        quiet: bool) -> None:
    """Add MEMBERS to group NAME (admins only)."""
    from gitmail import api

    _show(api.group_update(repo, name, list(members), [], as_=as_), "Updated", repo, as_json, quiet)


@command.command("remove")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@common
def remove(name: str, members: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool,
           quiet: bool) -> None:
    """Remove MEMBERS from group NAME (admins only)."""
    from gitmail import api

    _show(api.group_update(repo, name, [], list(members), as_=as_), "Updated", repo, as_json, quiet)


@command.command("delete")
@click.argument("name")
@common
def delete(name: str, repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Delete group NAME (admins only; its messages stay in history)."""
    from gitmail import api

    addr = api.group_delete(repo, name, as_=as_)
    if as_json:
        from gitmail.api.results import GroupDeleted

        emit_json(GroupDeleted(deleted=addr))
    elif not quiet:
        click.echo(f"Deleted {clean(addr)}")


@command.command("list")
@common
def list_(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """List the org's groups and their members."""
    from gitmail import api

    gs = api.group_list(repo)
    current = _current(repo)
    if as_json:
        from gitmail.api.results import GroupInfo, GroupList

        emit_json(GroupList(groups=[GroupInfo.of(g, current) for g in gs]))
    elif not quiet:
        if not gs:
            click.echo("No groups.")
        for g in gs:
            click.echo(f"team:{clean(g.name):<18} {_names(g, current)}")
