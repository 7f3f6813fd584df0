"""``pinnace inspect`` and ``pinnace top``."""

from __future__ import annotations

import click

from pinnace.cli.output import as_json, table
from pinnace.cli.root import get_engine
from pinnace.errors import NotFound


@click.command()
@click.option("--type", "kind", type=click.Choice(["container", "image"]),
              help="Only look for this kind of object.")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, kind: str | None, refs: tuple[str, ...]) -> None:
    """Docker-shaped JSON for containers (or images) by name or ID."""
    from pinnace import inspection

    engine = get_engine(ctx)
    out = []
    for ref in refs:
        if kind != "image":
            try:
                out.append(inspection.container(engine, engine.resolve(ref)))
                continue
            except NotFound:
                if kind == "container":
                    raise
        try:
            out.append(engine.images.inspect(ref))
        except NotFound:
            raise NotFound(f"No such object: {ref}") from None
    as_json(out)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """The running processes of a container (ps options may follow)."""
    from pinnace import inspection

    engine = get_engine(ctx)
    headers, rows = inspection.processes(engine, engine.resolve(container), list(ps_args))
    table(headers, rows)
