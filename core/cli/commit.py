"""Container-to-image commands: commit and export."""

from __future__ import annotations

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine


@click.command()
@click.option("-m", "--message", default="", help="Commit message for the image history.")
@click.option("-a", "--author", default="", help='Author, e.g. "Jane <jane@example.com>".')
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help="Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL).")
@click.option("-p", "--pause/--no-pause", default=True,
              help="Pause a running container while its files are read (the default).")
@click.argument("container", shell_complete=complete.containers)
@click.argument("reference", required=False)
@click.pass_context
def commit(ctx: click.Context, message: str, author: str, changes: tuple[str, ...],
           pause: bool, container: str, reference: str | None) -> None:
    """Create a new image from a container's changes."""
    from pinnace.client import Client

    click.echo(Client(engine=get_engine(ctx)).commit(container, reference, message, author,
                                                     changes, pause))


@click.command()
@click.option("-o", "--output", metavar="FILE", help="Write to a file instead of stdout.")
@click.argument("container", shell_complete=complete.containers)
@click.pass_context
def export(ctx: click.Context, output: str | None, container: str) -> None:
    """Export a container's filesystem as a tar archive (a running container is paused
    while it is read)."""
    from pinnace.images.archive import write_to

    engine = get_engine(ctx)
    cid = engine.resolve(container)  # an unknown name fails before the output is created
    write_to(output, lambda fd: engine.export(cid, fd))
