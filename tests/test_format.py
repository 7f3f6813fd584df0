"""The Go-template engine behind ``--format``: every action, every function, the errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import pytest

from pinnace.cli.template import TemplateError, compile_template, printf, unescape
from pinnace.errors import InvalidConfig


class Row(NamedTuple):
    ID: str
    Names: str
    Count: int
    Up: bool

    kind = "container"


@dataclass
class Box:
    Label: str
    Items: list[str]


ROW = Row("abc123", "web,db", 3, True)
OBJ = {
    "Name": "/web",
    "State": {"Status": "running", "Pid": 42, "Running": True, "Error": ""},
    "Config": {"Env": ["A=1", "B=2"], "Labels": {"tier": "front", "app": "shop"},
               "Cmd": None},
    "Sizes": [3, 1, 2],
}


def render(source: str, value: object = OBJ) -> str:
    return compile_template(source).render(value)


@pytest.mark.parametrize(("source", "value", "expected"), [
    ("{{.ID}}", ROW, "abc123"),
    ("id={{.ID}} n={{.Count}} up={{.Up}}", ROW, "id=abc123 n=3 up=true"),
    ("{{.State.Status}}/{{.State.Pid}}", OBJ, "running/42"),
    ("{{.Label}} {{.Items}}", Box("x", ["a", "b"]), "x [a b]"),
    ("{{.}}", "plain", "plain"),
    ("{{.Config.Labels}}", OBJ, "map[app:shop tier:front]"),
    ("{{.Config.Cmd}}", OBJ, "<nil>"),
    ("{{.Sizes}}", OBJ, "[3 1 2]"),
    ("no actions at all", OBJ, "no actions at all"),
])
def test_fields(source: str, value: object, expected: str) -> None:
    assert render(source, value) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("{{json .}}", '{"ID":"abc123","Names":"web,db","Count":3,"Up":true}'),
    ("{{json .Names}}", '"web,db"'),
    ("{{.Names | upper}}", "WEB,DB"),
    ("{{upper .Names}}", "WEB,DB"),
    ("{{lower \"MiXed\"}}", "mixed"),
    ("{{title \"hello big world\"}}", "Hello Big World"),
    ("{{split .Names \",\"}}", "[web db]"),
    ("{{join (split .Names \",\") \" + \"}}", "web + db"),
    ("{{index (split .Names \",\") 1}}", "db"),
    ("{{len .Names}}", "6"),
    ("{{len (split .Names \",\")}}", "2"),
    ("{{printf \"%s has %d\" .ID .Count}}", "abc123 has 3"),
    ("{{printf \"[%-8s][%5s][%03d][%.2f][%x][%q][%v][%t][%%]\" .ID \"r\" 7 1.5 255 .ID .Count"
     " .Up}}", '[abc123  ][    r][007][1.50][ff]["abc123"][3][true][%]'),
    ("{{print .ID .Count}}", "abc1233"),
    ("{{print .Count .Count}}", "3 3"),
    ("{{println .ID .Count}}", "abc123 3\n"),
    ("{{truncate .ID 3}}", "abc"),
    ("{{pad .ID 1 2}}", " abc123  "),
    ("{{slice .ID 1 3}}", "bc"),
    ("{{.ID | printf \"<%s>\" | upper}}", "<ABC123>"),
])
def test_functions_and_pipelines(source: str, expected: str) -> None:
    assert render(source, ROW) == expected


@pytest.mark.parametrize(("source", "expected"), [
    ("{{eq .Count 3}} {{eq .Count 1 2 3}} {{eq .ID \"x\"}}", "true true false"),
    ("{{ne .Count 3}} {{ne .ID \"x\"}}", "false true"),
    ("{{lt .Count 4}} {{le .Count 3}} {{gt .Count 3}} {{ge .Count 3}}", "true true false true"),
    ("{{lt \"a\" \"b\"}}", "true"),
    ("{{and .Up .Count}} {{and .Up 0}} {{and \"\" .Count}}", "3 0 "),
    ("{{or \"\" .ID}} {{or 0 \"\"}}", "abc123 "),
    ("{{not .Up}} {{not \"\"}} {{not 0}}", "false true true"),
    ("{{if .Up}}up{{end}}", "up"),
    ("{{if not .Up}}up{{else}}down{{end}}", "down"),
    ("{{if eq .Count 1}}one{{else if eq .Count 3}}three{{else}}many{{end}}", "three"),
    ("{{if\n.Up\n}}multi-line{{end}}", "multi-line"),
    ("{{if and (gt .Count 1) (eq .ID \"abc123\")}}both{{end}}", "both"),
    ("{{with .ID}}<{{.}}>{{end}}", "<abc123>"),
    ("{{with \"\"}}x{{else}}empty{{end}}", "empty"),
])
def test_comparisons_and_conditions(source: str, expected: str) -> None:
    assert render(source, ROW) == expected


def test_range_over_lists_maps_and_with_variables() -> None:
    assert render("{{range .Config.Env}}[{{.}}]{{end}}") == "[A=1][B=2]"
    assert render("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}") == \
        "app=shop;tier=front;"
    assert render("{{range $i, $e := .Sizes}}{{$i}}:{{$e}} {{end}}") == "0:3 1:1 2:2 "
    assert render("{{range $e := .Sizes}}{{$e}}{{end}}") == "312"
    assert render("{{range .Config.Cmd}}x{{else}}none{{end}}") == "none"
    assert render("{{range .Sizes}}{{$.Name}}{{end}}") == "/web/web/web"
    assert render("{{$n := .State.Pid}}{{with .Config}}{{$n}} {{index .Labels \"app\"}}{{end}}") \
        == "42 shop"
    assert render("{{index .Config.Labels \"missing\"}}") == "<nil>"
    assert render("{{(index .Config.Env 1)}} {{(.State).Pid}} {{len (.Config).Env}}") == "B=2 42 2"
    with pytest.raises(TemplateError, match='no field "X" in \\(\\.\\.\\.\\)'):
        render("{{(.State).X}}")


def test_whitespace_trim_comments_and_escapes() -> None:
    assert render("a  {{- .Name -}}  b") == "a/webb"
    assert render("a {{- /* note */ -}} b") == "ab"
    assert render("{{range .Sizes -}}\n  {{.}}\n{{- end}}") == "312"
    assert render("x {{/* a comment */}}y") == "x y"
    assert render("{{- .Name}}\n") == "/web\n"
    assert unescape(r"{{.ID}}\t{{.Names}}\n") == "{{.ID}}\t{{.Names}}\n"
    assert render("{{`raw \\t`}} {{\"tab\\tq\"}}") == "raw \\t tab\tq"
    assert render("{{'a'}} {{0x10}} {{1.5}} {{true}} {{nil}}") == "97 16 1.5 true <nil>"


def test_printf_edge_cases() -> None:
    assert printf("%d") == "%!d(MISSING)"
    assert printf("%s", "a", "b") == "a%!(EXTRA b)"
    assert printf("%d", "x") == "%!d(str=x)"
    assert printf("%*d", 4, 7) == "   7"


@pytest.mark.parametrize(("source", "value", "message"), [
    ("{{.Foo}}", ROW,
     '--format: no field "Foo" in container (fields: ID, Names, Count, Up)'),
    ("{{.State.Nope}}", OBJ,
     '--format: no field "Nope" in .State (fields: Status, Pid, Running, Error)'),
    ("{{.ID.Deeper}}", ROW, '--format: no field "Deeper" in .ID (a str)'),
    ("{{.Config.Cmd.X}}", OBJ, '--format: no field "X" in .Config.Cmd: it is nil'),
    ("{{$x}}", ROW, '--format: undefined variable "$x"'),
    ("{{len .Count}}", ROW, "--format: len of a int value"),
    ("{{lt .Count \"a\"}}", ROW, "--format: lt: cannot compare '3' and 'a'"),
    ("{{index .Names 9}}", ROW, "--format: index 9 out of range (length 6)"),
    ("{{eq .ID}}", ROW, "--format: eq: missing argument for comparison"),
    ("{{index .Up 1}}", ROW, "--format: cannot index a bool value"),
    ("{{range .Up}}{{end}}", ROW, "--format: range can't iterate over true"),
    ("{{upper}}", ROW, "--format: wrong arguments for upper"),
])
def test_run_errors_name_the_problem(source: str, value: object, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(source, value)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)
    assert isinstance(err.value, InvalidConfig)


@pytest.mark.parametrize(("source", "message"), [
    ("{{.ID", "--format: 1: unclosed action"),
    ("{{if .Up}}x", "--format: 1:1: unexpected EOF: if has no {{end}}"),
    ("ok\n{{range .X}}", "--format: 2:1: unexpected EOF: range has no {{end}}"),
    ("{{end}}", "--format: 1:1: unexpected {{end}}"),
    ("{{else}}", "--format: 1:1: unexpected {{else}}"),
    ("{{nope .ID}}", '--format: 1:1: function "nope" not defined'),
    ("{{.ID | }}", "--format: 1:1: missing value for command"),
    ("a {{ }}", "--format: 1:3: missing value for command"),
    ("{{if\t.Up}}{{else\tif}}{{end}}", "--format: 1:11: missing value for if"),
    ("{{(upper .ID}}", "--format: 1:1: unclosed left paren"),
    ("{{.ID ; }}", "--format: 1:1: unexpected ';' in action"),
    ("{{if}}{{end}}", "--format: 1:1: missing value for if"),
    ("{{/* open }}", "--format: 1:1: unclosed comment"),
    ("{{template \"x\"}}", "--format: 1:1: template is not supported in --format"),
    ("{{.ID \"x\"}}", '--format: 1:1: can\'t give argument to non-function .ID'),
])
def test_parse_errors_say_where(source: str, message: str) -> None:
    with pytest.raises(TemplateError) as err:
        compile_template(source)
    assert str(err.value) == message
