"""Volume commands: volume create, ls, inspect, rm, prune."""

from __future__ import annotations

from typing import Any

import click

from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.output import FORMAT_OPTION, as_json, for_each, table
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig

FILTERS = ("name", "driver", "label", "dangling")


def _pairs(items: tuple[str, ...], what: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidConfig(f"invalid {what} {item!r}: expected KEY=VALUE")
        found[key] = value if sep else ""
    return found


@click.group()
def volume() -> None:
    """Manage volumes."""


@volume.command()
@click.option("-d", "--driver", metavar="NAME", help="Volume plugin [default: config, local].")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="A driver option (local: type=, o=, device=).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label.")
@click.argument("name", required=False)
@click.pass_context
def create(ctx: click.Context, name: str | None, driver: str | None, opts: tuple[str, ...],
           labels: tuple[str, ...]) -> None:
    """Create a volume (a random name without NAME); prints its name."""
    for item in opts:
        if "=" not in item:
            raise InvalidConfig(f"invalid driver option {item!r}: expected KEY=VALUE")
    made = get_engine(ctx).volumes.create(name, driver, _pairs(opts, "driver option"),
                                          _pairs(labels, "label"))
    click.echo(made.name)


def _matches(vol: Any, filters: dict[str, list[str]]) -> bool:
    """docker's rules: values of one key are alternatives, keys all apply."""
    tests = {
        "name": lambda v: v in vol.name,
        "driver": lambda v: v == vol.driver,
        "label": lambda v: (v.partition("=")[0] in vol.labels and
                            ("=" not in v or vol.labels[v.partition("=")[0]]
                             == v.partition("=")[2])),
        "dangling": lambda v: (not vol.users) == (v.lower() in ("1", "true")),
    }
    return all(any(tests[key](value) for value in values) for key, values in filters.items())


def _filters(items: tuple[str, ...]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTERS:
            raise InvalidConfig(f"invalid filter {item!r} (known: "
                                f"{', '.join(f + '=' for f in FILTERS)})")
        if key == "dangling" and value.lower() not in ("1", "0", "true", "false"):
            raise InvalidConfig(f"invalid filter 'dangling={value}': true or false")
        found.setdefault(key, []).append(value)
    return found


@volume.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print volume names.")
@click.option("-f", "--filter", "filters", multiple=True,
              metavar="name=|driver=|label=K[=V]|dangling=true|false", help="Filter the list.")
@FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List volumes."""
    wanted = _filters(filters)
    found = [v for v in get_engine(ctx).volumes.list() if _matches(v, wanted)]
    if quiet:
        for v in found:
            click.echo(v.name)
    elif fmt == "json":
        as_json([{"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint,
                  "Labels": v.labels, "Anonymous": v.anonymous, "Containers": v.users}
                 for v in found])
    else:
        table(("DRIVER", "VOLUME NAME"), [(v.driver, v.name) for v in found])


@volume.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show volumes as JSON (docker's fields)."""
    from pinnace import inspection

    engine = get_engine(ctx)
    out = [inspection.volume(engine, name) for name in names]
    as_json(out)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="No error for volumes that do not exist.")
@click.argument("names", nargs=-1, required=True)
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
