"""Image commands: import, images, tag, rmi, and the ``image`` group."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.inspect import FORMAT, show_found
from pinnace.cli.output import (
    TEMPLATE_FORMAT_OPTION,
    as_json,
    for_each,
    is_template,
    rfc3339,
    size,
    table,
    templated,
)
from pinnace.cli.root import get_engine


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
    from pinnace.client import Client

    client = Client(engine=get_engine(ctx))
    image_id = client.import_image(sys.stdin.buffer if source == "-" else Path(source),
                                   reference, changes, message)
    click.echo(image_id)


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all images (default hides none yet).")
@click.option("-q", "--quiet", is_flag=True, help="Only print image IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate image IDs.")
@click.option("--digests", is_flag=True, help="Show the manifest digests.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete.filter_keys("images"),
              help="Filter: dangling, label, label!, before, since, reference (a pattern).")
@TEMPLATE_FORMAT_OPTION
@click.argument("repository", required=False, metavar="[REPOSITORY[:TAG]]",
                shell_complete=complete.images)
@click.pass_context
def images(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool, digests: bool,
           filters: tuple[str, ...], fmt: str, repository: str | None) -> None:
    """List images, or those of REPOSITORY[:TAG] (a pattern, as ``reference=``). CREATED is
    when the image was built (its config's ``created``).

    Template fields: ID, Repository, Tag, Digest, CreatedSince, CreatedAt, Size.
    """
    from pinnace.cli.rows import ImageRow, image_created, image_rows

    engine = get_engine(ctx)
    found = engine.images.list()
    filters += (f"reference={repository}",) if repository else ()
    references: list[str] = []
    if filters:
        from pinnace.cli import listing_filters
        from pinnace.cli.filters import split

        found = listing_filters.images(engine, filters).select(found)
        references = [value for key, value in map(split, filters) if key == "reference"]
    if quiet:
        for img in found:
            click.echo(img.id if no_trunc else img.id.removeprefix("sha256:")[:12])
        return
    if fmt == "json":
        as_json([{"Id": i.id, "RepoTags": i.tags, "Digest": i.manifest_digest,
                  "RepoDigests": i.repo_digests,
                  "Created": rfc3339(image_created(i)), "Size": i.size} for i in found])
        return
    rows = image_rows(found, no_trunc)
    if references:  # only the tags that match, as docker lists them
        from pinnace.cli.filters import reference_matches

        rows = [r for r in rows if any(reference_matches(ref, f"{r.Repository}:{r.Tag}")
                                       for ref in references)]
    if is_template(fmt):
        templated(fmt, rows, ImageRow)
        return
    table(("REPOSITORY", "TAG", *(["DIGEST"] if digests else []), "IMAGE ID", "CREATED",
           "SIZE"), [(r.Repository, r.Tag, *([r.Digest] if digests else []), r.ID,
                      r.CreatedSince, r.Size) for r in rows])


@click.command()
@click.argument("source", shell_complete=complete.images)
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET that refers to image SOURCE."""
    get_engine(ctx).images.tag(source, target)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Remove even if tagged several times or in use.")
@click.argument("refs", nargs=-1, required=True, shell_complete=complete.images)
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
@FORMAT
@click.argument("refs", nargs=-1, required=True, shell_complete=complete.images)
@click.pass_context
def inspect(ctx: click.Context, fmt: str | None, refs: tuple[str, ...]) -> None:
    """Show low-level information on images, as JSON."""
    engine = get_engine(ctx)
    show_found(ctx, refs, engine.images.inspect, fmt)


@click.command()
@click.option("-i", "--input", "source", metavar="FILE",
              help="Read from this archive or OCI layout directory instead of stdin.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing.")
@click.pass_context
def load(ctx: click.Context, source: str | None, quiet: bool) -> None:
    """Load images from a docker-archive, OCI archive or OCI layout
    (what `docker save`, `podman save` and skopeo write)."""
    from pinnace.images.archive import load as load_archive

    engine = get_engine(ctx)
    if source is None:
        loaded = _load_stdin(engine)
    else:
        with engine.operation("load"):
            loaded = load_archive(engine.images, Path(source))
    for item in loaded if not quiet else ():
        for name in item.tags:
            click.echo(f"Loaded image: {name}")
        if not item.tags:
            click.echo(f"Loaded image ID: {item.id}")


def _load_stdin(engine: Any) -> list[Any]:
    """Load an archive read from stdin (copied next to the store: archives need random
    access)."""
    from pinnace.client import Client
    from pinnace.errors import InvalidConfig

    if sys.stdin.isatty():
        raise InvalidConfig("requested load from stdin, but stdin is a terminal: use -i FILE")
    return Client(engine=engine).load(sys.stdin.buffer)


@click.command()
@click.option("-o", "--output", metavar="FILE", help="Write to a file instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["docker-archive", "oci-archive"]),
              default="docker-archive", show_default=True, help="Archive format.")
@click.argument("refs", nargs=-1, required=True, shell_complete=complete.images)
@click.pass_context
def save(ctx: click.Context, output: str | None, fmt: str, refs: tuple[str, ...]) -> None:
    """Save images to a tar archive (docker-archive by default, or OCI)."""
    from pinnace.images.archive import save as save_archive
    from pinnace.images.archive import write_to

    engine = get_engine(ctx)
    for ref in refs:  # fail on an unknown name before creating the output
        engine.images.find(ref)
    write_to(output, lambda fd: save_archive(engine.images, refs, fd, fmt))


@click.command()
@click.option("-q", "--quiet", is_flag=True, help="Only print image IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate the output.")
@TEMPLATE_FORMAT_OPTION
@click.argument("ref", shell_complete=complete.images)
@click.pass_context
def history(ctx: click.Context, quiet: bool, no_trunc: bool, fmt: str, ref: str) -> None:
    """Show the history of an image, newest first.

    Template fields: ID, CreatedSince, CreatedAt, CreatedBy, Size, Comment.
    """
    from pinnace.cli.rows import HistoryRow, history_rows
    from pinnace.images.store import history as image_history

    entries = image_history(get_engine(ctx).images.resolve(ref))
    rows = history_rows(entries, no_trunc)
    if quiet:
        for row in rows:
            click.echo(row.ID)
    elif fmt == "json":
        as_json(entries)
    elif is_template(fmt):
        templated(fmt, rows, HistoryRow)
    else:
        table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"),
              [(r.ID, r.CreatedSince, r.CreatedBy, r.Size, r.Comment) for r in rows])


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove every image no container uses, not only untagged ones.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool) -> None:
    """Remove unused images: untagged ones, or with -a all that no container uses."""
    what = ("all images without at least one container associated to them" if all_
            else "all dangling images")
    if not prune_confirmed(what, force):
        return
    results = get_engine(ctx).prune_images(all_=all_)
    deleted = [d for r in results for d in r.deleted]
    if deleted:
        click.echo("Deleted Images:")
        for r in results:
            for name in r.untagged:
                click.echo(f"untagged: {name}")
            for d in r.deleted:
                click.echo(f"deleted: {d}")
        click.echo()
    click.echo(f"Total reclaimed space: {size(sum(r.reclaimed for r in results))}")


@click.group()
def image() -> None:
    """Manage images."""


image.add_command(inspect)
image.add_command(images, "ls")
image.add_command(import_, "import")
image.add_command(tag, "tag")
image.add_command(rmi, "rm")
image.add_command(load, "load")
image.add_command(save, "save")
image.add_command(history, "history")
image.add_command(prune, "prune")
