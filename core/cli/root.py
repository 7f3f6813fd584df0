"""The root click group: global options, lazy commands, plugin commands."""

from __future__ import annotations

import sys
from typing import Any

import click

from pinnace import __version__

COMMANDS: dict[str, str] = {
    "run": "pinnace.cli.containers:run",
    "ps": "pinnace.cli.containers:ps",
    "rm": "pinnace.cli.containers:rm",
    "import": "pinnace.cli.images:import_",
    "images": "pinnace.cli.images:images",
    "tag": "pinnace.cli.images:tag",
    "rmi": "pinnace.cli.images:rmi",
    "image": "pinnace.cli.images:image",
    "plugins": "pinnace.cli.system:plugins",
    "info": "pinnace.cli.system:info",
    "doctor": "pinnace.cli.system:doctor",
    "config": "pinnace.cli.system:config",
    "completion": "pinnace.cli.system:completion",
    "network": "pinnace.cli.networks:network",
}


class LazyGroup(click.Group):
    """A group that imports a command's module only when that command runs,
    and asks extension plugins for their commands (``pinnace_add_commands``) on demand."""

    _plugin_commands_added = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            import importlib

            module, _, attr = COMMANDS[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        if name not in self.commands:
            self._add_plugin_commands(ctx)
        return self.commands.get(name)

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        from pinnace import plugins

        if any(e.role == "plugins" for e in plugins.discover()):
            get_engine(ctx).plugins.hook.pinnace_add_commands(cli=self)


def get_engine(ctx: click.Context) -> Any:
    """The engine for this invocation, built from the global options on first use."""
    root = ctx.find_root()
    if root.obj is None:
        from pinnace import config
        from pinnace.engine import Engine

        p = root.params
        cfg = config.load(p.get("config_file"), {"root": p.get("root"), "run_root": p.get("run_root")})
        root.obj = Engine(cfg, trace=sys.stderr if p.get("trace") else None)
    return root.obj


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", prog_name="pinnace",
                      message="%(prog)s version %(version)s")
@click.option("--root", metavar="DIR", envvar=None,
              help="Directory for state, images and storage [default: /var/lib/pinnace].")
@click.option("--run-root", metavar="DIR", help="Directory for runtime files [default: /run/pinnace].")
@click.option("--config", "config_file", metavar="FILE",
              help="Config file [default: $PINNACE_CONFIG or /etc/pinnace/pinnace.toml].")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--trace", is_flag=True, help="Print every plugin hook call with its duration.")
def cli(**_: Any) -> None:
    """pinnace: a small, hackable container engine built from plugins.

    Select plugins per container with --storage, --net and --isolation on
    `run`, or in the config file; `pinnace plugins` lists what is installed.
    """

