"""The resource-limit options ``run``/``create`` and ``update`` share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_OPTIONS = (
    click.option("-m", "--memory", metavar="SIZE", help="Memory limit (e.g. 64m, 1g)."),
    click.option("--memory-swap", metavar="SIZE",
                 help="Memory plus swap limit (-1: unlimited swap) [default: twice --memory]."),
    click.option("--cpus", type=float, metavar="N", help="CPU quota in CPUs (e.g. 0.5)."),
    click.option("-c", "--cpu-shares", type=int, metavar="N", help="Relative CPU weight."),
    click.option("--cpuset-cpus", metavar="LIST", help="CPUs to run on (e.g. 0-1, 0,2)."),
    click.option("--pids-limit", type=int, metavar="N",
                 help="Most processes at once (-1: no limit)."),
)


def limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--memory``, ``--memory-swap``, ``--cpus``, ``--cpu-shares``, ``--cpuset-cpus``
    and ``--pids-limit`` to ``command``."""
    for option in reversed(_OPTIONS):
        command = option(command)
    return command
