"""``pinnace experiment``: compare plugins of one role on the same workload."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from pinnace.cli.root import get_engine

DEFAULT_STRATEGIES = "none,host,bridge,routed"


@click.group()
def experiment() -> None:
    """Compare strategies (plugins) on one workload: a table, CSV, JSON and a plot."""


@experiment.command("net")
@click.option("--strategies", default=DEFAULT_STRATEGIES, show_default=True, metavar="A,B,...",
              help="Network plugins to compare.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per strategy (two containers each).")
@click.option("--out", "out_dir", default="results", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where net.csv, net.json and net.png go.")
@click.option("--image", default="busybox:latest", show_default=True,
              help="Image with busybox nc, sh, dd and sleep.")
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
    import functools
    import tempfile

    from pinnace import netns
    from pinnace.errors import Unavailable
    from pinnace.experiments import framework
    from pinnace.experiments import net as experiment_net

    names = framework.strategy_names(strategies)
    engine = get_engine(ctx)
    engine.images.resolve(image)  # a missing image is an error before anything runs
    try:
        netns.enter_private()
    except OSError as err:
        raise Unavailable(f"cannot make a private network namespace for the experiment "
                          f"({err.strerror}); run it as root") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    params = experiment_net.Parameters(tuple(names), runs, image, payload_mib << 20)
    with tempfile.TemporaryDirectory(prefix=".net-", dir=out_dir) as work:
        results = experiment_net.NetExperiment(engine, _pinnace_argv(ctx), params, Path(work),
                                               functools.partial(click.echo, err=True)).run()
    env = framework.environment(params, results, network_namespace=(
        "private (the experiment unshares one; the host's is untouched)"))
    _report(framework.write_results(out_dir, "net", experiment_net.METRICS, env, results))


@experiment.command("isolation")
@click.option("--strategies", default="unshare,oci,runc", show_default=True,
              metavar="A,B,...", help="Isolation plugins to compare.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per strategy (one container each).")
@click.option("--out", "out_dir", default="results", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where isolation.csv, isolation.json and isolation.png go.")
@click.option("--image", default="busybox:latest", show_default=True,
              help="Image with busybox sh, sleep and dd.")
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
    import functools

    from pinnace.experiments import framework
    from pinnace.experiments import isolation as experiment_isolation

    names = framework.strategy_names(strategies)
    engine = get_engine(ctx)
    engine.images.resolve(image)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = experiment_isolation.Parameters(tuple(names), runs, image, records)
    results = experiment_isolation.IsolationExperiment(
        engine, _pinnace_argv(ctx), params, functools.partial(click.echo, err=True)).run()
    env = framework.environment(params, results)
    _report(framework.write_results(out_dir, "isolation", experiment_isolation.METRICS, env,
                                    results))


@experiment.command("storage")
@click.option("--strategies", default="btrfs,dir,overlay", show_default=True,
              metavar="A,B,...", help="Storage plugins to compare.")
@click.option("--runs", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Runs per strategy.")
@click.option("--out", "out_dir", default="results", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Where storage.csv, storage.json and storage.png go.")
@click.option("--image", default="busybox:latest", show_default=True,
              help="The small image (busybox sh, dd and sleep); the large one is made from it.")
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
    import functools

    from pinnace.experiments import framework
    from pinnace.experiments import storage as experiment_storage

    names = framework.strategy_names(strategies)
    engine = get_engine(ctx)
    engine.images.resolve(image)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = experiment_storage.Parameters(tuple(names), runs, image, large_mib, write_mib,
                                           small_files)
    results = experiment_storage.StorageExperiment(
        engine, _pinnace_argv(ctx), params, functools.partial(click.echo, err=True)).run()
    env = framework.environment(params, results)
    _report(framework.write_results(out_dir, "storage", experiment_storage.METRICS, env,
                                    results))


def _report(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def _pinnace_argv(ctx: click.Context) -> list[str]:
    """``python -m pinnace`` with this invocation's --root, --run-root and --config."""
    params = ctx.find_root().params
    argv = [sys.executable, "-m", "pinnace"]
    for flag, key in (("--root", "root"), ("--run-root", "run_root"), ("--config", "config_file")):
        if params.get(key):
            argv += [flag, str(params[key])]
    return argv
