"""Lifecycle commands: start, stop, kill, restart, wait, pause, unpause, update, rename,
prune."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.limit_options import limit_options
from pinnace.cli.output import for_each
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig
from pinnace.runtime.policy import parse_signal

CONTAINERS = click.argument("containers", nargs=-1, required=True,
                            shell_complete=complete.containers)


def _start(engine: Any, cid: str) -> None:
    from pinnace.client import Client

    Client(engine=engine).start(cid)


def _each(ctx: click.Context, containers: tuple[str, ...],
          action: Callable[[Any, str], object]) -> None:
    """Resolve each container and apply ``action(engine, id)``; print what it
    returns, or the name given when it returns nothing, as docker does."""
    engine = get_engine(ctx)

    def one(ref: str) -> None:
        result = action(engine, engine.resolve(ref))
        click.echo(ref if result is None else result)

    for_each(ctx, containers, one)


@click.command()
@click.option("-a", "--attach", is_flag=True,
              help="Attach stdout/stderr and wait for the exit code.")
@click.option("-i", "--interactive", is_flag=True, help="Attach stdin too (with -a).")
@CONTAINERS
@click.pass_context
def start(ctx: click.Context, attach: bool, interactive: bool, containers: tuple[str, ...]) -> None:
    """Start one or more stopped containers."""
    if attach:
        if len(containers) != 1:
            raise InvalidConfig("start -a takes exactly one container")
        from pinnace.monitor.foreground import attach_start

        engine = get_engine(ctx)
        ctx.exit(attach_start(engine, engine.resolve(containers[0])))
    _each(ctx, containers, _start)


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait for it to stop before killing it "
                   "[default: its --stop-timeout, or 10].")
@CONTAINERS
@click.pass_context
def stop(ctx: click.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop running containers: SIGTERM, then SIGKILL after a grace period (shared:
    they are stopped at once)."""
    from pinnace.errors import PinnaceError

    engine = get_engine(ctx)
    found: dict[str, str | PinnaceError] = {}
    for ref in containers:
        try:
            found[ref] = engine.resolve(ref)
        except PinnaceError as err:
            found[ref] = err
    outcome = engine.stop_all([cid for cid in found.values() if isinstance(cid, str)], timeout)

    def report(ref: str) -> None:
        cid = found[ref]
        failure = cid if isinstance(cid, PinnaceError) else outcome[cid]
        if failure is not None:
            raise failure
        click.echo(ref)

    for_each(ctx, containers, report)


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None,
              help="Seconds to wait for it to stop before killing it "
                   "[default: its --stop-timeout, or 10].")
@CONTAINERS
@click.pass_context
def restart(ctx: click.Context, timeout: int | None, containers: tuple[str, ...]) -> None:
    """Stop (if running) and start containers again."""
    def again(engine: Any, cid: str) -> None:
        engine.stop(cid, timeout)
        _start(engine, cid)

    _each(ctx, containers, again)


@click.command()
@click.option("-s", "--signal", "signal_", default="KILL", show_default=True,
              help="Signal to send (name or number).")
@CONTAINERS
@click.pass_context
def kill(ctx: click.Context, signal_: str, containers: tuple[str, ...]) -> None:
    """Send a signal to the first process of running containers."""
    number = parse_signal(signal_)
    _each(ctx, containers, lambda engine, cid: engine.kill(cid, number, by_user=True))


@click.command()
@CONTAINERS
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until containers stop, then print their exit codes."""
    _each(ctx, containers, lambda engine, cid: engine.wait_exit(cid))


@click.command()
@CONTAINERS
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Freeze every process in containers."""
    _each(ctx, containers, lambda engine, cid: engine.pause(cid))


@click.command()
@CONTAINERS
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    _each(ctx, containers, lambda engine, cid: engine.unpause(cid))


@click.command()
@limit_options
@click.option("--restart", metavar="POLICY",
              help="Restart policy: no, always, unless-stopped, on-failure[:N].")
@CONTAINERS
@click.pass_context
def update(ctx: click.Context, containers: tuple[str, ...], **flags: Any) -> None:
    """Change the limits and restart policy of containers (running ones at once)."""
    from pinnace.client import Client

    client = Client(engine=get_engine(ctx))

    def one(ref: str) -> None:
        client.update(ref, **flags)
        click.echo(ref)

    for_each(ctx, containers, one)


@click.command()
@click.argument("container", shell_complete=complete.containers)
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    engine = get_engine(ctx)
    engine.rename(engine.resolve(container), new_name)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def prune(ctx: click.Context, force: bool) -> None:
    """Remove all stopped containers."""
    if not prune_confirmed("all stopped containers", force):
        return
    gone = get_engine(ctx).prune()
    if gone:
        click.echo("Deleted Containers:")
        for cid in gone:
            click.echo(cid)
    click.echo(f"Total: {len(gone)} container(s) removed")
