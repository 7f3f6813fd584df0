"""``system df``'s output, as docker prints it."""

from __future__ import annotations

import click

from pinnace.cli.output import ago, as_json, size, table
from pinnace.disk_usage import DiskUsage


def _reclaimable(part: int, whole: int) -> str:
    return f"{size(part)} ({round(100 * part / whole) if whole else 0}%)"


def show_disk_usage(usage: DiskUsage, verbose: bool, fmt: str) -> None:
    """The summary table (``TYPE TOTAL ACTIVE SIZE RECLAIMABLE``), with ``verbose`` each
    image, container and volume; ``json``: docker's fields, numbers as numbers."""
    summary = usage.summary()
    if fmt == "json":
        as_json([{"Type": s.type, "TotalCount": s.total, "Active": s.active, "Size": s.size,
                  "Reclaimable": s.reclaimable} for s in summary])
        return
    if not verbose:
        table(("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"),
              [(s.type, s.total, s.active, size(s.size),
                _reclaimable(s.reclaimable, s.size) if s.type != "Build Cache"
                else size(s.reclaimable)) for s in summary])
        return
    from pinnace.cli.rows import command, image_created, status

    click.echo("Images space usage:\n")
    table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE",
           "CONTAINERS"),
          [(*(tag.rpartition(":")[::2] if tag else ("<none>", "<none>")),
            u.image.id.removeprefix("sha256:")[:12], ago(image_created(u.image)),
            size(u.size), size(u.shared), size(u.size - u.shared), u.containers)
           for u in usage.images for tag in (u.image.tags or [""])])
    click.echo("\nContainers space usage:\n")
    table(("CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS",
           "NAMES"),
          [(u.container.short_id, u.container.image, command(u.container, False), u.volumes,
            size(u.size), ago(u.container.created), status(u.container), u.container.name)
           for u in usage.containers])
    click.echo("\nLocal Volumes space usage:\n")
    table(("VOLUME NAME", "LINKS", "SIZE"),
          [(u.volume.name, u.links, size(u.size)) for u in usage.volumes])
    click.echo("\nBuild cache usage: 0B")
