"""Go ``text/template``, the subset docker users type after ``--format``.

Actions: ``{{.Field}}``, nested ``{{.State.Status}}``, ``{{.}}``, variables (``$``,
``{{$x := ...}}``, ``{{range $i, $e := ...}}``), pipelines (``{{.Names | upper}}``),
parenthesised calls, ``if``/``else if``/``else``/``end``, ``range`` (with ``else``),
``with``, comments ``{{/* */}}`` and whitespace trimming ``{{-`` / ``-}}``.
Functions: Go's (``and or not len index print printf println eq ne lt le gt ge slice``)
and docker's (``json join split lower upper title truncate pad``).

Fields are looked up on typed records (NamedTuple, dataclass) and on dicts (inspect
output); a missing one is a :class:`~pinnace.errors.InvalidConfig` naming it and what
the value does have. :func:`compile_template` parses once; :meth:`Template.render` runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from pinnace.errors import InvalidConfig


class TemplateError(InvalidConfig):
    """A ``--format`` template that does not parse or cannot run on a value."""

    def __init__(self, message: str) -> None:
        super().__init__(f"--format: {message}")


# ----------------------------------------------------------------------------- values

def field_names(value: Any) -> list[str] | None:
    """The fields ``value`` offers to ``.Name`` lookups, or None when it has none."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return list(value._fields)
    if is_dataclass(value) and not isinstance(value, type):
        return [f.name for f in fields(value)]
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    return None


def _kind(value: Any) -> str:
    """How an error names a value's type."""
    return getattr(value, "kind", None) or type(value).__name__


METHODS = ("Label",)
"""The record methods a template calls with arguments, as docker's rows have them
(``{{.Label "com.example.tier"}}``)."""


def get_field(value: Any, name: str, where: str = "") -> Any:
    """``value.name`` as a template sees it (record attribute or dict key, or one of the
    record's :data:`METHODS`); ``where`` names the value in an error (``.State``), else
    its kind does."""
    names = field_names(value)
    if names is not None and name in names:
        return value[name] if isinstance(value, Mapping) else getattr(value, name)
    if name in METHODS and not isinstance(value, Mapping) and \
            callable(getattr(value, name, None)):
        return getattr(value, name)
    what = getattr(value, "kind", None) or where or "the object"
    if names is None:
        what = f"{where or 'the value'} (a {_kind(value)})"
    listed = f" (fields: {', '.join(names)})" if names else ""
    raise TemplateError(f'no field "{name}" in {what}{listed}')


def plain(value: Any) -> Any:
    """``value`` with records turned into dicts, for ``json``."""
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return {k: plain(getattr(value, k)) for k in value._fields}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def show(value: Any) -> str:
    """``value`` printed as Go's ``fmt.Print`` prints it (``[a b]``, ``map[k:v]``, ``true``)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    names = field_names(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{show(value[k])}" for k in sorted(value, key=str)) + "]"
    if names is not None:
        return "{" + " ".join(show(getattr(value, n)) for n in names) + "}"
    if isinstance(value, list | tuple):
        return "[" + " ".join(show(v) for v in value) + "]"
    return str(value)


def truth(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | tuple | dict) and not \
            (isinstance(value, tuple) and hasattr(value, "_fields")):
        return bool(value)
    return True


# -------------------------------------------------------------------------- functions

_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+))?([a-zA-Z%])")


def printf(fmt: str, *args: Any) -> str:
    """Go's ``fmt.Sprintf`` for the verbs ``%s %v %d %f %e %g %x %X %o %q %t %c %%``."""
    values = iter(args)
    out: list[str] = []
    pos = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, precision, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(next(values, 0))
        try:
            arg = next(values)
        except StopIteration:
            out.append(f"%!{verb}(MISSING)")
            continue
        spec = flags + (width or "") + (f".{precision}" if precision is not None else "")
        try:
            if verb in "sv":
                text = show(arg)
                if precision is not None:
                    text = text[:int(precision)]
                out.append(format(text, ("<" if "-" in flags else ">") + (width or "")))
            elif verb == "q":
                out.append(format(json.dumps(show(arg)), ("<" if "-" in flags else ">")
                                  + (width or "")))
            elif verb == "t":
                out.append(format(show(bool(arg)), ("<" if "-" in flags else ">")
                                  + (width or "")))
            elif verb == "c":
                out.append(chr(arg))
            else:
                py = {"d": "d", "f": "f", "e": "e", "g": "g", "x": "x", "X": "X", "o": "o"}[verb]
                number = int(arg) if py in "dxXo" else float(arg)
                out.append(format(number, spec.replace("-", "<") + py))
        except (ValueError, TypeError, KeyError):
            out.append(f"%!{verb}({type(arg).__name__}={show(arg)})")
    out.append(fmt[pos:])
    extra = list(values)
    if extra:
        out.append("%!(EXTRA " + ", ".join(show(v) for v in extra) + ")")
    return "".join(out)


