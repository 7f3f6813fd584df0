"""``pinnace port``: a container's published ports, as docker prints them."""

from __future__ import annotations

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig, NotFound


@click.command()
@click.argument("container", shell_complete=complete.containers)
@click.argument("private_port", required=False, metavar="[PRIVATE_PORT[/PROTO]]")
@click.pass_context
def port(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List a running container's published ports (``80/tcp -> 0.0.0.0:8080``), or the
    host addresses of one of them."""
    engine = get_engine(ctx)
    record = engine.container(container)
    published = engine.networks.settings(record)["Ports"] if record.active else {}
    if private_port is None:
        from pinnace.cli.rows import by_port

        for target, mapped in by_port(published):
            for p in mapped or []:
                click.echo(f"{target} -> {p['HostIp']}:{p['HostPort']}")
        return
    number, _, proto = private_port.partition("/")
    if not number.isdigit() or proto not in ("", "tcp", "udp"):
        raise InvalidConfig(f"invalid port {private_port!r}: expected PORT[/tcp|udp]")
    target = f"{int(number)}/{proto or 'tcp'}"
    if not published.get(target):
        raise NotFound(f"no public port '{target}' published for {record.label}")
    for p in published[target]:
        click.echo(f"{p['HostIp']}:{p['HostPort']}")
