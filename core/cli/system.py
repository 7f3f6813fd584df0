"""System commands: plugins, info, version, doctor, config show, completion."""

from __future__ import annotations

import os
import platform
from typing import Any, NamedTuple

import click

from pinnace.cli import complete
from pinnace.cli.confirm import prune_confirmed
from pinnace.cli.output import (
    FORMAT_OPTION,
    TEMPLATE_FORMAT_OPTION,
    as_json,
    is_template,
    size,
    table,
    templated,
)
from pinnace.cli.root import get_engine

PER_CONTAINER = ("storage", "network", "isolation", "volume")
"""The roles with a selected plugin (an image source is picked by transport; a volume
driver is the one new volumes get)."""


@click.command()
@FORMAT_OPTION
@click.pass_context
def plugins(ctx: click.Context, fmt: str) -> None:
    """List every installed plugin: role, name, distribution, version, options, load status."""
    from pinnace import plugins as discovery

    engine = get_engine(ctx)
    loaded, failed = discovery.load_all()
    rows = []
    for ep in discovery.discover():
        key = (ep.role, ep.name)
        obj = loaded.get(key)
        options = [o.name for o in getattr(obj, "options", ())]
        selected = ep.role in PER_CONTAINER and \
            engine.config.selected(ep.role).value == ep.name
        if key in failed:
            status = f"failed: {failed[key]}"
        else:
            problems = discovery.validate(ep.role, obj)
            status = "invalid: " + "; ".join(problems) if problems else "ok"
        if engine.config.disabled(ep.role, ep.name):
            status = f"disabled ({status})"
        rows.append({
            "role": ep.role, "name": ep.name, "selected": selected, "distribution": ep.dist,
            "version": ep.version, "target": ep.value, "options": options, "status": status,
        })
    if fmt == "json":
        as_json(rows)
        return
    table(("ROLE", "NAME", "DISTRIBUTION", "VERSION", "OPTIONS", "STATUS"), [
        (r["role"], r["name"] + (" *" if r["selected"] else ""), r["distribution"], r["version"],
         ",".join(r["options"]) or "-", r["status"]) for r in rows])
    click.echo("\n* selected by default (see `pinnace config show`)")


def _selected_plugins(engine: Any) -> dict[str, str]:
    return {role: engine.config.selected(role).value
            for role in PER_CONTAINER}


class Info(NamedTuple):
    """``info --format``'s fields, docker's names where docker has the same thing."""

    ServerVersion: str
    KernelVersion: str
    OperatingSystem: str
    OSType: str
    Architecture: str
    CgroupVersion: str
    Driver: str
    NetworkDriver: str
    Isolation: str
    Containers: int
    ContainersRunning: int
    ContainersPaused: int
    ContainersStopped: int
    Images: int
    DockerRootDir: str
    RunRoot: str
    ConfigFile: str
    Plugins: dict[str, Any]

    kind = "info"


def _info_record(data: dict[str, Any], statuses: list[str]) -> Info:
    return Info(
        ServerVersion=data["version"], KernelVersion=data["kernel"],
        OperatingSystem=_os_name(), OSType="linux",
        Architecture=platform.machine(),
        CgroupVersion=data["cgroup_version"].removeprefix("v"),
        Driver=data["selected"]["storage"]["name"],
        NetworkDriver=data["selected"]["network"]["name"],
        Isolation=data["selected"]["isolation"]["name"],
        Containers=len(statuses), ContainersRunning=statuses.count("running"),
        ContainersPaused=statuses.count("paused"),
        ContainersStopped=sum(s not in ("running", "paused") for s in statuses),
        Images=data["images"], DockerRootDir=data["root"], RunRoot=data["run_root"],
        ConfigFile=data["config_file"] or "", Plugins=data["plugins"])