def _print(*args: Any) -> str:
    """Go's ``fmt.Sprint``: a space between operands when neither is a string."""
    out = ""
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out += " "
        out += show(arg)
    return out


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < len(value):
                raise TemplateError(f"index {show(key)} out of range (length {len(value)})")
            value = value[key]
        else:
            raise TemplateError(f"cannot index a {_kind(value)} value")
    return value


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict) and not hasattr(value, "_fields"):
        return len(value)
    raise TemplateError(f"len of a {_kind(value)} value")


def _compare(op: Callable[[Any, Any], bool], name: str) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool) or \
                not (isinstance(a, int | float) and isinstance(b, int | float)
                     or isinstance(a, str) and isinstance(b, str)):
            raise TemplateError(f"{name}: cannot compare {show(a)!r} and {show(b)!r}")
        return op(a, b)

    return compare


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("eq: missing argument for comparison")
    return any(a == b for b in others)


def _and(*args: Any) -> Any:
    for arg in args:
        if not truth(arg):
            return arg
    return args[-1]


def _or(*args: Any) -> Any:
    for arg in args:
        if truth(arg):
            return arg
    return args[-1]


def _join(items: Any, sep: str) -> str:
    if isinstance(items, str):
        return items
    return sep.join(show(i) for i in items)


def _title(text: str) -> str:
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), show(text))


def _truncate(text: Any, length: int) -> str:
    return show(text)[:length]


def _pad(text: Any, before: int, after: int) -> str:
    return " " * before + show(text) + " " * after


def _slice(value: Any, *bounds: int) -> Any:
    return value[slice(*bounds)] if bounds else value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "and": _and, "or": _or, "not": lambda v: not truth(v),
    "len": _len, "index": _index, "slice": _slice,
    "print": _print, "println": lambda *a: " ".join(show(v) for v in a) + "\n",
    "printf": printf,
    "eq": _eq, "ne": lambda a, b: a != b,
    "lt": _compare(lambda a, b: a < b, "lt"), "le": _compare(lambda a, b: a <= b, "le"),
    "gt": _compare(lambda a, b: a > b, "gt"), "ge": _compare(lambda a, b: a >= b, "ge"),
    "json": lambda v: json.dumps(plain(v), default=str, separators=(",", ":")),
    "join": _join,
    "split": lambda s, sep: show(s).split(sep),
    "lower": lambda s: show(s).lower(), "upper": lambda s: show(s).upper(),
    "title": _title, "truncate": _truncate, "pad": _pad,
}
"""The functions a template may call, by name."""


# ----------------------------------------------------------------------------- lexing

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<char>'(?:[^'\\]|\\.)')
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?))
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<field>(?:\$[\w]*)?(?:\.[A-Za-z_]\w*)+|\.)
  | (?P<var>\$\w*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<pipe>\|)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<comma>,)
