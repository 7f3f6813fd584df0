"""``pinnace experiment``: compare plugins of one role on the same workload."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pinnace.cli.root import get_engine

if TYPE_CHECKING:
    from pinnace.engine import Engine
    from pinnace.experiments.framework import Experiment, Metric

DEFAULT_STRATEGIES = "none,host,bridge,routed,slirp4netns,pasta"


@click.group()
def experiment() -> None:
    """Compare strategies (plugins) on one workload: a table, CSV, JSON and a plot."""


def _common(name: str, role: str, default: str, each_run: str,
            image_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options every experiment has: --strategies, --runs, --out and --image."""
    options = (
        click.option("--strategies", default=default, show_default=True, metavar="A,B,...",
                     help=f"{role.capitalize()} plugins to compare."),
        click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000),
                     help=f"Runs per strategy ({each_run})."),
        click.option("--out", "out_dir", default="results", show_default=True, metavar="DIR",
                     type=click.Path(file_okay=False, path_type=Path),
                     help=f"Where {name}.csv, {name}.json and {name}.png go."),
        click.option("--image", default="busybox:latest", show_default=True, help=image_help),
    )

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


def _prepared(ctx: click.Context, strategies: str, image: str
              ) -> tuple[tuple[str, ...], Engine]:
    """The strategy names and the engine, the image checked: bad input is an error
    before anything runs."""
    from pinnace.experiments import framework

    names = tuple(framework.strategy_names(strategies))
    engine = get_engine(ctx)
    engine.images.resolve(image)
    return names, engine


def _run(ctx: click.Context, engine: Engine, name: str, metrics: tuple[Metric, ...],
         make: Callable[..., Experiment], out_dir: Path, *args: Any, **env: str) -> None:
    """Run the experiment ``make(engine, argv, *args, say)`` makes; print the table and
    write NAME.csv, NAME.json and NAME.png into ``out_dir``."""
    import functools

    from pinnace.experiments import framework

    out_dir.mkdir(parents=True, exist_ok=True)
    made = make(engine, _pinnace_argv(ctx), *args, functools.partial(click.echo, err=True))
    results = made.run()
    environment = framework.environment(made.params, results, **env)
    for line in framework.write_results(out_dir, name, metrics, environment, results):
        click.echo(line)


@experiment.command("net")
@_common("net", "network", DEFAULT_STRATEGIES, "two containers each",
         "Image with busybox nc, sh, dd and sleep.")
@click.option("--payload-mib", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="MiB sent for the throughput measurement.")
@click.pass_context
def net(ctx: click.Context, strategies: str, runs: int, out_dir: Path, image: str,
        payload_mib: int) -> None:
    """Measure network strategies: setup and teardown per container, container-to-container
    TCP connect, round trip and throughput, and host-to-published-port latency.

    Everything runs in a private network namespace made for the experiment, so
    the host's network is never touched. Cells are median / p95 over the runs;
    a measurement a strategy cannot make is n/a.
    """
    import tempfile

    from pinnace import netns
    from pinnace.errors import Unavailable
    from pinnace.experiments import net as experiment_net

    names, engine = _prepared(ctx, strategies, image)
    try:
        netns.enter_private()
        netns.add_uplink()
    except OSError as err:
        raise Unavailable(f"cannot make a private network namespace for the experiment "
                          f"({err.strerror}); run it as root") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    params = experiment_net.Parameters(names, runs, image, payload_mib << 20)
    with tempfile.TemporaryDirectory(prefix=".net-", dir=out_dir) as work:
        _run(ctx, engine, "net", experiment_net.METRICS, experiment_net.NetExperiment, out_dir,
             params, Path(work), network_namespace=(
                 "private (the experiment unshares one; the host's is untouched)"))


@experiment.command("isolation")
@_common("isolation", "isolation", "unshare,oci,runc", "one container each",
         "Image with busybox sh, sleep and dd.")
@click.option("--records", default=200_000, show_default=True,
              type=click.IntRange(1000, 100_000_000),
              help="dd bs=1 records for the system call cost (two calls each).")
@click.pass_context
def isolation(ctx: click.Context, strategies: str, runs: int, out_dir: Path, image: str,
              records: int) -> None:
    """Measure isolation strategies: start, exec and stop latency, memory per container
    and the CPU time of a system call inside the container.

    Containers run with --net=none. Cells are median / p95 over the runs; a
    measurement a strategy cannot make is n/a.
    """
    from pinnace.experiments import isolation as experiment_isolation

    names, engine = _prepared(ctx, strategies, image)
    params = experiment_isolation.Parameters(names, runs, image, records)
    _run(ctx, engine, "isolation", experiment_isolation.METRICS,
         experiment_isolation.IsolationExperiment, out_dir, params)


@experiment.command("storage")
@_common("storage", "storage", "btrfs,dir,overlay", "containers of two images each",
         "The small image (busybox sh, dd and sleep); the large one is made from it.")
@click.option("--large-mib", default=64, show_default=True, type=click.IntRange(1, 65536),
              help="MiB of data the large image adds.")
@click.option("--write-mib", default=32, show_default=True, type=click.IntRange(1, 65536),
              help="MiB written for the write throughput.")
@click.option("--small-files", default=1000, show_default=True,
              type=click.IntRange(1, 1_000_000), help="Files for the many-small-files test.")
@click.pass_context
def storage(ctx: click.Context, strategies: str, runs: int, out_dir: Path, image: str,
            large_mib: int, write_mib: int, small_files: int) -> None:
    """Measure storage strategies: create latency for a small and a large image, disk used
    per container, file write and read throughput, many small files, and commit time.

    Containers run with --net=none. Cells are median / p95 over the runs; a
    measurement a strategy cannot make is n/a.
    """
    from pinnace.experiments import storage as experiment_storage

    names, engine = _prepared(ctx, strategies, image)
    params = experiment_storage.Parameters(names, runs, image, large_mib, write_mib,
                                           small_files)
    _run(ctx, engine, "storage", experiment_storage.METRICS,
         experiment_storage.StorageExperiment, out_dir, params)


def _pinnace_argv(ctx: click.Context) -> list[str]:
    """``python -m pinnace`` with this invocation's --root, --run-root and --config."""
    params = ctx.find_root().params
    argv = [sys.executable, "-m", "pinnace"]
    for flag, key in (("--root", "root"), ("--run-root", "run_root"), ("--config", "config_file")):
        if params.get(key):
            argv += [flag, str(params[key])]
    return argv
