"""``pinnace build``: an image from a Dockerfile."""

from __future__ import annotations

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig


@click.command()
@click.option("-t", "--tag", "tags", multiple=True, metavar="NAME[:TAG]",
              help="Name the image (repeatable).")
@click.option("-f", "--file", "dockerfile", metavar="FILE",
              help="The Dockerfile [default: CONTEXT/Dockerfile].")
@click.option("--build-arg", "build_args", multiple=True, metavar="KEY=VALUE",
              help="Set a build-time variable (a bare KEY takes the environment's value).")
@click.option("--target", metavar="STAGE", help="Build up to this stage.")
@click.option("--no-cache", is_flag=True, help="Build every step anew.")
@click.option("--pull", is_flag=True, help="Pull base images that name a transport or "
                                            "registry, even when stored.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Set a label on the image.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image ID.")
@click.option("--iidfile", metavar="FILE", help="Write the image ID to FILE.")
@click.option("--network", metavar="MODE", help="Network plugin for RUN steps (none, host, "
                                                "bridge...) [default: as for run].")
@click.option("--net", "net", metavar="NAME", shell_complete=complete.plugins_of("network"),
              help="Same as --network.")
@click.option("--storage", metavar="NAME", shell_complete=complete.plugins_of("storage"),
              help="Storage plugin.")
@click.option("--isolation", metavar="NAME", shell_complete=complete.plugins_of("isolation"),
              help="Isolation plugin.")
@click.argument("context", metavar="CONTEXT|-")
@click.pass_context
def build(ctx: click.Context, tags: tuple[str, ...], dockerfile: str | None,
          build_args: tuple[str, ...], target: str | None, no_cache: bool, pull: bool,
          labels: tuple[str, ...], quiet: bool, iidfile: str | None, network: str | None,
          net: str | None, storage: str | None, isolation: str | None, context: str) -> None:
    """Build an image from a Dockerfile and a context (a directory, or - for a tar or a
    Dockerfile on stdin). Each RUN runs in a container of the selected plugins."""
    from pinnace.build.builder import BuildOptions
    from pinnace.client import Client

    options = BuildOptions(tags=tags, build_args=_pairs(build_args, "--build-arg", True),
                           target=target, no_cache=no_cache, pull=pull,
                           labels=_pairs(labels, "--label", False), quiet=quiet,
                           storage=storage, isolation=isolation, network=network or net)
    image_id = Client(engine=get_engine(ctx)).build(context, options, dockerfile)
    if iidfile:
        with open(iidfile, "w", encoding="utf-8") as f:
            f.write(image_id)
    if quiet:
        click.echo(image_id)


def _pairs(items: tuple[str, ...], flag: str, from_env: bool) -> dict[str, str]:
    """``KEY=VALUE`` items; a bare ``KEY`` takes the environment's value (``from_env``)."""
    import os

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidConfig(f"{flag} {item!r}: expected KEY=VALUE")
        if not sep:
            if not from_env:
                raise InvalidConfig(f"{flag} {item!r}: expected KEY=VALUE")
            if key not in os.environ:
                continue
            value = os.environ[key]
        out[key] = value
    return out