""", re.X)


@dataclass
class _Tok:
    kind: str
    text: str
    spaced: bool  # whitespace before it: ``(x).F`` is a field of x, ``(x) .F`` an argument


def _tokens(source: str, where: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    spaced = True
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise TemplateError(f"{where}: unexpected {source[pos]!r} in action")
        pos = m.end()
        if m.lastgroup != "space":
            out.append(_Tok(m.lastgroup or "", m.group(), spaced))
        spaced = m.lastgroup == "space"
    return out


# ------------------------------------------------------------------------------ nodes

@dataclass
class _Text:
    text: str


@dataclass
class _Field:
    """``.A.B`` on dot, or ``$x.A.B`` on a variable (``var`` None: dot)."""

    var: str | None
    path: tuple[str, ...]


@dataclass
class _Chain:
    """``(pipeline).A.B``: fields of what a parenthesised pipeline gives."""

    pipe: Any
    path: tuple[str, ...]


@dataclass
class _Literal:
    value: Any


@dataclass
class _Call:
    """One command of a pipeline: a function with arguments, or a single operand."""

    func: str | None
    args: list[Any]


@dataclass
class _Pipe:
    decl: tuple[str, ...]
    cmds: list[_Call]


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _Branch:
    """``if``, ``with`` or ``range``: a body, an optional ``else``."""

    kind: str
    pipe: _Pipe
    body: list[Any]
    other: list[Any]


class _Parser:
    def __init__(self, source: str) -> None:
        self.items = list(self._split(source))
        self.pos = 0

    @staticmethod
    def _split(source: str) -> Iterator[tuple[str, str, str]]:
        """(kind, text, where): text pieces and actions, trimming applied."""
        pos = 0
        trim_next = False
        for m in _ACTION.finditer(source):
            text = source[pos:m.start()]
            if trim_next:
                text = text.lstrip(" \t\r\n")
            if m.group(1):
                text = text.rstrip(" \t\r\n")
            if text:
                yield "text", text, ""
            line = source.count("\n", 0, m.start()) + 1
            col = m.start() - (source.rfind("\n", 0, m.start()) + 1) + 1
            body = m.group(2)
            if "{{" in body:
                raise TemplateError(f"{line}:{col}: unclosed action")
            yield "action", body.strip(), f"{line}:{col}"
            trim_next = bool(m.group(3))
            pos = m.end()
        rest = source[pos:]
        if "{{" in rest:
            at = pos + rest.index("{{")
            line = source.count("\n", 0, at) + 1
            raise TemplateError(f"{line}: unclosed action")
        if trim_next:
            rest = rest.lstrip(" \t\r\n")
        if rest:
            yield "text", rest, ""

    def parse(self) -> list[Any]:
        nodes, stop, where = self._list()
        if stop is not None:
            raise TemplateError(f"{where}: unexpected {{{{{stop}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], str | None, str]:
        """Nodes up to an ``end``/``else`` (returned as the stop word) or the end."""
        nodes: list[Any] = []
        while self.pos < len(self.items):
            kind, text, where = self.items[self.pos]
            self.pos += 1
            if kind == "text":
                nodes.append(_Text(text))
                continue
            if text.startswith("/*"):
                if not text.endswith("*/"):
                    raise TemplateError(f"{where}: unclosed comment")
                continue
            word, rest = (text.split(None, 1) + ["", ""])[:2]
            if word in ("end", "else"):
                return nodes, text, where
            if word in ("if", "with", "range"):
                nodes.append(self._branch(word, rest, where))
            elif word in ("define", "template", "block", "break", "continue"):
                raise TemplateError(f"{where}: {word} is not supported in --format")
            else:
                nodes.append(_Action(self._pipe(_tokens(text, where), where)))
        return nodes, None, ""

    def _branch(self, kind: str, rest: str, where: str) -> _Branch:
        if not rest.strip():
            raise TemplateError(f"{where}: missing value for {kind}")
        pipe = self._pipe(_tokens(rest, where), where, declare=kind != "if")
        body, stop, stop_where = self._list()
        other: list[Any] = []
        if stop is None:
            raise TemplateError(f"{where}: unexpected EOF: {kind} has no {{{{end}}}}")
        if stop.startswith("else"):
            chained = stop[4:].strip()
            if chained:  # else if / else with: one more branch, sharing our end
                word, cond = (chained.split(None, 1) + ["", ""])[:2]
                if word not in ("if", "with") or word != kind and kind != "if":
                    raise TemplateError(f"{stop_where}: unexpected {{{{{stop}}}}}")
                other = [self._branch(word, cond, stop_where)]
                return _Branch(kind, pipe, body, other)
            other, stop, stop_where = self._list()
            if stop is None:
                raise TemplateError(f"{where}: unexpected EOF: {kind} has no {{{{end}}}}")
        if stop != "end":
            raise TemplateError(f"{stop_where}: unexpected {{{{{stop}}}}}")
        return _Branch(kind, pipe, body, other)

    def _pipe(self, toks: list[_Tok], where: str, declare: bool = True) -> _Pipe:
        decl: tuple[str, ...] = ()
        names = []
        i = 0
        while i < len(toks) and toks[i].kind == "var":
            names.append(toks[i].text)
            if i + 1 < len(toks) and toks[i + 1].kind == "comma":
                i += 2
                continue
            if i + 1 < len(toks) and toks[i + 1].kind in ("declare", "assign"):
                decl = tuple(names)
                toks = toks[i + 2:]
            break
        if decl and (len(decl) > 2 or not declare and len(decl) > 1):
            raise TemplateError(f"{where}: too many declarations")
        cmds: list[_Call] = []
        pos = 0
        while True:
            cmd, pos = self._command(toks, pos, where)
            cmds.append(cmd)
            if pos >= len(toks):
                break
            if toks[pos].kind != "pipe":
                raise TemplateError(f"{where}: unexpected {toks[pos].text!r}")
            pos += 1
        return _Pipe(decl, cmds)

    def _command(self, toks: list[_Tok], pos: int, where: str) -> tuple[_Call, int]:
        args: list[Any] = []
        while pos < len(toks) and toks[pos].kind not in ("pipe", "close"):
            arg, pos = self._operand(toks, pos, where)
            args.append(arg)
        if not args:
            raise TemplateError(f"{where}: missing value for command")
        first = args[0]
        if isinstance(first, str):
            return _Call(first, args[1:]), pos
        method = isinstance(first, _Field) and first.path and first.path[-1] in METHODS
        if len(args) > 1 and not method:
            raise TemplateError(f"{where}: can't give argument to non-function "
                                f"{_describe(first)}")
        return _Call(None, args), pos

    def _operand(self, toks: list[_Tok], pos: int, where: str) -> tuple[Any, int]:
        tok = toks[pos]
        kind, text = tok.kind, tok.text
        if kind == "field":
            var, dot, path = text.partition(".") if text.startswith("$") else (None, "", text[1:])
            if var is not None:
                path = path if dot else ""
            return _Field(var, tuple(p for p in path.split(".") if p)), pos + 1
        if kind == "var":
            return _Field(text, ()), pos + 1
        if kind == "string":
            return _Literal(json.loads(text)), pos + 1
        if kind == "raw":
            return _Literal(text[1:-1]), pos + 1
        if kind == "char":
            return _Literal(ord(json.loads('"' + text[1:-1] + '"'))), pos + 1
        if kind == "number":
            value = float(text) if any(c in text for c in ".eE") and "x" not in text.lower() \
                else int(text, 0)
            return _Literal(value), pos + 1
        if kind == "ident":
            if text in ("true", "false"):
                return _Literal(text == "true"), pos + 1
            if text == "nil":
                return _Literal(None), pos + 1
            if text not in FUNCTIONS:
                raise TemplateError(f'{where}: function "{text}" not defined')
            return text, pos + 1
        if kind == "open":
            end = pos + 1
            depth = 1
            while end < len(toks) and depth:
                depth += {"open": 1, "close": -1}.get(toks[end].kind, 0)
                end += 1
            if depth:
                raise TemplateError(f"{where}: unclosed left paren")
            inner = self._pipe(toks[pos + 1:end - 1], where, declare=False)
            after = toks[end] if end < len(toks) else None
            if after and after.kind == "field" and after.text.startswith(".") and \
                    not after.spaced:
                return _Chain(inner, tuple(p for p in after.text.split(".") if p)), end + 1
            return inner, end
        raise TemplateError(f"{where}: unexpected {text!r} in command")


def _describe(node: Any) -> str:
    if isinstance(node, _Field):
        return (node.var or "") + "." + ".".join(node.path)
    if isinstance(node, _Literal):
        return json.dumps(node.value)
    return "(...)"


# ---------------------------------------------------------------------------- running

class _Scope:
    def __init__(self, root: Any) -> None:
        self.vars: list[dict[str, Any]] = [{"$": root}]

    def lookup(self, name: str) -> Any:
        for frame in reversed(self.vars):
            if name in frame:
                return frame[name]
        raise TemplateError(f'undefined variable "{name}"')


class Template:
    """A parsed template; :meth:`render` runs it on one value."""

    def __init__(self, nodes: list[Any]) -> None:
        self.nodes = nodes

    def render(self, value: Any) -> str:
        """The text the template makes of ``value``."""
        out: list[str] = []
        self._run(self.nodes, value, _Scope(value), out)
        return "".join(out)

    def _run(self, nodes: Sequence[Any], dot: Any, scope: _Scope, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, scope)
                if not node.pipe.decl:
                    out.append(show(value))
            else:
                self._branch(node, dot, scope, out)

    def _branch(self, node: _Branch, dot: Any, scope: _Scope, out: list[str]) -> None:
        scope.vars.append({})
        try:
            if node.kind != "range":
                value = self._pipe(node.pipe, dot, scope)
                if truth(value):
                    self._run(node.body, value if node.kind == "with" else dot, scope, out)
                else:
                    self._run(node.other, dot, scope, out)
                return
            value = self._eval_cmds(node.pipe.cmds, dot, scope)
            if isinstance(value, Mapping):
                items = [(k, value[k]) for k in sorted(value, key=str)]
            elif isinstance(value, list | tuple) and not hasattr(value, "_fields"):
                items = list(enumerate(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                items = [(i, i) for i in range(value)]
            elif value is None:
                items = []
            else:
                raise TemplateError(f"range can't iterate over {show(value)}")
            if not items:
                self._run(node.other, dot, scope, out)
            for key, item in items:
                decl = node.pipe.decl
                if len(decl) == 2:
                    scope.vars[-1].update({decl[0]: key, decl[1]: item})
                elif decl:
                    scope.vars[-1][decl[0]] = item
                self._run(node.body, item, scope, out)
        finally:
            scope.vars.pop()

    def _pipe(self, pipe: _Pipe, dot: Any, scope: _Scope) -> Any:
        value = self._eval_cmds(pipe.cmds, dot, scope)
        for name in pipe.decl:
            scope.vars[-1][name] = value
        return value

    def _eval_cmds(self, cmds: list[_Call], dot: Any, scope: _Scope) -> Any:
        value: Any = _NOTHING
        for cmd in cmds:
            args = [self._arg(a, dot, scope) for a in cmd.args]
            if value is not _NOTHING:
                args.append(value)
            if cmd.func is None:
                if callable(args[0]):  # a record's method (METHODS)
                    try:
                        value = args[0](*args[1:])
                    except TypeError as err:
                        raise TemplateError(f"wrong arguments for {_describe(cmd.args[0])}: "
                                            f"{err}") from None
                    continue
                if len(args) > 1:
                    raise TemplateError(f"can't give argument to non-function "
                                        f"{_describe(cmd.args[0])}")
                value = args[0]
                continue
            try:
                value = FUNCTIONS[cmd.func](*args)
            except TemplateError:
                raise
            except TypeError as err:
                raise TemplateError(f"wrong arguments for {cmd.func}: {err}") from None
            except (ValueError, AttributeError, KeyError) as err:
                raise TemplateError(f"error calling {cmd.func}: {err}") from None
        return value

    def _arg(self, node: Any, dot: Any, scope: _Scope) -> Any:
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Pipe):
            return self._eval_cmds(node.cmds, dot, scope)
        if isinstance(node, _Chain):
            return self._fields(self._eval_cmds(node.pipe.cmds, dot, scope), node.path, "(...)")
        if isinstance(node, str):  # a function named as an argument: call it with none
            return FUNCTIONS[node]()
        value = dot if node.var is None else scope.lookup(node.var)
        return self._fields(value, node.path, node.var or "")

    @staticmethod
    def _fields(value: Any, path: tuple[str, ...], where: str) -> Any:
        for name in path:
            if value is None:
                raise TemplateError(f'no field "{name}" in {where or "the value"}: it is nil')
            value = get_field(value, name, where)
            where += "." + name
        return value


_NOTHING = object()


def compile_template(source: str) -> Template:
    """Parse ``source`` (a Go template) or raise :class:`TemplateError` saying where."""
    return Template(_Parser(source).parse())


def unescape(source: str) -> str:
    """Docker's ``--format`` escapes: a literal ``\\t`` or ``\\n`` typed in the shell
    becomes a tab or a newline."""
    return source.replace("\\t", "\t").replace("\\n", "\n")
