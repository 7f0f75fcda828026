"""``gitmail key rotate`` (publish a new key, signed with the current one) and ``gitmail key revoke``."""

from __future__ import annotations

from typing import Optional

import click

from gitmail.cli.main import common
from gitmail.cli.render import emit_json


@click.group("key")
def command() -> None:
    """Manage your signing and encryption key."""


@command.command("rotate")
@click.option("--key", metavar="PATH", help="Use this ed25519 key [default: generate one].")
@common
def rotate(key: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Publish a new key; old mail stays readable with the old one, which this clone keeps."""
    from gitmail import api

    r = api.rotate_key(repo, as_=as_, key=key)
    if as_json:
        emit_json(r.model())
    elif not quiet:
        click.echo(f"New key for {r.member.name}: {r.key_path}\n  {r.new_key}\nThe old key stays in use for old mail.")


@command.command("revoke")
@click.argument("key", required=False, metavar="[KEY]")
@common
def revoke(key: Optional[str], repo: Optional[str], as_: Optional[str], as_json: bool, quiet: bool) -> None:
    """Revoke a retired key (default: the last one retired): every message it signs is flagged.

    KEY is the public key line, its SHA256: fingerprint or a .pub file. Rotate
    first if the compromised key is your current one.
    """
    from gitmail import api

    r = api.revoke_key(repo, key, as_=as_)
    if as_json:
        emit_json(r.model())
    elif not quiet:
        click.echo(f"Revoked a key of {r.member.name}:\n  {r.key}\nMessages signed by it are flagged from now on.")
