"""Reading the events the state records (container create/start/die/destroy, image
pull/tag/delete, network create/destroy ...): for ``pinnace events``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinnace.state import State


@dataclass(frozen=True)
class Event:
    """One recorded event: ``actor`` is the container, image or network ID."""

    id: int
    time: float
    type: str
    action: str
    actor: str
    attributes: dict[str, Any]


def read(state: State, after: int = 0, since: float | None = None,
         until: float | None = None) -> list[Event]:
    """Events with an ID above ``after`` and a time in ``[since, until]``, oldest first."""
    rows = state.query(
        "SELECT * FROM events WHERE id > ? AND time >= ? AND time <= ? ORDER BY id",
        after, since if since is not None else 0.0,
        until if until is not None else 1e18)
    return [Event(r["id"], r["time"], r["type"], r["action"], r["actor"],
                  json.loads(r["attributes"] or "{}")) for r in rows]


def last_id(state: State) -> int:
    """The newest event's ID (0 when there is none): where following starts."""
    row = state.one("SELECT MAX(id) AS id FROM events")
    return int(row["id"] or 0) if row else 0


def container_names(state: State) -> dict[str, str]:
    """Each container's name as its events last recorded it (create, rename, destroy), so
    that a removed container's events still name it; the living ones' from their rows."""
    names = {r["actor"]: json.loads(r["attributes"]).get("name", "") for r in state.query(
        "SELECT actor, attributes FROM events WHERE type = 'container'"
        " AND action IN ('create', 'rename', 'destroy') ORDER BY id")}
    names.update({r["id"]: r["name"] for r in state.query("SELECT id, name FROM containers")})
    return {cid: name for cid, name in names.items() if name}


def last_exit_code(state: State, cid: str) -> int | None:
    """The exit code the container's last ``die`` event recorded (None: unknown, or none)."""
    row = state.one("SELECT attributes FROM events WHERE type = 'container' AND"
                    " action = 'die' AND actor = ? ORDER BY id DESC LIMIT 1", cid)
    if row is None:
        return None
    code = json.loads(row["attributes"] or "{}").get("exit_code")
    return code if isinstance(code, int) else None
