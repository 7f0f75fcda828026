"""``gitmail org``: show or change the org policy (admins change it)."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean


@click.command("org")
@click.argument("settings", nargs=-1, metavar="[KEY=VALUE]...")
@common
def command(settings: tuple[str, ...], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Show the org policy, or set KEY=VALUE fields (admins only): body_limit,
    attachment_limit, attachment_count_limit, attachment_total_limit (sizes in bytes, each
    at least 1), attachment_storage (lfs|blob), encryption (required|default|off),
    allow_mixed_script (true|false), lfs_url, directory_layout (2 moves a flat org's
    directory to the fan-out layout, for good; upgrade every member's gitmail first),
    packing (true lets members pack their inbox refs, for good; upgrade every member's
    gitmail first)."""
    from gitmail import api
    from gitmail.errors import UsageError

    if settings:
        changes = {}
        for item in settings:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"expected KEY=VALUE, got {item!r}")
            if key.strip() in changes:  # which one was meant? (the last one won, without a word)
                raise UsageError(f"{key.strip()!r} is given twice")
            changes[key.strip()] = value.strip()
        policy = api.set_policy(repo, changes, as_=as_)
    else:
        policy = api.org_policy(repo)
    if as_json:
        from gitmail.api.results import OrgSettings

        # Only the fields this version knows: an org.json may carry more (written by a newer gitmail).
        emit_json(OrgSettings.model_validate({k: policy[k] for k in OrgSettings.model_fields if k in policy}))
    elif not quiet:
        for k, v in policy.items():
            click.echo(f"{clean(k):<20} {clean(v)}")  # the policy is another member's (an admin's) text
