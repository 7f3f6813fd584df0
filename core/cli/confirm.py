"""The question the prune commands ask before removing anything, as docker asks it."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from pinnace.errors import FailedPrecondition


def prune_confirmed(what: str | Sequence[str], force: bool) -> bool:
    """Whether to go on removing ``what`` (one kind of object, or a list of them): yes
    with ``force``; else asked on a terminal (``[y/N]``); without a terminal to ask on,
    refused with one line."""
    if force:
        return True
    kinds = [what] if isinstance(what, str) else list(what)
    if not sys.stdin.isatty():
        raise FailedPrecondition(f"refusing to remove {'; '.join(kinds)} without "
                                 f"confirmation: stdin is not a terminal; pass -f/--force")
    listed = f" {kinds[0]}." if len(kinds) == 1 else ":\n" + "".join(
        f"  - {kind}\n" for kind in kinds).rstrip("\n")
    return click.confirm(f"WARNING! This will remove{listed}\n"
                         f"Are you sure you want to continue?")
