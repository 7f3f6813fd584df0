"""Where pinnace keeps things on the host: one record every service is given."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


class Paths(NamedTuple):
    """The state root (``/var/lib/pinnace``) and the runtime root (``/run/pinnace``)."""

    root: Path
    run_root: Path

    def bundle(self, cid: str) -> Path:
        """The container's private runtime directory."""
        return self.run_root / "containers" / cid

    def netns(self, cid: str) -> Path:
        """Where the container's network namespace is bind-mounted."""
        return self.run_root / "netns" / cid

    def log(self, cid: str) -> Path:
        """The container's json-file log (kept with its state, not in the run dir)."""
        return self.root / "containers" / cid / "json.log"

    def health(self, cid: str) -> Path:
        """The container's health check status (beside its log; present only with a check)."""
        return self.root / "containers" / cid / "health.json"

    def lock(self, name: str) -> Path:
        """A lock file shared by every pinnace process on this root."""
        return self.root / "locks" / f"{name}.lock"
