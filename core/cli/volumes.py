"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.output import FORMAT_OPTION, as_json, for_each, table
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig


@click.group()
def volume() -> None:
    """Manage volumes."""


@volume.command()
@click.option("-d", "--driver", metavar="NAME", help="Volume plugin [default: config, local].")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="A driver option (local: type=, o=, device=).")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label.")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE",
              help="Read labels from a file of KEY=VALUE lines.")
@click.argument("name", required=False)
@click.pass_context
def create(ctx: click.Context, name: str | None, driver: str | None, opts: tuple[str, ...],
           labels: tuple[str, ...], label_files: tuple[str, ...]) -> None:
    """Create a volume (a random name without NAME); prints its name."""
    from pinnace.cli import keyfiles

    options = {}
    for item in opts:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidConfig(f"invalid driver option {item!r}: expected KEY=VALUE")
        options[key] = value
    made = get_engine(ctx).volumes.create(name, driver, options,
                                          keyfiles.labels(label_files, labels))
    click.echo(made.name)


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print volume names.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete.filter_keys("volume ls"),
              help="Filter: name, driver, label, label!, dangling=true|false.")
@FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes."""
    from pinnace.cli import listing_filters

    found = listing_filters.volumes(filters).select(get_engine(ctx).volumes.list())
    if quiet:
        for v in found:
            click.echo(v.name)
    elif fmt == "json":
        as_json([{"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
                  "Labels": v.labels, "Anonymous": v.anonymous, "Containers": v.users}
                 for v in found])
    else:
        table(("DRIVER", "VOLUME NAME"), [(v.driver, v.name) for v in found])


def _rfc3339(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


@volume.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete.volumes)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show volumes as JSON (docker's fields)."""
    volumes = get_engine(ctx).volumes
    out = []
    for name in names:
        vol = volumes.get(name)
        info, scope = volumes.details(vol)
        entry: dict[str, Any] = {
            "CreatedAt": _rfc3339(vol.created), "Driver": vol.driver,
            "Labels": vol.labels or None, "Mountpoint": info.mountpoint or vol.mountpoint,
            "Name": vol.name, "Options": vol.options or None, "Scope": scope,
        }
        if info.status:
            entry["Status"] = info.status
        out.append(entry)
    as_json(out)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="No error for volumes that do not exist.")
@click.argument("names", nargs=-1, required=True, shell_complete=complete.volumes)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove volumes no container uses."""
    volumes = get_engine(ctx).volumes
    for_each(ctx, names, lambda name: click.echo(volumes.remove(name, force=force)))


@volume.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Named volumes too, not only anonymous ones.")
@click.pass_context
def prune(ctx: click.Context, force: bool, all_: bool) -> None:
    """Remove the volumes no container uses (anonymous ones only, without -a)."""
    what = "all local volumes not used by at least one container" if all_ else \
        "all anonymous local volumes not used by at least one container"
    if not prune_confirmed(what, force):
        return
    for name in get_engine(ctx).volumes.prune(all_):
        click.echo(name)
