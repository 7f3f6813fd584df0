"""Container commands: run, ps, rm."""

from __future__ import annotations

from typing import Any

import click

from pinnace.cli import complete
from pinnace.cli.limit_options import limit_options
from pinnace.cli.output import (
    TEMPLATE_FORMAT_OPTION,
    as_json,
    for_each,
    is_template,
    rfc3339,
    table,
    templated,
)
from pinnace.cli.root import get_engine
from pinnace.errors import InvalidConfig, PinnaceError
from pinnace.units import ago


@click.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background and print the ID.")
@click.option("-i", "--interactive", is_flag=True,
              help="Keep stdin open (attach it in the foreground).")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal.")
@click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits.")
@click.option("--restart", default="no", show_default=True,
              metavar="no|on-failure[:N]|always|unless-stopped", help="Restart policy.")
@click.option("--log-opt", "log_opts", multiple=True, metavar="max-size=SIZE|max-file=N",
              help="json-file log options (rotation).")
@click.option("--name", help="Assign a name to the container.")
@click.option("-e", "--env", multiple=True, metavar="KEY=VALUE",
              help="Set an environment variable.")
@click.option("--env-file", "env_files", multiple=True, metavar="FILE",
              help="Read KEY=VALUE lines (a bare KEY: the host's value; # comments).")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Set a label on the container.")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE",
              help="Read labels from a file of KEY=VALUE lines.")
@click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
@click.option("-u", "--user", metavar="USER[:GROUP]",
              help="User name or UID (and group) to run as.")
@click.option("-h", "--hostname", help="Container host name [default: the short ID].")
@click.option("--entrypoint", help="Overwrite the image's ENTRYPOINT.")
@click.option("--read-only", is_flag=True, help="Mount the container's root filesystem read-only.")
@click.option("--storage", metavar="NAME", shell_complete=complete.plugins_of("storage"),
              help="Storage plugin (see `pinnace plugins`).")
@click.option("--net", "network", metavar="NAME", shell_complete=complete.plugins_of("network"),
              help="Network plugin (none, bridge, host ...) or container:NAME.")
@click.option("--network", "networks", multiple=True, metavar="NAME",
              shell_complete=complete.networks,
              help="Join a named network (implies --net=bridge); repeatable.")
@click.option("--network-alias", "network_aliases", multiple=True, metavar="NAME",
              help="Another name the containers of its named networks find it by "
                   "(repeatable).")
@click.option("-p", "--publish", "ports", multiple=True,
              metavar="[IP:]HOSTPORT:PORT[/PROTO]", help="Publish a container port on the host.")
@click.option("-P", "--publish-all", is_flag=True,
              help="Publish every exposed port on a free host port.")
@click.option("--ip", metavar="ADDRESS", help="The container's address on its first network.")
@click.option("--dns", multiple=True, metavar="ADDRESS", help="A DNS server for the container.")
@click.option("--add-host", "add_hosts", multiple=True, metavar="NAME:IP",
              help="Add a line to the container's /etc/hosts.")
@click.option("--isolation", metavar="NAME", shell_complete=complete.plugins_of("isolation"),
              help="Isolation plugin.")
@click.option("--privileged", is_flag=True,
              help="Every capability, no seccomp filter, no masked paths, every device.")
@click.option("--cap-add", multiple=True, metavar="CAP", help="Add a capability (or ALL).")
@click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a capability (or ALL).")
@click.option("--security-opt", multiple=True,
              metavar="no-new-privileges|seccomp=unconfined|seccomp=FILE",
              help="Security options.")
@limit_options
@click.option("-v", "--volume", "volumes", multiple=True, metavar="[HOST-DIR|NAME:]PATH[:ro]",
              help="Bind a host directory or mount a volume (a new anonymous one without a "
                   "source).")
@click.option("--mount", "mounts", multiple=True,
              metavar="type=bind|volume|tmpfs,source=S,target=T[,readonly,...]",
              help="Mount a host path, a volume or a tmpfs (docker's keys).")
@click.option("--tmpfs", multiple=True, metavar="PATH[:OPTIONS]",
              help="Mount a tmpfs (options: size=64m,mode=1777,exec ...).")
@click.option("--volumes-from", multiple=True, metavar="CONTAINER[:ro|rw]",
              help="Mount the volumes and binds of another container.")
