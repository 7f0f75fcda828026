"""``gitmail mcp``: serve the mailbox to an agent over MCP (stdio)."""

from __future__ import annotations

from typing import Optional

import click


@click.command("mcp")
@click.option("--repo", metavar="PATH", envvar="GITMAIL_REPO", help="The clone to use [default: current directory].")
@click.option("--as", "as_", metavar="NAME", multiple=True,
              help="The member the server acts as [env GITMAIL_USER; git config gitmail.user]. Repeat it to serve "
                   "several members of this clone: each tool then takes agent_name (the first is the default).")
def command(repo: Optional[str], as_: tuple[str, ...]) -> None:
    """Run an MCP server on stdin/stdout acting as one member, or several (for 'claude mcp add')."""
    from gitmail.cli.main import check_text_params
    from gitmail.mcp.server import serve

    check_text_params({"as_": as_})
    serve(repo, list(as_) if len(as_) > 1 else (as_[0] if as_ else None))
