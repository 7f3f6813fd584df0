"""``pinnace exec`` and ``pinnace attach``."""

from __future__ import annotations

from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.root import get_engine


@click.command(context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Leave the command running in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable.")
@click.option("--env-file", "env_files", multiple=True, metavar="FILE",
              help="Read KEY=VALUE lines (a bare KEY: the host's value; # comments).")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
@click.option("-u", "--user", metavar="USER[:GROUP]", help="User name or UID (and group).")
@click.argument("container", shell_complete=complete.containers)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, detach: bool, interactive: bool, tty: bool, container: str,
          command: tuple[str, ...], **kw: Any) -> None:
    """Run a command in a running container; exit with its exit code."""
    from pinnace.cli.keyfiles import env_file
    from pinnace.monitor.execution import run_exec

    env = [e for path in kw["env_files"] for e in env_file(path)] + list(kw["env"])
    engine = get_engine(ctx)
    cid = engine.resolve(container)
    process = engine.exec_process(cid, list(command), env, kw["workdir"], kw["user"], tty)
    ctx.exit(run_exec(engine, cid, process, interactive, detach))


@click.command()
@click.option("--detach-keys", default="ctrl-p,ctrl-q", show_default=True,
              help="Key sequence that detaches and leaves the container running.")
@click.option("--no-stdin", is_flag=True, help="Do not send our stdin to the container.")
@click.option("--sig-proxy/--no-sig-proxy", default=True, show_default=True,
              help="Forward signals to the container (without a tty).")
@click.argument("container", shell_complete=complete.containers)
@click.pass_context
def attach(ctx: click.Context, detach_keys: str, no_stdin: bool, sig_proxy: bool,
           container: str) -> None:
    """Attach to a detached container's streams; exit with its exit code."""
    from pinnace.monitor.attach import attach as attach_to
    from pinnace.monitor.attach import parse_detach_keys

    engine = get_engine(ctx)
    keys = parse_detach_keys(detach_keys)
    ctx.exit(attach_to(engine, engine.resolve(container), keys, not no_stdin, sig_proxy))