@click.option("--volume-driver", metavar="NAME",
              help="Volume plugin for the volumes this makes [default: config, local].")
@click.option("--init", is_flag=True,
              help="Run an init as PID 1 that forwards signals and reaps zombies.")
@click.option("--init-path", metavar="PATH",
              help="The init binary for --init [default: config, catatonit or tini-static].")
@click.option("--ulimit", "ulimits", multiple=True, metavar="NAME=SOFT[:HARD]",
              help="A resource limit (nofile, nproc, core, memlock, stack, ...; -1 unlimited).")
@click.option("--stop-signal", metavar="SIGNAL",
              help="Signal stop sends first [default: the image's STOPSIGNAL, SIGTERM].")
@click.option("--stop-timeout", type=int, metavar="SECONDS",
              help="Seconds stop waits before SIGKILL [default: 10].")
@click.option("--shm-size", metavar="SIZE", help="Size of /dev/shm [default: 64m].")
@click.option("--sysctl", "sysctls", multiple=True, metavar="KEY=VALUE",
              help="A namespaced kernel parameter (net.*, kernel.shm*/msg*/sem, fs.mqueue.*).")
@click.option("--device", "devices", multiple=True, metavar="HOST[:CONTAINER[:rwm]]",
              help="Add a host device to the container.")
@click.option("--group-add", multiple=True, metavar="GROUP",
              help="A supplementary group (a gid or a name in the container's /etc/group).")
@click.option("--cidfile", metavar="FILE", help="Write the container ID to FILE (must not exist).")
@click.option("--pid", metavar="MODE", help="PID namespace: host or container:NAME.")
@click.option("--ipc", metavar="MODE",
              help="IPC namespace: private, shareable, host or container:NAME.")
@click.option("--uts", metavar="MODE", help="UTS namespace: host.")
@click.option("--health-cmd", metavar="COMMAND", help="Command to run to check health.")
@click.option("--health-interval", metavar="DURATION",
              help="Time between running the check (e.g. 30s, 1m) [default: 30s].")
@click.option("--health-timeout", metavar="DURATION",
              help="Longest a check may run [default: 30s].")
@click.option("--health-start-period", metavar="DURATION",
              help="Failures in this time after start do not count [default: 0s].")
@click.option("--health-retries", type=int, metavar="N",
              help="Failures in a row that make it unhealthy [default: 3].")
@click.option("--no-healthcheck", is_flag=True, help="Disable the image's HEALTHCHECK.")
@click.option("--userns", metavar="host|private|auto|keep-id",
              help="User namespace: host (none), private (the first block of pinnace's "
                   "subordinate ids), auto (a block of its own) [default: config, host].")
@click.option("--uidmap", multiple=True, metavar="CONTAINER:HOST:SIZE",
              help="Map container uids to host uids in a user namespace; repeatable.")
@click.option("--gidmap", multiple=True, metavar="CONTAINER:HOST:SIZE",
              help="Map container gids to host gids [default: as --uidmap]; repeatable.")
@click.argument("image", shell_complete=complete.images)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, detach: bool, image: str, command: tuple[str, ...],
        **kw: Any) -> None:
    """Run a command in a new container.

    In the foreground the exit code is the container's; 125 when pinnace
    itself fails, 126 when the command cannot be executed, 127 when it is
    not found. Signals are forwarded; a third Ctrl-C kills it. With -d it
    runs under a monitor of its own and the ID is printed.
    """
    from pinnace.monitor.foreground import attach_start

    engine = get_engine(ctx)
    cidfile, auto_remove = kw["cidfile"], kw["auto_remove"]
    cid = _created(engine, image, command, kw)
    try:
        if detach:
            from pinnace.monitor.starter import start_detached

            try:
                start_detached(engine, cid)
            except PinnaceError:
                if auto_remove:
                    engine.remove(cid, force=True)
                raise
            click.echo(cid)
            return
        code = attach_start(engine, cid)
    except PinnaceError:
        if cidfile and auto_remove:  # the container it names is gone
            from pinnace.containers import cidfile as cid_file

            cid_file.remove(cidfile, cid)
        raise
    ctx.exit(code)


