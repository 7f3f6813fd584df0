"""``pinnace diff``: what a container changed in its image's files."""

from __future__ import annotations

import click

from pinnace.cli.root import get_engine


@click.command()
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """List the files a container added (A), changed (C) or deleted (D) in its image."""
    for change in get_engine(ctx).diff(container):
        click.echo(f"{change.kind} {change.path}")
