"""Image transfer commands: pull, push, login, logout (through the image source plugins)."""

from __future__ import annotations

import sys
from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine

TLS_VERIFY = click.option(
    "--tls-verify", type=click.BOOL, default=None, is_flag=False, flag_value=True,
    metavar="BOOL", help="Require HTTPS with a verified certificate "
    "(default: yes, except for loopback and the configured insecure registries).")


def _quiet_or_progress(quiet: bool) -> Any:
    """Progress bars on stderr when it is a terminal and not ``quiet``; else None."""
    if quiet or not sys.stderr.isatty():
        return None
    from pinnace.progress import Progress

    return Progress(sys.stderr)


def _options(**kwargs: Any) -> Any:
    from pinnace.images.sources import TransferOptions

    return TransferOptions(**kwargs)


@click.command()
@click.option("--platform", metavar="OS/ARCH[/VARIANT]",
              help="Pick this platform from a multi-platform image (default: this host's).")
@TLS_VERIFY
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print only the image ID.")
@click.argument("reference")
@click.pass_context
def pull(ctx: click.Context, platform: str | None, tls_verify: bool | None, quiet: bool,
         reference: str) -> None:
    """Pull an image: REGISTRY/NAME[:TAG|@DIGEST], or TRANSPORT:REF with an installed
    image source (docker://, oci-archive:, docker-archive:, oci:, tar:, debootstrap:)."""
    options = _options(platform=platform, tls_verify=tls_verify,
                       progress=_quiet_or_progress(quiet))
    click.echo(get_engine(ctx).pull(reference, options))


@click.command()
@TLS_VERIFY
@click.option("--compression-format", "compression", default=None,
              type=click.Choice(["gzip", "zstd", "none"]),
              help="Compression of the layers pushed [default: gzip].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print only the digest.")
@click.argument("image", shell_complete=complete.images)
@click.argument("destination", required=False)
@click.pass_context
def push(ctx: click.Context, tls_verify: bool | None, compression: str | None, quiet: bool,
         image: str, destination: str | None) -> None:
    """Push IMAGE to DESTINATION (default: IMAGE's own name, which then names a registry)."""

    options = _options(tls_verify=tls_verify, compression=compression,
                       progress=_quiet_or_progress(quiet))
    click.echo(get_engine(ctx).sources.push(image, destination or image, options))


@click.command()
@click.option("-u", "--username", help="User name (prompted for on a terminal).")
@click.option("-p", "--password", help="Password (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@TLS_VERIFY
@click.argument("server")
@click.pass_context
def login(ctx: click.Context, username: str | None, password: str | None,
          password_stdin: bool, tls_verify: bool | None, server: str) -> None:
    """Log in to a registry; the credentials are kept in a file only root can read."""
    from pinnace.errors import InvalidConfig

    if password_stdin:
        if password is not None:
            raise InvalidConfig("--password and --password-stdin are mutually exclusive")
        password = sys.stdin.readline().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            raise InvalidConfig("no username given: use -u USER (stdin is not a terminal)")
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            raise InvalidConfig("no password given: use -p or --password-stdin")
        password = click.prompt("Password", hide_input=True)
    if not username or not password:
        raise InvalidConfig("username and password must not be empty")
    get_engine(ctx).sources.login(server, username, password, _options(tls_verify=tls_verify))
    click.echo("Login Succeeded")


@click.command()
@click.argument("server")
@click.pass_context
def logout(ctx: click.Context, server: str) -> None:
    """Log out from a registry: forget its stored credentials."""

    if get_engine(ctx).sources.logout(server):
        click.echo(f"Removing login credentials for {server}")
    else:
        click.echo(f"Not logged in to {server}")
