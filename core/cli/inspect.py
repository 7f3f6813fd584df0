"""``pinnace inspect`` (and what the per-kind inspect commands share) and ``pinnace top``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.output import table
from pinnace.cli.root import get_engine
from pinnace.errors import NotFound

FORMAT = click.option("-f", "--format", "fmt", metavar="TEMPLATE",
                      help="Print each object through a Go template (`{{.State.Status}}`, "
                           "`{{json .Config}}`) instead of as one JSON array.")


def show_found(ctx: click.Context, refs: Sequence[str], find: Callable[[str], Any],
               fmt: str | None) -> None:
    """Print what ``find`` returns for each ref (one JSON array, or each through the
    template ``fmt``) and a one-line error for each it does not find; exit 1 when one
    was missing, as docker does."""
    from pinnace.cli.output import as_json

    found, missing = [], False
    for ref in refs:
        try:
            found.append(find(ref))
        except NotFound as err:
            click.echo(f"Error: {err}", err=True)
            missing = True
    if fmt:
        from pinnace.cli.template import compile_template, unescape

        template = compile_template(unescape(fmt))
        for obj in found:
            click.echo(template.render(obj))
    else:
        as_json(found)
    if missing:
        ctx.exit(1)


@click.command()
@click.option("--type", "kind", type=click.Choice(["container", "image", "network"]),
              help="Only look for this kind of object.")
@FORMAT
@click.argument("refs", nargs=-1, required=True, shell_complete=complete.any_object)
@click.pass_context
def inspect(ctx: click.Context, kind: str | None, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Docker-shaped JSON for containers, images or networks by name or ID."""
    from pinnace import inspection

    engine = get_engine(ctx)

    def find(ref: str) -> dict[str, Any]:
        if kind in (None, "container"):
            try:
                return inspection.container(engine, engine.resolve(ref))
            except NotFound:
                if kind == "container":
                    raise
        if kind in (None, "image"):
            try:
                return engine.images.inspect(ref)
            except NotFound:
                if kind == "image":
                    raise
        if kind in (None, "network"):
            try:
                return inspection.network(engine, engine.network(ref))
            except NotFound:
                if kind == "network":
                    raise
        raise NotFound(f"No such object: {ref}")

    show_found(ctx, refs, find, fmt)


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("container", shell_complete=complete.containers)
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """The running processes of a container (ps options may follow)."""
    from pinnace import inspection

    engine = get_engine(ctx)
    headers, rows = inspection.processes(engine, engine.resolve(container), list(ps_args))
    table(headers, rows)
