"""The instructions that only change an image's config (docker's ``#(nop)`` steps):
ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER, WORKDIR, STOPSIGNAL, HEALTHCHECK,
ONBUILD, SHELL, MAINTAINER. Each takes the container config and returns a new one,
with variables substituted as docker substitutes them for that instruction."""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Mapping
from typing import Any

from pinnace.build import words
from pinnace.build.dockerfile import Instruction

_DURATIONS = {"ns": 1, "us": 1000, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def apply(instruction: Instruction, config: dict[str, Any], env: Mapping[str, str],
          escape: str, shell: list[str]) -> dict[str, Any]:
    """The config after ``instruction`` (one of this module's), on ``config``."""
    new = copy.deepcopy(config)
    keyword, args = instruction.keyword, instruction.args
    if keyword in ("ENV", "LABEL"):
        pairs = key_values(instruction, env, escape)
        if keyword == "ENV":
            current = [e for e in new.get("Env") or [] if e.split("=", 1)[0] not in pairs]
            new["Env"] = current + [f"{k}={v}" for k, v in pairs.items()]
        else:
            new["Labels"] = {**(new.get("Labels") or {}), **pairs}
    elif keyword in ("CMD", "ENTRYPOINT"):
        new["Cmd" if keyword == "CMD" else "Entrypoint"] = command(instruction, shell)
    elif keyword == "EXPOSE":
        ports = new.get("ExposedPorts") or {}
        for port in words.split(args, env, escape):
            number, _, proto = port.partition("/")
            if not number.replace("-", "").isdigit() or proto.lower() not in ("", "tcp",
                                                                                "udp", "sctp"):
                raise instruction.error(f"invalid port {port!r}")
            ports[f"{number}/{proto.lower() or 'tcp'}"] = {}
        new["ExposedPorts"] = ports
    elif keyword == "VOLUME":
        paths = instruction.json_list() or words.split(args, env, escape)
        volumes = new.get("Volumes") or {}
        for path in paths:
            if not path.strip():
                raise instruction.error("a volume path cannot be empty")
            volumes[path] = {}
        new["Volumes"] = volumes
    elif keyword == "USER":
        new["User"] = words.expand(args, env, escape)
    elif keyword == "WORKDIR":
        new["WorkingDir"] = workdir(instruction, new.get("WorkingDir") or "/", env, escape)
    elif keyword == "STOPSIGNAL":
        new["StopSignal"] = words.expand(args, env, escape)
    elif keyword == "HEALTHCHECK":
        new["Healthcheck"] = healthcheck(instruction, shell)
    elif keyword == "ONBUILD":
        new["OnBuild"] = [*(new.get("OnBuild") or []), args]
    elif keyword == "SHELL":
        new["Shell"] = instruction.json_list()
    else:
        raise instruction.error("not a config instruction")  # a caller's mistake
    return new


def key_values(instruction: Instruction, env: Mapping[str, str],
               escape: str) -> dict[str, str]:
    """``K=V K2="v 2"`` pairs, or the legacy ``K some value`` form (ENV, LABEL)."""
    parts = words.split(instruction.args, env, escape)
    first = instruction.args.split(None, 1)
    if "=" not in first[0]:
        if len(first) < 2:
            raise instruction.error("expected KEY=VALUE (or KEY VALUE)")
        return {first[0]: words.expand(first[1].strip(), env, escape)}
    pairs = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise instruction.error(f"expected KEY=VALUE, got {part!r}")
        pairs[key] = value
    return pairs


def command(instruction: Instruction, shell: list[str]) -> list[str]:
    """Exec form as written; shell form run by the stage's SHELL."""
    exec_form = instruction.json_list()
    return exec_form if exec_form is not None else [*shell, instruction.args]


def workdir(instruction: Instruction, current: str, env: Mapping[str, str],
            escape: str) -> str:
    """WORKDIR's path, relative ones taken from ``current``."""
    return posixpath.normpath(posixpath.join(current, words.expand(instruction.args, env,
                                                                   escape)))


def healthcheck(instruction: Instruction, shell: list[str]) -> dict[str, Any]:
    """HEALTHCHECK [--interval ...] CMD ... or NONE, as docker records it."""
    head, _, rest = instruction.args.partition(" ")
    if head.upper() == "NONE":
        return {"Test": ["NONE"]}
    if head.upper() != "CMD" or not rest.strip():
        raise instruction.error("expected HEALTHCHECK [OPTIONS] CMD command, or NONE")
    inner = Instruction("CMD", rest.strip(), instruction.line)
    exec_form = inner.json_list()
    check: dict[str, Any] = {"Test": ["CMD", *exec_form] if exec_form is not None
                             else ["CMD-SHELL", inner.args]}
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval"}
    for flag, value in instruction.flags.items():
        if flag == "retries":
            if not value.isdigit():
                raise instruction.error(f"--retries must be a number, not {value!r}")
            check["Retries"] = int(value)
        else:
            check[names[flag]] = _duration(instruction, flag, value)
    return check


def _duration(instruction: Instruction, flag: str, value: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise instruction.error(f"--{flag}: invalid duration {value!r}")
    return int(sum(float(n) * _DURATIONS[u] for n, u in parts))
