"""Health checks: what to run and how often (``--health-*``, the image's HEALTHCHECK), and
the status a container's checks leave (``starting``, ``healthy``, ``unhealthy``, with the
last results), kept in ``health.json`` beside its log.

Imported only for containers that have a check: a run without one never loads it.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, NamedTuple

from pinnace.errors import InvalidConfig

DEFAULT_INTERVAL = DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
KEPT_RESULTS = 5
"""How many results the status keeps (docker's number)."""
MAX_OUTPUT = 4096
"""Bytes of a check's output kept (docker's limit)."""
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class HealthConfig(NamedTuple):
    """The check: ``test`` as docker keeps it (``["CMD", ...]`` or ``["CMD-SHELL", cmd]``),
    times in seconds."""

    test: list[str]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    start_period: float = 0.0
    retries: int = DEFAULT_RETRIES

    @property
    def args(self) -> list[str]:
        """The command the check execs in the container."""
        if self.test[0] == "CMD-SHELL":
            return ["/bin/sh", "-c", self.test[1]]
        return list(self.test[1:])

    def to_image(self) -> dict[str, Any]:
        """The image config's ``Healthcheck`` (durations in nanoseconds), as inspect shows it."""
        return {"Test": self.test, "Interval": int(self.interval * 1e9),
                "Timeout": int(self.timeout * 1e9), "StartPeriod": int(self.start_period * 1e9),
                "Retries": self.retries}


class HealthFlags(NamedTuple):
    """``run``'s ``--health-*`` flags (None: not given)."""

    cmd: str | None = None
    interval: str | None = None
    timeout: str | None = None
    start_period: str | None = None
    retries: int | None = None
    disabled: bool = False


def duration(text: str, what: str) -> float:
    """Seconds from a Go duration (``30s``, ``1m30s``, ``500ms``); a bare 0 is 0."""
    text = text.strip()
    if text == "0":
        return 0.0
    parts = _DURATION.findall(text)
    if not parts or "".join(a + u for a, u in parts) != text:
        raise InvalidConfig(f"invalid duration for {what}: {text!r} (use e.g. 30s, 1m30s, 500ms)")
    return sum(float(amount) * _SECONDS[unit] for amount, unit in parts)


def config(flags: HealthFlags, image_check: dict[str, Any] | None) -> HealthConfig | None:
    """The check a container gets: the image's HEALTHCHECK with the flags over it; None
    when there is none, ``--no-healthcheck`` or a ``NONE`` test."""
    given = [flags.cmd, flags.interval, flags.timeout, flags.start_period, flags.retries]
    times = {name: duration(value, f"--health-{name}") for name, value in
             (("interval", flags.interval), ("timeout", flags.timeout),
              ("start-period", flags.start_period)) if value is not None}
    if flags.disabled:
        if any(v is not None for v in given):
            raise InvalidConfig("--no-healthcheck conflicts with --health-* options")
        return None
    base = image_check or {}
    test = ["CMD-SHELL", flags.cmd] if flags.cmd else list(base.get("Test") or [])
    if not test or test[0] == "NONE":
        if any(v is not None for v in given):
            raise InvalidConfig("--health-* options need a check: give --health-cmd (the "
                                "image has no HEALTHCHECK)")
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise InvalidConfig(f"invalid health check test {test!r}")

    def seconds(name: str, key: str, default: float) -> float:
        value = times[name] if name in times else (base.get(key) or 0) / 1e9 or default
        if 0 < value < 0.001:
            raise InvalidConfig(f"--health-{name} must be at least 1ms")
        return value

    retries = flags.retries if flags.retries is not None else base.get("Retries") or DEFAULT_RETRIES
    if retries < 0:
        raise InvalidConfig("--health-retries cannot be negative")
    return HealthConfig(test, seconds("interval", "Interval", DEFAULT_INTERVAL) or
                        DEFAULT_INTERVAL, seconds("timeout", "Timeout", DEFAULT_TIMEOUT) or
                        DEFAULT_TIMEOUT, seconds("start-period", "StartPeriod", 0.0),
                        retries or DEFAULT_RETRIES)


def image_healthcheck(arg: str) -> dict[str, Any]:
    """The image config's ``Healthcheck`` from a Dockerfile ``HEALTHCHECK`` argument:
    ``[--interval=D] [--timeout=D] [--start-period=D] [--retries=N] CMD ...`` or ``NONE``."""
    options: dict[str, Any] = {}
    keys = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod"}
    rest = arg.strip()
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        name, _, value = option[2:].partition("=")
        if name in keys:
            options[keys[name]] = int(duration(value, f"HEALTHCHECK --{name}") * 1e9)
        elif name == "retries" and value.isdigit():
            options["Retries"] = int(value)
        else:
            raise InvalidConfig(f"unknown HEALTHCHECK option {option}")
    kind, _, command = rest.partition(" ")
    if kind.upper() == "NONE" and not command:
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD" or not command.strip():
        raise InvalidConfig(f"HEALTHCHECK needs CMD and a command, or NONE: {arg!r}")
    command = command.strip()
    if command.startswith("["):
        try:
            parsed = json.loads(command)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(a, str) for a in parsed):
            return {"Test": ["CMD", *parsed], **options}
    return {"Test": ["CMD-SHELL", command], **options}


class HealthResult(NamedTuple):
    """One check: when it ran, its exit code (-1: timed out or not run) and output."""

    start: float
    end: float
    exit_code: int
    output: str


class HealthStatus(NamedTuple):
    """``starting``, ``healthy`` or ``unhealthy``, the failures in a row, the last results."""

    status: str = "starting"
    failing_streak: int = 0
    log: tuple[HealthResult, ...] = ()

    def after(self, result: HealthResult, check: HealthConfig, started: float) -> HealthStatus:
        """The status once ``result`` is in: a pass is healthy; failures count once the
        start period is over, and ``retries`` in a row make it unhealthy."""
        log = (*self.log, result)[-KEPT_RESULTS:]
        if result.exit_code == 0:
            return HealthStatus("healthy", 0, log)
        if result.start < started + check.start_period:
            return HealthStatus(self.status, self.failing_streak, log)
        streak = self.failing_streak + 1
        return HealthStatus("unhealthy" if streak >= check.retries else self.status, streak, log)

    def to_docker(self) -> dict[str, Any]:
        """``.State.Health`` as docker shows it."""
        from pinnace.runtime.watch import timestamp

        return {"Status": self.status, "FailingStreak": self.failing_streak,
                "Log": [{"Start": timestamp(r.start), "End": timestamp(r.end),
                         "ExitCode": r.exit_code, "Output": r.output} for r in self.log]}


def read(path: str) -> HealthStatus | None:
    """The status kept at ``path`` (None when there is none)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return HealthStatus(data["status"], data["failing_streak"],
                        tuple(HealthResult(*r) for r in data["log"]))


def write(path: str, status: HealthStatus) -> None:
    """Replace the status at ``path`` at once (a reader sees the old one or the new one)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump({"status": status.status, "failing_streak": status.failing_streak,
                   "log": [list(r) for r in status.log]}, f)
    os.replace(temporary, path)
