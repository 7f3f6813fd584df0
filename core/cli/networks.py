"""Network commands: network create, ls, inspect, rm, connect, disconnect, prune."""

from __future__ import annotations

import click

from pinnace.cli import complete
from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.inspect import FORMAT, show_found
from pinnace.cli.output import (
    TEMPLATE_FORMAT_OPTION,
    as_json,
    for_each,
    is_template,
    table,
    templated,
)
from pinnace.cli.root import get_engine


@click.group()
def network() -> None:
    """Manage named networks."""


@network.command()
@click.option("-d", "--driver", default="bridge", show_default=True,
              shell_complete=complete.plugins_of("network"), help="Network plugin.")
@click.option("--subnet", default="", metavar="CIDR", help="Subnet [default: a free /24].")
@click.option("--gateway", default="", metavar="ADDRESS",
              help="Gateway address [default: the subnet's first].")
@click.option("--internal", is_flag=True,
              help="No route out: no NAT out, no published ports, unreachable from other networks.")
@click.option("-o", "--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="An option of the driver (bridge: bridge=DEVICE).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label.")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE",
              help="Read labels from a file of KEY=VALUE lines.")
@click.argument("name")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, subnet: str, gateway: str,
           internal: bool, opts: tuple[str, ...], labels: tuple[str, ...],
           label_files: tuple[str, ...]) -> None:
    """Create a network of a driver; prints its ID."""
    from pinnace.cli import keyfiles

    options = keyfiles.driver_options(opts)
    found = keyfiles.labels(label_files, labels)
    click.echo(get_engine(ctx).networks.create(name, driver, subnet, gateway, internal,
                                               options, found).id)


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only print network names.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate network IDs.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete.filter_keys("network ls"),
              help="Filter: name, id, driver, label, label!, type=custom|builtin, dangling.")
@TEMPLATE_FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, quiet: bool, no_trunc: bool, filters: tuple[str, ...],
       fmt: str) -> None:
    """List networks.

    Template fields: ID, Name, Driver, Scope, IPv6, Internal, Labels, CreatedAt.
    """
    from pinnace import inspection
    from pinnace.cli import listing_filters

    engine = get_engine(ctx)
    found = listing_filters.networks(engine, filters).select(engine.networks.list())
    if quiet:
        for n in found:
            click.echo(n.name)
    elif fmt == "json":
        as_json([inspection.network(engine, n) for n in found])
    elif is_template(fmt):
        from pinnace.cli.rows import NetworkRow, network_rows

        templated(fmt, network_rows(found, no_trunc), NetworkRow)
    else:
        table(("NETWORK ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "INTERNAL"),
              [(n.id if no_trunc else n.id[:12], n.name, n.driver, n.subnet, n.gateway,
                "yes" if n.internal else "") for n in found])


@network.command()
@FORMAT
@click.argument("names", nargs=-1, required=True, shell_complete=complete.networks)
@click.pass_context
def inspect(ctx: click.Context, fmt: str | None, names: tuple[str, ...]) -> None:
    """Show networks as JSON, with the containers on them."""
    from pinnace import inspection

    engine = get_engine(ctx)
    show_found(ctx, names, lambda name: inspection.network(engine, engine.network(name)), fmt)


@network.command()
@click.argument("names", nargs=-1, required=True, shell_complete=complete.networks)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove networks no container uses."""
    engine = get_engine(ctx)
    for_each(ctx, names, lambda name: click.echo(engine.network_remove(name)))


@network.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> None:
    """Remove every network no container uses."""
    if not prune_confirmed("all custom networks not used by at least one container", force):
        return
    for name in get_engine(ctx).network_prune():
        click.echo(name)


@network.command()
@click.option("--ip", metavar="ADDRESS", help="The container's address on this network.")
@click.option("--alias", "aliases", multiple=True, metavar="NAME",
              help="Another name the network's containers find it by (repeatable).")
@click.argument("name", shell_complete=complete.networks)
@click.argument("container", shell_complete=complete.containers)
@click.pass_context
def connect(ctx: click.Context, name: str, container: str, ip: str | None,
            aliases: tuple[str, ...]) -> None:
    """Connect a container to a network (now, when it is running)."""
    from pinnace.client import Client

    Client(engine=get_engine(ctx)).network_connect(name, container, ip, aliases)


@network.command()
@click.argument("name", shell_complete=complete.networks)
@click.argument("container", shell_complete=complete.containers)
@click.pass_context
def disconnect(ctx: click.Context, name: str, container: str) -> None:
    """Disconnect a container from a network."""
    get_engine(ctx).network_disconnect(name, container)
