"""OCI hooks: programs run at points of a container's life with its state on stdin."""

from __future__ import annotations

import json
from typing import Any

from pinnace.errors import FailedPrecondition
from pinnace.runtime.oci import Hook


def run_hooks(kind: str, hooks: list[Hook], state: dict[str, Any]) -> None:
    """Run ``hooks`` in order; raise FailedPrecondition naming the first that fails."""
    import subprocess

    data = json.dumps(state).encode()
    for hook in hooks:
        try:
            done = subprocess.run(hook.args or [hook.path], executable=hook.path, input=data,
                                  env=dict(e.split("=", 1) for e in hook.env if "=" in e),
                                  capture_output=True, timeout=hook.timeout or None,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise FailedPrecondition(f"{kind} hook {hook.path} timed out after "
                                     f"{hook.timeout}s") from None
        except OSError as err:
            raise FailedPrecondition(f"{kind} hook {hook.path}: {err.strerror}") from None
        if done.returncode != 0:
            detail = done.stderr.decode(errors="replace").strip().splitlines()
            raise FailedPrecondition(f"{kind} hook {hook.path} failed with exit status "
                                     f"{done.returncode}" + (f": {detail[-1]}" if detail else ""))
