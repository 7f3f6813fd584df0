"""A Dockerfile parsed into stages of instructions (dockerfile-parse reads the lines:
continuations, comments, the ``escape`` directive; ``# syntax=`` is ignored).

Each instruction is checked here for what needs no context: that it is known,
has arguments, and that its flags are ones it takes. Errors name the line.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field

from pinnace.errors import InvalidConfig

KEYWORDS = ("FROM", "ARG", "RUN", "COPY", "ADD", "ENV", "WORKDIR", "USER", "CMD",
            "ENTRYPOINT", "EXPOSE", "VOLUME", "LABEL", "STOPSIGNAL", "HEALTHCHECK", "ONBUILD",
            "SHELL", "MAINTAINER")
FLAGS = {
    "FROM": ("platform",),
    "COPY": ("from", "chown", "chmod", "link"),
    "ADD": ("chown", "chmod", "link", "checksum"),
    "RUN": (),
    "HEALTHCHECK": ("interval", "timeout", "start-period", "start-interval", "retries"),
}
_FLAG = re.compile(r"--([a-z-]+)(?:=(\S*))?(?:\s+|$)")


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case), ``--flags`` and the rest of its text."""

    keyword: str
    args: str
    line: int                      # where it starts, from 1
    flags: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The instruction as docker's builder prints it in ``Step N/M : ...``."""
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.keyword} {flags}{self.args}".rstrip()

    def json_list(self) -> list[str] | None:
        """The arguments in exec form (a JSON list of strings), or None for shell form."""
        if not self.args.startswith("["):
            return None
        try:
            parsed = json.loads(self.args)
        except ValueError:
            return None
        if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
            return parsed
        return None

    def error(self, message: str) -> InvalidConfig:
        """A one-line error naming this instruction's line."""
        return InvalidConfig(f"Dockerfile line {self.line}: {self.keyword}: {message}")


@dataclass
class Stage:
    """``FROM base [AS name]`` and the instructions up to the next ``FROM``."""

    index: int
    base: str
    name: str | None
    platform: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    """The global ``ARG``s (before the first ``FROM``) and the stages."""

    global_args: list[Instruction]
    stages: list[Stage]
    escape: str = "\\"

    def stage(self, ref: str) -> Stage | None:
        """The stage named ``ref`` (or numbered, as ``--from=0``), if any."""
        for stage in self.stages:
            if stage.name == ref.lower() or (ref.isdigit() and stage.index == int(ref)):
                return stage
        return None


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile; :class:`InvalidConfig` naming the line on a bad one."""
    from dockerfile_parse import DockerfileParser

    escape = _escape_directive(text)
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    for item in parser.structure:
        keyword = item["instruction"].upper()
        if keyword == "COMMENT":
            continue
        line = item["startline"] + 1
        instruction = parse_instruction(keyword, item["value"].strip(), line)
        if keyword == "FROM":
            stages.append(_stage(instruction, len(stages)))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif keyword == "ARG":
            global_args.append(instruction)
        else:
            raise instruction.error("the first instruction must be FROM (or ARG before it)")
    if not stages:
        raise InvalidConfig("Dockerfile has no FROM instruction")
    return Dockerfile(global_args, stages, escape)


def parse_instruction(keyword: str, value: str, line: int) -> Instruction:
    """One instruction, its flags split off and checked."""
    if keyword not in KEYWORDS:
        raise InvalidConfig(f"Dockerfile line {line}: unknown instruction: {keyword}")
    flags: dict[str, str] = {}
    rest = value
    while keyword in FLAGS and rest.startswith("--"):
        match = _FLAG.match(rest)
        if match is None:
            break
        name, flag_value = match.group(1), match.group(2)
        if name not in FLAGS[keyword]:
            raise InvalidConfig(f"Dockerfile line {line}: {keyword}: unknown flag: --{name}")
        flags[name] = flag_value if flag_value is not None else "true"
        rest = rest[match.end():]
    instruction = Instruction(keyword, rest.strip(), line, flags)
    if not instruction.args:
        raise instruction.error("needs at least one argument")
    if keyword in ("COPY", "ADD") and len(instruction.json_list() or rest.split()) < 2:
        raise instruction.error("needs a source and a destination")
    if keyword == "SHELL" and not instruction.json_list():
        raise instruction.error("takes a JSON array, as SHELL [\"/bin/sh\", \"-c\"]")
    if keyword == "ONBUILD":
        inner = instruction.args.split(None, 1)[0].upper()
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise instruction.error(f"{inner} is not allowed as an ONBUILD trigger")
        parse_instruction(inner, instruction.args[len(inner):].strip(), line)
    return instruction


def _stage(instruction: Instruction, index: int) -> Stage:
    words = instruction.args.split()
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9_.-]*", name):
            raise instruction.error(f"invalid stage name {words[2]!r}")
    elif len(words) == 1:
        name = None
    else:
        raise instruction.error("expected FROM IMAGE [AS NAME]")
    return Stage(index, words[0], name, instruction.flags.get("platform"), instruction.line)


def _escape_directive(text: str) -> str:
    """The ``# escape=`` parser directive's character (``\\`` without one)."""
    for line in text.splitlines():
        match = re.fullmatch(r"#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*", line)
        if match is None:
            break
        if match.group(1).lower() == "escape":
            if match.group(2) not in ("\\", "`"):
                raise InvalidConfig(f"invalid escape character {match.group(2)!r} in the "
                                    f"Dockerfile: only \\ and ` are allowed")
            return match.group(2)
    return "\\"

