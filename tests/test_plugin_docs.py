"""CONTRIBUTING.md's plugin reference agrees with the code: the hook signatures with
``core/hookspecs.py``, the import block with ``pinnace.plugin.__all__``, and the
``pyproject.toml`` it shows is one pip can install."""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from pathlib import Path

import pinnace.plugin
from pinnace import hookspecs

ROOT = Path(__file__).resolve().parent.parent
TEXT = (ROOT / "CONTRIBUTING.md").read_text()
GROUP = re.compile(r"# (storage|isolation|network|image source|volume|any plugin): "
                   r"(required|optional|events and testbed hooks)")


def code_blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of CONTRIBUTING.md."""
    return re.findall(rf"^```{language}\n(.*?)^```", TEXT, re.M | re.S)


def section(title: str) -> str:
    """The text of CONTRIBUTING.md's section ``title``, up to the next heading."""
    start = TEXT.index(f"\n### {title}\n")
    end = TEXT.find("\n### ", start + 1)
    return TEXT[start:end]


def reference() -> dict[str, tuple[str, ast.FunctionDef]]:
    """The hook reference: each hook's group header and its ``def``."""
    block = code_blocks("python")
    hooks = next(b for b in block if "def pinnace_storage_prepare" in b)
    assert hooks.startswith("# ") and hooks in section("Hook reference")
    found: dict[str, tuple[str, ast.FunctionDef]] = {}
    for chunk in re.split(r"^(?=# )", hooks, flags=re.M)[1:]:  # [0]: before the first
        header = GROUP.match(chunk)
        assert header, f"a group without a recognised header: {chunk[:60]!r}"
        for node in ast.parse(chunk).body:
            assert isinstance(node, ast.FunctionDef), ast.unparse(node)
            assert node.name not in found, f"{node.name} listed twice"
            found[node.name] = (header.group(0), node)
    return found


def spec_hooks() -> dict[str, inspect.Signature]:
    return {name: inspect.signature(fn) for name, fn in vars(hookspecs).items()
            if name.startswith("pinnace_") and inspect.isfunction(fn)}


def test_the_reference_lists_every_hook_once_with_its_signature() -> None:
    documented, specs = reference(), spec_hooks()
    assert sorted(documented) == sorted(specs)
    for name, (_, node) in documented.items():
        signature = specs[name]
        args = [(a.arg, ast.unparse(a.annotation) if a.annotation else None)
                for a in node.args.args]
        assert args == [(p.name, p.annotation) for p in signature.parameters.values()], name
        assert not (node.args.defaults or node.args.kwonlyargs or node.args.vararg), name
        assert ast.unparse(node.returns) == signature.return_annotation, name


def test_the_reference_says_which_hooks_each_role_requires() -> None:
    roles = {"storage": "storage", "isolation": "isolation", "network": "network",
             "image source": "image_source", "volume": "volume"}
    groups: dict[str, list[str]] = {}
    for name, (header, _) in reference().items():
        groups.setdefault(header, []).append(name)
    for label, role in roles.items():
        assert tuple(groups.pop(f"# {label}: required")) == hookspecs.REQUIRED[role], label
        for name in groups.pop(f"# {label}: optional", []):
            assert name.startswith(f"pinnace_{role}_") and name not in hookspecs.REQUIRED[role]
    events = groups.pop("# any plugin: events and testbed hooks")
    assert not [n for n in events if any(n.startswith(f"pinnace_{r}_") for r in roles.values())]
    assert not groups, groups


def test_the_import_block_is_all_of_pinnace_plugin() -> None:
    """Every name an author may import is in the block, and nothing else."""
    block = next(b for b in code_blocks("python") if b.startswith("from pinnace.plugin import ("))
    assert block in section("What a plugin imports")
    node = ast.parse(block).body[0]
    assert isinstance(node, ast.ImportFrom)
    names = [alias.name for alias in node.names]
    assert len(names) == len(set(names)), names
    assert sorted(names) == sorted(pinnace.plugin.__all__)


def test_every_project_shown_is_installable() -> None:
    """A ``pyproject.toml`` shown with a ``[project]`` has what pip needs: a build
    system, a name and a version; every entry point names a role's group."""
    groups = {f"pinnace.{role}" for role in hookspecs.REQUIRED} | {"pinnace.plugins"}
    complete = 0
    for block in code_blocks("toml"):
        data = tomllib.loads(block)
        if "project" in data and "name" in data["project"]:
            assert data["build-system"]["build-backend"] == "setuptools.build_meta", block
            assert data["project"]["version"] and data["project"]["dependencies"] == ["pinnace"]
            complete += 1
        for group in data.get("project", {}).get("entry-points", {}):
            assert group in groups, group
    assert complete >= 1
