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
    """Print who you are here, and the paths of your key, cache and allowed-signers file."""
    from gitmail import api

    w = api.whoami(repo, as_=as_)
    report = w.model()
    if as_json:
        emit_json(report)
    elif not quiet:
        for k, v in report.dump().items():
            click.echo(f"{k + ':':<17}{clean(v)}")
