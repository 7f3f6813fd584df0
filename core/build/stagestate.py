"""What a stage being built holds between its steps, and the text its steps share."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PROXY_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
                        "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
"""Build args usable without an ``ARG`` line, and kept out of the history and cache key."""
DEFAULT_SHELL = ["/bin/sh", "-c"]
MAX_ENV_STRING = 128 * 1024 - 1
"""The kernel's limit on one environment string (MAX_ARG_STRLEN, with its NUL)."""
NOP = "/bin/sh -c #(nop) "
"""How docker's history lines begin for steps that run nothing."""


@dataclass
class StageState:
    """A stage being built: its current image and config, and the ARGs in scope."""

    image_id: str
    config: dict[str, Any]                      # the container config ("config" of the image)
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False

    @property
    def env(self) -> dict[str, str]:
        """What variables substitute to: the ARGs, overridden by ENV (as docker)."""
        env = dict(self.args)
        for item in self.config.get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    @property
    def shell(self) -> list[str]:
        """What runs the shell forms of RUN, CMD and ENTRYPOINT."""
        return list(self.config.get("Shell") or DEFAULT_SHELL)


def seen_args(state: StageState) -> str:
    """The build args in scope, for a step's cache key (not its history line)."""
    recorded = {k: v for k, v in state.args.items() if k not in PROXY_ARGS}
    return "" if not recorded else " |" + json.dumps(recorded, sort_keys=True)
