"""``gitmail search``: full-text search of the member's mailbox."""

from __future__ import annotations

import sys
from typing import Optional

import click

from gitmail.api.views import snippet_text
from gitmail.cli.main import common
from gitmail.cli.render import emit_json, row_line


@click.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--from", "from_", metavar="NAME", help="Only messages from this sender.")
@click.option("--since", metavar="DATE", help="Only messages sent on or after DATE (2026-11-29, or with a time).")
@click.option("--type", "type_", metavar="TYPE", help="Only messages of this type (text, question, an open type such as x-build-done, ...).")
@click.option("--all", "all_", is_flag=True, help="Include archived messages.")
@click.option("--limit", "-n", default=20, show_default=True, help="At most this many results.")
@common
def command(words: tuple[str, ...], from_: Optional[str], since: Optional[str], type_: Optional[str], all_: bool, limit: int,
            repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Search subjects, bodies, senders and attachment names; best matches first.

    Every one of WORDS must match; a word ending in * matches a prefix.
    """
    from gitmail import api

    query = " ".join(words)
    hits = api.search(repo, query, as_=as_, from_=from_, since=since, type_=type_, all_=all_, limit=limit)
    if as_json:
        from gitmail.api.results import SearchResult

        emit_json(SearchResult(query=query, messages=[h.model() for h in hits]))
        return
    if quiet:
        return
    if not hits:
        click.echo("No message matches.")
        return
    color = sys.stdout.isatty()
    for h in hits:
        click.echo(row_line(h.row))
        snip = snippet_text(h.snippet, "\x1b[1m", "\x1b[22m") if color else snippet_text(h.snippet, "*", "*")
        click.echo(f"      {snip}")
