"""``.dockerignore`` with docker's rules: one pattern a line (``#`` comments, blank
lines skipped), cleaned as a path and taken relative to the context (a leading ``/``
is dropped); ``*`` and ``?`` match within one path element, ``**`` any number of
them, ``[...]`` a class, ``\\`` escapes; a pattern that matches a directory excludes
what is below it; ``!pattern`` re-includes; the last pattern that matches decides."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One pattern: its regular expression and whether it re-includes (``!``)."""

    regex: re.Pattern[str]
    exception: bool
    prefix: str  # the pattern's literal leading path, to tell where exceptions may apply


class Ignore:
    """The rules of one ``.dockerignore``."""

    def __init__(self, text: str = "") -> None:
        self.rules: list[Rule] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exception = line.startswith("!")
            if exception:
                line = line[1:].strip()
            pattern = posixpath.normpath(line).lstrip("/")
            if pattern in ("", "."):
                continue
            literal = re.split(r"[*?\[\\]", pattern, maxsplit=1)[0]
            self.rules.append(Rule(_regex(pattern), exception, literal))

    def excluded(self, path: str) -> bool:
        """Whether the context path ``path`` (relative, ``/``-separated) is left out."""
        if not self.rules:
            return False
        candidates = [path]
        while "/" in candidates[-1]:
            candidates.append(candidates[-1].rpartition("/")[0])
        result = False
        for rule in self.rules:
            if any(rule.regex.fullmatch(c) for c in candidates):
                result = not rule.exception
        return result

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception could re-include something below an excluded
        ``directory`` (then it is walked, not skipped)."""
        return any(rule.exception and (rule.prefix.startswith(directory + "/")
                                       or "**" in rule.regex.pattern or not rule.prefix)
                   for rule in self.rules)


def _regex(pattern: str) -> re.Pattern[str]:
    """A path pattern as a regular expression over a whole path."""
    out: list[str] = []
    at = 0
    while at < len(pattern):
        char = pattern[at]
        if pattern.startswith("**", at):
            at += 2
            if pattern.startswith("/", at):
                out.append("(?:.*/)?")
                at += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", at + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = pattern[at + 1:end]
                if body.startswith("!") or body.startswith("^"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                at = end
        elif char == "\\" and at + 1 < len(pattern):
            at += 1
            out.append(re.escape(pattern[at]))
        else:
            out.append(re.escape(char))
        at += 1
    return re.compile("".join(out), re.DOTALL)
