"""``gitmail init``: make this clone a mailbox for one member."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json


@click.command("init")
@click.option("--name", required=True, help="Your member name (any Unicode text).")
@click.option("--org", metavar="PATH_OR_URL", envvar="GITMAIL_ORG", help="The org repo; a new local path is created as a bare repo.")
@click.option("--email", help="Email for your commits [default: <name>@gitmail.invalid].")
@click.option("--key", metavar="PATH", help="An existing ed25519 SSH key (private, or .pub held by ssh-agent).")
@click.option("--display-name", help="Display name for commit authors [default: NAME].")
@click.option("--agent", "is_agent", is_flag=True, help="Register as an agent rather than a human.")
@click.option("--no-encryption-key", is_flag=True, help="Do not publish the key for end-to-end encryption.")
@click.option("--fingerprint", metavar="FP", help="Refuse the org unless its fingerprint (from 'gitmail whoami' of a member) is FP.")
@common
def command(name: str, org: Optional[str], email: Optional[str], key: Optional[str], display_name: Optional[str],
            is_agent: bool, no_encryption_key: bool, fingerprint: Optional[str], repo: Optional[str], as_: Optional[str],
            as_json: bool, quiet: bool) -> None:
    """Make this clone a mailbox for member NAME (create the org with --org PATH)."""
    from gitmail import api

    res = api.init(repo, name, org=org, email=email, key=key, display_name=display_name,
                   kind="agent" if is_agent else "human", encryption_key=not no_encryption_key,
                   fingerprint=fingerprint)
    if as_json:
        emit_json(res.model())
    elif not quiet:
        if res.created_org:
            click.echo(f"Created org repo {org}")
        if res.created_key:
            click.echo(f"Created ed25519 key {res.key_path}")
        what = "Registered" if res.registered else "Already registered:"
        click.echo(f"{what} {res.member.name} ({res.member.role}) in {res.repo}")
        click.echo(f"Org fingerprint: {res.fingerprint}")
