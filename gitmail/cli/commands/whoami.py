"""``gitmail whoami``: the acting identity and where its data lives."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean


@click.command("whoami")
@common
def command(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Print who you are here, and the paths of your key, cache and allowed-signers file.

    Exits 3 (after printing) when the identity is not a member of the org.
    """
    from gitmail import api

    w = api.whoami(repo, as_=as_)
    report = w.model()
    if as_json:
        emit_json(report)
    elif not quiet:
        for k, v in report.dump().items():
            click.echo(f"{k + ':':<17}{clean(v)}")
    if w.member is None:  # where the data would live is shown, but a non-member is an error (exit 3)
        from gitmail.errors import NotAMemberError

        raise NotAMemberError(f"{w.name!r} is not a member of this org: run 'gitmail init --name NAME'")
