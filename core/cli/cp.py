"""``pinnace cp``: copy files between a container and the host."""

from __future__ import annotations

import sys

import click

from pinnace.cli.root import get_engine


def _end(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` as (container, path); a host path (or ``-``) as (None, path).
    As in docker, a path that starts with ``/`` or ``.`` is the host's, colon or not."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path or "/"


@click.command()
@click.option("-a", "--archive", is_flag=True, help="Keep the owners (uid:gid) of the files.")
@click.option("-L", "--follow-link", "follow", is_flag=True,
              help="Follow a symlink given as the source.")
@click.argument("source")
@click.argument("dest")
@click.pass_context
def cp(ctx: click.Context, archive: bool, follow: bool, source: str, dest: str) -> None:
    """Copy files between a container and the host.

    \b
    pinnace cp [OPTIONS] CONTAINER:SRC DEST|-
    pinnace cp [OPTIONS] SRC|- CONTAINER:DEST

    SRC ending in /. copies a directory's contents; - is a tar stream on stdout or stdin.
    """
    from pinnace.errors import InvalidConfig
    from pinnace.images.copy import CopyOptions

    src, dst = _end(source), _end(dest)
    if (src[0] is None) == (dst[0] is None):
        raise InvalidConfig("cp copies between a container and the host: give CONTAINER:PATH "
                            "as exactly one of SRC and DEST")
    stream = sys.stdout.buffer if dst[1] == "-" else sys.stdin.buffer
    get_engine(ctx).copy(src, dst, CopyOptions(archive=archive, follow=follow), stream)