def _os_name() -> str:
    """PRETTY_NAME of /etc/os-release (``Debian GNU/Linux 12 (bookworm)``)."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", "Linux")
    except OSError:
        return "Linux"


@click.command()
@TEMPLATE_FORMAT_OPTION
@click.pass_context
def info(ctx: click.Context, fmt: str) -> None:
    """Show what is selected and why, where state lives, and what plugins report.

    Template fields: ServerVersion, KernelVersion, OperatingSystem, OSType, Architecture,
    CgroupVersion, Driver, NetworkDriver, Isolation, Containers, ContainersRunning,
    ContainersPaused, ContainersStopped, Images, DockerRootDir, RunRoot, ConfigFile, Plugins.
    """
    from pinnace.errors import PinnaceError
    from pinnace.runtime import cgroups

    engine = get_engine(ctx)
    cfg = engine.config
    everything = engine.list(all_=True)
    data: dict[str, Any] = {
        "version": __import__("pinnace").__version__,
        "kernel": platform.release(),
        "root": str(cfg.root),
        "run_root": str(cfg.run_root),
        "config_file": str(cfg.file) if cfg.file else None,
        "cgroup_version": cgroups.version(),
        "selected": {role: {"name": name, "source": cfg.selected(role).source}
                     for role, name in _selected_plugins(engine).items()},
        "containers": len(everything),
        "images": len(engine.images.list()),
        "plugins": {},
    }
    for role, name in _selected_plugins(engine).items():
        try:
            engine.plugins.load(role, name)
        except PinnaceError as err:
            data["plugins"][f"{role}.{name}"] = {"error": str(err)}
    for section in engine.plugins.broadcast("pinnace_info"):
        data["plugins"].update(section)
    if fmt == "json":
        as_json(data)
        return
    if is_template(fmt):
        templated(fmt, [_info_record(data, [c.status for c in everything])])
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                if isinstance(v, dict):
                    v = ", ".join(f"{a}={b}" for a, b in v.items())
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@click.command()
@FORMAT_OPTION
@click.pass_context
def doctor(ctx: click.Context, fmt: str) -> None:
    """Check what this host lacks for each installed plugin, with a fix for each problem.

    Exits 1 when a check fails.
    """
    from pinnace import plugins as discovery
    from pinnace.errors import PinnaceError

    engine = get_engine(ctx)
    checks: list[dict[str, str]] = [{
        "check": "running as root", "ok": "yes" if os.geteuid() == 0 else "no",
        "detail": f"euid {os.geteuid()}", "fix": "run pinnace as root (sudo)"}]
    for ep in discovery.discover():
        if ep.role in ("plugins",):
            continue
        try:
            engine.plugins.load(ep.role, ep.name)
        except PinnaceError as err:
            checks.append({"check": f"{ep.role} plugin {ep.name} loads", "ok": "no",
                           "detail": str(err), "fix": "reinstall or uninstall " + ep.dist})
    for found in engine.plugins.broadcast("pinnace_doctor"):
        checks.extend(found)
    if fmt == "json":
        as_json(checks)
    else:
        table(("CHECK", "OK", "DETAIL"),
              [(c["check"], c["ok"], c.get("detail", "")) for c in checks])
        fixes = [c for c in checks if c["ok"] != "yes" and c.get("fix")]
        if fixes:
            click.echo("\nTo fix:")
            for c in fixes:
                click.echo(f"  {c['check']}: {c['fix']}")
    if any(c["ok"] == "no" for c in checks):
        ctx.exit(1)


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@FORMAT_OPTION
@click.pass_context
def config_show(ctx: click.Context, fmt: str) -> None:
    """Show the effective configuration and where each value came from."""
    from pinnace import plugins as discovery
    from pinnace.errors import PinnaceError

    cfg = get_engine(ctx).config
    rows = [(f"engine.{k}", v.value, v.source) for k, v in cfg.engine.items()]
    rows.insert(0, ("config_file", str(cfg.file) if cfg.file else "(none)", "flag/env/default"))
    for ep in discovery.discover():
        try:
            cls = discovery.import_target(ep)
        except PinnaceError:
            continue
        declared = tuple(getattr(cls, "options", ()))
        for name, value in cfg.plugin_options(ep.role, ep.name, declared).items():
            rows.append((f"{ep.role}.{ep.name}.{name}", value.value, value.source))
    if fmt == "json":
        as_json([{"key": k, "value": v, "source": s} for k, v, s in rows])
    else:
        table(("KEY", "VALUE", "SOURCE"), [(k, repr(v) if v == "" else v, s) for k, v, s in rows])


class ClientVersion(NamedTuple):
    """The ``pinnace`` command's side of ``version``."""

    Version: str
    PythonVersion: str
    Os: str
    Arch: str

    kind = "client version"


class EngineVersion(NamedTuple):
    """The engine's side of ``version``: what runs containers on this host."""

    Version: str
    StateSchema: int
    KernelVersion: str
    CgroupVersion: str
    Os: str
    Arch: str
    Plugins: dict[str, str]

    kind = "engine version"


class Version(NamedTuple):
    """``version --format``'s value: ``{{.Client.Version}}``, ``{{.Server.Version}}``."""

    Client: ClientVersion
    Server: EngineVersion

    kind = "version"


