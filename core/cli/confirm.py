"""The question the prune commands ask before removing anything, as docker asks it."""

from __future__ import annotations

import sys

import click

from pinnace.errors import FailedPrecondition


def prune_confirmed(what: str, force: bool) -> bool:
    """Whether to go on removing ``what``: yes with ``force``; else asked on a terminal
    (``[y/N]``); without a terminal to ask on, refused with one line."""
    if force:
        return True
    if not sys.stdin.isatty():
        raise FailedPrecondition(f"refusing to remove {what} without confirmation: stdin is "
                                 f"not a terminal; pass -f/--force")
    return click.confirm(f"WARNING! This will remove {what}.\n"
                         f"Are you sure you want to continue?")
