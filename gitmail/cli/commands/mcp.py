"""``gitmail mcp``: serve the mailbox to an agent over MCP (stdio)."""

from __future__ import annotations

from typing import Optional

import click


@click.command("mcp")
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use [default: current directory].")
@click.option("--as", "as_", metavar="NAME", envvar="GITMAIL_USER", help="The member the server acts as.")
def command(repo: Optional[str], as_: Optional[str]) -> None:
    """Run an MCP server on stdin/stdout acting as one member (for 'claude mcp add')."""
    from gitmail.mcp.server import serve

    serve(repo, as_)
