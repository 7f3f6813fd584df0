"""The one error hierarchy: plugins raise these, the core branches on them, the CLI prints them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class PinnaceError(Exception):
    """Base of every error pinnace reports to a user as one line."""

    exit_code = 125


class NotFound(PinnaceError):
    """A container, image, plugin, snapshot or file that does not exist."""


class AlreadyExists(PinnaceError):
    """A name, tag or key that is already taken."""


class FailedPrecondition(PinnaceError):
    """The thing exists but is in the wrong state (running, in use, not btrfs...)."""


class InvalidConfig(PinnaceError):
    """Bad input: a flag, a config value, an image reference, a tar member."""


class Unavailable(PinnaceError):
    """A kernel feature, tool or library this host lacks."""


class TryAgain(PinnaceError):
    """A transient failure: retrying the same call may succeed."""


class PluginError(PinnaceError):
    """A plugin that cannot be found, imported or validated."""


class CommandNotFound(PinnaceError):
    """The container's command does not exist in the image (exit 127, like a shell)."""

    exit_code = 127


class CommandNotExecutable(PinnaceError):
    """The container's command exists but cannot be executed (exit 126)."""

    exit_code = 126


class StepFailed(PinnaceError):
    """A build step's command exited non-zero (exit 1, as ``docker build``)."""

    exit_code = 1


class NoSpace(PinnaceError):
    """A write failed because its filesystem, or a quota on it, is full (ENOSPC, EDQUOT)."""


NO_SPACE_ERRNOS = frozenset({28, 122})  # ENOSPC, EDQUOT
"""The errnos that mean "the filesystem (or the quota) is full"."""


def is_no_space(err: BaseException) -> bool:
    """Whether ``err`` is an OSError saying its filesystem (or quota) is full."""
    return isinstance(err, OSError) and err.errno in NO_SPACE_ERRNOS


def no_space(err: OSError, what: str, where: object = None, root: object = None) -> NoSpace:
    """The one-line error for a full filesystem met while writing ``what`` (to the path
    ``where``, in the storage ``root``, when given)."""
    reason = "disk quota exceeded" if err.errno == 122 else "no space left on device"
    target = f" to {where}" if where is not None else ""
    tail = f" (storage root {root})" if root is not None else ""
    return NoSpace(f"{reason} writing {what}{target}{tail}")


@contextlib.contextmanager
def writing(what: str, where: object, root: object = None) -> Iterator[None]:
    """A block that writes ``what`` to ``where``: an ENOSPC or EDQUOT raised in it
    becomes one :class:`NoSpace` line naming them (and the storage ``root``)."""
    try:
        yield
    except OSError as err:
        if is_no_space(err):
            raise no_space(err, what, where, root) from None
        raise
