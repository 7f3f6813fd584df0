"""Image commands: import, images, tag, rmi, and the ``image`` group."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pinnace.cli.root import get_engine
from pinnace.cli.output import FORMAT_OPTION, ago, as_json, for_each, size, table


@click.command("import")
@click.option("-c", "--change", "changes", multiple=True, metavar="INSTRUCTION",
              help='Apply a Dockerfile instruction, e.g. -c \'CMD ["sh"]\'.')
@click.option("-m", "--message", default="", help="Commit message for the image history.")
@click.argument("source")
@click.argument("reference", required=False)
@click.pass_context
def import_(ctx: click.Context, source: str, reference: str | None, changes: tuple[str, ...],
            message: str) -> None:
    """Create an image from a rootfs tarball or directory (``-`` reads a tar from stdin)."""
    from pinnace.errors import NotFound

    engine = get_engine(ctx)
    if source == "-":
        image_id = engine.images.import_rootfs(sys.stdin.buffer, reference, changes, message)
    else:
        path = Path(source)
        if not path.exists():
            raise NotFound(f"import source {source} does not exist")
        image_id = engine.images.import_rootfs(path, reference, changes, message)
    click.echo(image_id)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides none yet).")
@click.option("-q", "--quiet", is_flag=True, help="Only print image IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate image IDs.")
@FORMAT_OPTION
@click.pass_context
def images(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List images."""
    found = get_engine(ctx).images.list()
    if quiet:
        for img in found:
            click.echo(img.id if no_trunc else img.id.removeprefix("sha256:")[:12])
        return
    if fmt == "json":
        as_json([{"Id": i.id, "RepoTags": i.tags, "Created": i.created, "Size": i.size}
                 for i in found])
        return
    rows = []
    for img in found:
        short = img.id if no_trunc else img.id.removeprefix("sha256:")[:12]
        for tag in img.tags or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            rows.append((repo, t, short, ago(img.created), size(img.size)))
    table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"), rows)


@click.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET that refers to image SOURCE."""
    get_engine(ctx).images.tag(source, target)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even if tagged several times or in use.")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def rmi(ctx: click.Context, force: bool, refs: tuple[str, ...]) -> None:
    """Remove one or more images."""
    engine = get_engine(ctx)

    def remove(ref: str) -> None:
        result = engine.remove_image(ref, force=force)
        for t in result.untagged:
            click.echo(f"Untagged: {t}")
        for d in result.deleted:
            click.echo(f"Deleted: {d}")

    for_each(ctx, refs, remove)


@click.command("inspect")
@click.argument("refs", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, refs: tuple[str, ...]) -> None:
    """Show low-level information on images, as JSON."""
    engine = get_engine(ctx)
    as_json([engine.images.inspect(r) for r in refs])


@click.group()
def image() -> None:
    """Manage images."""


image.add_command(inspect)
image.add_command(images, "ls")
image.add_command(import_, "import")
image.add_command(tag, "tag")
image.add_command(rmi, "rm")