def _created(engine: Any, image: str, command: tuple[str, ...], kw: dict[str, Any]) -> str:
    """Create the container ``run``'s (or ``create``'s) options describe; with
    ``--cidfile`` its ID goes into that file, which must not exist."""
    cidfile = kw.pop("cidfile")
    if cidfile:
        from pinnace.containers import cidfile as cid_file

        cid_file.check(cidfile)
    cid = engine.create(run_options(image, command, kw))
    if cidfile:
        try:
            cid_file.write(cidfile, cid)
        except PinnaceError:
            engine.remove(cid, force=True)
            raise
    return cid


def run_options(image: str, command: tuple[str, ...], kw: dict[str, Any]) -> Any:
    """The :class:`~pinnace.containers.options.RunOptions` of ``run``'s parameters: the
    env files before ``-e``, the label files before ``--label``."""
    from pinnace.cli.keyfiles import env_file, labels
    from pinnace.containers.options import RunOptions

    env = [e for path in kw.pop("env_files") for e in env_file(path)] + list(kw.pop("env"))
    found = labels(kw.pop("label_files"), kw.pop("labels"))
    aliases = kw.pop("network_aliases")
    if aliases and not kw["networks"]:
        raise InvalidConfig("--network-alias applies to named networks: give --network")
    return RunOptions(image=image, command=command, env=env, labels=found,
                      network_aliases=dict.fromkeys(kw["networks"], aliases), **kw)


def _create(ctx: click.Context, image: str, command: tuple[str, ...], **kw: Any) -> None:
    click.echo(_created(get_engine(ctx), image, command, kw))


create = click.Command(
    "create", callback=click.pass_context(_create),
    params=[p for p in run.params if p.name != "detach"],
    context_settings=run.context_settings,
    help="Create a container without starting it (`start` runs it); print its ID. "
         "It takes run's options.")
"""``create``: ``run``'s options but ``-d``, and nothing started."""


@click.command()
@click.option("-a", "--all", "all_", is_flag=True,
              help="Show all containers, not only running ones.")
@click.option("-q", "--quiet", is_flag=True, help="Only print container IDs.")
@click.option("--no-trunc", is_flag=True, help="Do not truncate IDs and commands.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="KEY=VALUE",
              shell_complete=complete.filter_keys("ps"),
              help="Filter: id, name, label, label!, status, ancestor, before, since, network, "
                   "volume, exited, health, publish, expose (a status filter lists all).")
@TEMPLATE_FORMAT_OPTION
@click.pass_context
def ps(ctx: click.Context, all_: bool, quiet: bool, no_trunc: bool, filters: tuple[str, ...],
       fmt: str) -> None:
    """List containers.

    Template fields: ID, Image, Command, CreatedAt, RunningFor, Ports, Status, Size,
    Names, Labels, Mounts, Networks, State.
    """
    engine = get_engine(ctx)
    if filters:
        from pinnace.cli import listing_filters

        wanted = listing_filters.containers(engine, filters)
        containers = wanted.select(engine.list(all_=all_ or "status" in wanted.tests))
    else:
        containers = engine.list(all_=all_)
    if quiet:
        for c in containers:
            click.echo(c.id if no_trunc else c.short_id)
    elif is_template(fmt):
        from pinnace.cli.rows import ContainerRow, container_rows

        templated(fmt, container_rows(engine, containers, no_trunc), ContainerRow)
    elif fmt == "json":
        as_json([{
            "Id": c.id, "Names": [c.name], "Image": c.image, "ImageID": c.image_id,
            "Command": c.command, "Created": rfc3339(c.created), "State": c.status,
            "ExitCode": c.exit_code, "Pid": c.pid, "Storage": c.storage,
            "Network": c.network, "Isolation": c.isolation, "Labels": c.config.labels,
        } for c in containers])
    else:
        from pinnace.cli.rows import command, ports, status

        table(("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"),
              [(c.id if no_trunc else c.short_id, c.image, command(c, no_trunc),
                ago(c.created), status(c, engine.paths.health(c.id)), ports(engine, c), c.name)
               for c in containers])


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill and remove a running container.")
@click.option("-v", "--volumes", is_flag=True, help="Remove its anonymous volumes too.")
@click.argument("containers", nargs=-1, required=True, shell_complete=complete.containers)
@click.pass_context
def rm(ctx: click.Context, force: bool, volumes: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers."""
    engine = get_engine(ctx)

    def remove(ref: str) -> None:
        engine.remove(ref, force=force, volumes=volumes)
        click.echo(ref)

    for_each(ctx, containers, remove)
