"""The build cache: which image a step made, keyed as docker's classic builder keys it
(the parent image, the step's text with the build args it sees, and a checksum of the
files ``COPY``/``ADD`` read). A cached image removed (``image prune``, ``rmi``) takes
its entries with it."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pinnace.state import State


def key(parent: str, step: str, checksum: str = "") -> str:
    """The cache key of ``step`` on image ``parent`` with sources of ``checksum``."""
    return hashlib.sha256(json.dumps([parent, step, checksum]).encode()).hexdigest()


class BuildCache:
    """The cache entries in the state."""

    def __init__(self, state: State) -> None:
        self.state = state

    def get(self, cache_key: str) -> str | None:
        """The image a step with ``cache_key`` made, if it is still stored."""
        row = self.state.one("SELECT image_id FROM build_cache WHERE key = ?", cache_key)
        return None if row is None else str(row["image_id"])

    def put(self, cache_key: str, image_id: str) -> None:
        """Remember that the step with ``cache_key`` made ``image_id``."""
        with self.state.tx() as db:
            db.execute("INSERT OR REPLACE INTO build_cache (key, image_id) VALUES (?, ?)",
                       (cache_key, image_id))
