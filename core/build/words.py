"""Docker's word rules for Dockerfile arguments: quotes, the escape character and
variable substitution (``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR:+alt}``,
and their ``-``/``+`` forms without the colon, which test only whether it is set).

Single quotes keep everything literal; double quotes group words and still
substitute; the escape character (``\\`` or the directive's ``` ` ```) keeps the
next character literal. An unknown variable is empty, as in docker.
"""

from __future__ import annotations

from collections.abc import Mapping

from pinnace.errors import InvalidConfig


def split(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """``text`` as words (separated by unquoted blanks), quotes removed, variables
    substituted."""
    return _Lexer(text, env, escape).words()


def expand(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` as one word: quotes removed, variables substituted, blanks kept."""
    return _Lexer(text, env, escape, keep_blanks=True).words()[0] if text else ""


class _Lexer:
    """One pass over ``text``: words with their quotes resolved."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str,
                 keep_blanks: bool = False) -> None:
        self.text, self.env, self.escape, self.keep_blanks = text, env, escape, keep_blanks
        self.at = 0

    def words(self) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        started = False
        text = self.text
        while self.at < len(text):
            char = text[self.at]
            if char in " \t\n" and not self.keep_blanks:
                if started:
                    words.append("".join(current))
                    current, started = [], False
                self.at += 1
                continue
            started = True
            if char == "'":
                end = text.find("'", self.at + 1)
                if end < 0:
                    raise InvalidConfig(f"unterminated single quote in {text!r}")
                current.append(text[self.at + 1:end])
                self.at = end + 1
            elif char == '"':
                current.append(self.double_quoted())
            elif char == self.escape:
                current.append(text[self.at + 1:self.at + 2])
                self.at += 2
            elif char == "$":
                current.append(self.variable())
            else:
                current.append(char)
                self.at += 1
        if started:
            words.append("".join(current))
        return words or ([""] if self.keep_blanks else [])

    def double_quoted(self) -> str:
        out: list[str] = []
        text = self.text
        self.at += 1
        while self.at < len(text):
            char = text[self.at]
            if char == '"':
                self.at += 1
                return "".join(out)
            if char == self.escape and text[self.at + 1:self.at + 2] in ('"', "$", self.escape):
                out.append(text[self.at + 1])
                self.at += 2
            elif char == "$":
                out.append(self.variable())
            else:
                out.append(char)
                self.at += 1
        raise InvalidConfig(f"unterminated double quote in {text!r}")

    def variable(self) -> str:
        """At a ``$``: the substituted value (a lone ``$`` stays itself)."""
        text = self.text
        self.at += 1
        if text[self.at:self.at + 1] == "{":
            end = _closing_brace(text, self.at)
            if end < 0:
                raise InvalidConfig(f"missing '}}' in {text!r}")
            body = text[self.at + 1:end]
            self.at = end + 1
            return self.braced(body)
        start = self.at
        while self.at < len(text) and (text[self.at].isalnum() or text[self.at] == "_"):
            self.at += 1
        name = text[start:self.at]
        return self.env.get(name, "") if name else "$"

    def braced(self, body: str) -> str:
        name_end = 0
        while name_end < len(body) and (body[name_end].isalnum() or body[name_end] == "_"):
            name_end += 1
        name, rest = body[:name_end], body[name_end:]
        if not name:
            raise InvalidConfig(f"bad substitution ${{{body}}} in {self.text!r}")
        if not rest:
            return self.env.get(name, "")
        colon = rest.startswith(":")
        op, word = (rest[1:2], rest[2:]) if colon else (rest[:1], rest[1:])
        if op not in ("-", "+"):
            raise InvalidConfig(f"unsupported modifier in ${{{body}}} of {self.text!r}")
        value = self.env.get(name)
        present = value is not None and (value != "" or not colon)
        alternative = _Lexer(word, self.env, self.escape, keep_blanks=True).words()[0] \
            if word else ""
        if op == "-":
            return value if present and value is not None else alternative
        return alternative if present else ""


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing the ``{`` at ``start`` (nested ones counted)."""
    depth = 0
    for at in range(start, len(text)):
        if text[at] == "{":
            depth += 1
        elif text[at] == "}":
            depth -= 1
            if depth == 0:
                return at
    return -1
