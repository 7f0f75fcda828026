"""``gitmail pack``: fold your verified inbox refs into your packed ref (docs/protocol.md §3)."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json
from gitmail.api.views import clean, count


@click.command("pack")
@common
def command(repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Record the tips of your inbox refs on your packed ref and delete those refs on the org repo.

    Needs the org policy packing=true. Nothing is lost: the packed ref keeps every
    message reachable, and a sender's next message continues from the recorded tip.
    `gitmail sync` does this itself once you have gitmail.packAfter inbox refs (16).
    """
    from gitmail.api import packing

    r = packing.pack(repo, as_=as_)
    if as_json:
        emit_json(r.model())
        return
    if quiet:
        return
    if not r.packed and not r.kept:
        click.echo("Nothing to pack")
        return
    click.echo(f"Packed {count(len(r.packed), 'mailbox', 'mailboxes')}"
               + (f": from {', '.join(clean(name) for name in r.packed)}" if r.packed else ""))
    if r.kept:
        click.echo(f"Kept {', '.join(clean(name) for name in r.kept)}: new mail arrived meanwhile (packed next time)")
