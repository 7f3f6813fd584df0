"""``pinnace serve``: the Docker Engine API on a unix socket."""

from __future__ import annotations

import click

from pinnace.cli.root import get_engine


@click.command()
@click.option("--socket", "socket_path", metavar="PATH",
              help="Unix socket to listen on [default: pinnace.sock in the run root].")
@click.option("--tcp", metavar="127.0.0.1:PORT",
              help="Listen on this loopback address too (no other address is accepted).")
@click.option("--debug", is_flag=True, help="Log each request on stderr.")
@click.pass_context
def serve(ctx: click.Context, socket_path: str | None, tcp: str | None, debug: bool) -> None:
    """Serve the Docker Engine API (1.24 to 1.41), so docker's CLI, docker-py and
    docker-compose drive pinnace (DOCKER_HOST=unix://PATH). The socket is 0660, root's
    and the group of [engine] api_group. Containers keep running when it stops."""
    from pinnace.serve.run import serve as run

    run(get_engine(ctx).config, socket_path, tcp, debug)
