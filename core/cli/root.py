"""The root click group: global options, lazy commands, plugin commands."""

from __future__ import annotations

import sys
from typing import Any

import click

from pinnace import __version__

COMMANDS: dict[str, str] = {
    "run": "pinnace.cli.containers:run",
    "create": "pinnace.cli.containers:create",
    "ps": "pinnace.cli.containers:ps",
    "rm": "pinnace.cli.containers:rm",
    "container": "pinnace.cli.root:container",
    "start": "pinnace.cli.lifecycle:start",
    "stop": "pinnace.cli.lifecycle:stop",
    "restart": "pinnace.cli.lifecycle:restart",
    "kill": "pinnace.cli.lifecycle:kill",
    "wait": "pinnace.cli.lifecycle:wait",
    "pause": "pinnace.cli.lifecycle:pause",
    "unpause": "pinnace.cli.lifecycle:unpause",
    "rename": "pinnace.cli.lifecycle:rename",
    "logs": "pinnace.cli.logs:logs",
    "exec": "pinnace.cli.exec:exec_",
    "attach": "pinnace.cli.exec:attach",
    "inspect": "pinnace.cli.inspect:inspect",
    "top": "pinnace.cli.inspect:top",
    "stats": "pinnace.cli.stats:stats",
    "import": "pinnace.cli.images:import_",
    "images": "pinnace.cli.images:images",
    "tag": "pinnace.cli.images:tag",
    "rmi": "pinnace.cli.images:rmi",
    "image": "pinnace.cli.images:image",
    "load": "pinnace.cli.images:load",
    "save": "pinnace.cli.images:save",
    "history": "pinnace.cli.images:history",
    "pull": "pinnace.cli.transfer:pull",
    "push": "pinnace.cli.transfer:push",
    "login": "pinnace.cli.transfer:login",
    "logout": "pinnace.cli.transfer:logout",
    "commit": "pinnace.cli.commit:commit",
    "export": "pinnace.cli.commit:export",
    "diff": "pinnace.cli.diff:diff",
    "cp": "pinnace.cli.cp:cp",
    "port": "pinnace.cli.port:port",
    "search": "pinnace.cli.search:search",
    "plugins": "pinnace.cli.system:plugins",
    "info": "pinnace.cli.system:info",
    "version": "pinnace.cli.system:version",
    "events": "pinnace.cli.events:events",
    "doctor": "pinnace.cli.system:doctor",
    "config": "pinnace.cli.system:config",
    "completion": "pinnace.cli.system:completion",
    "experiment": "pinnace.cli.experiment:experiment",
    "network": "pinnace.cli.networks:network",
    "volume": "pinnace.cli.volumes:volume",
    "system": "pinnace.cli.system:system",
}


CONTAINER_COMMANDS: dict[str, str] = {
    name: COMMANDS[name] for name in (
        "run", "create", "start", "stop", "restart", "kill", "wait", "pause", "unpause",
        "rename", "logs", "exec", "attach", "inspect", "top", "rm", "stats", "commit",
        "export", "diff", "cp", "port")
} | {"ls": "pinnace.cli.containers:ps", "ps": "pinnace.cli.containers:ps",
     "prune": "pinnace.cli.lifecycle:prune"}


class LazyCommands(click.Group):
    """A group whose commands are imported only when they run (``lazy``: name -> module:attr)."""

    lazy: dict[str, str] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.lazy) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.commands.get(name)


class ContainerGroup(LazyCommands):
    """``pinnace container ...``: the container commands under one name, as docker has."""

    lazy = CONTAINER_COMMANDS


class LazyGroup(LazyCommands):
    """The root group: lazy commands, plus the commands extension plugins add
    (``pinnace_add_commands``), asked for on demand."""

    lazy = COMMANDS
    _plugin_commands_added = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.lazy and name not in self.commands:
            self._add_plugin_commands(ctx)
        return super().get_command(ctx, name)

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        from pinnace import plugins

        if any(e.role == "plugins" for e in plugins.discover()):
            get_engine(ctx).plugins.broadcast("pinnace_add_commands", cli=self)


def get_engine(ctx: click.Context) -> Any:
    """The engine for this invocation, built from the global options on first use."""
    root = ctx.find_root()
    if root.obj is None:
        from pinnace import config
        from pinnace.engine import Engine

        p = root.params
        cfg = config.load(p.get("config_file"),
                          {"root": p.get("root"), "run_root": p.get("run_root")})
        root.obj = Engine(cfg, trace=sys.stderr if p.get("trace") else None)
        if root.invoked_subcommand != "system":  # ``system check`` reports what it finds
            root.obj.recover()
    return root.obj


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", prog_name="pinnace",
                      message="%(prog)s version %(version)s")
@click.option("--root", metavar="DIR", envvar=None,
              help="Directory for state, images and storage [default: /var/lib/pinnace].")
@click.option("--run-root", metavar="DIR",
              help="Directory for runtime files [default: /run/pinnace].")
@click.option("--config", "config_file", metavar="FILE",
              help="Config file [default: $PINNACE_CONFIG or /etc/pinnace/pinnace.toml].")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.option("--trace", is_flag=True, help="Print every plugin hook call with its duration.")
def cli(**_: Any) -> None:
    """pinnace: a small, hackable container engine built from plugins.

    Select plugins per container with --storage, --net and --isolation on
    `run`, or in the config file; `pinnace plugins` lists what is installed.
    """



@click.group(cls=ContainerGroup)
def container() -> None:
    """Manage containers (the same commands as at the top level, plus ls and prune)."""