@click.command()
@TEMPLATE_FORMAT_OPTION
def version(fmt: str) -> None:
    """Show the pinnace, Python, kernel and plugin versions (no state is opened).

    Template fields: Client (Version, PythonVersion, Os, Arch), Server (Version,
    StateSchema, KernelVersion, CgroupVersion, Os, Arch, Plugins).
    """
    from pinnace import __version__
    from pinnace import plugins as discovery
    from pinnace.images.store import host_platform
    from pinnace.runtime import cgroups
    from pinnace.state import MIGRATIONS

    arch = host_platform()[1]
    found = Version(
        Client=ClientVersion(__version__, platform.python_version(), "linux", arch),
        Server=EngineVersion(
            __version__, len(MIGRATIONS), platform.release(),
            cgroups.version().removeprefix("v"), "linux", arch,
            {f"{ep.role}.{ep.name}": f"{ep.dist} {ep.version}"
             for ep in discovery.discover()}))
    if fmt == "json":
        from pinnace.cli.template import plain

        as_json(plain(found))
    elif is_template(fmt):
        templated(fmt, [found])
    else:
        client, server = found
        table_lines = [
            "Client:", f" Version:         {client.Version}",
            f" Python version:  {client.PythonVersion}",
            f" OS/Arch:         {client.Os}/{client.Arch}", "",
            "Engine:", f" Version:         {server.Version}",
            f" State schema:    {server.StateSchema}",
            f" Kernel version:  {server.KernelVersion}",
            f" Cgroup version:  {server.CgroupVersion}",
            f" OS/Arch:         {server.Os}/{server.Arch}", " Plugins:",
            *(f"  {name}: {dist}" for name, dist in sorted(server.Plugins.items()))]
        click.echo("\n".join(table_lines))


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print a shell completion script: ``eval "$(pinnace completion bash)"``."""
    from click.shell_completion import get_completion_class

    from pinnace.cli.root import cli

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(cli, {}, "pinnace", "_PINNACE_COMPLETE").source())


@click.group()
def system() -> None:
    """Disk usage and consistency of what pinnace holds."""


@system.command("df")
@click.option("-v", "--verbose", is_flag=True, help="Show each image, container and volume.")
@click.option("--storage", "by_storage", is_flag=True,
              help="Show instead what each storage plugin holds, as the plugin measures it.")
@FORMAT_OPTION
@click.pass_context
def system_df(ctx: click.Context, verbose: bool, by_storage: bool, fmt: str) -> None:
    """Show disk usage as docker does: images, containers, local volumes, build cache
    (TOTAL, ACTIVE, SIZE, RECLAIMABLE); with --storage, per storage plugin (containers,
    layers, bytes and inodes of its snapshots)."""
    engine = get_engine(ctx)
    if by_storage:
        usage = engine.storage_usage()
        if fmt == "json":
            as_json([{"Storage": u.storage, "Containers": u.containers, "Layers": u.layers,
                      "Size": u.bytes, "Inodes": u.inodes} for u in usage])
            return
        table(("STORAGE", "CONTAINERS", "LAYERS", "SIZE", "INODES"),
              [(u.storage, u.containers, u.layers, size(u.bytes), u.inodes) for u in usage])
        return
    from pinnace.cli.disk import show_disk_usage
    from pinnace.disk_usage import disk_usage

    show_disk_usage(disk_usage(engine), verbose, fmt)


@system.command("check")
@click.option("--repair", is_flag=True,
              help="Forget missing layers (unpacked again when needed); kill broken containers.")
@click.pass_context
def system_check(ctx: click.Context, repair: bool) -> None:
    """Ask the storage plugins for every layer the state records, the volume drivers for
    every volume, and each running container's isolation and network plugins whether it
    is as they made it; print what is wrong. Exits 1 when something is."""
    problems = get_engine(ctx).check(repair=repair)
    for line in problems:
        click.echo(line)
    if problems:
        ctx.exit(1)


@system.command("prune")
@click.option("-a", "--all", "all_", is_flag=True,
              help="Remove every image no container uses, not only dangling ones.")
@click.option("--volumes", is_flag=True, help="Remove anonymous volumes no container uses.")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--filter", "filters", multiple=True, metavar="until=TIME|label=K[=V]|label!=...",
              shell_complete=complete.filter_keys("system prune"),
              help="Only what was made before TIME, or has (or lacks) a label.")
@click.pass_context
def system_prune(ctx: click.Context, all_: bool, volumes: bool, force: bool,
                 filters: tuple[str, ...]) -> None:
    """Remove stopped containers, unused networks, dangling images (with -a every unused
    image) and, with --volumes, unused anonymous volumes."""
    from pinnace.cli.listing_filters import pruned
    from pinnace.cli.rows import image_created

    containers = pruned(filters, lambda c: c.created, lambda c: c.config.labels)
    networks = pruned(filters, lambda n: n.created, lambda n: n.labels)
    images = pruned(filters, image_created,
                    lambda i: (i.config.get("config") or {}).get("Labels") or {})
    unused = pruned(filters, lambda v: v.created, lambda v: v.labels)
    kinds = ["all stopped containers", "all networks not used by at least one container",
             *(["all anonymous volumes not used by at least one container"] if volumes else []),
             "all images without at least one container associated to them" if all_
             else "all dangling images"]
    if not prune_confirmed(kinds, force):
        return
    engine = get_engine(ctx)
    sections = [("Deleted Containers", engine.prune(containers)),
                ("Deleted Networks", engine.network_prune(networks)),
                ("Deleted Volumes", engine.volumes.prune(False, unused) if volumes else [])]
    results = engine.prune_images(all_, images)
    sections.append(("Deleted Images", [*(f"untagged: {t}" for r in results for t in r.untagged),
                                        *(f"deleted: {d}" for r in results for d in r.deleted)]))
    for title, lines in sections:
        if lines:
            click.echo(f"{title}:")
            for line in lines:
                click.echo(line)
            click.echo()
    click.echo(f"Total reclaimed space: {size(sum(r.reclaimed for r in results))}")
