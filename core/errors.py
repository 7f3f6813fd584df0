"""The one error hierarchy: plugins raise these, the core branches on them, the CLI prints them."""

from __future__ import annotations


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
