"""runc's command line, parsed by a table: global flags, the command, then its flags and
operands. A flag's value is the next argument or follows ``=``.

Not argparse: building its parsers (a formatter per argument, which imports shutil, and a
gettext catalogue look-up per message) costs more than a whole ``state`` call does, and
the runtime starts for every call its callers make.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from pinnace.errors import InvalidConfig

DEFAULT_ROOT = "/run/pinnace-runtime"
GLOBAL_FLAGS = (f"--root={DEFAULT_ROOT} --log= --log-format=text --debug --systemd-cgroup "
                "--isolation=unshare --version,-v --help,-h")
"""Flags before the command. ``--name=DEFAULT`` takes a value (``=*``: repeatable, a list;
a number: an integer), a bare ``--name`` is a switch; ``,-x`` adds a short alias."""
CREATE_FLAGS = ("--bundle,-b=. --pid-file= --console-socket= --no-pivot --no-new-keyring "
                "--preserve-fds=0")
COMMANDS = {
    "create": ("create a container", "ID", CREATE_FLAGS),
    "run": ("create, start and wait for a container", "ID", CREATE_FLAGS + " --detach,-d"),
    "start": ("start a created container", "ID", ""),
    "state": ("print a container's OCI state", "ID", ""),
    "kill": ("signal a container's process", "ID [SIGNAL]", "--all,-a"),
    "delete": ("delete a container", "ID", "--force,-f"),
    "exec": ("run a process in a container", "ID [ARGS...]",
             "--process,-p= --detach,-d --pid-file= --tty,-t --console-socket= --cwd= "
             "--env,-e=* --preserve-fds=0"),
    "pause": ("freeze a container", "ID", ""),
    "resume": ("thaw a container", "ID", ""),
    "ps": ("list a container's processes", "ID", "--format,-f=table"),
    "update": ("change a container's resource limits (a JSON file, or - for stdin)", "ID",
               "--resources,-r="),
    "list": ("list containers", "", "--format,-f=table --quiet,-q"),
    "features": ("print what this runtime supports", "", ""),
    "spec": ("write a default config.json", "", "--bundle,-b=. --rootless"),
}
"""Each command: what it does, its operands (``[NAME...]``, last, takes every argument
after the operands before it, flags too, as ``exec``'s command line) and its flags."""
CHOICES = {"log_format": ("text", "json"), "format": ("table", "json")}
REQUIRED = {"update": "resources"}


def _flags(table: str) -> dict[str, tuple[str, str | None]]:
    """``--name,-n=default`` words -> {spelling: (attribute, default or None for a switch)}."""
    found: dict[str, tuple[str, str | None]] = {}
    for word in table.split():
        names, eq, default = word.partition("=")
        spellings = names.split(",")
        for spelling in spellings:
            found[spelling] = (spellings[0].lstrip("-").replace("-", "_"), default if eq else None)
    return found


def _defaults(args: SimpleNamespace, flags: dict[str, tuple[str, str | None]]) -> None:
    for attr, default in flags.values():
        value: object = (False if default is None else [] if default == "*"
                         else int(default) if default.isdigit() else default)
        setattr(args, attr, value)


def parse(argv: list[str]) -> SimpleNamespace:
    """The parsed command line: an attribute per flag of the global set and the command's,
    ``command`` (None without one), and its operands (``id``, ``signal``, ``args``).
    A flag or command this grammar lacks, or a missing value, is InvalidConfig."""
    args = SimpleNamespace(command=None, id="", signal=None, args=[])
    flags = _flags(GLOBAL_FLAGS)
    _defaults(args, flags)
    args.isolation = os.environ.get("PINNACE_RUNTIME_ISOLATION", args.isolation)
    operands: list[str] = []
    names: list[str] = []
    words = iter(argv)
    for word in words:
        if names and len(operands) >= len(names) - 1 and "..." in names[-1]:
            operands.append(word)  # the trailing operand takes the rest as it stands
        elif word == "--":
            operands.extend(words)
        elif word.startswith("-") and word != "-":
            name, eq, value = word.partition("=")
            if name not in flags:
                where = f" for {args.command}" if args.command else ""
                raise InvalidConfig(f"unknown flag {name}{where}")
            attr, default = flags[name]
            if default is None:
                setattr(args, attr, True)
                continue
            if not eq:
                value = next(words, None)  # type: ignore[assignment]
                if value is None:
                    raise InvalidConfig(f"flag {name} needs a value")
            _store(args, attr, default, value)
        elif args.command is None:
            if word not in COMMANDS:
                raise InvalidConfig(f"unknown command {word!r}")
            args.command = word
            names = COMMANDS[word][1].split()
            flags = _flags(COMMANDS[word][2])
            _defaults(args, flags)
            flags.update({"--help": ("help", None), "-h": ("help", None)})
        else:
            operands.append(word)
    if args.command and not args.help:
        _operands(args, names, operands)
    return args


def _store(args: SimpleNamespace, attr: str, default: str, value: str) -> None:
    if default == "*":
        getattr(args, attr).append(value)
    elif default.isdigit():
        if not value.isdigit():
            raise InvalidConfig(f"--{attr.replace('_', '-')} takes a number, not {value!r}")
        setattr(args, attr, int(value))
    elif attr in CHOICES and value not in CHOICES[attr]:
        raise InvalidConfig(f"--{attr.replace('_', '-')} is one of "
                            f"{', '.join(CHOICES[attr])}, not {value!r}")
    else:
        setattr(args, attr, value)


def _operands(args: SimpleNamespace, names: list[str], given: list[str]) -> None:
    """Set each operand named in the command's table from ``given``."""
    for name in names:
        attr = name.strip("[].").lower()
        if "..." in name:
            args.args = given
            given = []
        elif given:
            setattr(args, attr, given.pop(0))
        elif not name.startswith("["):
            raise InvalidConfig(f"{args.command} needs a container {name}")
    if given:
        raise InvalidConfig(f"{args.command}: unexpected argument {given[0]!r}")
    required = REQUIRED.get(args.command)
    if required and not getattr(args, required):
        raise InvalidConfig(f"{args.command} needs --{required}")


def usage(command: str | None = None) -> str:
    """Help text: every command, or one command's flags and operands."""
    if command:
        what, operands, flags = COMMANDS[command]
        return f"usage: pinnace-runtime {command} {_shown(flags)} {operands}\n\n{what}\n"
    lines = ["usage: pinnace-runtime [global flags] COMMAND [flags] [operands]", "",
             "An OCI runtime over pinnace's isolation plugins (runc's command line).", "",
             f"global flags: {_shown(GLOBAL_FLAGS)}",
             "(--isolation: the isolation plugin, also PINNACE_RUNTIME_ISOLATION)", "",
             "commands:"]
    lines += [f"  {name:<10}{what}" for name, (what, _, _) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def _shown(table: str) -> str:
    """``--bundle,-b=.`` -> ``[--bundle|-b VALUE (.)]``."""
    shown = []
    for word in table.split():
        names, eq, default = word.partition("=")
        value = "" if not eq else " VALUE..." if default == "*" else \
            f" VALUE ({default})" if default else " VALUE"
        shown.append(f"[{names.replace(',', '|')}{value}]")
    return " ".join(shown)
