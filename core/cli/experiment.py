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
    from pinnace.errors import InvalidConfig, Unavailable
    from pinnace.experiments import net as experiment_net

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if not names or len(set(names)) != len(names):
        raise InvalidConfig(f"--strategies needs distinct plugin names, got {strategies!r}")
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
    click.echo(experiment_net.table(results))
    experiment_net.write_csv(out_dir / "net.csv", results)
    experiment_net.write_json(out_dir / "net.json", experiment_net.environment(params, results),
                              results)
    missing = experiment_net.plot(out_dir / "net.png", results)
    written = [out_dir / name for name in ("net.csv", "net.json", "net.png")]
    written = written[:2] if missing else written
    click.echo("wrote " + ", ".join(str(p) for p in written))
    if missing:
        click.echo(missing)


def _pinnace_argv(ctx: click.Context) -> list[str]:
    """``python -m pinnace`` with this invocation's --root, --run-root and --config."""
    params = ctx.find_root().params
    argv = [sys.executable, "-m", "pinnace"]
    for flag, key in (("--root", "root"), ("--run-root", "run_root"), ("--config", "config_file")):
        if params.get(key):
            argv += [flag, str(params[key])]
    return argv
